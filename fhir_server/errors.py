"""FHIR errors: every failure the server reports is one of these, shown as an OperationOutcome."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True, frozen=True)
class Issue:
    """One OperationOutcome.issue: severity, IssueType code, human text and FHIRPath location."""

    severity: str  # fatal | error | warning | information
    code: str  # http://hl7.org/fhir/issue-type
    diagnostics: str
    expression: str | None = None
    # a failed invariant: its key (``pat-1``) and the canonical URL of the definition declaring it
    key: str | None = None
    source: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "severity": self.severity,
            "code": self.code,
        }
        if self.key:
            coding: dict[str, Any] = {"code": self.key}
            if self.source:
                coding = {"system": self.source, "code": self.key}
            out["details"] = {"coding": [coding], "text": self.diagnostics}
        out["diagnostics"] = self.diagnostics
        if self.expression:
            # FHIRPath location; R4's deprecated ``location`` carries the same path (clients
            # written for older servers read only that one)
            out["expression"] = [self.expression]
            out["location"] = [self.expression]
        return out


class FhirError(Exception):
    """An HTTP status plus OperationOutcome issues; raised anywhere, rendered by api/."""

    def __init__(
        self,
        status: int,
        code: str,
        diagnostics: str,
        expression: str | None = None,
        *,
        issues: list[Issue] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(diagnostics)
        self.status = status
        self.issues = issues or [Issue("error", code, diagnostics, expression)]
        self.headers = headers or {}
        # a refusal the audit trail is recording (before any request context existed): the
        # answer waits for it to be durable
        self.audited: Any = None

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)


def operation_outcome(issues: list[Issue]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [i.to_json() for i in issues]}


def information(diagnostics: str, code: str = "informational") -> dict[str, Any]:
    return operation_outcome([Issue("information", code, diagnostics)])


# Shorthands for the common cases, so call sites read like the spec.


def bad_request(
    diagnostics: str, expression: str | None = None, code: str = "invalid"
) -> FhirError:
    return FhirError(400, code, diagnostics, expression)


def not_found(diagnostics: str) -> FhirError:
    return FhirError(404, "not-found", diagnostics)


def is_hidden(exc: FhirError) -> bool:
    """Whether the guard refused because the caller may not know the resource exists (the
    interaction then answers exactly as for a missing resource)."""
    return getattr(exc, "hides_resource", False)


def unknown(type_: str, id_: str) -> FhirError:
    """The one answer for a resource that does not exist, or that the caller may not see: the
    two must not be told apart (docs/security.md)."""
    return FhirError(404, "not-found", f"{type_}/{id_} is not known")


def gone(diagnostics: str, headers: dict[str, str] | None = None) -> FhirError:
    return FhirError(410, "deleted", diagnostics, headers=headers)


def conflict(diagnostics: str, code: str = "conflict") -> FhirError:
    return FhirError(409, code, diagnostics)


def precondition_failed(diagnostics: str, code: str = "conflict") -> FhirError:
    return FhirError(412, code, diagnostics)


def unprocessable(issues: list[Issue]) -> FhirError:
    first = next((i for i in issues if i.severity in ("error", "fatal")), issues[0])
    return FhirError(422, first.code, first.diagnostics, issues=issues)


def not_supported(diagnostics: str, status: int = 400) -> FhirError:
    return FhirError(status, "not-supported", diagnostics)
