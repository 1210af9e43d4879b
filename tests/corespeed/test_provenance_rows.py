"""The Provenance the security layer writes for every write is indexed without FHIRPath
(issue 18): its rows are exactly the generic extractor's, for every kind of caller, target and
break-the-glass, on the first Provenance of a caller and on those that reuse its agents' rows;
and anything not shaped as ours is indexed the generic way."""

from __future__ import annotations

from pathlib import Path

from fhir_server.app import ServerApp
from fhir_server.security.audit import ProvenanceHook
from fhir_server.security.principal import SecureContext, SecurePrincipal
from fhir_server.store.protocol import StoredVersion
from tests.conftest import make_settings

TABLES = ("strings", "tokens", "references", "dates", "numbers", "quantities", "uris", "geo")
USER = SecurePrincipal(
    subject="s",
    client_id="app",
    role="A",
    practitioner="Practitioner/x",
    organization="Organization/y",
    name="An",
)
NO_ORG = SecurePrincipal(subject="s2", client_id="app", role="B", practitioner="Practitioner/z")
SYSTEM = SecurePrincipal(subject="b", client_id="backend", kind="system")
SUBJECT_ONLY = SecurePrincipal(subject="who", role="A")


def rows_of(rows) -> dict[str, list[str]]:
    return {table: sorted(map(repr, getattr(rows, table))) for table in TABLES}


async def test_provenance_rows_equal_the_extractor(tmp_path: Path) -> None:
    app = ServerApp(make_settings(tmp_path, auth="required"))
    svc = app.service
    hook = next(h for h in svc.write_hooks if isinstance(h, ProvenanceHook))
    captured: list[tuple[dict, object]] = []

    async def spy(ctx, uow, resource, current, method, *, fresh=False, indexer=None):
        captured.append((resource, indexer))

    svc.store_version = spy  # type: ignore[method-assign]  # the hook's one call, recorded
    cases = [
        (USER, False, "Observation", None),
        (USER, False, "Observation", "update"),
        (USER, False, "Patient", None),  # a Patient target: indexed under patient too
        (USER, True, "Patient", "delete"),  # break-the-glass: a reason
        (NO_ORG, False, "CarePlan", None),
        (SYSTEM, False, "Observation", None),
        (SUBJECT_ONLY, False, "Observation", None),
    ]
    for _round in range(2):  # the second round reuses the agents' rows
        for principal, glass, type_, change in cases:
            ctx = SecureContext(base_url="http://testserver/fhir", principal=principal)
            ctx.break_glass = glass
            ctx.break_glass_reason = "a long enough emergency" if glass else None
            written = StoredVersion(
                type_, "id-1", 2, 1_700_000_000_123_000, change == "delete", "PUT", b"{}", 5
            )
            previous = written if change else None
            await hook.after(ctx, None, written, previous)
    assert len(captured) == 2 * len(cases)
    from fhir_server.service.versioning import stamp_meta

    for resource, indexer in captured:
        assert indexer is not None
        stamp_meta(resource, 1, 1_700_000_000_456_000)
        fast = indexer(resource, 1_700_000_000_456_000)
        slow = svc.extractor.extract(resource, last_updated=1_700_000_000_456_000)
        assert rows_of(fast) == rows_of(slow), resource
        assert fast.references and fast.dates  # something was indexed
    patient_rows = [
        r
        for resource, indexer in captured
        for r in indexer(resource, 1_700_000_000_456_000).references
        if r[0] == "patient"
    ]
    assert {r[1:3] for r in patient_rows} == {("Patient", "id-1")}

    # a Provenance a hook changed into another shape: the generic rows
    odd = dict(captured[0][0])
    odd["entity"] = [{"role": "source", "what": {"reference": "Observation/o9"}}]
    odd["target"] = [{"reference": "http://elsewhere/fhir/Patient/p1"}]
    fast = captured[0][1](odd, 1_700_000_000_456_000)
    slow = svc.extractor.extract(odd, last_updated=1_700_000_000_456_000)
    assert rows_of(fast) == rows_of(slow)
    assert any(r[0] == "entity" for r in fast.references)
