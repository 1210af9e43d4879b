"""Security labels the server sets itself from what it stores (mappings/security-labels.json).

On every write the label hook scans the resource's Codings (code, category, value, components,
answers, reasons... anywhere but ``meta`` and the narrative) and adds the labels the policy gives
their codes, plus type-level labels (a QuestionnaireResponse always holds raw screening answers).
A QuestionnaireResponse also inherits the labels of the codes its Questionnaire puts on the answered
items. Labels sent by the client are kept, never removed, so a client can restrict further but
cannot lower what the content requires.
"""

from __future__ import annotations

from typing import Any

from fhir_server.json_codec import dumps
from fhir_server.security.policy import Label, LabelPolicy, label_policy
from fhir_server.store.protocol import StoredVersion
from fhir_server.store.query import ANY_SYSTEM, Query, TokenPred, UriPred

SKIP_KEYS = frozenset({"meta", "text"})


def collect_codings(value: Any, out: set[Label]) -> None:
    if isinstance(value, dict):
        system = value.get("system")
        code = value.get("code")
        if isinstance(system, str) and isinstance(code, str):
            out.add((system, code))
        for key, child in value.items():
            if key not in SKIP_KEYS and isinstance(child, (dict, list)):
                collect_codings(child, out)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, (dict, list)):
                collect_codings(item, out)


def answered_link_ids(items: Any, out: set[str]) -> None:
    if not isinstance(items, list):
        return
    for item in items:
        if not isinstance(item, dict):
            continue
        if item.get("answer") and isinstance(item.get("linkId"), str):
            out.add(item["linkId"])
        answered_link_ids(item.get("item"), out)
        for answer in item.get("answer", ()) if isinstance(item.get("answer"), list) else ():
            if isinstance(answer, dict):
                answered_link_ids(answer.get("item"), out)


def item_codes(items: Any, out: dict[str, set[Label]]) -> None:
    if not isinstance(items, list):
        return
    for item in items:
        if not isinstance(item, dict):
            continue
        link = item.get("linkId")
        if isinstance(link, str):
            codes: set[Label] = set()
            for coding in item.get("code", ()) if isinstance(item.get("code"), list) else ():
                if isinstance(coding, dict) and "system" in coding and "code" in coding:
                    codes.add((coding["system"], coding["code"]))
            out[link] = codes
        item_codes(item.get("item"), out)


def label_keys(resource: dict) -> frozenset[Label]:
    """The (system, code) labels in meta.security."""
    meta = resource.get("meta")
    if not isinstance(meta, dict):
        return frozenset()
    security = meta.get("security")
    if not isinstance(security, list):
        return frozenset()
    return frozenset(
        (c.get("system", ""), c.get("code", ""))
        for c in security
        if isinstance(c, dict) and isinstance(c.get("code"), str)
    )


