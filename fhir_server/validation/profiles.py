"""Profile validation: resources against StructureDefinition snapshots (be-core, BiB, stored).

Each profile is compiled once: its snapshot becomes a tree of ``Node`` objects, one per element
definition, and every check the element needs (cardinality, allowed types, fixed and pattern
values, bindings, invariants, slicing, type profiles, reference targets) is decided at compile
time. Nodes whose element adds nothing beyond the R4 base definition are pruned, so validating a
resource only walks the parts of the instance the profile constrains. What the structural
validator already checks on every write (unknown elements, JSON types, base cardinalities,
primitive formats, base required bindings) is not repeated.

Extensions are validated by URL everywhere in the resource: those a profile slices through the
slice's extension definition, all others through the definition registered for their URL
(content, allowed context). Unknown extensions are warnings; unknown modifier extensions errors.

``ProfileValidator`` is the object that plugs into ``FhirService.profile_validators``: on every
write it validates the resource against the profiles it claims in ``meta.profile`` and the
profiles the configuration requires for its type.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from fhir_server.errors import Issue
from fhir_server.model.structure import PRIMITIVE_TYPES, Model, r4_model
from fhir_server.terminology.catalog import Catalog, default_catalog
from fhir_server.validation.core_invariants import inherited_from_r4
from fhir_server.validation.invariants import (
    NATIVE,
    Invariant,
    base_constraint_keys,
    select_invariants,
)
from fhir_server.validation.registry import R4_BASE, DefinitionRegistry, strip_version
from fhir_server.validation.slicing import SliceRule, build_matcher, json_equal, pattern_match
from fhir_server.validation.snapshot import SnapshotError, generate_snapshot

log = logging.getLogger(__name__)

FHIRPATH_TYPE_PREFIX = "http://hl7.org/fhirpath/System."
FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
MAX_NESTING = 8  # profiles validated inside profiles (type profiles, contained, references)
Resolver = Callable[[str], "dict[str, Any] | None"]


def _cap(code: str) -> str:
    return code[:1].upper() + code[1:]


def _type_code(entry: dict[str, Any]) -> str:
    code = entry.get("code", "")
    if code.startswith(FHIRPATH_TYPE_PREFIX):
        for ext in entry.get("extension", ()):
            if ext.get("url") == FHIR_TYPE_EXT:
                return ext.get("valueUrl", "string")
        return "string"
    return code


def _max(value: Any) -> int | None:
    if value in (None, "*"):
        return None
    return int(value)


def reference_type(reference: dict[str, Any]) -> str | None:
    """The resource type a Reference points at, when its literal reference or type says so."""
    declared = reference.get("type")
    target = reference.get("reference")
    if isinstance(target, str) and not target.startswith(("#", "urn:")):
        parts = target.split("?", 1)[0].rstrip("/").split("/")
        if len(parts) >= 4 and parts[-2] == "_history":
            parts = parts[:-2]
        if len(parts) >= 2 and parts[-2][:1].isupper():
            return parts[-2]
    return declared if isinstance(declared, str) else None


@dataclass(slots=True)
class TypeRef:
    code: str
    profiles: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()


@dataclass(slots=True)
class Val:
    """One value of an element in an instance (a primitive with its ``_name`` partner)."""

    value: Any
    partner: dict[str, Any] | None
    type: str
    path: str


class Node:
    """One compiled element definition."""

    __slots__ = (
        "active",
        "active_children",
        "base_binding",
        "binding",
        "card_check",
        "children",
        "choice",
        "choice_keys",
        "content_reference",
        "fixed",
        "fp_type",
        "id",
        "invariants",
        "is_slice",
        "keys",
        "max",
        "max_length",
        "min",
        "name",
        "path",
        "pattern",
        "primitive",
        "ref_target",
        "rules",
        "slice_name",
        "slice_rules",
        "slices",
        "slicing",
        "source",
        "target_types",
        "type_codes",
        "types",
    )

    def __init__(self, element: dict[str, Any]) -> None:
        self.id: str = element.get("id") or element["path"]
        self.path: str = element["path"]
        segment = self.path.rsplit(".", 1)[-1]
        self.choice = segment.endswith("[x]")
        self.name = segment[:-3] if self.choice else segment
        self.slice_name: str | None = element.get("sliceName")
        self.is_slice = self.slice_name is not None
        self.min: int = element.get("min", 0)
        self.max: int | None = _max(element.get("max", "*"))
        base = element.get("base") or {}
        self.card_check = self.is_slice or (
            (self.min, self.max) != (base.get("min", self.min), _max(base.get("max", "*")))
        )
        self.types = [
            TypeRef(
                _type_code(t),
                tuple(t.get("profile", ())),
                tuple(t.get("targetProfile", ())),
            )
            for t in element.get("type", ())
        ]
        self.type_codes = frozenset(t.code for t in self.types)
        self.primitive = bool(self.type_codes) and self.type_codes <= PRIMITIVE_TYPES
        self.fixed = next((v for k, v in element.items() if k.startswith("fixed")), None)
        self.pattern = next((v for k, v in element.items() if k.startswith("pattern")), None)
        binding = element.get("binding") or {}
        strength = binding.get("strength")
        self.binding: tuple[str, str] | None = (
            (strength, strip_version(binding["valueSet"]))
            if strength in ("required", "extensible") and binding.get("valueSet")
            else None
        )
        self.base_binding: tuple[str, str] | None = None
        self.max_length: int | None = element.get("maxLength")
        self.slicing: dict[str, Any] | None = element.get("slicing")
        self.rules = (self.slicing or {}).get("rules", "open")
        self.slices: list[Node] = []
        self.slice_rules: list[SliceRule] = []
        self.children: dict[str, Node] = {}
        self.active_children: list[Node] = []
        self.invariants: list[Invariant] = []
        self.content_reference: str | None = (element.get("contentReference") or "").lstrip(
            "#"
        ) or None
        self.keys: tuple[tuple[str, str], ...] = ()
        self.choice_keys: tuple[tuple[str, str], ...] = ()
        self.target_types: frozenset[str] = frozenset()
        self.ref_target: Node | None = None
        self.fp_type: str | None = None
        self.active = False
        self.source: str | None = None  # URL of the profile (OperationOutcome details.coding)

    def type_profiles(self, code: str) -> tuple[str, ...]:
        return tuple(p for t in self.types if t.code == code for p in t.profiles)

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"Node({self.id})"


@dataclass(slots=True)
class CompiledProfile:
    url: str
    type: str
    kind: str
    root: Node
    name: str
    target_profiles: bool = False  # some reference must point at a conforming (profiled) target


@dataclass(slots=True)
class _Ctx:
    issues: list[Issue]
    resource: dict[str, Any]
    root: dict[str, Any]
    handled: set[int] = field(default_factory=set)
    resolver: Resolver | None = None
    depth: int = 0
    conformance: list[Issue] = field(default_factory=list)  # stored targets not conforming

    def add(self, severity: str, code: str, text: str, path: str) -> None:
        self.issues.append(Issue(severity, code, text, path))


class Terminology:
    """Value set membership for bindings, from the server's terminology catalog (R4, BiB and
    be-core content), plus any CodeSystem/ValueSet shipped next to the profiles."""

    def __init__(self, registry: DefinitionRegistry) -> None:
        self.extra: Catalog | None = None
        if registry.terminology:
            self.extra = default_catalog().copy()
            for resource in registry.terminology:
                self.extra.add(resource)
        self._codes: dict[str, tuple[object, frozenset[str]]] = {}

    def expansion(self, url: str) -> frozenset[tuple[str, str]] | None:
        found = default_catalog().expand(url)
        if found is None and self.extra is not None:
            found = self.extra.expand(url)
        return found

    def contains(self, url: str, value: Any) -> bool | None:
        """Whether a code/Coding/CodeableConcept is in the value set (None: cannot tell)."""
        pairs = self.expansion(url)
        if pairs is None:
            return None
        cached = self._codes.get(url)
        if cached is None or cached[0] is not pairs:
            cached = (pairs, frozenset(code for _, code in pairs))
            self._codes[url] = cached
        codes = cached[1]
        if isinstance(value, str):
            return value in codes
        if isinstance(value, dict):
            is_coding = "code" in value or "system" in value  # else a CodeableConcept
            codings = [value] if is_coding else (value.get("coding") or [])
            for coding in codings:
                if not isinstance(coding, dict) or not isinstance(coding.get("code"), str):
                    continue
                system = coding.get("system")
                if (system, coding["code"]) in pairs or (
                    system is None and coding["code"] in codes
                ):
                    return True
            return False
        return None


class ProfileValidator:
    """Validates resources against profiles; the write-path plug-in and the engine of $validate."""

    def __init__(
        self,
        registry: DefinitionRegistry | None = None,
        required: dict[str, tuple[str, ...]] | None = None,
        reject_unknown: bool = False,
        model: Model | None = None,
    ) -> None:
        self.registry = registry or DefinitionRegistry.shipped()
        self.model = model or r4_model()
        self.terminology = Terminology(self.registry)
        self.required = required or {}
        self.reject_unknown = reject_unknown
        self._compiled: dict[str, CompiledProfile | None] = {}
        self._generation = self.registry.generation
        self._base_keys = base_constraint_keys()
        self._context_cache: dict[tuple[str, ...], tuple[str, str, tuple[str, ...]]] = {}

    # -- the write-path protocol -------------------------------------------------------------

    def validate(self, resource: dict[str, Any], resource_type: str | None = None) -> list[Issue]:
        resource_type = resource_type or resource.get("resourceType", "")
        urls = self.profiles_for(resource, resource_type)
        extra = self.definition_issues(resource) if resource_type == "StructureDefinition" else []
        if not urls:
            return extra
        return extra + self.validate_against(resource, urls)

    def definition_issues(self, sd: dict[str, Any]) -> list[Issue]:
        """Warnings for a StructureDefinition the validator will not be able to use."""
        if sd.get("derivation") != "constraint" or "snapshot" in sd:
            return []
        base = sd.get("baseDefinition")
        if not isinstance(base, str) or self.registry.get(base) is None:
            return [
                Issue(
                    "warning",
                    "not-found",
                    f"the base definition {base} is not known here, so this profile has no "
                    "snapshot and cannot be used for validation",
                    "StructureDefinition.baseDefinition",
                )
            ]
        try:
            generate_snapshot(sd, self.registry.get, self.registry.type_definition)
        except (SnapshotError, KeyError, TypeError, ValueError) as exc:
            return [
                Issue(
                    "warning",
                    "not-supported",
                    f"no snapshot can be generated from this differential ({exc}), so this "
                    "profile cannot be used for validation",
                    "StructureDefinition.differential",
                )
            ]
        return []

    def profiles_for(self, resource: dict[str, Any], resource_type: str) -> list[str]:
        urls: list[str] = list(self.required.get(resource_type, ()))
        meta = resource.get("meta")
        if isinstance(meta, dict):
            for url in meta.get("profile", ()) or ():
                if isinstance(url, str) and url not in urls:
                    urls.append(url)
        return urls

    # -- entry points ----------------------------------------------------------------------------

    def compiled(self, url: str) -> CompiledProfile | None:
        if self.registry.generation != self._generation:
            self._compiled.clear()
            self._generation = self.registry.generation
        key = strip_version(url)
        if key not in self._compiled:
            self._compiled[key] = None  # guards against recursive profiles while compiling
            sd = self.registry.get(key)
            self._compiled[key] = self._compile(sd) if sd is not None else None
        return self._compiled[key]

    def knows(self, url: str) -> bool:
        return self.registry.get(url) is not None

    def validate_against(
        self,
        resource: dict[str, Any],
        urls: Iterable[str],
        resolver: Resolver | None = None,
        path: str | None = None,
    ) -> list[Issue]:
        issues: list[Issue] = []
        ctx = _Ctx(issues, resource, resource, resolver=resolver)
        where = path or str(resource.get("resourceType", ""))
        for url in urls:
            self._validate_resource(resource, url, where, ctx)
        self._scan_extensions(resource, where, ctx)
        return _dedupe(issues)

    def reference_problems(
        self, resource: dict[str, Any], urls: Iterable[str], resolver: Resolver
    ) -> list[Issue]:
        """Only the issues of referenced (resolvable) resources not conforming to the target
        profiles of the reference (the write path checks everything else before)."""
        ctx = _Ctx([], resource, resource, resolver=resolver)
        where = str(resource.get("resourceType", ""))
        for url in urls:
            self._validate_resource(resource, url, where, ctx)
        return _dedupe(ctx.conformance)

    def has_target_profiles(self, urls: Iterable[str]) -> bool:
        """Whether any of these profiles restricts a reference to a non-base profile."""
        for url in urls:
            profile = self.compiled(url)
            if profile is not None and profile.target_profiles:
                return True
        return False

    def conforms(self, value: Any, url: str) -> bool:
        """True when ``value`` (a resource or a data type value) has no errors against ``url``."""
        profile = self.compiled(url)
        if profile is None:
            return False
        issues: list[Issue] = []
        resource = value if isinstance(value, dict) and "resourceType" in value else {}
        ctx = _Ctx(issues, resource, resource)
        self._apply_profile(value, profile, "$", ctx, _type_of(value, profile))
        return not any(i.severity in ("error", "fatal") for i in issues)

    # -- resources -----------------------------------------------------------------------------

    def _validate_resource(self, resource: dict[str, Any], url: str, path: str, ctx: _Ctx) -> None:
        if self.registry.is_base(url):
            return  # the structural validation covers the base definitions
        profile = self.compiled(url)
        if profile is None:
            severity = "error" if self.reject_unknown else "warning"
            text = (
                f"the profile {url} is not known to this server, so the resource was not "
                "validated against it"
            )
            ctx.add(severity, "not-supported", text, path)
            return
        resource_type = resource.get("resourceType")
        if profile.kind != "resource" or profile.type != resource_type:
            ctx.add(
                "error",
                "invalid",
                f"the profile {url} constrains {profile.type}, not {resource_type}",
                path,
            )
            return
        self._apply_profile(resource, profile, path, ctx, resource_type)

    def _apply_profile(
        self, value: Any, profile: CompiledProfile, path: str, ctx: _Ctx, fp_type: str
    ) -> None:
        if ctx.depth > MAX_NESTING:
            return
        ctx.depth += 1
        try:
            root = profile.root
            val = Val(value, None, fp_type, path)
            self._invariants(val, root, ctx)
            if root.fixed is not None or root.pattern is not None:
                self._fixed_pattern(val, root, ctx)
            if isinstance(value, dict):
                self._object(value, root, path, ctx)
        finally:
            ctx.depth -= 1

    # -- objects and elements ------------------------------------------------------------------

    def _object(self, obj: dict[str, Any], node: Node, path: str, ctx: _Ctx) -> None:
        for child in node.active_children:
            values = _collect(obj, child, path)
            self._element(values, child, path, ctx)

    def _element(self, values: list[Val], node: Node, path: str, ctx: _Ctx) -> None:
        if node.choice and node.type_codes:
            kept = []
            for val in values:
                if val.type in node.type_codes:
                    kept.append(val)
                    continue
                allowed = ", ".join(sorted(node.type_codes))
                ctx.add(
                    "error",
                    "structure",
                    f"{node.name}[x] may not be a {val.type} here (allowed: {allowed})",
                    val.path,
                )
            values = kept
        if node.slice_rules:
            self._sliced(values, node, path, ctx)
            return
        if node.card_check:
            self._cardinality(len(values), node, f"{path}.{node.name}", ctx, node.id)
        for val in values:
            self._value(val, node, ctx)

    def _cardinality(self, count: int, node: Node, path: str, ctx: _Ctx, label: str) -> None:
        if count < node.min:
            ctx.add(
                "error",
                "required",
                f"{label}: minimum cardinality is {node.min}, but {count} found",
                path,
            )
        if node.max is not None and count > node.max:
            ctx.add(
                "error",
                "structure",
                f"{label}: maximum cardinality is {node.max}, but {count} found",
                path,
            )

    def _sliced(self, values: list[Val], node: Node, path: str, ctx: _Ctx) -> None:
        where = f"{path}.{node.name}"
        if node.card_check:
            self._cardinality(len(values), node, where, ctx, node.id)
        counts = [0] * len(node.slice_rules)
        ordered = bool((node.slicing or {}).get("ordered"))
        last = -1
        seen_unmatched = False
        for val in values:
            rule = next((r for r in node.slice_rules if r.matches(val)), None)
            if rule is None:
                seen_unmatched = True
                if node.rules == "closed":
                    ctx.add(
                        "error",
                        "structure",
                        f"this value does not match any slice of {node.id} (closed slicing)",
                        val.path,
                    )
                self._value(val, node, ctx)
                continue
            counts[rule.index] += 1
            if ordered and rule.index < last:
                ctx.add("error", "structure", f"the slices of {node.id} are out of order", val.path)
            if node.rules == "openAtEnd" and seen_unmatched:
                ctx.add(
                    "error",
                    "structure",
                    f"values outside the slices of {node.id} must come after the sliced ones",
                    val.path,
                )
            last = max(last, rule.index)
            self._value(val, rule.node, ctx)
        for rule in node.slice_rules:
            self._cardinality(counts[rule.index], rule.node, where, ctx, f"slice {rule.node.id}")

    def _value(self, val: Val, node: Node, ctx: _Ctx) -> None:
        if node.fixed is not None or node.pattern is not None:
            self._fixed_pattern(val, node, ctx)
        if node.binding is not None and node.binding != node.base_binding:
            self._binding(val, node, ctx)
        if (
            node.max_length is not None
            and isinstance(val.value, str)
            and len(val.value) > node.max_length
        ):
            ctx.add(
                "error",
                "too-long",
                f"{node.id}: at most {node.max_length} characters are allowed",
                val.path,
            )
        if val.type == "Reference" and node.target_types and isinstance(val.value, dict):
            self._reference(val, node, ctx)
        for type_ref in node.types:
            if type_ref.profiles and type_ref.code == val.type:
                self._type_profiles(val, type_ref, node, ctx)
        if "Resource" in node.type_codes and isinstance(val.value, dict):
            self._nested_resource(val, ctx)
        if node.invariants:
            self._invariants(val, node, ctx)
        if node.ref_target is not None:
            self._value(val, node.ref_target, ctx)  # Questionnaire.item.item -> Questionnaire.item
        elif node.active_children:
            if node.primitive:
                self._object(val.partner or {}, node, val.path, ctx)
            elif isinstance(val.value, dict):
                self._object(val.value, node, val.path, ctx)

    # -- individual checks -------------------------------------------------------------------

    def _fixed_pattern(self, val: Val, node: Node, ctx: _Ctx) -> None:
        value = val.value
        if node.fixed is not None and not json_equal(value, node.fixed):
            ctx.add(
                "error",
                "value",
                f"{node.id}: the value must be exactly {_short_json(node.fixed)}",
                val.path,
            )
        if node.pattern is not None and not pattern_match(value, node.pattern):
            ctx.add(
                "error",
                "value",
                f"{node.id}: the value must match the pattern {_short_json(node.pattern)}",
                val.path,
            )

    def _binding(self, val: Val, node: Node, ctx: _Ctx) -> None:
        strength, value_set = node.binding  # type: ignore[misc]
        value = val.value
        if val.type in ("Quantity", "Age", "Duration", "Distance", "Count", "Money"):
            return
        if isinstance(value, dict) and not value.get("coding") and "code" not in value:
            if strength == "required" and val.type == "CodeableConcept":
                ctx.add(
                    "error",
                    "code-invalid",
                    f"{node.id}: a code from the value set {value_set} is required "
                    "(only text was given)",
                    val.path,
                )
            return
        found = self.terminology.contains(value_set, value)
        if found is None or found:
            return
        if strength == "required":
            ctx.add(
                "error",
                "code-invalid",
                f"{node.id}: the code {_codes_text(value)} is not in the value set {value_set}, "
                "which is required here",
                val.path,
            )
        else:
            ctx.add(
                "warning",
                "code-invalid",
                f"{node.id}: the code {_codes_text(value)} is not in the value set {value_set} "
                "(extensible binding: use a code from it when one fits)",
                val.path,
            )

    def _reference(self, val: Val, node: Node, ctx: _Ctx) -> None:
        reference = val.value
        target = reference.get("reference")
        resolved: dict[str, Any] | None = None
        if isinstance(target, str) and target.startswith("#"):
            resolved = _contained(ctx.resource, target[1:])
            kind = resolved.get("resourceType") if resolved else reference.get("type")
            if resolved is None and target != "#":
                ctx.add(
                    "error",
                    "not-found",
                    f"{node.id}: the reference {target} points at no contained resource",
                    val.path,
                )
        else:
            kind = reference_type(reference)
        if kind is None:
            return
        if "Resource" not in node.target_types and kind not in node.target_types:
            allowed = ", ".join(sorted(node.target_types))
            ctx.add(
                "error",
                "structure",
                f"{node.id}: a reference to a {kind} is not allowed here (allowed: {allowed})",
                val.path,
            )
            return
        if resolved is None and ctx.resolver is not None and isinstance(target, str):
            resolved = ctx.resolver(target)
        if resolved is None:
            return
        profiles = [
            p
            for t in node.types
            if t.code == "Reference"
            for p in t.targets
            if not self.registry.is_base(p)
        ]
        candidates = [
            p for p in profiles if self.compiled(p) is not None and self._type_of_profile(p) == kind
        ]
        if not candidates:
            return
        if not any(self.conforms(resolved, p) for p in candidates):
            names = ", ".join(candidates)
            issue = Issue(
                "error",
                "invalid",
                f"{node.id}: the referenced {kind} ({target}) does not conform to {names}",
                val.path,
            )
            ctx.issues.append(issue)
            ctx.conformance.append(issue)

    def _type_profiles(self, val: Val, type_ref: TypeRef, node: Node, ctx: _Ctx) -> None:
        if type_ref.code == "Extension" and isinstance(val.value, dict):
            ctx.handled.add(id(val.value))
            url = val.value.get("url")
            if url in type_ref.profiles:
                self._extension_content(val, url, ctx)
            return
        known = [p for p in type_ref.profiles if self.compiled(p) is not None]
        if not known:
            return
        if len(known) == 1:
            self._apply_profile(val.value, self.compiled(known[0]), val.path, ctx, val.type)  # type: ignore[arg-type]
            return
        if not any(self.conforms(val.value, p) for p in known):
            ctx.add(
                "error",
                "structure",
                f"{node.id}: the value conforms to none of {', '.join(known)}",
                val.path,
            )

    def _nested_resource(self, val: Val, ctx: _Ctx) -> None:
        resource = val.value
        ctx.handled.add(id(resource))
        meta = resource.get("meta")
        urls = [
            u
            for u in (meta.get("profile", ()) if isinstance(meta, dict) else ())
            if isinstance(u, str)
        ]
        if not urls:
            return
        saved = ctx.resource
        ctx.resource = resource
        try:
            for url in urls:
                self._validate_resource(resource, url, val.path, ctx)
        finally:
            ctx.resource = saved

    def _invariants(self, val: Val, node: Node, ctx: _Ctx) -> None:
        fp_type = node.fp_type or val.type
        for invariant in node.invariants:
            problem = invariant.evaluate(val.value, fp_type, val.partner, ctx.resource, ctx.root)
            if problem is None:
                continue
            source = node.source
            if problem.startswith("could not be evaluated"):
                text = f"{invariant.key} {problem}: {invariant.expression}"
                ctx.issues.append(
                    Issue("warning", "invariant", text, val.path, invariant.key, source)
                )
                continue
            severity = "error" if invariant.severity == "error" else "warning"
            text = f"{invariant.key}: {problem}"
            ctx.issues.append(Issue(severity, "invariant", text, val.path, invariant.key, source))

    # -- extensions by URL -------------------------------------------------------------------

    def _extension_content(self, val: Val, url: str, ctx: _Ctx) -> None:
        profile = self.compiled(url)
        if profile is None:
            return
        self._apply_profile(val.value, profile, val.path, ctx, "Extension")

    def _scan_extensions(self, resource: dict[str, Any], path: str, ctx: _Ctx) -> None:
        """Validate every extension no profile slice has validated, by its URL.

        One pass over the JSON; paths and element keys are only built for the extensions found.
        """
        frames: list[tuple[int, str | None, int | None, Any]] = [(-1, None, None, resource)]
        stack: list[tuple[Any, int]] = [(resource, 0)]
        found: list[tuple[dict[str, Any], str, int]] = []
        handled = ctx.handled
        nested: list[tuple[dict[str, Any], int]] = []
        while stack:
            obj, frame = stack.pop()
            if frame and type(obj) is dict and "resourceType" in obj:
                nested.append((obj, frame))
            if type(obj) is list:
                for index, item in enumerate(obj):
                    if type(item) is dict or type(item) is list:
                        frames.append((frame, None, index, item))
                        stack.append((item, len(frames) - 1))
                continue
            for key, value in obj.items():
                kind = type(value)
                if kind is not dict and kind is not list:
                    continue
                if kind is list and (key == "extension" or key == "modifierExtension"):
                    for index, ext in enumerate(value):
                        if type(ext) is dict:
                            frames.append((frame, key, index, ext))
                            if id(ext) not in handled:
                                found.append((ext, key, len(frames) - 1))
                            stack.append((ext, len(frames) - 1))
                    continue
                frames.append((frame, key, None, value))
                stack.append((value, len(frames) - 1))
        for ext, key, frame in found:
            ext_path, keys = _materialise(frames, frame, path, resource)
            self._unprofiled_extension(ext, key, keys[:-1], ext_path, ctx)  # keys of the holder
        for obj, frame in nested:  # contained / entry resources no profile node has visited
            if id(obj) not in handled:
                nested_path, _ = _materialise(frames, frame, path, resource)
                self._nested_resource(Val(obj, None, "Resource", nested_path), ctx)

    def _unprofiled_extension(
        self, ext: dict[str, Any], key: str, keys: tuple[str, ...], path: str, ctx: _Ctx
    ) -> None:
        url = ext.get("url")
        if not isinstance(url, str):
            return
        if "/" not in url and keys[-1] in ("extension", "modifierExtension"):
            return  # a sub-extension of a complex extension: validated with its parent
        profile = self.compiled(url)
        if profile is None or profile.type != "Extension":
            if key == "modifierExtension":
                ctx.add(
                    "error",
                    "extension",
                    f"the modifier extension {url} is not known to this server; a modifier "
                    "extension that is not understood cannot be accepted",
                    path,
                )
            else:
                ctx.add(
                    "warning",
                    "extension",
                    f"the extension {url} is not known to this server; its content was not "
                    "validated",
                    path,
                )
            return
        problem = self._context_problem(profile, keys)
        if problem:
            ctx.add("error", "extension", f"the extension {url} {problem}", path)
        self._apply_profile(ext, profile, path, ctx, "Extension")

    def _context_problem(self, profile: CompiledProfile, keys: tuple[str, ...]) -> str | None:
        sd = self.registry.get(profile.url) or {}
        contexts = sd.get("context") or []
        if not contexts:
            return None
        resource_type = keys[0][1:]
        keys = keys[1:]
        element_path, type_name, type_paths = self._container(resource_type, keys)
        names = {element_path, type_name, *type_paths}
        for context in contexts:
            kind = context.get("type")
            expression = context.get("expression", "")
            if kind == "element":
                if expression in ("Element", "Base") or expression in names:
                    return None
                if expression in ("Resource", "DomainResource") and not keys:
                    return None
                if expression in ("Resource", "DomainResource") and type_name == "Resource":
                    return None
                if type_name and self.model.is_a(type_name, expression):
                    return None
                if not keys and self.model.is_a(resource_type, expression):
                    return None
            elif kind == "extension":
                if type_name == "Extension":
                    return None  # the parent extension's URL is checked by its own definition
            elif kind == "fhirpath":
                return None  # not evaluated
        where = element_path or resource_type
        allowed = ", ".join(c.get("expression", "") for c in contexts)
        return f"is not allowed on {where} (allowed context: {allowed})"

    def _container(
        self, resource_type: str, keys: tuple[str, ...]
    ) -> tuple[str, str, tuple[str, ...]]:
        """(element path, type name, type-rooted paths) of the element holding an extension."""
        cache_key = (resource_type, *keys)
        found = self._context_cache.get(cache_key)
        if found is not None:
            return found
        structure = self.model.structure_of(resource_type)
        path = resource_type
        type_name = resource_type
        rooted: list[tuple[str, str]] = []  # (type, path below it)
        for key in keys:
            if key in ("extension", "modifierExtension"):
                structure = self.model.structure_of("Extension")
                path, type_name, rooted = "Extension", "Extension", []
                continue
            if structure is None:
                break
            spec = structure.keys.get(key)
            if spec is None:
                break
            element = spec.element
            type_name = spec.type_code
            path = f"{path}.{element.name}"
            rooted = [(t, f"{p}.{element.name}") for t, p in rooted]
            if spec.type_code in ("Resource",):
                structure = None
                continue
            if element.children is not None:
                structure = element.children
                type_name = element.path
            else:
                structure = self.model.structure_of(spec.type_code)
                rooted.append((spec.type_code, spec.type_code))
        result = (path, type_name, tuple(p for _, p in rooted))
        self._context_cache[cache_key] = result
        return result

    # -- compilation -------------------------------------------------------------------------

    def _compile(self, sd: dict[str, Any]) -> CompiledProfile | None:
        elements = (sd.get("snapshot") or {}).get("element") or []
        if not elements:
            log.warning("profile %s has no snapshot", sd.get("url"))
            return None
        profiled_type = sd.get("type", "")
        nodes: dict[str, Node] = {}
        root = Node(elements[0])
        nodes[root.id] = root
        for element in elements[1:]:
            node = Node(element)
            parent_id, _, last = node.id.rpartition(".")
            if ":" in last:
                name, _, slice_name = last.partition(":")
                if "/" in slice_name:
                    continue  # re-slicing is not supported
                sliced = nodes.get(f"{parent_id}.{name}")
                if sliced is None:
                    continue
                sliced.slices.append(node)
            else:
                parent = nodes.get(parent_id)
                if parent is None:
                    continue
                parent.children[node.name] = node
            nodes[node.id] = node
            self._prepare(node, element, profiled_type)
        root.invariants = self._select(elements[0].get("constraint", []), profiled_type)
        root.fp_type = profiled_type if sd.get("kind") == "resource" else None
        for node in nodes.values():
            node.source = sd.get("url")
            self._slice_rules(node)
            if node.content_reference:
                node.ref_target = nodes.get(node.content_reference)
        _activate(root)
        target_profiles = any(
            not self.registry.is_base(url)
            for node in nodes.values()
            for type_ref in node.types
            if type_ref.code == "Reference"
            for url in type_ref.targets
        )
        return CompiledProfile(
            sd["url"], profiled_type, sd.get("kind", ""), root, sd.get("name", ""), target_profiles
        )

    def _select(self, constraints: list[dict[str, Any]], profiled_type: str) -> list[Invariant]:
        """The invariants a profile adds: the R4 base ones run for every resource in the
        structural validator (core_invariants.py), so they are not repeated here."""
        own = [c for c in constraints if c.get("key") in NATIVE or not inherited_from_r4(c)]
        return select_invariants(own, profiled_type, frozenset())

    def _prepare(self, node: Node, element: dict[str, Any], profiled_type: str) -> None:
        node.invariants = self._select(element.get("constraint", []), profiled_type)
        base_path = (element.get("base") or {}).get("path") or node.path
        base_element = self.model.element_at(base_path)
        if base_element is not None:
            if base_element.binding_strength == "required" and base_element.binding_value_set:
                node.base_binding = ("required", strip_version(base_element.binding_value_set))
            if node.choice:
                node.choice_keys = tuple((node.name + _cap(t), t) for t in base_element.types)
        if node.choice and not node.choice_keys:
            node.choice_keys = tuple((node.name + _cap(t.code), t.code) for t in node.types)
        if node.choice and base_element is not None and set(base_element.types) <= node.type_codes:
            node.type_codes = frozenset()  # no restriction to check
        if len(node.types) == 1 and node.types[0].code in ("BackboneElement", "Element"):
            node.fp_type = base_path
        targets: set[str] = set()
        for type_ref in node.types:
            for url in type_ref.targets:
                targets.add(self._type_of_profile(url))
        node.target_types = frozenset(t for t in targets if t)

    def _type_of_profile(self, url: str) -> str:
        if url.startswith(R4_BASE) and "/" not in url[len(R4_BASE) :]:
            name = url[len(R4_BASE) :]
            if self.model.kinds.get(name) or name == "Resource":
                return name
        sd = self.registry.get(url)
        return sd.get("type", "") if sd else url.rsplit("/", 1)[-1]

    def _slice_rules(self, node: Node) -> None:
        if not node.slices:
            return
        discriminators = (node.slicing or {}).get("discriminator") or []
        if not discriminators:
            return
        rules = []
        for index, slice_node in enumerate(node.slices):
            matchers = []
            for discriminator in discriminators:
                matcher = build_matcher(slice_node, discriminator, self._vs_contains, self.conforms)
                if matcher is None:
                    matchers = [lambda v: False]
                    log.info("slice %s cannot be told apart by %s", slice_node.id, discriminator)
                    break
                matchers.append(matcher)
            rules.append(SliceRule(slice_node, matchers, index))
        node.slice_rules = rules

    def _vs_contains(self, value_set: str, value: Any) -> bool:
        return bool(self.terminology.contains(value_set, value))


def _activate(node: Node) -> bool:
    """Mark the nodes that need visiting; returns whether ``node`` needs it."""
    active_children = [child for child in node.children.values() if _activate(child)]
    for slice_node in node.slices:
        _activate(slice_node)
    node.active_children = active_children
    own = (
        node.card_check
        or node.fixed is not None
        or node.pattern is not None
        or (node.binding is not None and node.binding != node.base_binding)
        or node.max_length is not None
        or bool(node.invariants)
        or bool(node.slice_rules)
        or (node.choice and bool(node.type_codes))
        or bool(node.target_types)
        or any(t.profiles for t in node.types)
        or "Resource" in node.type_codes
        or node.content_reference is not None
    )
    node.active = bool(own or active_children)
    return node.active


def _collect(obj: dict[str, Any], node: Node, path: str) -> list[Val]:
    out: list[Val] = []
    if node.choice:
        for key, type_code in node.choice_keys:
            if key in obj or ("_" + key) in obj:
                _append(
                    out, obj.get(key), obj.get("_" + key), type_code, f"{path}.{node.name}", True
                )
        return out
    name = node.name
    value = obj.get(name)
    partner = obj.get("_" + name) if node.primitive else None
    if value is None and partner is None:
        return out
    type_code = node.types[0].code if len(node.types) == 1 else ""
    _append(out, value, partner, type_code, f"{path}.{name}", False)
    return out


def _append(
    out: list[Val], value: Any, partner: Any, type_code: str, where: str, choice: bool
) -> None:
    if choice:
        where = f"{where}.ofType({type_code})"
    if isinstance(value, list) or isinstance(partner, list):
        values = value if isinstance(value, list) else []
        partners = partner if isinstance(partner, list) else []
        for index in range(max(len(values), len(partners))):
            item = values[index] if index < len(values) else None
            extra = partners[index] if index < len(partners) else None
            if item is None and extra is None:
                continue
            out.append(
                Val(
                    item, extra if isinstance(extra, dict) else None, type_code, f"{where}[{index}]"
                )
            )
        return
    out.append(Val(value, partner if isinstance(partner, dict) else None, type_code, where))


def _materialise(
    frames: list[tuple[int, str | None, int | None, Any]],
    frame: int,
    path: str,
    resource: dict[str, Any],
) -> tuple[str, tuple[str, ...]]:
    """The FHIRPath location and the element keys (for context checks) of a scanned node."""
    chain = []
    while frame > 0:
        chain.append(frames[frame])
        frame = frames[frame][0]
    chain.reverse()
    parts = [path]
    keys = ["@" + str(resource.get("resourceType", ""))]
    for _, key, index, obj in chain:
        if key is None:
            parts.append(f"[{index}]")
        else:
            name = key[1:] if key.startswith("_") else key
            parts.append(f".{name}" if index is None else f".{name}[{index}]")
            keys.append(key)
        if isinstance(obj, dict) and "resourceType" in obj:  # a contained or entry resource
            keys = ["@" + str(obj["resourceType"])]
    return "".join(parts), tuple(keys)


def _contained(resource: dict[str, Any], local_id: str) -> dict[str, Any] | None:
    for item in resource.get("contained", ()) or ():
        if isinstance(item, dict) and item.get("id") == local_id:
            return item
    return None


def _type_of(value: Any, profile: CompiledProfile) -> str:
    if isinstance(value, dict) and "resourceType" in value:
        return str(value["resourceType"])
    return profile.type


def _short_json(value: Any) -> str:
    from fhir_server.json_codec import dumps

    text = dumps(value).decode()
    return text if len(text) <= 200 else text[:197] + "..."


def _codes_text(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, dict):
        codings = value.get("coding") if "coding" in value else [value]
        parts = [
            f"{c.get('system', '')}#{c.get('code', '')}"
            for c in codings or ()
            if isinstance(c, dict)
        ]
        return ", ".join(parts) or "(none)"
    return repr(value)


def _dedupe(issues: list[Issue]) -> list[Issue]:
    seen: set[tuple[str, str, str, str | None]] = set()
    out = []
    for issue in issues:
        key = (issue.severity, issue.code, issue.diagnostics, issue.expression)
        if key not in seen:
            seen.add(key)
            out.append(issue)
    return out


def parse_required_profiles(text: str) -> dict[str, tuple[str, ...]]:
    """``"Patient=url,PractitionerRole=url"`` -> {type: (urls...)} (a type may repeat)."""
    out: dict[str, list[str]] = {}
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        resource_type, sep, url = part.partition("=")
        if not sep or not resource_type.strip() or not url.strip():
            raise ValueError(f"required profile {part!r} is not of the form Type=url")
        out.setdefault(resource_type.strip(), []).append(url.strip())
    return {k: tuple(v) for k, v in out.items()}
