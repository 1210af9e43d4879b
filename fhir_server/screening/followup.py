"""What a completed response sets in motion: next-step Tasks and safety alerts.

Safety alert: a boolean item of the Questionnaire marked with the BiB extension
``questionnaire-safety-alert`` (sub-extensions ``code`` (Coding), ``priority`` (code, default
``stat``) and ``due`` (Duration, default 1 day)). When the server computes (or receives) ``true``
for it in a completed response, it writes at once, in the response's unit of work:

* an active **Flag** on the patient (category ``safety``, code = the alert code, ``flag-detail``
  pointing at the response);
* a **Task** with that priority for the responsible professional, due within ``due``, focus the
  response;
* a **Communication** (category ``alert``) to the responsible professional, about the response,
  the Flag and the Task.

The EPDS marks its item "self-harm thoughts" (item 10 > 0) and the PHQ-9 its item 9 > 0 this
way, whatever the total. Nothing depends on the client: the item is calculated by the server.
"""

from __future__ import annotations

from typing import Any

from fhir_server.screening import constants as C
from fhir_server.screening.form import Form, Item, sub_value
from fhir_server.screening.protocol import Step, due_date, now
from fhir_server.screening.responses import Enablement, answer_value, response_nodes

FLAG_CATEGORY = "http://terminology.hl7.org/CodeSystem/flag-category"
COMMUNICATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/communication-category"
FLAG_DETAIL = "http://hl7.org/fhir/StructureDefinition/flag-detail"
TRANSLATIONS = {
    "alert-task": {
        "en": "Contact the patient today about the safety alert of a screening",
        "nl-BE": "Neem vandaag contact op met de patiënte over het veiligheidsalarm van een "
        "screening",
        "fr-BE": "Contacter la patiente aujourd'hui au sujet de l'alerte de sécurité d'un "
        "dépistage",
        "de": "Die Patientin heute wegen des Sicherheitsalarms eines Screenings kontaktieren",
    },
}


def _translated(text: str, key: str) -> tuple[str, dict[str, Any]]:
    translations = TRANSLATIONS.get(key, {})
    extension = [
        {
            "url": C.TRANSLATION,
            "extension": [{"url": "lang", "valueCode": lang}, {"url": "content", "valueString": t}],
        }
        for lang, t in translations.items()
        if lang != "en"
    ]
    return text, {"extension": extension} if extension else {}


def _duration_default(ext: dict[str, Any]) -> dict[str, Any]:
    due = sub_value(ext, "due")
    if isinstance(due, dict) and "value" in due:
        return {"timingDuration": due}
    return {
        "timingDuration": {
            "value": 1,
            "unit": "day",
            "system": "http://unitsofmeasure.org",
            "code": "d",
        }
    }


def triggered_alerts(form: Form, response: dict[str, Any], enablement: Enablement) -> list[Item]:
    out = []
    for node in response_nodes(form, response):
        item = node.item
        if item.safety_alert is None or not enablement.enabled(item):
            continue
        values = [answer_value(a) for a in node.qr.get("answer", ()) or ()]
        if any(v == ("valueBoolean", True) for v in values):
            out.append(item)
    return out


