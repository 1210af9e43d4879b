"""FHIRPath Patch (R4 fhirpatch.html): a Parameters resource of add/insert/delete/replace/move."""

from __future__ import annotations

from typing import Any

from fhir_server.errors import FhirError, bad_request
from fhir_server.fhirpath import FhirPathError, Node, compile_expression
from fhir_server.model.structure import Model


def _fail(message: str) -> FhirError:
    return FhirError(422, "processing", f"FHIRPath Patch: {message}")


def apply_fhirpath_patch(resource: dict, parameters: dict, model: Model) -> dict:
    for index, operation in enumerate(parameters.get("parameter", ())):
        if not isinstance(operation, dict) or operation.get("name") != "operation":
            raise bad_request(f"FHIRPath Patch: parameter {index} must be named 'operation'")
        parts = {p.get("name"): p for p in operation.get("part", ()) if isinstance(p, dict)}
        kind = _primitive(parts.get("type"))
        path = _primitive(parts.get("path"))
        if not isinstance(kind, str) or not isinstance(path, str):
            raise bad_request(f"FHIRPath Patch: operation {index} needs a type and a path")
        nodes = _select(resource, path, model)
        handler = _HANDLERS.get(kind)
        if handler is None:
            raise bad_request(f"FHIRPath Patch: unknown operation type {kind!r}")
        handler(resource, nodes, parts, path)
    return resource


def _select(resource: dict, path: str, model: Model) -> list[Node]:
    try:
        return compile_expression(path, model)(resource)
    except FhirPathError as exc:
        raise bad_request(f"FHIRPath Patch: invalid path {path!r}: {exc}") from exc


def _primitive(part: dict | None) -> Any:
    if not part:
        return None
    for key, value in part.items():
        if key.startswith("value"):
            return value
    return None


def _value(parts: dict) -> Any:
    part = parts.get("value")
    if part is None:
        raise bad_request("FHIRPath Patch: the operation needs a value")
    for key, value in part.items():
        if key.startswith("value"):
            return value
    if "part" in part:  # a complex value given as nested parts
        out: dict[str, Any] = {}
        for sub in part["part"]:
            name = sub.get("name")
            sub_value = _value({"value": sub})
            if name in out:
                existing = out[name]
                out[name] = (
                    [*existing, sub_value] if isinstance(existing, list) else [existing, sub_value]
                )
            else:
                out[name] = sub_value
        return out
    raise bad_request("FHIRPath Patch: the value part is empty")


def _single(nodes: list[Node], path: str) -> Node:
    if len(nodes) != 1:
        raise _fail(f"path {path!r} matched {len(nodes)} elements, expected exactly one")
    return nodes[0]


def _add(resource: dict, nodes: list[Node], parts: dict, path: str) -> None:
    target = _single(nodes, path)
    name = _primitive(parts.get("name"))
    if not isinstance(name, str) or not isinstance(target.value, dict):
        raise bad_request("FHIRPath Patch: add needs a name and a path to an element")
    value = _value(parts)
    element = target.structure.elements.get(name) if target.structure else None
    if element is not None and element.repeats:
        target.value.setdefault(name, []).append(value)
    elif name in target.value:
        raise _fail(f"element {name!r} already has a value; use replace")
    else:
        target.value[name] = value


def _insert(resource: dict, nodes: list[Node], parts: dict, path: str) -> None:
    index = _primitive(parts.get("index"))
    if not isinstance(index, int):
        raise bad_request("FHIRPath Patch: insert needs an integer index")
    container = _list_of(nodes, path)
    if index < 0 or index > len(container):
        raise _fail(f"insert index {index} is out of range")
    container.insert(index, _value(parts))


def _list_of(nodes: list[Node], path: str) -> list:
    if not nodes:
        raise _fail(f"path {path!r} matched nothing")
    loc = nodes[0].loc
    if loc is None or loc[2] is None:
        raise _fail(f"path {path!r} is not a list")
    return loc[0][loc[1]]


def _delete(resource: dict, nodes: list[Node], parts: dict, path: str) -> None:
    if not nodes:
        return  # deleting nothing is not an error
    node = _single(nodes, path)
    if node.loc is None:
        raise _fail("cannot delete the resource itself")
    parent, key, index = node.loc
    if index is None:
        del parent[key]
    else:
        del parent[key][index]
        if not parent[key]:
            del parent[key]


def _replace(resource: dict, nodes: list[Node], parts: dict, path: str) -> None:
    node = _single(nodes, path)
    if node.loc is None:
        raise _fail("cannot replace the resource itself")
    parent, key, index = node.loc
    value = _value(parts)
    if index is None:
        parent[key] = value
    else:
        parent[key][index] = value


def _move(resource: dict, nodes: list[Node], parts: dict, path: str) -> None:
    source = _primitive(parts.get("source"))
    destination = _primitive(parts.get("destination"))
    if not isinstance(source, int) or not isinstance(destination, int):
        raise bad_request("FHIRPath Patch: move needs integer source and destination")
    container = _list_of(nodes, path)
    if not (0 <= source < len(container) and 0 <= destination < len(container)):
        raise _fail("move index out of range")
    container.insert(destination, container.pop(source))


_HANDLERS = {"add": _add, "insert": _insert, "delete": _delete, "replace": _replace, "move": _move}
