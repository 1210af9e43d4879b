"""Demo content: fictitious but realistic BiB data, loaded into an empty store on first start."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fhir_server.errors import FhirError
from fhir_server.json_codec import parse
from fhir_server.service.context import RequestContext
from fhir_server.service.core import FhirService
from fhir_server.service.transaction import process_bundle


async def load_demo_content(service: FhirService) -> int:
    """Load every demo Bundle (the caller makes sure the store held nothing before)."""
    total = 0
    folder = resources.files(__package__)
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            total += await _load_bundle(service, entry.read_bytes())
    return total


async def load_file(service: FhirService, path: str) -> int:
    raw = Path(path).read_bytes()
    if path.endswith(".ndjson"):
        lines = [line for line in raw.splitlines() if line.strip()]
        entries = []
        for line in lines:
            resource = parse(line)
            entries.append(
                {
                    "resource": resource,
                    "request": {
                        "method": "PUT" if resource.get("id") else "POST",
                        "url": f"{resource['resourceType']}/{resource['id']}"
                        if resource.get("id")
                        else resource["resourceType"],
                    },
                }
            )
        raw_bundle = {"resourceType": "Bundle", "type": "batch", "entry": entries}
        return await _load(service, raw_bundle)
    return await _load_bundle(service, raw)


async def _load_bundle(service: FhirService, raw: bytes) -> int:
    return await _load(service, parse(raw))


async def _load(service: FhirService, bundle: dict) -> int:
    ctx = RequestContext(base_url=service.settings.public_url, prefer_return="minimal")
    result = await process_bundle(service, ctx, bundle)
    assert result.resource is not None
    failures = [
        e
        for e in result.resource.get("entry", ())
        if not str(e["response"]["status"]).startswith("2")
    ]
    if failures:
        raise FhirError(400, "processing", f"{len(failures)} entries failed to load")
    return len(result.resource.get("entry", ()))
