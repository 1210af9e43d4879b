"""The woman herself (a patient-facing app: a token whose user, fhirUser, is her Patient) and her
referral's Task.

Decided (docs/referrals.md "The woman herself"): the state machine has two parties, the referrer's
organisation and the receiving organisation; the woman is neither. She does not send, accept, start,
complete or cancel a referral Task, not even her own referral: declining it is her answer to the
professionals (through the referrer, who cancels it with her reason, or the receiving organisation,
which records the outcome "declined-by-family"), and withdrawing her data is a
Consent, which still wins over what a referral shares. Two layers refuse her, each on its own:

1. the guard: a token without a BiB role reaches no patient data (403), and a patient user has
   no care relationship with any record, her own included;
2. the workflow (``ReferralHook``): were a token of hers to get past the guard, she acts for
   neither side of the referral, so every move is refused (403, naming who may make it) and a
   Task she creates has a forged requester.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from fhir_server.security.principal import SecurePrincipal
from fhir_server.security.scopes import ScopeSet
from fhir_server.service.context import RequestContext
from tests.referrals.world import FULFILL, World, ref


def patient_token(world: World, role: str | None = None) -> str:
    """What a patient-facing SMART app would hold: her own Patient as fhirUser and as patient
    context, patient-level scopes; no practitioner, no organisation (and no BiB role, unless a
    mis-registered app claims one)."""
    claims: dict[str, Any] = {
        "iss": world.settings.auth_issuer,
        "aud": world.settings.public_url,
        "sub": "woman-p",
        "client_id": "patient-app",
        "scope": "launch/patient openid fhirUser patient/*.cruds",
        "bib_token": "access",
        "bib_kind": "user",
        "bib_source": "smart",
        "bib_admin": False,
        "bib_fhir_user": "Patient/p",
        "fhirUser": f"{world.settings.public_url}/Patient/p",
        "patient": "p",
    }
    now = int(time.time())
    claims.update(iat=now, nbf=now, exp=now + 600, jti=uuid.uuid4().hex)
    if role:
        claims["bib_role"] = role
    assert world.key is not None
    return world.key.sign(claims, typ="at+jwt")


async def as_woman(world: World, method: str, path: str, token: str, **kw: Any) -> Any:
    headers = {"Authorization": f"Bearer {token}"}
    assert world.http is not None
    return await world.http.request(method, path, headers=headers, **kw)


def draft_task(sr_id: str) -> dict[str, Any]:
    return {
        "resourceType": "Task",
        "status": "draft",
        "intent": "order",
        "code": FULFILL,
        "focus": ref(f"ServiceRequest/{sr_id}"),
        "for": ref("Patient/p"),
        "requester": ref("PractitionerRole/mw-role"),
        "owner": ref("HealthcareService/cpas-service"),
    }


@pytest.mark.parametrize("role", [None, "A"])
async def test_the_woman_moves_no_referral_task_over_http(world: World, role: str | None) -> None:
    """draft -> requested, requested -> cancelled, accept, complete: refused, nothing written,
    whether her token has no BiB role (the normal case) or claims one."""
    token = patient_token(world, role)
    sr_id, task_id = await world.refer()
    before = await world.task(task_id)

    # she cannot even read it (no role: 403; a role but no care relationship: hidden)
    read = await as_woman(world, "GET", f"/Task/{task_id}", token)
    assert read.status_code in (403, 404), read.text

    moves = [
        ("cancelled", {"statusReason": {"text": "I do not want this any more"}}),
        ("accepted", {}),
        ("received", {}),
    ]
    for status, extra in moves:
        task = {k: v for k, v in before.items() if k != "meta"} | {"status": status} | extra
        response = await as_woman(world, "PUT", f"/Task/{task_id}", token, json=task)
        assert response.status_code in (403, 404), (status, response.text)
        assert response.json()["resourceType"] == "OperationOutcome"
    # a draft of her own: not created, so not sent either
    created = await as_woman(world, "POST", "/Task", token, json=draft_task(sr_id))
    assert created.status_code == 403, created.text

    after = await world.task(task_id)
    assert after["status"] == "requested"
    assert after["meta"]["versionId"] == before["meta"]["versionId"]  # nothing was written

    # accepted and in progress by the receiving organisation: she cannot complete it either
    assert (await world.move(task_id, "accepted", "sw2")).status_code == 200
    assert (await world.move(task_id, "in-progress", "sw2")).status_code == 200
    current = await world.task(task_id)
    done = {k: v for k, v in current.items() if k != "meta"} | {
        "status": "completed",
        "output": [
            {
                "type": {"text": "Referral outcome"},
                "valueCodeableConcept": {
                    "coding": [
                        {
                            "system": "https://borninbelgiumpro.be/fhir/CodeSystem/"
                            "bib-referral-outcome",
                            "code": "realised",
                        }
                    ]
                },
            }
        ],
    }
    response = await as_woman(world, "PUT", f"/Task/{task_id}", token, json=done)
    assert response.status_code in (403, 404), response.text
    assert (await world.task(task_id))["status"] == "in-progress"


def woman() -> SecurePrincipal:
    return SecurePrincipal(
        subject="woman-p",
        client_id="patient-app",
        scopes=frozenset({"patient/*.cruds"}),
        patient="p",
        role="A",  # even with a role her token should never carry
        kind="user",
        fhir_user="Patient/p",
        scope_set=ScopeSet.parse("patient/*.cruds"),
    )


async def test_the_workflow_itself_refuses_the_woman(world: World) -> None:
    """Defence in depth: the workflow's own judgement of each move for the woman, as if the
    guard had let her through (``ReferralHook.allows``: no write). She acts for neither side;
    the parties themselves may make the same moves."""
    from fhir_server.referrals.workflow import ReferralHook

    hook = next(h for h in world.svc.write_hooks if isinstance(h, ReferralHook))
    ctx = RequestContext(base_url=world.settings.public_url, principal=woman())
    sr_id, draft_id = await world.refer(status="draft")
    _, task_id = await world.refer()
    store = world.svc.store

    async def judged(task_id: str, status: str, principal: Any, **extra: Any) -> str | None:
        current = await store.current("Task", task_id)
        task = (await world.task(task_id)) | {"status": status} | extra
        task.pop("meta", None)
        context = RequestContext(base_url=world.settings.public_url, principal=principal)
        async with store.unit_of_work() as uow:  # read only: allows writes nothing
            return await hook.allows(context, uow, task, current)

    reason = {"statusReason": {"text": "she declined"}}
    refusals = {
        ("draft", "requested"): await judged(draft_id, "requested", ctx.principal),
        ("draft", "cancelled"): await judged(draft_id, "cancelled", ctx.principal, **reason),
        ("requested", "cancelled"): await judged(task_id, "cancelled", ctx.principal, **reason),
        ("requested", "accepted"): await judged(task_id, "accepted", ctx.principal),
        ("requested", "rejected"): await judged(task_id, "rejected", ctx.principal, **reason),
    }
    for (old, new), refusal in refusals.items():
        assert refusal is not None, (old, new)
        assert "only the" in refusal and "may move a referral" in refusal, refusal
    assert "referrer (requester)" in refusals[("requested", "cancelled")]
    assert "receiving organisation (owner)" in refusals[("requested", "accepted")]
    # a referral in her name: a forged requester
    async with store.unit_of_work() as uow:
        forged = await hook.allows(ctx, uow, draft_task(sr_id), None)
    assert forged is not None and "requester of a referral you send must be you" in forged

    # the parties may (same judgement, their principals)
    midwife = SecurePrincipal(
        subject="mw",
        practitioner="Practitioner/mw",
        organization="Organization/hosp",
        role="A",
        kind="user",
    )
    social = SecurePrincipal(
        subject="sw2",
        practitioner="Practitioner/sw2",
        organization="Organization/cpas",
        role="A",
        kind="user",
    )
    assert await judged(draft_id, "requested", midwife) is None
    assert await judged(task_id, "cancelled", midwife, **reason) is None
    assert await judged(task_id, "accepted", social) is None
