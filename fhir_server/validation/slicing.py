"""Slicing: which slice an element value belongs to, from the slicing discriminators.

Supported discriminator types (R4): ``value`` and ``pattern`` (the slice's element at the
discriminator path has a fixed value, a pattern or a required binding; for extensions, ``url``
is the extension's profile URL), ``type`` (the value's type, or the referenced resource's type
with ``resolve()``), ``exists`` and ``profile`` (the value conforms to the slice's type profile;
evaluated by validating, so it is the expensive one). Discriminator paths may be dotted element
names, ``$this``, ``extension('url')``, ``resolve()`` and ``ofType(T)``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from fhir_server.validation.profiles import Node, Val

_SEGMENT = re.compile(
    r"extension\('([^']*)'\)|ofType\((\w+)\)|resolve\(\)|\$this|[A-Za-z_][\w\[\]]*"
)


def path_segments(path: str) -> list[str]:
    """``coding.system`` -> ['coding', 'system']; ``extension('u').value`` keeps the call."""
    out: list[str] = []
    for match in _SEGMENT.finditer(path):
        out.append(match.group(0))
    return out


# -- JSON comparison --------------------------------------------------------------------------


def json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float, Decimal)) and isinstance(b, (int, float, Decimal)):
        return Decimal(str(a)) == Decimal(str(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def pattern_match(value: Any, pattern: Any) -> bool:
    """True when ``value`` contains everything ``pattern`` says (FHIR pattern[x] semantics)."""
    if isinstance(pattern, dict):
        if not isinstance(value, dict):
            return False
        return all(pattern_match(value.get(k), v) for k, v in pattern.items())
    if isinstance(pattern, list):
        if not isinstance(value, list):
            value = [value] if value is not None else []
        return all(any(pattern_match(item, p) for item in value) for p in pattern)
    if value is None:
        return False
    return json_equal(value, pattern)


# -- navigating instance values ---------------------------------------------------------------


def navigate(values: list[Any], segments: list[str]) -> list[Any]:
    """Follow a discriminator path through JSON values (lists are flattened)."""
    current = values
    for segment in segments:
        nxt: list[Any] = []
        if segment == "$this":
            continue
        if segment.startswith("extension('"):
            url = segment[len("extension('") : -2]
            for item in current:
                if isinstance(item, dict):
                    for ext in item.get("extension", ()) or ():
                        if isinstance(ext, dict) and ext.get("url") == url:
                            nxt.append(ext)
        elif segment.startswith("ofType(") or segment == "resolve()":
            nxt = current
        else:
            name = segment.removesuffix("[x]")
            choice = segment.endswith("[x]") or name == "value"
            for item in current:
                if not isinstance(item, dict):
                    continue
                found = item.get(name)
                if found is None and choice:
                    for key, candidate in item.items():
                        if key.startswith(name) and key[len(name) : len(name) + 1].isupper():
                            found = candidate
                            break
                if isinstance(found, list):
                    nxt.extend(found)
                elif found is not None:
                    nxt.append(found)
        current = nxt
    return current


# -- compiled slice matchers -------------------------------------------------------------------

Matcher = Callable[["Val"], bool]


@dataclass(slots=True)
class SliceRule:
    node: Node
    matchers: list[Matcher]
    index: int

    def matches(self, value: Val) -> bool:
        return all(matcher(value) for matcher in self.matchers)


def _spec_at(node: Node, segments: list[str]) -> Node | None:
    """The element definition a discriminator path reaches inside a slice."""
    current = node
    for segment in segments:
        if segment in ("$this",) or segment.startswith("ofType("):
            continue
        if segment.startswith("extension('"):
            url = segment[len("extension('") : -2]
            ext = current.children.get("extension")
            found = None
            for candidate in ext.slices if ext else ():
                if url in candidate.type_profiles("Extension"):
                    found = candidate
                    break
            if found is None:
                return None
            current = found
            continue
        child = current.children.get(segment.removesuffix("[x]"))
        if child is None:
            return None
        current = child
    return current


def _values_in_pattern(node: Node, segments: list[str]) -> list[Any]:
    """Values the discriminator path takes inside the slice's own fixed/pattern value."""
    own = node.fixed if node.fixed is not None else node.pattern
    if own is None:
        return []
    return navigate([own], [s for s in segments if s != "$this"])


def build_matcher(
    slice_node: Node,
    discriminator: dict[str, Any],
    value_set_contains: Callable[[str, Any], bool | None],
    conforms: Callable[[Any, str], bool],
) -> Matcher | None:
    """A predicate for one discriminator of one slice; None when the slice does not define a
    value for it (then the slice cannot be told apart and matches nothing)."""
    kind = discriminator.get("type")
    path = discriminator.get("path", "$this")
    segments = path_segments(path)
    if kind in ("value", "pattern"):
        target = _spec_at(slice_node, segments)
        if target is not None and target.fixed is not None:
            fixed = target.fixed
            return lambda v: any(json_equal(x, fixed) for x in navigate([v.value], segments))
        if target is not None and target.pattern is not None:
            pattern = target.pattern
            return lambda v: any(pattern_match(x, pattern) for x in navigate([v.value], segments))
        if segments == ["url"]:
            urls = slice_node.type_profiles("Extension")
            if urls:
                return lambda v: isinstance(v.value, dict) and v.value.get("url") in urls
        inner = _values_in_pattern(slice_node, segments)
        if inner:
            return lambda v: any(
                json_equal(x, expected) for x in navigate([v.value], segments) for expected in inner
            )
        if target is not None and target.binding and target.binding[0] == "required":
            value_set = target.binding[1]
            return lambda v: any(
                value_set_contains(value_set, x) for x in navigate([v.value], segments)
            )
        return None
    if kind == "type":
        target = _spec_at(slice_node, [s for s in segments if s != "resolve()"])
        if target is None:
            return None
        codes = {t.code for t in target.types}
        if "resolve()" in segments:
            targets = target.target_types

            def by_reference(v: Val) -> bool:
                from fhir_server.validation.profiles import reference_type

                refs = navigate([v.value], [s for s in segments if s != "resolve()"])
                return any(reference_type(r) in targets for r in refs if isinstance(r, dict))

            return by_reference
        if segments in ([], ["$this"]):
            return lambda v: v.type in codes
        return lambda v: bool(navigate([v.value], segments))
    if kind == "exists":
        target = _spec_at(slice_node, segments)
        if target is None:
            return None
        must = target.min > 0
        return lambda v: bool(navigate([v.value], segments)) == must
    if kind == "profile":
        target = _spec_at(slice_node, segments)
        if target is None:
            return None
        profiles = [p for t in target.types for p in t.profiles]
        if not profiles:
            return None
        return lambda v: any(
            conforms(x, p) for x in navigate([v.value], segments) for p in profiles
        )
    return None
