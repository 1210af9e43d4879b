"""What the server checks and computes on every write of a QuestionnaireResponse.

``validate`` compares the answers with the Questionnaire (``Form``): unknown linkIds, the item
hierarchy, answer types, answers outside the answer options or the bound ValueSet, repeats,
answers to disabled items (``enableWhen`` / ``enableWhenExpression``), and — when the status is
completed or amended — missing required answers. Every problem is an issue with the item's
FHIRPath location.

``score`` runs on completed and amended responses: each coded answer gets the weight of its
answer option (``itemWeight`` on the answer's Coding, the value ``weight()`` reads), then every
calculated item (SDC ``calculatedExpression``) is computed in dependency order with ``%resource``,
``%questionnaire``, ``%context``, ``%qitem`` and the SDC variables in scope. A submitted value
that differs from the computed one is an error naming the expected value; a missing one is
filled in. The scoring rules are all in the Questionnaire.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from fhir_server import fhirpath
from fhir_server.errors import Issue
from fhir_server.screening import constants as C
from fhir_server.screening.form import Expr, Form, Item

COMPLETED = ("completed", "amended")


def answer_value(answer: Any) -> tuple[str, Any] | None:
    if not isinstance(answer, dict):
        return None
    for key, value in answer.items():
        if key.startswith("value"):
            return key, value
    return None


# -- walking a response along its Questionnaire -------------------------------------------------


@dataclass(slots=True)
class Node:
    """One QuestionnaireResponse item matched with its Questionnaire item."""

    qr: dict[str, Any]
    item: Item
    path: str
    parent: Node | None


def _children_lists(node_qr: dict[str, Any], item: Item) -> Iterator[tuple[list, str]]:
    """The lists holding the children of a response item (``item`` for groups, ``answer.item``
    for questions), with their path suffix."""
    if item.is_question:
        answers = node_qr.get("answer")
        for index, answer in enumerate(answers if isinstance(answers, list) else ()):
            if isinstance(answer, dict) and isinstance(answer.get("item"), list):
                yield answer["item"], f".answer[{index}].item"
    elif isinstance(node_qr.get("item"), list):
        yield node_qr["item"], ".item"


def response_nodes(form: Form, response: dict[str, Any]) -> list[Node]:
    """Every response item that matches a Questionnaire item, in document order."""
    out: list[Node] = []

    def walk(raw: Any, siblings: list[Item], path: str, parent: Node | None) -> None:
        if not isinstance(raw, list):
            return
        by_link = {item.link_id: item for item in siblings}
        for index, qr_item in enumerate(raw):
            if not isinstance(qr_item, dict):
                continue
            item = by_link.get(qr_item.get("linkId"))  # type: ignore[arg-type]
            if item is None:
                continue
            node = Node(qr_item, item, f"{path}[{index}]", parent)
            out.append(node)
            for children, suffix in _children_lists(qr_item, item):
                walk(children, item.children, node.path + suffix, node)

    walk(response.get("item"), form.items, "QuestionnaireResponse.item", None)
    return out


# -- enableWhen ---------------------------------------------------------------------------------


def _comparable(key: str, value: Any) -> Any:
    if key in ("valueDecimal", "valueInteger", "answerDecimal", "answerInteger"):
        try:
            return Decimal(str(value))
        except (InvalidOperation, ValueError):
            return None
    if key in ("valueCoding", "answerCoding") and isinstance(value, dict):
        return (value.get("system") or None, value.get("code"))
    if key in ("valueQuantity", "answerQuantity") and isinstance(value, dict):
        try:
            return (Decimal(str(value.get("value"))), value.get("code") or value.get("unit"))
        except (InvalidOperation, ValueError):
            return None
    if key in ("valueReference", "answerReference") and isinstance(value, dict):
        return value.get("reference")
    return value


def _condition_holds(condition: dict[str, Any], answers: list[dict[str, Any]]) -> bool:
    operator = condition.get("operator")
    expected = next(((k, v) for k, v in condition.items() if k.startswith("answer")), (None, None))
    if operator == "exists":
        return bool(answers) == (expected[1] is True)
    if not answers or expected[0] is None:
        return False
    target = _comparable(expected[0], expected[1])
    values = []
    for answer in answers:
        found = answer_value(answer)
        if found is not None:
            values.append(_comparable(found[0], found[1]))
    if operator == "=":
        return target in values
    if operator == "!=":
        return target not in values
    for value in values:
        try:
            if operator == ">" and value > target:
                return True
            if operator == "<" and value < target:
                return True
            if operator == ">=" and value >= target:
                return True
            if operator == "<=" and value <= target:
                return True
        except TypeError:
            continue
    return False


_REFERENCE = re.compile(r"%(?:`([^`]+)`|([A-Za-z_][A-Za-z0-9_]*))")


@lru_cache(maxsize=4096)
def referenced(text: str) -> frozenset[str]:
    """The %names an expression uses (cached: the same content expressions run on every
    response)."""
    return frozenset(a or b for a, b in _REFERENCE.findall(text))


class Evaluator:
    """FHIRPath for one response: the environment (%resource, %questionnaire, %context, %qitem
    and the SDC variables in scope). Variables are evaluated only when an expression uses them
    (directly or through another variable), once per response item, and forgotten when an item
    they name (or, for root variables, any calculated item) changes."""

    def __init__(self, form: Form, response: dict[str, Any], extra: dict[str, Any] | None) -> None:
        self.form = form
        self.response = response
        self.extra = dict(extra or {})
        self._cache: dict[tuple[int, int, str], list[Any]] = {}

    def base_env(self, context: Any, qitem: Item | None) -> dict[str, Any]:
        env = {
            "resource": self.response,
            "questionnaire": self.form.resource,
            "context": context,
            **self.extra,
        }
        if qitem is not None:
            env["qitem"] = qitem.raw
        return env

    def env_for(
        self, node_qr: Any, item: Item | None, chain: list[tuple[Item, Any]], text: str
    ) -> dict:
        """The environment of an expression ``text`` on ``item``: the variables it needs, from
        the root and from every ancestor (each evaluated on its own response item)."""
        env = self.base_env(node_qr, item)
        scopes: list[tuple[Item | None, Any, list[Expr]]] = [
            (None, self.response, self.form.variables)
        ]
        scopes += [(a, a_qr, a.variables) for a, a_qr in chain if a.variables]
        wanted = set(referenced(text))
        if not wanted or not any(v.name in wanted for _a, _q, vs in scopes for v in vs):
            return env
        grew = True
        while grew:  # variables that the wanted variables use
            grew = False
            for _owner, _qr, variables in scopes:
                for expr in variables:
                    if expr.name in wanted:
                        more = referenced(expr.expression) - wanted
                        if more:
                            wanted |= more
                            grew = True
        for owner, owner_qr, variables in scopes:
            for expr in variables:
                if expr.name not in wanted:
                    continue
                key = (id(owner) if owner is not None else 0, id(owner_qr), expr.name or "")
                if key not in self._cache:
                    if expr.is_fhirpath:
                        local = {**env, **self.base_env(owner_qr, owner)}
                        self._cache[key] = fhirpath.evaluate(
                            expr.expression, owner_qr, local, strict=False
                        )
                    else:  # x-fhir-query: given by the caller ($populate), else empty
                        self._cache[key] = list(self.extra.get(expr.name or "", []))
                env[expr.name or ""] = self._cache[key]
        return env

    def evaluate(self, expr: Expr, node_qr: Any, item: Item, chain: list) -> list[Any]:
        if item.variables:
            chain = [*chain, (item, node_qr)]
        env = self.env_for(node_qr, item, chain, expr.expression)
        return fhirpath.evaluate(expr.expression, node_qr, env, strict=False)

    def changed(self, item: Item) -> None:
        """``item`` got a computed answer: forget the variables that may have read it (those
        naming it, and the root variables), except those its own calculation used (they
        cannot depend on it)."""
        mark = f"'{item.link_id}'"
        names = {v.name for v in self.form.item_variables() if mark in v.expression}
        used = referenced(item.calculated.expression) if item.calculated else frozenset()
        for key in [k for k in self._cache if (k[0] == 0 or k[2] in names) and k[2] not in used]:
            self._cache.pop(key, None)


@dataclass(slots=True)
class Enablement:
    disabled: set[int] = field(default_factory=set)  # ids of disabled Questionnaire items

    def enabled(self, item: Item) -> bool:
        return id(item) not in self.disabled


def compute_enablement(
    form: Form, response: dict[str, Any], evaluator: Evaluator, issues: list[Issue]
) -> Enablement:
    answers: dict[str, list[dict[str, Any]]] = {}
    nodes = response_nodes(form, response)
    for node in nodes:
        raw = node.qr.get("answer")
        if isinstance(raw, list):
            answers.setdefault(node.item.link_id, []).extend(a for a in raw if isinstance(a, dict))
    first_node = {}
    for node in nodes:
        first_node.setdefault(id(node.item), node)
    result: dict[int, bool] = {}
    visiting: set[int] = set()

    def chain_of(item: Item) -> list[tuple[Item, Any]]:
        chain = []
        for ancestor in reversed(item.ancestors()):
            node = first_node.get(id(ancestor))
            chain.append((ancestor, node.qr if node else {}))
        return chain

    def is_enabled(item: Item) -> bool:
        key = id(item)
        if key in result:
            return result[key]
        if key in visiting:
            return True  # a cycle of conditions: do not disable on it
        visiting.add(key)
        enabled = item.parent is None or is_enabled(item.parent)
        if enabled and item.enable_when:
            verdicts = []
            for condition in item.enable_when:
                target = form.by_link_id.get(condition.get("question", ""))
                given = (
                    answers.get(target.link_id, [])
                    if target is not None and is_enabled(target)
                    else []
                )
                verdicts.append(_condition_holds(condition, given))
            enabled = any(verdicts) if item.enable_behavior == "any" else all(verdicts)
        if enabled and item.enable_when_expression is not None:
            node = first_node.get(id(item))
            context = node.qr if node is not None else response
            try:
                value = evaluator.evaluate(
                    item.enable_when_expression, context, item, chain_of(item)
                )
            except fhirpath.FhirPathError as exc:
                issues.append(
                    Issue(
                        "error",
                        "processing",
                        f"the enableWhenExpression of {item.link_id!r} failed: {exc}",
                        item.enable_when_expression.location,
                    )
                )
                value = [True]
            enabled = value == [True]
        visiting.discard(key)
        result[key] = enabled
        return enabled

    out = Enablement()
    for item in form.walk():
        if not is_enabled(item):
            out.disabled.add(id(item))
    return out


# -- validation ---------------------------------------------------------------------------------


def _display_value(key: str, value: Any) -> str:
    if isinstance(value, dict):
        if "code" in value:
            return f"{value.get('system', '')}|{value.get('code')}".lstrip("|")
        if "reference" in value:
            return str(value["reference"])
    return repr(value)


class _Validator:
    def __init__(
        self,
        form: Form,
        response: dict[str, Any],
        enablement: Enablement,
        value_set_codes: Callable[[str], Any] | None,
    ) -> None:
        self.form = form
        self.response = response
        self.enablement = enablement
        self.value_set_codes = value_set_codes
        self.issues: list[Issue] = []
        self.completing = response.get("status") in COMPLETED

    def error(self, message: str, path: str, code: str = "invalid") -> None:
        self.issues.append(Issue("error", code, message, path))

    def run(self) -> list[Issue]:
        self.items(self.response.get("item"), self.form.items, "QuestionnaireResponse.item", None)
        if self.completing:
            self.required(self.form.items, [self.response], "QuestionnaireResponse", root=True)
        return self.issues

    def items(self, raw: Any, siblings: list[Item], path: str, parent: Item | None) -> None:
        if raw is None:
            return
        if not isinstance(raw, list):
            return
        by_link = {item.link_id: item for item in siblings}
        seen: dict[str, int] = {}
        where_parent = f"the item {parent.link_id!r}" if parent else "the top level"
        for index, qr_item in enumerate(raw):
            here = f"{path}[{index}]"
            if not isinstance(qr_item, dict):
                continue
            link_id = qr_item.get("linkId")
            item = by_link.get(link_id) if isinstance(link_id, str) else None
            if item is None:
                known = self.form.by_link_id.get(link_id) if isinstance(link_id, str) else None
                if known is not None:
                    self.error(
                        f"the item {link_id!r} belongs under "
                        f"{repr(known.parent.link_id) if known.parent else 'the top level'}, "
                        f"not under {where_parent}",
                        f"{here}.linkId",
                        code="structure",
                    )
                else:
                    self.error(
                        f"linkId {link_id!r} is not an item of the Questionnaire "
                        f"{self.form.canonical}",
                        f"{here}.linkId",
                        code="structure",
                    )
                continue
            seen[item.link_id] = seen.get(item.link_id, 0) + 1
            if seen[item.link_id] == 2 and not (item.repeats and item.type == "group"):
                self.error(
                    f"the item {item.link_id!r} appears more than once, but it does not repeat"
                    + (
                        " (a repeating question holds several answers in one item)"
                        if item.repeats
                        else ""
                    ),
                    here,
                    code="structure",
                )
            self.item(qr_item, item, here)

    def item(self, qr_item: dict[str, Any], item: Item, path: str) -> None:
        answers = qr_item.get("answer")
        answers = answers if isinstance(answers, list) else []
        enabled = self.enablement.enabled(item)
        if item.type == "display":
            if answers or qr_item.get("item"):
                self.error(f"the display item {item.link_id!r} cannot be answered", path)
            return
        if item.type == "group":
            if answers:
                self.error(
                    f"the group {item.link_id!r} cannot have answers (its questions do)",
                    f"{path}.answer[0]",
                    code="structure",
                )
            if not enabled and _has_answers(qr_item):
                self.error(
                    f"the group {item.link_id!r} is not enabled (enableWhen), so it cannot be "
                    "answered",
                    path,
                    code="business-rule",
                )
                return
            self.items(qr_item.get("item"), item.children, f"{path}.item", item)
            return
        if qr_item.get("item"):
            self.error(
                f"the children of the question {item.link_id!r} go inside its answer "
                "(answer.item), not in item",
                f"{path}.item[0]",
                code="structure",
            )
        if answers and not enabled:
            self.error(
                f"the question {item.link_id!r} is not enabled (enableWhen), so it cannot be "
                "answered",
                f"{path}.answer[0]",
                code="business-rule",
            )
            return
        if len(answers) > 1 and not item.repeats:
            self.error(
                f"the question {item.link_id!r} takes one answer, got {len(answers)}",
                f"{path}.answer[1]",
                code="structure",
            )
        for index, answer in enumerate(answers):
            if isinstance(answer, dict):
                self.answer(answer, item, f"{path}.answer[{index}]")
                if isinstance(answer.get("item"), list):
                    self.items(answer["item"], item.children, f"{path}.answer[{index}].item", item)

    def allowed_keys(self, item: Item) -> tuple[str, ...]:
        if item.type in ("choice", "open-choice") and item.options:
            keys = tuple(dict.fromkeys(option.key for option in item.options))
            return keys + (("valueString",) if item.type == "open-choice" else ())
        return C.ANSWER_KEYS.get(item.type, ())

    def answer(self, answer: dict[str, Any], item: Item, path: str) -> None:
        found = answer_value(answer)
        if found is None:
            if not answer.get("item"):
                self.error(f"an answer to {item.link_id!r} has no value", path, code="required")
            return
        key, value = found
        allowed = self.allowed_keys(item)
        if key not in allowed:
            self.error(
                f"the question {item.link_id!r} is of type {item.type}: its answers are "
                f"{' or '.join(allowed) or 'not possible'}, not {key}",
                f"{path}.{key}",
                code="value",
            )
            return
        if item.options and not (item.type == "open-choice" and key == "valueString"):
            if not any(
                _option_matches(option.key, option.value, key, value) for option in item.options
            ):
                choices = ", ".join(_display_value(o.key, o.value) for o in item.options[:12])
                self.error(
                    f"{_display_value(key, value)} is not one of the answer options of "
                    f"{item.link_id!r} ({choices})",
                    f"{path}.{key}",
                    code="code-invalid",
                )
            return
        if item.answer_value_set and key == "valueCoding" and isinstance(value, dict):
            self.value_set(item, value, f"{path}.{key}")
        too_long = (
            key == "valueString"
            and item.max_length is not None
            and isinstance(value, str)
            and len(value) > item.max_length
        )
        if too_long:
            self.error(
                f"the answer to {item.link_id!r} is longer than {item.max_length} characters",
                f"{path}.{key}",
                code="too-long",
            )
        self.bounds(item, key, value, f"{path}.{key}")

    def value_set(self, item: Item, coding: dict[str, Any], path: str) -> None:
        url = item.answer_value_set or ""
        codes = None
        if self.value_set_codes is not None:
            try:
                codes = self.value_set_codes(url)
            except Exception:  # an unknown or unexpandable value set: reported below
                codes = None
        if not codes:
            self.issues.append(
                Issue(
                    "warning",
                    "not-supported",
                    f"the answer value set {url} of {item.link_id!r} cannot be expanded here; "
                    "the answer was not checked against it",
                    path,
                )
            )
            return
        if (coding.get("system"), coding.get("code")) not in codes:
            self.error(
                f"{_display_value('valueCoding', coding)} is not in the value set {url} bound "
                f"to {item.link_id!r}",
                path,
                code="code-invalid",
            )

    def bounds(self, item: Item, key: str, value: Any, path: str) -> None:
        for limit, name, fails in (
            (item.min_value, "at least", lambda v, m: v < m),
            (item.max_value, "at most", lambda v, m: v > m),
        ):
            if limit is None:
                continue
            try:
                if key in ("valueInteger", "valueDecimal"):
                    bad = fails(Decimal(str(value)), Decimal(str(limit)))
                elif key in ("valueDate", "valueDateTime") and isinstance(limit, str):
                    bad = fails(str(value), limit)
                else:
                    continue
            except (InvalidOperation, ValueError, TypeError):
                continue
            if bad:
                self.error(
                    f"the answer to {item.link_id!r} must be {name} {limit}", path, code="value"
                )

    def required(
        self, items: list[Item], holders: list[dict[str, Any]], path: str, root: bool = False
    ) -> None:
        for item in items:
            if not self.enablement.enabled(item):
                continue
            instances = [
                qr
                for holder in holders
                for qr in _items_of(holder, root)
                if qr.get("linkId") == item.link_id
            ]
            needs = item.required and item.calculated is None
            if needs and item.is_question and not any(_answered(qr) for qr in instances):
                self.error(
                    f"the question {item.link_id!r} is required and has no answer "
                    "(status completed)",
                    path + ".item",
                    code="required",
                )
            elif needs and item.type == "group" and not instances:
                self.error(
                    f"the group {item.link_id!r} is required and missing (status completed)",
                    path + ".item",
                    code="required",
                )
            if item.children:
                if item.is_question:
                    child_holders = [
                        a for qr in instances for a in qr.get("answer", ()) if isinstance(a, dict)
                    ]
                    # children of a question are only required under an answer
                    self.required(item.children, child_holders, f"{path}.item", root=False)
                elif instances or item.required:
                    self.required(item.children, instances, f"{path}.item", root=False)


def _items_of(holder: dict[str, Any], root: bool) -> list[dict[str, Any]]:
    raw = holder.get("item")
    return [i for i in raw if isinstance(i, dict)] if isinstance(raw, list) else []


def _answered(qr_item: dict[str, Any]) -> bool:
    answers = qr_item.get("answer")
    return isinstance(answers, list) and any(answer_value(a) for a in answers)


def _has_answers(qr_item: dict[str, Any]) -> bool:
    if _answered(qr_item):
        return True
    for child in qr_item.get("item", ()) if isinstance(qr_item.get("item"), list) else ():
        if isinstance(child, dict) and _has_answers(child):
            return True
    return False


def _option_matches(option_key: str, option: Any, key: str, value: Any) -> bool:
    if option_key != key:
        return False
    if key == "valueCoding":
        return (
            isinstance(option, dict)
            and isinstance(value, dict)
            and option.get("code") == value.get("code")
            and (option.get("system") or None) == (value.get("system") or None)
        )
    if key == "valueReference":
        return (
            isinstance(value, dict)
            and isinstance(option, dict)
            and (option.get("reference") == value.get("reference"))
        )
    return option == value


def validate(
    form: Form,
    response: dict[str, Any],
    value_set_codes: Callable[[str], Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> tuple[list[Issue], Enablement, Evaluator]:
    issues: list[Issue] = []
    evaluator = Evaluator(form, response, extra)
    enablement = compute_enablement(form, response, evaluator, issues)
    issues += _Validator(form, response, enablement, value_set_codes).run()
    return issues, enablement, evaluator


# -- scoring ------------------------------------------------------------------------------------


def stamp_weights(form: Form, response: dict[str, Any], enablement: Enablement) -> list[Issue]:
    """Put each chosen option's weight on the answer's Coding (itemWeight). A different weight
    sent by the client is refused: the Questionnaire is the authority on points."""
    issues: list[Issue] = []
    for node in response_nodes(form, response):
        item = node.item
        if not any(option.weight is not None for option in item.options):
            continue
        for index, answer in enumerate(node.qr.get("answer", ()) or ()):
            coding = answer.get("valueCoding") if isinstance(answer, dict) else None
            if not isinstance(coding, dict):
                continue
            weight = item.weight_of(coding)
            if weight is None:
                continue
            exts = coding.get("extension")
            exts = exts if isinstance(exts, list) else []
            for ext in exts:
                if isinstance(ext, dict) and ext.get("url") in (C.ITEM_WEIGHT, C.ORDINAL_VALUE):
                    sent = next((v for k, v in ext.items() if k.startswith("value")), None)
                    if not _same_number(sent, weight):
                        issues.append(
                            Issue(
                                "error",
                                "business-rule",
                                f"the answer to {item.link_id!r} carries the weight {sent}, but "
                                f"the Questionnaire gives this option the weight {weight}",
                                f"{node.path}.answer[{index}].valueCoding.extension",
                            )
                        )
            kept = [
                e
                for e in exts
                if not (isinstance(e, dict) and e.get("url") in (C.ITEM_WEIGHT, C.ORDINAL_VALUE))
            ]
            kept.append({"url": C.ITEM_WEIGHT, "valueDecimal": weight})
            coding["extension"] = kept
    return issues


def _same_number(a: Any, b: Any) -> bool:
    try:
        return Decimal(str(a)) == Decimal(str(b))
    except (InvalidOperation, ValueError):
        return False


_RESULT_KEYS = {
    "boolean": "valueBoolean",
    "decimal": "valueDecimal",
    "integer": "valueInteger",
    "string": "valueString",
    "text": "valueString",
    "date": "valueDate",
    "dateTime": "valueDateTime",
    "time": "valueTime",
    "url": "valueUri",
    "choice": "valueCoding",
    "open-choice": "valueCoding",
    "quantity": "valueQuantity",
    "reference": "valueReference",
}


def _to_answer(item: Item, value: Any) -> dict[str, Any] | str:
    """A computed value as an answer of the item's type, or a message saying why not."""
    key = _RESULT_KEYS.get(item.type)
    if key is None:
        return f"a {item.type} item cannot be calculated"
    if item.type == "boolean":
        return {key: value} if isinstance(value, bool) else f"gives {value!r}, not a boolean"
    if item.type in ("decimal", "integer"):
        if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
            return f"gives {value!r}, not a number"
        number = Decimal(str(value))
        if item.type == "integer":
            if number != number.to_integral_value():
                return f"gives {value}, not an integer"
            return {key: int(number)}
        return {key: int(number) if number == number.to_integral_value() else number}
    if item.type == "quantity":
        if isinstance(value, dict):
            return {key: value}
        if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
            quantity: dict[str, Any] = {"value": Decimal(str(value))}
            if item.unit:
                quantity.update({k: item.unit[k] for k in ("system", "code") if k in item.unit})
                if "display" in item.unit:
                    quantity["unit"] = item.unit["display"]
            return {key: quantity}
        return f"gives {value!r}, not a quantity"
    if key in ("valueCoding", "valueReference"):
        if isinstance(value, dict):
            return {key: value}
        if isinstance(value, str) and key == "valueCoding":
            for option in item.options:
                same = isinstance(option.value, dict) and option.value.get("code") == value
                if option.key == key and same:
                    return {key: option.value}
        return f"gives {value!r}, not a Coding"
    if isinstance(value, (str, int, float, Decimal)) and not isinstance(value, bool):
        return {key: str(value)}
    return f"gives {value!r}, not a {item.type}"


