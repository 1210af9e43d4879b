"""Imports end to end: each format through the command line, the errors a file can have,
idempotency, dry runs, full exports (stale marking), and the operation for administrators."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import orjson
import pytest

from fhir_server.cli import main
from fhir_server.config import Settings
from fhir_server.json_codec import loads_trusted
from fhir_server.service.context import RequestContext
from fhir_server.socialmap import model
from fhir_server.socialmap.importer import run_import
from fhir_server.store import open_store
from tests.socialmap.conftest import DATA

SAMPLES = {
    "sociale-kaart": ("sociale-kaart-page.json", 3),
    "bruxelles-social": ("bruxelles-social-organisations.json", 2),
    "hsds": ("hsds-services.json", 2),
}


def _cli(tmp_path: Path, *args: str) -> int:
    return main(["import", *args, "--data-dir", str(tmp_path), "--quiet"])


def _services(tmp_path: Path) -> dict[str, tuple[int, dict]]:
    async def read() -> dict[str, tuple[int, dict]]:
        store = open_store(Settings(data_dir=tmp_path).store)
        await store.open()
        try:
            versions, _ = await store.current_versions(("HealthcareService",), None, 1000)
            return {v.id: (v.version, loads_trusted(v.body)) for v in versions}
        finally:
            await store.close()

    return asyncio.run(read())


@pytest.mark.parametrize("fmt", sorted(SAMPLES))
def test_each_format_imports_through_the_command_line_and_again_changes_nothing(
    tmp_path: Path, fmt: str, capsys: pytest.CaptureFixture[str]
):
    name, count = SAMPLES[fmt]
    assert _cli(tmp_path, fmt, str(DATA / name)) == 0
    out = capsys.readouterr().out
    created = next(line for line in out.splitlines() if "created" in line)
    assert created.split("│")[2].strip() == str(count)
    services = _services(tmp_path)
    assert len(services) == count
    for _version, resource in services.values():
        assert resource["meta"]["profile"] == [model.PROFILE]
        assert any(e["url"] == model.EXT_VERIFICATION for e in resource["extension"])
    assert _cli(tmp_path, fmt, str(DATA / name)) == 0
    assert "unchanged" in capsys.readouterr().out
    again = _services(tmp_path)
    assert {k: v[0] for k, v in again.items()} == {k: v[0] for k, v in services.items()}


def test_bruxelles_social_is_bilingual_and_sociale_kaart_has_contacts(tmp_path: Path):
    _cli(tmp_path, "bruxelles-social", str(DATA / "bruxelles-social-organisations.json"))
    _cli(tmp_path, "sociale-kaart", str(DATA / "sociale-kaart-page.json"))
    services = {k: v[1] for k, v in _services(tmp_path).items()}
    etoile = services["bs-5101"]
    assert etoile["language"] == "fr" and etoile["name"].startswith("Étoile Filante")
    translation = etoile["_name"]["extension"][0]["extension"]
    assert {"url": "lang", "valueCode": "nl"} in translation
    assert {c["identifier"]["value"] for c in etoile["coverageArea"]} == {"21009", "21005"}
    group = services["sk-90001"]
    contact = next(e for e in group["extension"] if e["url"] == model.EXT_CONTACT)
    assert {"url": "name", "valueString": "Lies Vermeulen"} in contact["extension"]
    last = next(e for e in group["extension"] if e["url"] == model.EXT_VERIFICATION)
    assert {"url": "lastVerified", "valueDate": "2026-09-15"} in last["extension"]


def _write(tmp_path: Path, name: str, data: object) -> Path:
    path = tmp_path / name
    path.write_bytes(orjson.dumps(data) if not isinstance(data, bytes) else data)
    return path


def test_a_malformed_file_is_refused_with_line_and_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    path = _write(tmp_path, "broken.json", b'{"content": [\n  {"id": {"id": 1},\n  oops\n]}')
    assert _cli(tmp_path, "sociale-kaart", str(path)) == 1
    err = capsys.readouterr().err
    assert "not valid JSON" in err and "line 3" in err
    assert _services(tmp_path) == {}


def test_bad_records_are_rejected_with_reason_and_pointer_and_the_rest_imported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    page = orjson.loads((DATA / "sociale-kaart-page.json").read_bytes())
    good, second, third = page["content"]
    wrong_type = json.loads(json.dumps(second))
    wrong_type["addresses"][0]["location"]["lat"] = "fifty"  # a record with a wrong type
    unknown = json.loads(json.dumps(third))
    unknown["rubrics"] = [{"code": "99.99.99."}]  # an unknown rubric
    duplicate = json.loads(json.dumps(good))  # a duplicate source id
    page["content"] = [good, wrong_type, unknown, duplicate]
    path = _write(tmp_path, "page.json", page)
    assert _cli(tmp_path, "sociale-kaart", str(path)) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "/content/1/addresses/0/location/lat" in out and "'fifty' is not of type 'number'" in out
    assert "/content/2/rubrics/0/code" in out and "unknown rubric '99.99.99.'" in out
    assert "duplicate source id '90001' (first at /content/0)" in out
    assert set(_services(tmp_path)) == {"sk-90001"}


def test_dry_run_writes_nothing_and_says_what_would_change(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    path = DATA / "sociale-kaart-page.json"
    assert _cli(tmp_path, "sociale-kaart", str(path), "--dry-run") == 0
    out = capsys.readouterr().out
    assert "dry run: nothing" in out and "written" in out
    assert "would create: HealthcareService/sk-90001" in out
    assert _services(tmp_path) == {}


def test_a_full_export_marks_missing_services_stale_not_deleted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    path = DATA / "sociale-kaart-page.json"
    assert _cli(tmp_path, "sociale-kaart", str(path)) == 0
    page = orjson.loads(path.read_bytes())
    page["content"] = page["content"][:1]
    smaller = _write(tmp_path, "smaller.json", page)
    assert _cli(tmp_path, "sociale-kaart", str(smaller), "--full", "--dry-run") == 0
    assert "would mark stale: HealthcareService/sk-90002" in capsys.readouterr().out
    assert _cli(tmp_path, "sociale-kaart", str(smaller), "--full") == 0
    services = _services(tmp_path)
    assert set(services) == {"sk-90001", "sk-90002", "sk-90003"}  # nothing deleted
    for id_ in ("sk-90002", "sk-90003"):
        verification = next(
            e for e in services[id_][1]["extension"] if e["url"] == model.EXT_VERIFICATION
        )
        assert {"url": "status", "valueCode": "missing-from-source"} in verification["extension"]
    versions = {k: v[0] for k, v in services.items()}
    assert _cli(tmp_path, "sociale-kaart", str(smaller), "--full") == 0
    assert {k: v[0] for k, v in _services(tmp_path).items()} == versions  # idempotent


async def test_a_failed_batch_leaves_the_store_as_it_was(empty_app):
    svc = empty_app.service
    ctx = RequestContext(base_url=svc.settings.public_url)
    page = orjson.loads((DATA / "sociale-kaart-page.json").read_bytes())
    # the second record's service is valid on its own but breaks the profile once built:
    # an e-mail value the validator refuses makes its batch (of 2 records) fail as a whole
    page["content"][1]["contactInfo"]["phones"] = [{"value": ""}]
    report = await run_import(svc, ctx, "sociale-kaart", orjson.dumps(page), batch_size=2)
    assert {f["sourceId"] for f in report.failed} == {"90001", "90002"}
    assert "nothing of it" in report.failed[0]["reason"]
    assert report.created == ["sk-90003"]  # the next batch was written
    assert await svc.store.current("HealthcareService", "sk-90001") is None
    assert await svc.store.current("Organization", "sk-org-7001") is None


async def test_the_import_operation_returns_the_report(empty_app):
    import httpx

    raw = (DATA / "hsds-services.json").read_bytes()
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "format", "valueCode": "hsds"},
            {"name": "data", "valueAttachment": {"data": base64.b64encode(raw).decode()}},
        ],
    }
    transport = httpx.ASGITransport(app=empty_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver/fhir/") as http:
        response = await http.post("$socialmap-import", json=body)
        assert response.status_code == 200, response.text
        values = {p["name"]: p.get("valueInteger") for p in response.json()["parameter"]}
        assert values["created"] == 2 and values["rejected"] == 0
        dry = dict(body, parameter=[*body["parameter"], {"name": "dryRun", "valueBoolean": True}])
        response = await http.post("HealthcareService/$socialmap-import", json=dry)
        values = {p["name"]: p.get("valueInteger") for p in response.json()["parameter"]}
        assert values["unchanged"] == 2 and values["created"] == 0
        found = await http.get("HealthcareService?coverage=12025&_content=bereavement")
        assert [e["resource"]["id"] for e in found.json()["entry"]] == [
            "or-6f1f5b5e-0000-4000-8000-000000000001"
        ]