class Labeller:
    """Computes the labels of a resource (also used by the guard to judge a write before it is
    stored, so a Role B user cannot create what they could not read back)."""

    def __init__(self, svc: Any, policy: LabelPolicy | None = None) -> None:
        self.svc = svc
        self.policy = policy or label_policy()
        # canonical -> (store sequence, linkId -> item codes, the (id, body)s they came from)
        self._questionnaires: dict[
            str, tuple[int, dict[str, set[Label]], tuple[tuple[str, bytes], ...]]
        ] = {}
        # id(resource) -> (resource, its JSON, label names): the last writes' answers
        self._seen: dict[int, tuple[dict, bytes, tuple[str, ...]]] = {}
        from fhir_server.service.search import patient_compartment

        self.patient_types = frozenset(t for t, p in patient_compartment().items() if p) | {
            "Patient"
        }

    async def names_for(self, resource: dict) -> list[str]:
        """The label names the policy gives this content. A write asks twice (the guard judges
        the labels the new content will carry, then the label hook sets them): the second
        call reuses the first one's answer when the content is byte for byte the same (a write
        hook in between may have changed it; then it is computed again)."""
        policy = self.policy
        type_ = resource.get("resourceType", "")
        names: list[str] = list(policy.by_type.get(type_, ()))
        if type_ not in self.patient_types:  # conformance, directory: never patient data
            return names
        if type_ == "QuestionnaireResponse":  # also reads the store: computed every time
            codes: set[Label] = set()
            collect_codings(resource, codes)
            for code in codes:
                names.extend(policy.by_code.get(code, ()))
            names.extend(await self._questionnaire_labels(resource))
            return list(dict.fromkeys(names))
        snapshot = dumps(resource)
        seen = self._seen.get(id(resource))
        if seen is not None and seen[0] is resource and seen[1] == snapshot:
            return list(seen[2])
        codes = set()
        collect_codings(resource, codes)
        for code in codes:
            names.extend(policy.by_code.get(code, ()))
        names = list(dict.fromkeys(names))
        if len(self._seen) >= 256:
            self._seen.clear()
        self._seen[id(resource)] = (resource, snapshot, tuple(names))
        return names

    async def labels_for(self, resource: dict) -> frozenset[Label]:
        """Existing labels plus the ones the policy requires."""
        names = await self.names_for(resource)
        return label_keys(resource) | {self.policy.key(n) for n in names}

    async def apply(self, resource: dict) -> None:
        names = await self.names_for(resource)
        if not names:
            return
        meta = resource.setdefault("meta", {})
        security = meta.setdefault("security", [])
        present = {(c.get("system"), c.get("code")) for c in security if isinstance(c, dict)}
        for name in names:
            coding = self.policy.coding(name)
            if (coding["system"], coding["code"]) not in present:
                security.append(dict(coding))
                present.add((coding["system"], coding["code"]))

    async def _questionnaire_labels(self, response: dict) -> list[str]:
        policy = self.policy
        url = response.get("questionnaire")
        if not isinstance(url, str):
            return []
        canonical, _, _version = url.partition("|")
        answered: set[str] = set()
        answered_link_ids(response.get("item"), answered)
        names: list[str] = []
        for link, labels in policy.by_link_id.get(canonical, {}).items():
            if link in answered:
                names.extend(labels)
        if policy.resolve_questionnaires:
            for link, codes in (await self._item_codes(canonical)).items():
                if link in answered:
                    for code in codes:
                        names.extend(policy.by_code.get(code, ()))
        return names

    async def _item_codes(self, canonical: str) -> dict[str, set[Label]]:
        """linkId -> item codes of the newest stored Questionnaires with this URL.

        Cached until the store moves on; then the store is asked again for the Questionnaires
        with this URL, and only a changed answer (another id, or another stored body) is parsed
        again: a large Questionnaire (the BiB screening: 135 kB with decimal weights) costs
        15 ms to parse, more than the rest of a screening's labelling."""
        latest = await self.svc.store.latest_seq()
        cached = self._questionnaires.get(canonical)
        if cached is not None and cached[0] == latest:
            return cached[1]
        query = Query(types=("Questionnaire",), where=[(UriPred("url", "eq", canonical),)], count=5)
        page = await self.svc.store.search(query)
        versions = tuple((hit.id, hit.body) for hit in page.hits)  # compared, not parsed
        if cached is not None and cached[2] == versions:
            out = cached[1]
        else:
            from fhir_server.json_codec import loads_trusted

            out = {}
            for hit in page.hits:
                item_codes(loads_trusted(hit.body).get("item"), out)
        if len(self._questionnaires) > 256:
            self._questionnaires.clear()
        self._questionnaires[canonical] = (latest, out, versions)
        return out


class LabelHook:
    """WriteHook: sets meta.security before the resource is stamped, indexed and stored."""

    def __init__(self, labeller: Labeller) -> None:
        self.labeller = labeller

    async def before(self, ctx: Any, resource: dict, current: StoredVersion | None) -> None:
        if resource.get("resourceType") in ("AuditEvent", "Provenance"):
            return
        await self.labeller.apply(resource)

    async def after(self, ctx: Any, uow: Any, written: StoredVersion, previous: Any) -> None:
        return None


def restricted_label_preds(policy: LabelPolicy, readable: frozenset[Label] | None) -> tuple:
    """TokenPreds on ``_security`` for the restricted labels a caller may not read."""
    hidden = sorted(policy.restricted - (readable or frozenset()))
    return tuple(TokenPred("_security", system or ANY_SYSTEM, code) for system, code in hidden)
