"""Differential -> snapshot generation for StructureDefinitions (the subset profiles here use).

The BiB profiles are authored as differentials (``profiles/bib/*.json``);
``tools/build_profiles.py`` runs this generator and writes the snapshot into the same file, and a
test checks that the committed snapshot is what the differential produces. The server also uses it
for stored StructureDefinitions that arrive without a snapshot.

What it does, in the order the differential lists its elements:

* an element that exists in the base snapshot gets the differential's constraints merged in
  (cardinality may only narrow; ``constraint`` entries are added by key; types, bindings,
  fixed/pattern values, slicing and texts replace the base ones);
* a slice (``Patient.identifier:SSIN``) is created as a copy of the sliced element, placed after
  the existing slices; slicing ``extension``/``modifierExtension`` without a ``slicing`` gets the
  usual ``url`` value discriminator;
* a child of an element that the snapshot does not expand yet (``Patient.identifier:SSIN.system``)
  makes the generator unfold the element's type: the children of the data type (or of the type's
  profile, e.g. BeAddress) are copied below it with their ids and paths rewritten.

Not supported (raises ``SnapshotError``): unfolding choice elements with several types, content
references, and re-slicing. The profiles shipped here do not need them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

Resolver = Callable[[str], dict[str, Any] | None]
TextProvider = Callable[[str], dict[str, Any] | None]

# ElementDefinition properties in the order the FHIR JSON format lists them.
ELEMENT_ORDER = (
    "id",
    "extension",
    "modifierExtension",
    "path",
    "representation",
    "sliceName",
    "sliceIsConstraining",
    "label",
    "code",
    "slicing",
    "short",
    "definition",
    "comment",
    "requirements",
    "alias",
    "min",
    "max",
    "base",
    "contentReference",
    "type",
    "meaningWhenMissing",
    "orderMeaning",
    "example",
    "maxLength",
    "condition",
    "constraint",
    "mustSupport",
    "isModifier",
    "isModifierReason",
    "isSummary",
    "binding",
    "mapping",
)
# properties a differential may set on an element (constraint and condition are merged)
REPLACED = (
    "label",
    "code",
    "short",
    "definition",
    "comment",
    "requirements",
    "alias",
    "min",
    "max",
    "type",
    "meaningWhenMissing",
    "orderMeaning",
    "example",
    "maxLength",
    "mustSupport",
    "isModifier",
    "isModifierReason",
    "isSummary",
    "binding",
    "sliceIsConstraining",
)
VALUE_PREFIXES = ("fixed", "pattern", "defaultValue", "minValue", "maxValue")
URL_SLICING = {"discriminator": [{"type": "value", "path": "url"}], "rules": "open"}


class SnapshotError(ValueError):
    """The differential cannot be applied to its base."""


def _max_value(value: str | None) -> float:
    if value is None or value == "*":
        return float("inf")
    return float(value)


def _segments(element_id: str) -> list[str]:
    return element_id.split(".")


def _diff_id(diff: dict[str, Any]) -> str:
    if diff.get("id"):
        return diff["id"]
    path = diff["path"]
    if diff.get("sliceName"):
        return f"{path}:{diff['sliceName']}"
    return path


class _Snapshot:
    def __init__(self, elements: list[dict[str, Any]], resolve: Resolver, types: Resolver) -> None:
        self.elements = elements
        self.resolve = resolve
        self.types = types

    # -- lookup --------------------------------------------------------------------------------

    def index_of(self, element_id: str) -> int | None:
        for index, element in enumerate(self.elements):
            if element.get("id") == element_id:
                return index
        return None

    def subtree_end(self, index: int) -> int:
        """Index after the element at ``index``, its descendants and its slices."""
        element_id = self.elements[index]["id"]
        end = index + 1
        while end < len(self.elements):
            other = self.elements[end]["id"]
            if other.startswith(element_id + ".") or other.startswith(element_id + ":"):
                end += 1
            else:
                break
        return end

    # -- materialising elements the differential mentions ---------------------------------------

    def ensure(self, element_id: str) -> int:
        index = self.index_of(element_id)
        if index is not None:
            return index
        segments = _segments(element_id)
        if len(segments) < 2:
            raise SnapshotError(f"unknown root element {element_id!r}")
        parent_id = ".".join(segments[:-1])
        last = segments[-1]
        if ":" in last:
            name, slice_name = last.split(":", 1)
            if "/" in slice_name:
                raise SnapshotError(f"re-slicing is not supported ({element_id})")
            sliced_id = f"{parent_id}.{name}"
            return self._create_slice(sliced_id, slice_name)
        parent_index = self.ensure(parent_id)
        self._unfold(parent_index)
        index = self.index_of(element_id)
        if index is None:
            raise SnapshotError(f"{element_id!r} is not an element of its parent's type")
        return index

    def _create_slice(self, sliced_id: str, slice_name: str) -> int:
        sliced_index = self.ensure(sliced_id)
        sliced = self.elements[sliced_index]
        if "slicing" not in sliced:
            name = sliced["path"].rsplit(".", 1)[-1]
            if name in ("extension", "modifierExtension"):
                sliced["slicing"] = copy.deepcopy(URL_SLICING)
            elif not name.endswith("[x]"):
                raise SnapshotError(
                    f"{sliced_id} is not sliced, so it cannot have slice {slice_name}"
                )
            else:
                sliced["slicing"] = {
                    "discriminator": [{"type": "type", "path": "$this"}],
                    "ordered": False,
                    "rules": "open",
                }
        end = self.subtree_end(sliced_index)
        slice_id = f"{sliced_id}:{slice_name}"
        # copy the sliced element and its (unsliced) descendants
        copies = []
        for element in self.elements[sliced_index:end]:
            other = element["id"]
            if other != sliced_id and (
                not other.startswith(sliced_id + ".") or ":" in other[len(sliced_id) :]
            ):
                continue
            item = copy.deepcopy(element)
            item["id"] = slice_id + other[len(sliced_id) :]
            if other == sliced_id:
                item.pop("slicing", None)
                item["sliceName"] = slice_name
                item["min"] = 0  # a slice may be optional even where the element is required
            copies.append(item)
        self.elements[end:end] = copies
        return end

    def _unfold(self, index: int) -> None:
        parent = self.elements[index]
        parent_id = parent["id"]
        if index + 1 < len(self.elements) and self.elements[index + 1]["id"].startswith(
            parent_id + "."
        ):
            return  # already unfolded
        if parent.get("contentReference"):
            raise SnapshotError(f"cannot unfold {parent_id}: content references are not supported")
        types = parent.get("type") or []
        if len(types) != 1:
            raise SnapshotError(f"cannot unfold {parent_id}: it does not have exactly one type")
        type_entry = types[0]
        profiles = type_entry.get("profile") or []
        source = self.resolve(profiles[0]) if profiles else None
        if source is None:
            source = self.types(type_entry["code"])
        if source is None or "snapshot" not in source:
            raise SnapshotError(f"cannot unfold {parent_id}: no snapshot for its type")
        type_elements = source["snapshot"]["element"]
        root = type_elements[0]
        root_id, root_path = root["id"], root["path"]
        children = []
        for element in type_elements[1:]:
            item = copy.deepcopy(element)
            item["id"] = parent_id + item["id"][len(root_id) :]
            item["path"] = parent["path"] + item["path"][len(root_path) :]
            children.append(item)
        self.elements[index + 1 : index + 1] = children


def _merge(target: dict[str, Any], diff: dict[str, Any], where: str) -> None:
    if "min" in diff and diff["min"] < target.get("min", 0):
        raise SnapshotError(f"{where}: min {diff['min']} is below the base min {target['min']}")
    if "max" in diff and _max_value(diff["max"]) > _max_value(target.get("max")):
        raise SnapshotError(f"{where}: max {diff['max']} is above the base max {target['max']}")
    if "min" in diff and _max_value(diff.get("max", target.get("max"))) < diff["min"]:
        raise SnapshotError(f"{where}: min is above max")
    for key in REPLACED:
        if key in diff:
            target[key] = copy.deepcopy(diff[key])
    if any(k.startswith(("fixed", "pattern")) for k in diff):
        for key in [k for k in target if k.startswith(("fixed", "pattern"))]:
            del target[key]
    for key, value in diff.items():
        if key.startswith(VALUE_PREFIXES):
            target[key] = copy.deepcopy(value)
    if "slicing" in diff:
        slicing = dict(target.get("slicing") or {})
        slicing.update(copy.deepcopy(diff["slicing"]))
        target["slicing"] = slicing
    if "constraint" in diff:
        existing = {c.get("key"): i for i, c in enumerate(target.get("constraint", []))}
        constraints = list(target.get("constraint", []))
        for constraint in diff["constraint"]:
            if constraint.get("key") in existing:
                constraints[existing[constraint["key"]]] = copy.deepcopy(constraint)
            else:
                constraints.append(copy.deepcopy(constraint))
        target["constraint"] = constraints
    if "condition" in diff:
        target["condition"] = sorted(set(target.get("condition", [])) | set(diff["condition"]))


def _ordered(element: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ELEMENT_ORDER:
        if key == "maxLength":  # fixed/pattern/default/min/max values go before maxLength
            for value_key in sorted(k for k in element if k.startswith(VALUE_PREFIXES)):
                out[value_key] = element[value_key]
        if key in element:
            out[key] = element[key]
    for key, value in element.items():
        if key not in out:
            out[key] = value
    return out


def generate_snapshot(
    structure_definition: dict[str, Any],
    resolve: Resolver,
    types: Resolver,
    texts: TextProvider | None = None,
) -> list[dict[str, Any]]:
    """The snapshot elements of ``structure_definition`` (a constraint with a differential).

    ``resolve(url)`` returns a StructureDefinition with a snapshot (the base, type profiles);
    ``types(code)`` the base definition of a data type; ``texts(base_path)`` optionally supplies
    ``short``/``definition`` for elements whose base carries no text (trimmed R4 definitions).
    """
    base_url = structure_definition.get("baseDefinition")
    base = resolve(base_url) if base_url else None
    if base is None or "snapshot" not in base:
        raise SnapshotError(f"the base definition {base_url!r} is not known (with a snapshot)")
    elements = copy.deepcopy(base["snapshot"]["element"])
    snapshot = _Snapshot(elements, resolve, types)
    differential = (structure_definition.get("differential") or {}).get("element") or []
    for diff in differential:
        element_id = _diff_id(diff)
        index = snapshot.ensure(element_id)
        _merge(snapshot.elements[index], diff, element_id)
    out = []
    for element in snapshot.elements:
        if texts is not None and ("short" not in element or "definition" not in element):
            base_path = (element.get("base") or {}).get("path") or element["path"]
            found = texts(base_path) or {}
            for key in ("short", "definition"):
                if key not in element and key in found:
                    element[key] = found[key]
            if (
                element.get("isModifier")
                and "isModifierReason" not in element
                and "isModifierReason" in found
            ):
                element["isModifierReason"] = found["isModifierReason"]
            binding = element.get("binding")
            if binding and "description" not in binding and "bindingDescription" in found:
                binding["description"] = found["bindingDescription"]
        out.append(_ordered(element))
    return out