def _same_answer(a: dict[str, Any], b: dict[str, Any]) -> bool:
    found_a, found_b = answer_value(a), answer_value(b)
    if found_a is None or found_b is None:
        return found_a == found_b
    key_a, value_a = found_a
    key_b, value_b = found_b
    if key_a != key_b:
        return False
    return _comparable(key_a, value_a) == _comparable(key_b, value_b)


def _show(answers: list[dict[str, Any]]) -> str:
    if not answers:
        return "no answer"
    shown = []
    for answer in answers:
        found = answer_value(answer)
        if found is not None:
            key, value = found
            if key == "valueCoding" and isinstance(value, dict):
                shown.append(_display_value(key, value))
            elif key == "valueBoolean":
                shown.append("true" if value else "false")
            else:
                shown.append(str(value))
    return ", ".join(shown)


class _Placement:
    """Finds (and creates) where a calculated item's answer lives in the response."""

    def __init__(self, form: Form, response: dict[str, Any]) -> None:
        self.form = form
        self.response = response

    def holders(self, item: Item, create: bool) -> list[tuple[list, list[tuple[Item, Any]]]]:
        """(sibling list, ancestor chain) for each place the item's response item lives."""
        if item.parent is None:
            if not isinstance(self.response.get("item"), list):
                if not create:
                    return []
                self.response["item"] = []
            return [(self.response["item"], [])]
        out = []
        parent = item.parent
        for siblings, chain in self.holders(parent, create):
            instances = [
                qr for qr in siblings if isinstance(qr, dict) and qr.get("linkId") == parent.link_id
            ]
            if not instances and create and parent.type == "group":
                instances = [self.insert(siblings, parent, {"linkId": parent.link_id})]
            for instance in instances:
                here = [*chain, (parent, instance)]
                if parent.type == "group":
                    if not isinstance(instance.get("item"), list):
                        if not create:
                            continue
                        instance["item"] = []
                    out.append((instance["item"], here))
                else:
                    for answer in instance.get("answer", ()) or ():
                        if not isinstance(answer, dict):
                            continue
                        if not isinstance(answer.get("item"), list):
                            if not create:
                                continue
                            answer["item"] = []
                        out.append((answer["item"], here))
        return out

    def insert(self, siblings: list, item: Item, qr_item: dict[str, Any]) -> dict[str, Any]:
        order = {child.link_id: i for i, child in enumerate(self._siblings_of(item))}
        mine = order.get(item.link_id, len(order))
        position = len(siblings)
        for index, existing in enumerate(siblings):
            other = order.get(existing.get("linkId")) if isinstance(existing, dict) else None
            if other is not None and other > mine:
                position = index
                break
        siblings.insert(position, qr_item)
        return qr_item

    def _siblings_of(self, item: Item) -> list[Item]:
        return item.parent.children if item.parent is not None else self.form.items


