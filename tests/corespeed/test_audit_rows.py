"""The audit trail's per-caller templates (issue 18): the AuditEvents written through
``AuditLog._version`` (agents built once per caller, index rows of the shared members reused)
are the events ``build`` makes and carry exactly the rows of ``audit_index`` and of the generic
extractor, on the first event of a caller and on the ones that reuse its template."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from fhir_server.app import ServerApp
from fhir_server.search.dates import format_instant
from fhir_server.security import signing_key_path
from fhir_server.security.audit import audit_index
from fhir_server.security.authserver import access_claims
from fhir_server.security.principal import SecurePrincipal
from fhir_server.security.tokens import SigningKey
from fhir_server.service.versioning import now_us, stamp_meta
from tests.conftest import make_settings

TABLES = ("strings", "tokens", "references", "dates", "numbers", "quantities", "uris")

USER = SecurePrincipal(
    subject="s",
    client_id="app",
    role="A",
    practitioner="Practitioner/x",
    organization="Organization/y",
    token_id="t1",
    name="N",
)
OTHER_USER = SecurePrincipal(subject="s2", client_id="app", role="B", practitioner="Practitioner/z")
SYSTEM = SecurePrincipal(subject="b", client_id="backend", kind="system")
PATIENT_USER = SecurePrincipal(subject="pat", role=None, practitioner="Patient/p1")


def entry(principal, interaction="read", type_="Patient", id_="p1", status=200, **kw):
    return (
        kw.get("when", 1_700_000_000_123_000),
        principal,
        kw.get("accesses", ((interaction, type_, id_, kw.get("operation")),)),
        status,
        kw.get("patients", ()),
        kw.get("client_ip", "10.0.0.1"),
        kw.get("request_id", "rid-1"),
        kw.get("method", "GET"),
        kw.get("path", f"/{type_}/{id_}" if id_ else f"/{type_}"),
        kw.get("query", ""),
        kw.get("glass", False),
        "a long enough emergency reason" if kw.get("glass") else None,
        kw.get("refusal"),
    )


ENTRIES = [
    entry(USER, patients=("p1",)),
    entry(USER, patients=("p1",), request_id="rid-2"),  # the same caller: template reused
    entry(
        USER,
        "search-type",
        "Observation",
        None,
        query="subject=Patient/p1&code=x",
        patients=("p1", "p2"),
    ),
    entry(USER, "search-type", "Observation", None, query="patient=p3", patients=("p3",)),
    entry(USER, "create", "Observation", "o1", 201, method="POST", patients=("p1",)),
    entry(USER, "delete", "Observation", "o9", 204, method="DELETE", refusal="hidden"),
    entry(USER, "read", "Patient", "p4", 404, refusal="not visible"),
    entry(USER, "operation", "Patient", "p1", operation="everything", patients=("p1",)),
    entry(USER, client_ip=None),  # another address: another template
    entry(USER, glass=True, patients=("p5",)),  # break-the-glass: not memoised
    entry(OTHER_USER, patients=("p1", "p2", "p1")),
    entry(SYSTEM),
    entry(SYSTEM, "search-system", None, None, path="/", query="_type=Patient"),
    entry(None, status=401, refusal="no token"),
    entry(PATIENT_USER, patients=("p1",)),  # a Patient agent: the long way
    entry(
        SYSTEM,
        "auth:token:client_credentials",
        None,
        None,
        400,
        method="POST",
        path="/auth/token",
        refusal="invalid_client",
    ),
    entry(
        USER,
        "transaction",
        None,
        None,
        method="POST",
        path="/",
        accesses=(
            ("transaction", None, None, None),
            ("create", "Observation", "o2", None),
            ("update", "Patient", "p1", None),
            ("create", "Observation", "o2", None),
        ),
        patients=("p1",),
    ),
    entry(USER, request_id=""),
]


def rows_of(rows) -> dict[str, list[str]]:
    return {table: sorted(map(repr, getattr(rows, table))) for table in TABLES}


async def test_templated_events_and_rows_equal_the_generic_ones(tmp_path: Path) -> None:
    app = ServerApp(make_settings(tmp_path, auth="required"))
    audit = app.security.audit
    svc = app.service
    for _ in range(2):  # the second pass reuses every template and cached row
        for item in ENTRIES:
            version, rows = audit._version(item)
            stored = json.loads(version.body)
            expected = audit.build(item)
            stamp_meta(expected, 1, version.last_updated)
            expected["id"] = stored["id"]
            assert json.dumps(stored) == json.dumps(expected)  # same members, same order
            assert rows_of(rows) == rows_of(svc.extractor.extract(stored)), item
            assert rows_of(rows) == rows_of(audit_index(svc, stored)), item
    assert len(audit._templates) == 6  # USER at two addresses, OTHER, SYSTEM, None, PATIENT


async def test_a_search_by_the_templated_members_finds_the_events(tmp_path: Path) -> None:
    """Searchable as AuditEvent resources: an auditor finds the events written through the
    templated path by agent, patient, entity, type, subtype, outcome and date."""
    settings = make_settings(tmp_path, auth="required")
    app = ServerApp(settings)
    await app.startup()
    try:
        items = [app.security.audit._version(e) for e in ENTRIES]
        async with app.service.store.unit_of_work() as uow:
            await uow.create_many(items)
        written = format_instant(now_us())  # the auditor's own searches are audited later
        claims = access_claims(
            settings,
            subject="auditor",
            client_id="auditor",
            scope="system/*.rs",
            lifetime=600,
            kind="system",
            admin=True,
        )
        token = SigningKey(signing_key_path(settings)).sign(claims, typ="at+jwt")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://testserver/fhir",
            headers={"Authorization": f"Bearer {token}"},
        ) as client:
            counts = {}
            for query in QUERIES:
                answer = await client.get(
                    f"/AuditEvent?{query}&_lastUpdated=le{written}&_summary=count"
                )
                assert answer.status_code == 200, answer.text
                counts[query] = answer.json()["total"]
        assert counts == QUERIES
    finally:
        await app.shutdown()


QUERIES = {
    "agent=Practitioner/x": 12,  # USER's entries
    "agent:identifier=urn:ietf:params:oauth:client-id|backend": 3,
    "patient=Patient/p1": 13,  # named in the path, the query or as a patient concerned
    "patient=Patient/p3": 1,
    "patient=Patient/p5": 1,
    "entity=Observation/o1": 1,
    "entity=Observation/o2": 1,
    "entity:identifier=rid-2": 1,
    "subtype=http://hl7.org/fhir/restful-interaction|search-type": 2,
    "outcome=4": 4,
    "type=rest": 17,
    "action=D": 1,
    "date=ge2023-11-14T22:13:20.123Z": 18,
}