def alert_resources(
    form: Form,
    item: Item,
    response: dict[str, Any],
    response_ref: dict[str, Any],
    owner: dict[str, Any] | None,
    owner_why: str,
    requester: dict[str, Any] | None,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(Flag, Task, Communication) for one triggered alert item; the Task and Communication
    refer to the Flag by ``urn:flag`` / ``urn:task`` placeholders the caller replaces."""
    ext = item.safety_alert or {}
    code = sub_value(ext, "code")
    coding = dict(code) if isinstance(code, dict) else {"system": C.ALERT_SYSTEM, "code": "alert"}
    priority = sub_value(ext, "priority") or "stat"
    started = now()
    moment = started.strftime("%Y-%m-%dT%H:%M:%SZ")
    due = due_date(_duration_default(ext), started)
    title = form.resource.get("title") or form.canonical
    reason = {"coding": [coding], "text": coding.get("display") or item.text or "safety alert"}
    subject = response.get("subject")
    flag: dict[str, Any] = {
        "resourceType": "Flag",
        "extension": [{"url": FLAG_DETAIL, "valueReference": response_ref}],
        "status": "active",
        "category": [
            {"coding": [{"system": FLAG_CATEGORY, "code": "safety", "display": "Safety"}]}
        ],
        "code": reason,
        "subject": subject,
        "period": {"start": moment},
    }
    if isinstance(response.get("encounter"), dict):
        flag["encounter"] = response["encounter"]
    if requester is not None:
        flag["author"] = requester
    text, translations = _translated(
        "Contact the patient today about the safety alert of a screening", "alert-task"
    )
    task: dict[str, Any] = {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "priority": priority,
        "code": reason,
        "description": f"{text}: {reason['text']} ({title}, {response.get('authored', '')})",
        "focus": response_ref,
        "for": subject,
        "authoredOn": moment,
        "reasonCode": reason,
        "reasonReference": response_ref,
        "note": [{"text": f"Owner: {owner_why}."}],
    }
    if translations:
        task["_description"] = translations
    if due:
        task["restriction"] = {"period": {"end": due}}
    if owner is not None:
        task["owner"] = owner
    if requester is not None:
        task["requester"] = requester
    communication: dict[str, Any] = {
        "resourceType": "Communication",
        "status": "completed",
        "category": [
            {"coding": [{"system": COMMUNICATION_CATEGORY, "code": "alert", "display": "Alert"}]}
        ],
        "priority": priority,
        "subject": subject,
        "sent": moment,
        "reasonCode": [reason],
        "about": [response_ref],
        "payload": [
            {
                "contentString": (
                    f'Safety alert: {reason["text"]}. Answered in "{title}" '
                    f"({response.get('authored', 'date unknown')}), whatever the total score. "
                    "Contact the patient today; a Task and a Flag are in her record."
                )
            }
        ],
    }
    if owner is not None:
        communication["recipient"] = [owner]
    return flag, task, communication


def protocol_task(
    step: Step,
    target_index: int,
    response: dict[str, Any],
    response_ref: dict[str, Any],
    focus: dict[str, Any] | None,
    owner: dict[str, Any] | None,
    owner_why: str,
    requester: dict[str, Any] | None,
) -> dict[str, Any]:
    target = step.targets[target_index]
    action = target.action
    parent = step.action
    started = now()
    title = action.get("title") or parent.get("title") or "next screening step"
    codings = []
    if target.definition:
        codings.append(
            {
                "system": C.SDC_TEMP,
                "code": "complete-questionnaire",
                "display": "Complete Questionnaire",
            }
        )
    for source in (action, parent):
        for concept in source.get("code", ()) or ():
            for coding in concept.get("coding", ()) if isinstance(concept, dict) else ():
                if isinstance(coding, dict) and coding not in codings:
                    codings.append(coding)
    task: dict[str, Any] = {
        "resourceType": "Task",
        "instantiatesUri": step.uri,
        "status": "requested",
        "intent": "order",
        "priority": action.get("priority") or parent.get("priority") or "routine",
        "description": title,
        "for": response.get("subject"),
        "authoredOn": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "reasonReference": response_ref,
        "note": [
            {
                "text": (
                    f'Next step of the protocol "{step.plan_title}": '
                    f"{parent.get('title') or step.action_id}. Owner: {owner_why}."
                )
            }
        ],
    }
    if codings:
        task["code"] = {"coding": codings, "text": title}
    translations = action.get("_title") or (parent.get("_title") if action is parent else None)
    if isinstance(translations, dict):
        task["_description"] = translations
    reasons = action.get("reason") or parent.get("reason")
    if isinstance(reasons, list) and reasons and isinstance(reasons[0], dict):
        task["reasonCode"] = reasons[0]
    if isinstance(response.get("encounter"), dict):
        task["encounter"] = response["encounter"]
    due = due_date(action, started) or due_date(parent, started)
    if due:
        task["restriction"] = {"period": {"end": due}}
    if focus is not None:
        task["focus"] = focus
    if target.definition:
        task["input"] = [
            {
                "type": {"coding": [{"system": C.SDC_TEMP, "code": "questionnaire"}]},
                "valueCanonical": target.definition,
            }
        ]
    if owner is not None:
        task["owner"] = owner
    if requester is not None:
        task["requester"] = requester
    return task