def score(
    form: Form, response: dict[str, Any], enablement: Enablement, evaluator: Evaluator
) -> list[Issue]:
    """Compute the calculated items of a completed response in place; issues for submitted
    values that contradict the computation and for calculations that fail."""
    issues = stamp_weights(form, response, enablement)
    placement = _Placement(form, response)
    for item in form.calculated_order:
        if not enablement.enabled(item) or any(not enablement.enabled(a) for a in item.ancestors()):
            continue
        assert item.calculated is not None
        for siblings, chain in placement.holders(item, create=True):
            instance = next(
                (
                    qr
                    for qr in siblings
                    if isinstance(qr, dict) and qr.get("linkId") == item.link_id
                ),
                None,
            )
            context = instance if instance is not None else {"linkId": item.link_id}
            try:
                values = evaluator.evaluate(item.calculated, context, item, chain)
            except fhirpath.FhirPathError as exc:
                issues.append(
                    Issue(
                        "error",
                        "processing",
                        f"the calculation of {item.link_id!r} failed: {exc}",
                        item.calculated.location,
                    )
                )
                continue
            if len(values) > 1 and not item.repeats:
                issues.append(
                    Issue(
                        "error",
                        "processing",
                        f"the calculation of {item.link_id!r} gives {len(values)} values for "
                        "a question that takes one",
                        item.calculated.location,
                    )
                )
                continue
            computed: list[dict[str, Any]] = []
            failed = None
            for value in values:
                answer = _to_answer(item, value)
                if isinstance(answer, str):
                    failed = answer
                    break
                computed.append(answer)
            if failed is not None:
                issues.append(
                    Issue(
                        "error",
                        "processing",
                        f"the calculation of {item.link_id!r} {failed}",
                        item.calculated.location,
                    )
                )
                continue
            submitted = (
                [a for a in instance.get("answer", ()) if isinstance(a, dict) and answer_value(a)]
                if instance is not None
                else []
            )
            if submitted:
                if len(submitted) != len(computed) or not all(
                    _same_answer(a, b) for a, b in zip(submitted, computed, strict=False)
                ):
                    where = _path_of(response, instance)
                    issues.append(
                        Issue(
                            "error",
                            "business-rule",
                            f"the submitted answer to {item.link_id!r} is {_show(submitted)}, "
                            f"but the server computes {_show(computed)} from the answers; "
                            "send the computed value or leave it out",
                            f"{where}.answer" if where else None,
                        )
                    )
                continue
            if not computed:
                continue
            if instance is None:
                instance = placement.insert(siblings, item, {"linkId": item.link_id})
                if item.text and item.raw.get("text"):
                    instance["text"] = item.raw["text"]
            instance["answer"] = computed
            evaluator.changed(item)
    return issues


def _path_of(response: dict[str, Any], target: dict[str, Any]) -> str | None:
    def walk(items: Any, path: str) -> str | None:
        if not isinstance(items, list):
            return None
        for index, item in enumerate(items):
            here = f"{path}[{index}]"
            if item is target:
                return here
            if not isinstance(item, dict):
                continue
            found = walk(item.get("item"), f"{here}.item")
            if found:
                return found
            for a_index, answer in enumerate(item.get("answer", ()) or ()):
                if isinstance(answer, dict):
                    found = walk(answer.get("item"), f"{here}.answer[{a_index}].item")
                    if found:
                        return found
        return None

    return walk(response.get("item"), "QuestionnaireResponse.item")


def answers_by_link_id(form: Form, response: dict[str, Any]) -> dict[str, list[Any]]:
    """linkId -> answer values (the value[x] contents) of the enabled, answered items."""
    out: dict[str, list[Any]] = {}
    for node in response_nodes(form, response):
        for answer in node.qr.get("answer", ()) or ():
            found = answer_value(answer)
            if found is not None:
                out.setdefault(node.item.link_id, []).append(found[1])
    return out
