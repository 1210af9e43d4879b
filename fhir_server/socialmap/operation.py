"""``POST [base]/$socialmap-import`` (also on ``HealthcareService``): the import for
administrators, through the guard (mappings/security-access-policy.json: admin only) and the
service's write path with the caller's context (validation, hooks, Provenance, audit).

Body: a Parameters resource with ``format`` (code), ``data`` (an Attachment with base64
``data``, or ``valueString`` with the JSON text), ``dryRun`` and ``full`` (booleans). The answer
is the report as Parameters (counts, created/updated/stale services, rejected records with their
pointer and reason).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from fhir_server.errors import FhirError, bad_request
from fhir_server.json_codec import parse
from fhir_server.service.context import RequestContext
from fhir_server.service.core import Access
from fhir_server.service.result import Result
from fhir_server.socialmap.importer import DEFAULT_BATCH, run_import


async def import_operation(
    svc: Any, ctx: RequestContext, request: Any, target: dict[str, Any]
) -> Result:
    if target.get("id") or target.get("type") not in (None, "HealthcareService"):
        raise FhirError(
            404, "not-supported", "$socialmap-import runs at the system or HealthcareService level"
        )
    await svc.authorize(ctx, Access("operation", None, operation="socialmap-import"))
    if request.method != "POST":
        raise FhirError(405, "not-supported", "$socialmap-import needs POST with Parameters")
    body = parse(await request.body(svc.settings.max_body_bytes))
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise bad_request("$socialmap-import takes a Parameters resource")
    values: dict[str, Any] = {}
    for parameter in body.get("parameter") or ():
        if isinstance(parameter, dict) and isinstance(parameter.get("name"), str):
            values[parameter["name"]] = parameter
    fmt = (values.get("format") or {}).get("valueCode") or (values.get("format") or {}).get(
        "valueString"
    )
    if not fmt:
        raise bad_request("parameter 'format' is required (sociale-kaart, bruxelles-social, hsds)")
    data = values.get("data") or {}
    if isinstance(data.get("valueString"), str):
        raw = data["valueString"].encode()
    elif isinstance((data.get("valueAttachment") or {}).get("data"), str):
        try:
            raw = base64.b64decode(data["valueAttachment"]["data"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise bad_request("parameter 'data': the attachment is not valid base64") from exc
    else:
        raise bad_request("parameter 'data' is required (valueAttachment.data or valueString)")
    report = await run_import(
        svc,
        ctx,
        fmt,
        raw,
        dry_run=bool((values.get("dryRun") or {}).get("valueBoolean")),
        full=bool((values.get("full") or {}).get("valueBoolean")),
        batch_size=DEFAULT_BATCH,
    )
    return Result(200, resource=report.as_parameters())
