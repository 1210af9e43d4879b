"""Generate the care-pathway content in ``content/pathways/`` from the tables below.

Run from the repository root after editing a table::

    python tools/build_pathway_content.py

The generated files are the shipped content (FHIR R4 JSON, loaded into the store at start-up):

- ``PlanDefinition-pd-*.json``: the three pregnancy- and perinatal-loss pathways (one per scenario
  of seed S000), the 13 per-indicator pathways, stepped perinatal mental-health care, the KCE
  postnatal pathway and the screening schedule;
- ``ActivityDefinitions.json``: one ActivityDefinition per activity code the pathways use (a
  collection Bundle);
- ``OperationDefinition-*.json``: the operations this capability adds.

Titles come in nl-BE, fr-BE and en: the pathways' own titles and descriptions are written below;
an action's title is the display of its activity code in the BiB CodeSystems (their nl-BE / fr-BE
designations become ``translation`` extensions). Action descriptions are English.

Editing the generated JSON directly works too (the server reads only the JSON); rerunning the tool
overwrites such edits. ``tests/pathways/test_content.py`` checks that the committed files are what
this tool produces.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "content" / "pathways"
TERMINOLOGY = ROOT / "terminology" / "bib"
BIB = "https://borninbelgiumpro.be/fhir"
CS = BIB + "/CodeSystem/"
VERSION = "0.1.0"
DATE = "2026-11-24"
TRANSLATION = "http://hl7.org/fhir/StructureDefinition/translation"
UCUM = "http://unitsofmeasure.org"
V3_ROLE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
LOINC = "http://loinc.org"

SYSTEMS = {
    "loss": "bib-loss-support-activity",
    "option": "bib-loss-management-option",
    "postnatal": "bib-postnatal-activity",
    "screening": "bib-screening-timepoint",
    "instrument": "bib-screening-instrument",
    "line": "bib-care-line",
    "nccmh": "bib-nccmh-pathway",
    "pmh": "bib-pmh-intervention",
    "principle": "bib-care-principle",
    "step": "bib-pathway-step",
    "referral": "bib-referral-type",
    "phase": "bib-pregnancy-loss-phase",
    "domain": "bib-need-domain",
    "pathway": "bib-care-pathway",
    "scenario": "bib-pregnancy-loss-scenario",
    "practitioner": "bib-practitioner-type",
    "organization": "bib-organization-type",
    "indicator": "bib-vulnerability-indicator",
    "severity": "bib-pmh-severity",
}

# -- terminology

_CONCEPTS: dict[str, dict[str, dict[str, Any]]] = {}


def concepts(key: str) -> dict[str, dict[str, Any]]:
    if key not in _CONCEPTS:
        data = json.loads((TERMINOLOGY / f"CodeSystem-{SYSTEMS[key]}.json").read_text())
        found: dict[str, dict[str, Any]] = {}

        def walk(items: list[dict[str, Any]]) -> None:
            for item in items:
                found[item["code"]] = item
                walk(item.get("concept", []))

        walk(data["concept"])
        _CONCEPTS[key] = found
    return _CONCEPTS[key]


def concept(key: str, code: str) -> dict[str, Any]:
    try:
        return concepts(key)[code]
    except KeyError:
        sys.exit(f"unknown code {code!r} in {SYSTEMS[key]}")


def coding(key: str, code: str) -> dict[str, Any]:
    return {"system": CS + SYSTEMS[key], "code": code, "display": concept(key, code)["display"]}


def cc(key: str, code: str) -> dict[str, Any]:
    return {"coding": [coding(key, code)]}


def names(key: str, code: str) -> dict[str, str]:
    item = concept(key, code)
    out = {"en": item["display"]}
    for designation in item.get("designation", []):
        if designation.get("language") in ("nl-BE", "fr-BE") and "use" not in designation:
            out[designation["language"]] = designation["value"]
    return out


def need_domain(key: str, code: str) -> str | None:
    for prop in concept(key, code).get("property", []):
        if prop["code"] == "need-domain":
            return prop["valueCoding"]["code"]
    return None


def text(element: dict[str, Any], name: str, value: str | dict[str, str]) -> None:
    """``element[name]`` in English plus nl-BE / fr-BE translation extensions."""
    if isinstance(value, str):
        element[name] = value
        return
    element[name] = value["en"]
    extensions = [
        {
            "url": TRANSLATION,
            "extension": [
                {"url": "lang", "valueCode": lang},
                {"url": "content", "valueString": value[lang]},
            ],
        }
        for lang in ("nl-BE", "fr-BE")
        if lang in value
    ]
    if extensions:
        element["_" + name] = {"extension": extensions}


def expression(value: str, description: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"language": "text/fhirpath", "expression": value}
    if description:
        out["description"] = description
    return out


def duration(unit: str, value: float) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


# -- ActivityDefinitions

SERVICE = "ServiceRequest"
TASK = "Task"
# (system key, code) -> kind; every activity code a pathway uses gets an ActivityDefinition
KINDS: dict[tuple[str, str], str] = {}
SERVICE_CODES = {
    "loss": {
        "ultrasound",
        "repeat-ultrasound",
        "prenatal-diagnostics-referral",
        "grief-counselling",
        "peer-contact",
        "support-organisation-referral",
        "household-support",
        "long-term-support-referral",
        "kraamzorg-referral",
        "municipal-service-referral",
        "first-line-psychologist-referral",
        "psychological-help-decision-doubt",
        "psychological-help-post-top",
        "medical-follow-up",
        "interpreter",
    },
    "option": {
        c
        for c in (
            "expectant",
            "medication",
            "curettage",
            "await-spontaneous-delivery",
            "induced-delivery",
            "termination",
            "continue-pregnancy",
        )
    },
    "postnatal": {
        "hospital-stay-max-72h",
        "home-visit-24h",
        "home-visit-follow-up",
        "paediatric-check-d7-10",
        "midwife-24-7-line",
        "kraamhulp",
        "kg-one-home-visit",
        "gynaecological-check-6w",
        "parent-group",
        "perinatal-buddy",
    },
    "line": {"basic", "line-1", "line-2", "line-3"},
    "nccmh": {"urgent-assessment", "pmh-professional-assessment"},
    "pmh": {"specialist-clinical-assessment", "specialist-clinical-assessment-urgent"},
    "step": {"social-map-referral"},
    "referral": {"warm-guidance"},
}
AD_PREFIX = {
    "loss": "loss",
    "option": "loss-option",
    "postnatal": "postnatal",
    "screening": "screening",
    "line": "care-line",
    "nccmh": "nccmh",
    "pmh": "pmh",
    "principle": "principle",
    "step": "step",
    "referral": "referral",
}
DEFAULT_PERFORMERS: dict[tuple[str, str], tuple[str, ...]] = {}


def ad_id(key: str, code: str) -> str:
    return f"ad-{AD_PREFIX[key]}-{code}"


def ad_url(key: str, code: str) -> str:
    return f"{BIB}/ActivityDefinition/{ad_id(key, code)}"


def use_activity(key: str, code: str, performers: tuple[str, ...]) -> str:
    concept(key, code)
    kind = SERVICE if code in SERVICE_CODES.get(key, ()) else TASK
    KINDS[(key, code)] = kind
    DEFAULT_PERFORMERS.setdefault((key, code), performers)
    return ad_url(key, code)


def activity_definitions() -> list[dict[str, Any]]:
    out = []
    for (key, code), kind in sorted(KINDS.items()):
        item = concept(key, code)
        resource: dict[str, Any] = {
            "resourceType": "ActivityDefinition",
            "id": ad_id(key, code),
            "language": "en",
            "url": ad_url(key, code),
            "version": VERSION,
            "name": "".join(p.capitalize() for p in ad_id(key, code).split("-")),
        }
        text(resource, "title", names(key, code))
        resource.update(
            {
                "status": "active",
                "experimental": False,
                "date": DATE,
                "publisher": "Born in Belgium Professionals",
                "description": item.get("definition", item["display"]),
                "jurisdiction": [{"coding": [{"system": "urn:iso:std:iso:3166", "code": "BE"}]}],
            }
        )
        domain = need_domain(key, code) if key == "loss" else None
        if domain:
            resource["topic"] = [cc("domain", domain)]
        resource["kind"] = kind
        resource["code"] = cc(key, code)
        resource["intent"] = "proposal"
        performers = DEFAULT_PERFORMERS.get((key, code)) or ()
        if performers:
            resource["participant"] = [participant(p) for p in performers]
        out.append(resource)
    return out


def participant(performer: str) -> dict[str, Any]:
    if performer.startswith("org:"):
        return {"type": "practitioner", "role": cc("organization", performer[4:])}
    return {"type": "practitioner", "role": cc("practitioner", performer)}


RELATED = {
    "partner": {"system": V3_ROLE, "code": "SIGOTHR", "display": "significant other"},
    "siblings": {"system": V3_ROLE, "code": "SIB", "display": "sibling"},
}

# -- actions


class Ctx:
    anchor = "anchor"


def act(
    aid: str,
    code: tuple[str, str],
    who: tuple[str, ...] = (),
    at: tuple | None = None,
    *,
    to: str | None = None,
    rel: str = "after-start",
    desc: str | None = None,
    cond: tuple[str, str] | None = None,
    prio: str | None = None,
    domain: str | None = None,
    codes: tuple[tuple[str, str], ...] = (),
    goal: tuple[str, ...] = (),
    targets: tuple[str, ...] = (),
    required: str | None = None,
    every: str | None = None,
    dynamic: tuple[tuple[str, str], ...] = (),
    title: dict[str, str] | None = None,
    length: tuple[str, float] | None = None,
) -> dict[str, Any]:
    """An action that becomes a request: ``code`` is its activity code, ``who`` the performer
    types, ``at`` its timing relative to ``to`` (the anchor): (unit, n) or (unit, low, high)."""
    key, value = code
    action: dict[str, Any] = {"id": aid}
    text(action, "title", title or names(*code))
    if desc:
        action["description"] = desc
    action_codes = [cc(key, value)]
    for extra in codes:
        action_codes.append(cc(*extra))
    dom = domain or (need_domain(key, value) if key == "loss" else None)
    if dom:
        action_codes.append(cc("domain", dom))
    action["code"] = action_codes
    if goal:
        action["goalId"] = list(goal)
    if cond:
        action["condition"] = [
            {"kind": "applicability", "expression": expression(cond[0], cond[1])}
        ]
    if at is not None:
        related: dict[str, Any] = {"actionId": to or Ctx.anchor, "relationship": rel}
        unit = at[0]
        if len(at) == 2:
            related["offsetDuration"] = duration(unit, at[1])
        else:
            related["offsetRange"] = {"low": duration(unit, at[1]), "high": duration(unit, at[2])}
        action["relatedAction"] = [related]
    if length:
        action["timingDuration"] = duration(*length)
    if every:
        action["timingTiming"] = {"repeat": {"frequency": 1, "period": 1, "periodUnit": every}}
    parts = [participant(p) for p in who]
    parts += [{"type": "related-person", "role": {"coding": [RELATED[t]]}} for t in targets]
    if parts:
        action["participant"] = parts
    if prio:
        action["priority"] = prio
    if required:
        action["requiredBehavior"] = required
    if dynamic:
        action["dynamicValue"] = [{"path": p, "expression": expression(e)} for p, e in dynamic]
    action["definitionCanonical"] = use_activity(key, value, who)
    return action


def group(
    gid: str,
    title: dict[str, str],
    actions: list[dict[str, Any]],
    *,
    desc: str | None = None,
    phase: str | None = None,
    cond: tuple[str, str] | None = None,
    select: str | None = None,
    required: str | None = None,
    inputs: list[dict[str, Any]] | None = None,
    trigger: list[dict[str, Any]] | None = None,
    codes: tuple[tuple[str, str], ...] = (),
) -> dict[str, Any]:
    action: dict[str, Any] = {"id": gid}
    text(action, "title", title)
    if desc:
        action["description"] = desc
    action_codes = ([cc("phase", phase)] if phase else []) + [cc(*c) for c in codes]
    if action_codes:
        action["code"] = action_codes
    if trigger:
        action["trigger"] = trigger
    if cond:
        action["condition"] = [
            {"kind": "applicability", "expression": expression(cond[0], cond[1])}
        ]
    if inputs:
        action["input"] = inputs
    action["groupingBehavior"] = "logical-group"
    if select:
        action["selectionBehavior"] = select
    if required:
        action["requiredBehavior"] = required
    action["action"] = actions
    return action


def phase_group(gid: str, phase: str, actions: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    return group(gid, names("phase", phase), actions, phase=phase, **kw)


def anchor(
    aid: str, title: dict[str, str], value: str, needs: str, cond: str | None = None
) -> dict:
    """An event the pathway's dates are counted from; ``needs`` says what is missing when the
    expression gives nothing (the OperationOutcome quotes it)."""
    action: dict[str, Any] = {"id": aid}
    text(action, "title", title)
    action["description"] = needs
    if cond:
        action["condition"] = [{"kind": "applicability", "expression": expression(cond)}]
    action["dynamicValue"] = [{"path": "timing", "expression": expression(value)}]
    return action


def data_requirement(type_: str, path: str, key: str, code: str) -> dict[str, Any]:
    return {"type": type_, "codeFilter": [{"path": path, "code": [coding(key, code)]}]}


def goal(gid: str, description: dict[str, str], due: tuple[str, int] | None = None) -> dict:
    desc: dict[str, Any] = {}
    text(desc, "text", description)
    out: dict[str, Any] = {"id": gid, "description": desc}
    if due:
        out["target"] = [{"due": duration(*due)}]
    return out


def plan(
    pid: str,
    title: dict[str, str],
    description: dict[str, str],
    topics: list[tuple[str, str]],
    actions: list[dict[str, Any]],
    goals: list[dict[str, Any]] | None = None,
    purpose: str | None = None,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "PlanDefinition",
        "id": pid,
        "language": "en",
        "url": f"{BIB}/PlanDefinition/{pid}",
        "version": VERSION,
        "name": "".join(p.capitalize() for p in pid.split("-")),
    }
    text(resource, "title", title)
    resource["type"] = {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/plan-definition-type",
                "code": "clinical-protocol",
            }
        ]
    }
    resource.update(
        {
            "status": "active",
            "experimental": False,
            "date": DATE,
            "publisher": "Born in Belgium Professionals",
            "contact": [
                {
                    "name": "Born in Belgium Professionals",
                    "telecom": [{"system": "url", "value": "https://borninbelgiumpro.be"}],
                }
            ],
        }
    )
    text(resource, "description", description)
    resource["jurisdiction"] = [
        {"coding": [{"system": "urn:iso:std:iso:3166", "code": "BE", "display": "Belgium"}]}
    ]
    if purpose:
        resource["purpose"] = purpose
    resource["topic"] = [cc(*t) for t in topics]
    if goals:
        resource["goal"] = goals
    resource["action"] = actions
    return resource


# -- the pregnancy- and perinatal-loss pathways (domain.md 4a, seed S000) --------------------------

LANGUAGE_OK = (
    "%patient.communication.where(preferred = true).exists() and "
    "%patient.communication.where(preferred = true).language.coding.code"
    ".where(startsWith('nl') or startsWith('fr') or startsWith('de') or startsWith('en')).empty()"
)
INTERPRETER_WHEN = (
    f"(%flaggedIndicators contains 'communication') or ({LANGUAGE_OK})",
    "the communication indicator is flagged, or her preferred language is not Dutch, French, "
    "German or English",
)


def loss_trigger(scenario: str) -> list[dict[str, Any]]:
    data = [
        data_requirement("Condition", "code", "scenario", scenario),
        data_requirement("EpisodeOfCare", "type", "scenario", scenario),
    ]
    return [
        {"type": "data-added", "name": "pregnancy-loss-recorded", "data": data},
        {"type": "data-modified", "name": "pregnancy-loss-recorded", "data": data},
    ]


def loss_anchor(scenario: str, title: dict[str, str], what: str) -> dict[str, Any]:
    return anchor(
        "anchor",
        title,
        f"iif(%lossDate.exists(), %lossDate, %lossEvents.where(scenario = '{scenario}')"
        ".first().date)",
        f"the date {what}: the onset date of the Condition recording the loss (or the start of "
        "its EpisodeOfCare), or the lossDate parameter",
    )


def cross_actions(scenario: str) -> list[dict[str, Any]]:
    """Building blocks common to the three scenarios (S000:383-558 table 3; S002:2030-2074)."""
    actions = []
    if scenario != "congenital-anomaly-loss":  # scenario 3 assigns the trusted person at suspicion
        actions.append(
            act(
                "x-trusted-person",
                ("loss", "trusted-person-assignment"),
                ("midwife",),
                ("d", 0),
                desc="A known face who provides continuity and emotional safety throughout "
                "the pathway (vertrouwenspersoon).",
                goal=("continuity",),
                prio="urgent" if scenario == "mors-in-utero" else None,
            )
        )
    actions += [
        act(
            "x-partner-support",
            ("loss", "partner-support"),
            ("midwife", "psychologist"),
            ("d", 0, 14),
            desc="Recognise the partner as a grieving parent and involve both partners; "
            "emotional support for the partner.",
            targets=("partner",),
            goal=("supported",),
        ),
        act(
            "x-partner-leave",
            ("loss", "leave"),
            ("general-practitioner", "social-worker"),
            ("d", 0, 7),
            desc="Leave or a sick note for the partner, so that both parents have room to grieve.",
            targets=("partner",),
        ),
        act(
            "x-siblings",
            ("loss", "sibling-school-support"),
            ("midwife", "teacher"),
            ("d", 0, 14),
            desc="If there are brothers or sisters: inform school and childcare and help them "
            "respond to the loss; room for the children's grief.",
            targets=("siblings",),
        ),
        act(
            "x-culture",
            ("loss", "culturally-sensitive-communication"),
            ("midwife",),
            ("d", 0, 42),
            desc="Culturally sensitive, low-threshold communication that respects the parents' "
            "customs around death and mourning; attention to socio-economic barriers.",
        ),
        act(
            "x-interpreter",
            ("loss", "interpreter"),
            ("org:welfare-organisation",),
            ("d", 0, 2),
            desc="A (social) interpreter or intercultural mediator for the conversations.",
            cond=INTERPRETER_WHEN,
            prio="urgent",
        ),
        act(
            "x-self-help",
            ("loss", "self-help-group-information"),
            ("midwife",),
            ("d", 7, 28),
            desc="Information on self-help groups and peer contact, tailored to the parents' "
            "cultural and personal preferences (peer contact is not for everyone).",
        ),
        act(
            "x-orienting-conversation",
            ("loss", "orienting-conversation"),
            ("midwife", "general-practitioner"),
            ("wk", 2, 6),
            desc="Orienting conversation in basic care about how the parents are coping; "
            "refer to a first-line psychologist when needed (S002 basic care after loss).",
        ),
        act(
            "x-first-line-psychologist",
            ("loss", "first-line-psychologist-referral"),
            ("first-line-psychologist",),
            ("wk", 2, 8),
            desc="Short psychological support by a first-line psychologist, if the orienting "
            "conversation shows the need.",
            required="could",
        ),
        act(
            "x-annual-remembrance",
            ("loss", "annual-remembrance"),
            ("midwife",),
            ("a", 1),
            desc="Remember the child on the anniversary of the loss (every year).",
            every="a",
        ),
    ]
    return actions


def cross_group(scenario: str) -> dict[str, Any]:
    return group(
        "cross",
        {
            "en": "Throughout the pathway",
            "nl-BE": "Doorheen het hele zorgpad",
            "fr-BE": "Tout au long du trajet",
        },
        cross_actions(scenario),
        desc="Building blocks common to every loss scenario: continuity through a trusted "
        "person, partner and siblings, diversity and culture, peer contact and self-help, "
        "psychological help in basic care, remembrance.",
    )


LOSS_GOALS = [
    goal(
        "supported",
        {
            "en": "Both parents feel recognised and supported in their grief, from the "
            "diagnosis to the follow-up",
            "nl-BE": "Beide ouders voelen zich erkend en gesteund in hun rouw, van de "
            "vaststelling tot de opvolging",
            "fr-BE": "Les deux parents se sentent reconnus et soutenus dans leur deuil, du "
            "diagnostic au suivi",
        },
        ("mo", 3),
    ),
    goal(
        "continuity",
        {
            "en": "Continuity of care through a trusted person who knows the network",
            "nl-BE": "Continuïteit van zorg via een vertrouwenspersoon die het netwerk kent",
            "fr-BE": "Continuité des soins grâce à une personne de confiance qui connaît le réseau",
        },
    ),
]


def pathway_group(scenario: str, title: dict[str, str], actions: list[dict]) -> dict[str, Any]:
    return group(
        "pathway",
        title,
        actions,
        cond=(
            f"%lossEvents.where(scenario = '{scenario}').exists()",
            f"a pregnancy loss ({scenario}) is recorded for her: a Condition or EpisodeOfCare "
            "coded with the loss scenario (the pathway starts from the event, never from a "
            "screening)",
        ),
        inputs=[
            data_requirement("Condition", "code", "scenario", scenario),
            data_requirement("EpisodeOfCare", "type", "scenario", scenario),
        ],
        trigger=loss_trigger(scenario),
    )


def pd_loss_early() -> dict[str, Any]:
    s = "early-pregnancy-loss"
    diagnosis = phase_group(
        "diagnosis",
        "diagnosis",
        [
            act(
                "d-explanation",
                ("loss", "medical-explanation"),
                ("gynaecologist", "midwife", "general-practitioner"),
                ("d", 0),
                desc="Explain the miscarriage clearly and discuss the options, e.g. medical "
                "interventions or ultrasound.",
            ),
            act(
                "d-ultrasound",
                ("loss", "ultrasound"),
                ("gynaecologist",),
                ("d", 0, 2),
                desc="Ultrasound to confirm the loss and discuss the options.",
            ),
            act(
                "d-acknowledgement",
                ("loss", "emotional-acknowledgement"),
                ("midwife", "psychologist", "grief-counsellor"),
                ("d", 0),
                desc="Recognise the grief and emotions; support by the care providers.",
                goal=("supported",),
            ),
            act(
                "d-peer-contact",
                ("loss", "peer-contact"),
                ("self-help-group-worker", "peer-expert"),
                ("d", 0, 7),
                desc="Offer the possibility of peer contact (lotgenotencontact).",
            ),
            act(
                "d-appointments",
                ("loss", "appointment-support"),
                ("midwife", "general-practitioner"),
                ("d", 0, 2),
                desc="Help with the appointments for the expulsion and follow-up investigations.",
            ),
            act(
                "d-sick-note",
                ("loss", "sick-note"),
                ("general-practitioner", "midwife"),
                ("d", 0, 1),
                desc="A sick note for the mother (ziektebriefje).",
            ),
        ],
    )
    expulsion = phase_group(
        "expulsion",
        "expulsion-delivery-termination",
        [
            group(
                "e-management",
                {
                    "en": "Choice of management: expectant, medication or curettage",
                    "nl-BE": "Keuze van aanpak: spontaan afwachten, medicatie of curettage",
                    "fr-BE": "Choix de la prise en charge : attente, médicaments ou curetage",
                },
                [
                    act(
                        "e-expectant",
                        ("option", "expectant"),
                        ("gynaecologist",),
                        ("d", 0, 14),
                        domain="medical",
                        desc="Await the spontaneous expulsion, with follow-up.",
                    ),
                    act(
                        "e-medication",
                        ("option", "medication"),
                        ("gynaecologist",),
                        ("d", 0, 7),
                        domain="medical",
                        desc="Medical management of the expulsion.",
                    ),
                    act(
                        "e-curettage",
                        ("option", "curettage"),
                        ("gynaecologist",),
                        ("d", 0, 7),
                        domain="medical",
                        desc="Surgical management (curettage).",
                    ),
                ],
                desc="The parents choose one option with the gynaecologist (shared decision).",
                select="exactly-one",
                codes=(("domain", "medical"),),
            ),
            act(
                "e-midwife-guidance",
                ("loss", "midwife-continuous-presence"),
                ("midwife",),
                ("d", 0, 14),
                desc="Psychosocial needs continue during the expulsion: guidance by a midwife.",
                goal=("supported",),
            ),
            act(
                "e-see-fetus",
                ("loss", "see-fetus-option"),
                ("midwife",),
                ("d", 0, 14),
                desc="Offer the option to see the embryo or fetus (vruchtje).",
            ),
            act(
                "e-comfort-box",
                ("loss", "comfort-box"),
                ("midwife",),
                ("d", 0, 14),
                desc="A comfort box (troostdoosje).",
            ),
            act(
                "e-home-information",
                ("loss", "home-needs-information"),
                ("midwife",),
                ("d", 0, 2),
                desc="Information on what is needed at home during and after the expulsion.",
            ),
        ],
    )
    follow_up = phase_group(
        "follow-up",
        "follow-up",
        [
            act(
                "f-telephone",
                ("loss", "telephone-check-up"),
                ("midwife",),
                ("d", 5, 10),
                desc="Telephone check-up: how are the parents doing?",
            ),
            act(
                "f-medical",
                ("loss", "medical-follow-up"),
                ("gynaecologist", "general-practitioner"),
                ("wk", 4, 6),
                desc="Medical follow-up after the expulsion (essential).",
            ),
            act(
                "f-causes",
                ("loss", "cause-discussion"),
                ("gynaecologist",),
                ("wk", 4, 6),
                desc="Discuss the possible causes.",
            ),
            act(
                "f-future",
                ("loss", "future-pregnancy-advice"),
                ("gynaecologist", "general-practitioner"),
                ("wk", 4, 6),
                desc="Advice for a future pregnancy.",
            ),
            act(
                "f-peer-contact",
                ("loss", "peer-contact"),
                ("self-help-group-worker", "peer-expert"),
                ("wk", 1, 4),
                desc="Peer contact during the follow-up.",
            ),
            act(
                "f-support-organisations",
                ("loss", "support-organisation-referral"),
                ("midwife",),
                ("wk", 1, 4),
                desc="Access to (support) organisations.",
            ),
            act(
                "f-household",
                ("loss", "household-support"),
                ("maternity-care-assistant", "staff-familiehulp"),
                ("d", 0, 14),
                desc="Household support (e.g. family help or kraamzorg).",
            ),
            act(
                "f-municipal",
                ("loss", "municipal-service-referral"),
                ("social-worker",),
                ("wk", 1, 4),
                desc="Referral to municipal services, if the family needs them.",
                required="could",
            ),
            act(
                "f-long-term",
                ("loss", "long-term-support-referral"),
                ("midwife", "social-worker"),
                ("wk", 4, 8),
                desc="Referral to long-term support if the grief does not ease (29% meet PTSS "
                "criteria one month after an early loss, S002:1567-1599).",
                required="could",
            ),
        ],
    )
    title = names("pathway", "pregnancy-loss-early")
    return plan(
        "pd-loss-early",
        title,
        {
            "en": "Care pathway after an early pregnancy loss (miscarriage), from the diagnosis "
            "through the expulsion to the follow-up: medical, psychosocial and practical needs "
            "in each phase, with a trusted person, partner support and peer contact. Starts from "
            "the recorded loss (seed S000, scenario 1).",
            "nl-BE": "Zorgpad na een pril zwangerschapsverlies (miskraam), van de vaststelling "
            "via de expulsie tot de opvolging: medische, psychosociale en praktische noden in "
            "elke fase, met een vertrouwenspersoon, steun voor de partner en lotgenotencontact. "
            "Start vanaf het geregistreerde verlies (S000, scenario 1).",
            "fr-BE": "Trajet de soins après une perte de grossesse précoce (fausse couche), du "
            "diagnostic au suivi en passant par l'expulsion : besoins médicaux, psychosociaux et "
            "pratiques à chaque phase, avec une personne de confiance, un soutien au partenaire "
            "et le contact avec des pairs. Démarre à partir de la perte enregistrée (S000, "
            "scénario 1).",
        },
        [("pathway", "pregnancy-loss-early"), ("scenario", s)],
        [
            pathway_group(
                s,
                title,
                [
                    loss_anchor(
                        s,
                        {
                            "en": "Early pregnancy loss established",
                            "nl-BE": "Pril zwangerschapsverlies vastgesteld",
                            "fr-BE": "Perte de grossesse précoce constatée",
                        },
                        "the loss was established",
                    ),
                    diagnosis,
                    expulsion,
                    follow_up,
                    cross_group(s),
                ],
            )
        ],
        LOSS_GOALS,
    )


def pd_loss_mors_in_utero() -> dict[str, Any]:
    s = "mors-in-utero"
    diagnosis = phase_group(
        "diagnosis",
        "diagnosis",
        [
            act(
                "d-bad-news",
                ("loss", "bad-news-conversation"),
                ("gynaecologist", "midwife"),
                ("d", 0),
                desc="Breaking-bad-news conversation, with the trusted person present.",
                prio="urgent",
            ),
            act(
                "d-explanation",
                ("loss", "medical-explanation"),
                ("gynaecologist", "midwife"),
                ("d", 0),
                desc="Medical explanation; whether staying at home or awaiting a spontaneous "
                "delivery is feasible.",
            ),
            act(
                "d-midwife-presence",
                ("loss", "midwife-continuous-presence"),
                ("midwife",),
                ("d", 0, 2),
                desc="Continuous presence of the midwife; the willingness of professionals is "
                "crucial.",
                goal=("supported",),
            ),
            act(
                "d-shock-support",
                ("loss", "shock-emotion-regulation-support"),
                ("midwife", "psychologist"),
                ("d", 0, 2),
                desc="Support with the shock and with regulating emotions.",
            ),
            act(
                "d-sick-note",
                ("loss", "sick-note"),
                ("general-practitioner",),
                ("d", 0, 1),
                domain="organisational",
                desc="Sick notes for the mother (and the partner).",
            ),
            act(
                "d-work",
                ("loss", "work-leave-arrangement"),
                ("general-practitioner", "social-worker"),
                ("d", 0, 7),
                desc="Legal work arrangements.",
            ),
        ],
    )
    delivery = phase_group(
        "delivery",
        "expulsion-delivery-termination",
        [
            act(
                "e-repeat-ultrasound",
                ("loss", "repeat-ultrasound"),
                ("gynaecologist",),
                ("d", 0, 1),
                desc="Repeat ultrasound.",
            ),
            group(
                "e-delivery-options",
                {
                    "en": "Delivery options",
                    "nl-BE": "Opties voor de bevalling",
                    "fr-BE": "Options pour l'accouchement",
                },
                [
                    act(
                        "e-await",
                        ("option", "await-spontaneous-delivery"),
                        ("gynaecologist", "midwife"),
                        ("d", 0, 14),
                        domain="medical",
                        desc="Await a spontaneous delivery (possibly at home).",
                    ),
                    act(
                        "e-induction",
                        ("option", "induced-delivery"),
                        ("gynaecologist", "midwife"),
                        ("d", 0, 2),
                        domain="medical",
                        desc="Induction of labour.",
                    ),
                ],
                desc="Medical interventions and delivery options, chosen with the parents.",
                select="exactly-one",
                codes=(("domain", "medical"),),
            ),
            act(
                "e-keepsake",
                ("loss", "keepsake-case"),
                ("midwife",),
                ("d", 0, 3),
                desc="A keepsake case (koesterkoffer) at the delivery.",
            ),
            act(
                "e-grief-counselling",
                ("loss", "grief-counselling"),
                ("grief-counsellor",),
                ("d", 0, 14),
                desc="Grief counselling (rouwbegeleiding) from the delivery on.",
                goal=("supported",),
            ),
            act(
                "e-peer-contact",
                ("loss", "peer-contact"),
                ("self-help-group-worker", "peer-expert"),
                ("d", 3, 21),
                desc="Peer contact.",
            ),
            act(
                "e-support-organisations",
                ("loss", "support-organisation-referral"),
                ("midwife",),
                ("d", 3, 21),
                desc="Support by organisations such as Boven de Wolken or Berrefonds.",
            ),
            act(
                "e-death-certificate",
                ("loss", "death-certificate"),
                ("social-worker",),
                ("d", 0, 3),
                desc="Arrange the death certificate (overlijdensakte).",
            ),
            act(
                "e-birth-declaration",
                ("loss", "birth-declaration"),
                ("social-worker",),
                ("d", 0, 15),
                desc="Arrange the birth declaration (geboorteaangifte).",
            ),
            act(
                "e-leave",
                ("loss", "leave"),
                ("social-worker", "general-practitioner"),
                ("d", 0, 7),
                desc="Arrange the leave (verlof) of the mother.",
            ),
        ],
    )
    follow_up = phase_group(
        "follow-up",
        "follow-up",
        [
            act(
                "f-causes",
                ("loss", "cause-discussion"),
                ("gynaecologist",),
                ("wk", 6, 8),
                desc="Follow-up consultation: discuss the causes.",
            ),
            act(
                "f-future",
                ("loss", "future-pregnancy-advice"),
                ("gynaecologist",),
                ("wk", 6, 8),
                desc="Advice for future pregnancies.",
            ),
            act(
                "f-remembrance-card",
                ("loss", "remembrance-card"),
                ("midwife",),
                ("wk", 2, 6),
                desc="Remembrance cards.",
            ),
            act(
                "f-peer-contact",
                ("loss", "peer-contact"),
                ("self-help-group-worker", "peer-expert"),
                ("wk", 2, 8),
                desc="Peer contact during the follow-up.",
            ),
            act(
                "f-long-term",
                ("loss", "long-term-support-referral"),
                ("midwife", "social-worker"),
                ("wk", 4, 8),
                desc="Referral to long-term support.",
            ),
            act(
                "f-kraamzorg",
                ("loss", "kraamzorg-referral"),
                ("midwife",),
                ("d", 0, 7),
                desc="Referral to maternity home care (kraamzorg) after the delivery.",
            ),
            act(
                "f-municipal",
                ("loss", "municipal-service-referral"),
                ("social-worker",),
                ("d", 0, 14),
                desc="Referral to municipal services.",
            ),
        ],
    )
    title = names("pathway", "pregnancy-loss-mors-in-utero")
    return plan(
        "pd-loss-mors-in-utero",
        title,
        {
            "en": "Care pathway after an intrauterine fetal death (mors in utero): the bad-news "
            "conversation and continuous presence of a midwife, the delivery with keepsakes, "
            "grief counselling and the paperwork (death certificate, birth declaration, leave), "
            "and a follow-up with remembrance and referral to long-term support, kraamzorg and "
            "municipal services. A trusted person provides continuity (seed S000, scenario 2).",
            "nl-BE": "Zorgpad na een intra-uteriene vruchtdood (mors in utero): het "
            "slechtnieuwsgesprek en de continue aanwezigheid van een vroedvrouw, de bevalling "
            "met koesterkoffer, rouwbegeleiding en de administratie (overlijdensakte, "
            "geboorteaangifte, verlof), en een opvolging met herdenking en doorverwijzing naar "
            "langdurige ondersteuning, kraamzorg en gemeentelijke diensten. Een "
            "vertrouwenspersoon zorgt voor continuïteit (S000, scenario 2).",
            "fr-BE": "Trajet de soins après une mort fœtale in utero : l'annonce de la mauvaise "
            "nouvelle et la présence continue d'une sage-femme, l'accouchement avec une valise "
            "souvenir, l'accompagnement du deuil et les démarches (acte de décès, déclaration de "
            "naissance, congé), puis un suivi avec commémoration et orientation vers un soutien "
            "à long terme, les soins de maternité à domicile et les services communaux. Une "
            "personne de confiance assure la continuité (S000, scénario 2).",
        },
        [("pathway", "pregnancy-loss-mors-in-utero"), ("scenario", s)],
        [
            pathway_group(
                s,
                title,
                [
                    loss_anchor(
                        s,
                        {
                            "en": "Intrauterine fetal death established",
                            "nl-BE": "Intra-uteriene vruchtdood vastgesteld",
                            "fr-BE": "Mort fœtale in utero constatée",
                        },
                        "the fetal death was established",
                    ),
                    diagnosis,
                    delivery,
                    follow_up,
                    cross_group(s),
                ],
            )
        ],
        LOSS_GOALS,
    )


def pd_loss_congenital_anomaly() -> dict[str, Any]:
    s = "congenital-anomaly-loss"
    suspicion = phase_group(
        "suspicion",
        "suspicion",
        [
            act(
                "s-explanation",
                ("loss", "medical-explanation"),
                ("gynaecologist",),
                ("d", 0),
                desc="Medical explanation of the suspected anomaly.",
            ),
            act(
                "s-prenatal-diagnostics",
                ("loss", "prenatal-diagnostics-referral"),
                ("gynaecologist", "specialist-physician"),
                ("d", 0, 7),
                desc="Referral for prenatal diagnostics (line 3: prenatal diagnosis and "
                "genetics): ultrasounds, invasive or non-invasive tests.",
                prio="urgent",
            ),
            act(
                "s-trusted-person",
                ("loss", "trusted-person-assignment"),
                ("midwife",),
                ("d", 0),
                desc="A trusted person, especially during the conversations with doctors.",
                goal=("continuity",),
            ),
            act(
                "s-on-call",
                ("loss", "on-call-availability"),
                ("midwife", "gynaecologist"),
                ("d", 0, 28),
                desc="On-call services (wachtdiensten) the parents can reach.",
            ),
        ],
    )
    diagnosis = phase_group(
        "diagnosis",
        "diagnosis",
        [
            act(
                "d-case-manager",
                ("loss", "case-manager-assignment"),
                ("midwife", "social-worker"),
                ("d", 0, 7),
                to="s-prenatal-diagnostics",
                rel="after-end",
                desc="A case manager who guarantees continuity and expertise, once the "
                "diagnosis is known.",
                goal=("continuity",),
            ),
            act(
                "d-grief-counselling",
                ("loss", "grief-counselling"),
                ("grief-counsellor",),
                ("d", 0, 14),
                to="s-prenatal-diagnostics",
                rel="after-end",
                desc="Grief counselling from the diagnosis on.",
                goal=("supported",),
            ),
            act(
                "d-peer-contact",
                ("loss", "peer-contact"),
                ("self-help-group-worker", "peer-expert"),
                ("d", 0, 14),
                to="s-prenatal-diagnostics",
                rel="after-end",
                desc="Peer contact.",
            ),
            act(
                "d-support-organisations",
                ("loss", "support-organisation-referral"),
                ("midwife",),
                ("d", 0, 14),
                to="s-prenatal-diagnostics",
                rel="after-end",
                desc="Guidance by Berrefonds or Boven de Wolken.",
            ),
        ],
    )
    decision = phase_group(
        "decision",
        "expulsion-delivery-termination",
        [
            act(
                "t-support-plan",
                ("loss", "support-plan"),
                ("midwife", "gynaecologist", "psychologist"),
                ("d", 7, 14),
                to="s-prenatal-diagnostics",
                rel="after-end",
                desc="Respect the couple's wishes: a support plan (begeleidingsplan) with "
                "continuity of care and multidisciplinary support, whatever the decision.",
                goal=("supported", "continuity"),
            ),
            act(
                "t-decision-doubt",
                ("loss", "psychological-help-decision-doubt"),
                ("psychologist",),
                ("d", 7, 21),
                to="s-prenatal-diagnostics",
                rel="after-end",
                desc="Psychological help for doubt during the decision period; extensive "
                "information on the severity; both partners involved equally.",
            ),
            act(
                "t-both-partners",
                ("loss", "partner-support"),
                ("psychologist", "midwife"),
                ("d", 7, 21),
                to="s-prenatal-diagnostics",
                rel="after-end",
                desc="Involve both partners equally in the decision and the support.",
                targets=("partner",),
            ),
            group(
                "t-decision",
                {
                    "en": "Decision: termination of pregnancy or carrying to term",
                    "nl-BE": "Beslissing: zwangerschapsafbreking of uitdragen",
                    "fr-BE": "Décision : interruption de grossesse ou poursuite jusqu'au terme",
                },
                [
                    group(
                        "t-termination",
                        names("option", "termination"),
                        [
                            act(
                                "t-top",
                                ("option", "termination"),
                                ("gynaecologist",),
                                ("d", 14, 28),
                                to="s-prenatal-diagnostics",
                                rel="after-end",
                                domain="medical",
                                desc="Termination of pregnancy, with continuity of care.",
                            ),
                            act(
                                "t-post-top",
                                ("loss", "psychological-help-post-top"),
                                ("psychologist",),
                                ("d", 0, 14),
                                to="t-top",
                                rel="after-end",
                                desc="Psychological help for severe distress after the "
                                "termination; inform the parents that most adapt in the long "
                                "term.",
                            ),
                        ],
                        desc="If the parents decide to terminate the pregnancy.",
                    ),
                    group(
                        "t-carry",
                        names("option", "continue-pregnancy"),
                        [
                            act(
                                "t-continue",
                                ("option", "continue-pregnancy"),
                                ("gynaecologist", "midwife"),
                                ("d", 14, 28),
                                to="s-prenatal-diagnostics",
                                rel="after-end",
                                domain="medical",
                                desc="Prenatal follow-up until the birth, with a birth and "
                                "care plan for the baby (uncertainty, living loss).",
                            ),
                            act(
                                "t-carry-grief",
                                ("loss", "grief-counselling"),
                                ("grief-counsellor",),
                                ("d", 14, 42),
                                to="s-prenatal-diagnostics",
                                rel="after-end",
                                desc="Grief counselling while carrying to term.",
                            ),
                        ],
                        desc="If the parents decide to carry the pregnancy to term.",
                    ),
                ],
                desc="Both branches are offered; the parents decide, the support continues "
                "whatever the decision. Cancel the requests of the branch not taken.",
                select="exactly-one",
                required="must",
            ),
            act(
                "t-peer-contact",
                ("loss", "peer-contact"),
                ("self-help-group-worker", "peer-expert"),
                ("d", 14, 42),
                to="s-prenatal-diagnostics",
                rel="after-end",
                desc="Peer contact and grief counselling around the termination or the birth.",
            ),
            act(
                "t-sick-note",
                ("loss", "sick-note"),
                ("general-practitioner",),
                ("d", 14, 28),
                to="s-prenatal-diagnostics",
                rel="after-end",
                domain="administrative",
                desc="Sick notes for both parents.",
            ),
            act(
                "t-legal",
                ("loss", "legal-arrangements"),
                ("social-worker",),
                ("d", 14, 42),
                to="s-prenatal-diagnostics",
                rel="after-end",
                desc="Practical administrative support and legal arrangements.",
            ),
            act(
                "t-death-certificate",
                ("loss", "death-certificate"),
                ("social-worker",),
                ("d", 14, 42),
                to="s-prenatal-diagnostics",
                rel="after-end",
                desc="Death certificate, where the law requires it.",
            ),
            act(
                "t-birth-declaration",
                ("loss", "birth-declaration"),
                ("social-worker",),
                ("d", 14, 42),
                to="s-prenatal-diagnostics",
                rel="after-end",
                desc="Birth declaration, where the law requires it.",
            ),
        ],
    )
    follow_up = phase_group(
        "follow-up",
        "follow-up",
        [
            act(
                "f-medical",
                ("loss", "medical-follow-up"),
                ("gynaecologist", "specialist-physician"),
                ("wk", 6, 10),
                to="s-prenatal-diagnostics",
                rel="after-end",
                desc="Medical follow-up (gynaecology and genetics).",
            ),
            act(
                "f-future",
                ("loss", "future-pregnancy-advice"),
                ("gynaecologist", "specialist-physician"),
                ("wk", 6, 10),
                to="s-prenatal-diagnostics",
                rel="after-end",
                desc="Advice for the next pregnancies (genetic counselling).",
            ),
            act(
                "f-remembrance-card",
                ("loss", "remembrance-card"),
                ("midwife",),
                ("wk", 4, 8),
                to="s-prenatal-diagnostics",
                rel="after-end",
                desc="Remembrance cards (crucial for the parents).",
            ),
            act(
                "f-peer-contact",
                ("loss", "peer-contact"),
                ("self-help-group-worker", "peer-expert"),
                ("wk", 4, 10),
                to="s-prenatal-diagnostics",
                rel="after-end",
                desc="Peer contact (crucial for the parents).",
            ),
            act(
                "f-kraamzorg",
                ("loss", "kraamzorg-referral"),
                ("midwife",),
                ("wk", 2, 6),
                to="s-prenatal-diagnostics",
                rel="after-end",
                desc="Referral to maternity home care (kraamzorg).",
            ),
            act(
                "f-municipal",
                ("loss", "municipal-service-referral"),
                ("social-worker",),
                ("wk", 2, 6),
                to="s-prenatal-diagnostics",
                rel="after-end",
                desc="Referral to municipal services and other resources.",
            ),
            act(
                "f-long-term",
                ("loss", "long-term-support-referral"),
                ("midwife", "social-worker"),
                ("wk", 6, 12),
                to="s-prenatal-diagnostics",
                rel="after-end",
                desc="Referral to long-term support (perinatal psychiatry often meets these "
                "parents again at a new pregnancy).",
            ),
        ],
    )
    title = names("pathway", "pregnancy-loss-congenital-anomaly")
    return plan(
        "pd-loss-congenital-anomaly",
        title,
        {
            "en": "Care pathway for loss after a congenital or genetic anomaly: from the "
            "suspicion (prenatal diagnostics, a trusted person, on-call services) and the "
            "diagnosis (case manager, grief counselling) to the decision point between "
            "termination and carrying to term, with support whatever the decision and both "
            "partners involved, and the follow-up (seed S000 scenario 3, S002).",
            "nl-BE": "Zorgpad bij verlies na een congenitale of genetische afwijking: van de "
            "verdenking (prenatale diagnostiek, een vertrouwenspersoon, wachtdiensten) en de "
            "diagnose (casemanager, rouwbegeleiding) tot het beslissingsmoment tussen "
            "zwangerschapsafbreking en uitdragen, met steun ongeacht de beslissing en beide "
            "partners betrokken, en de opvolging (S000 scenario 3, S002).",
            "fr-BE": "Trajet de soins en cas de perte après une anomalie congénitale ou "
            "génétique : de la suspicion (diagnostic prénatal, une personne de confiance, services "
            "de garde) et du diagnostic (case manager, accompagnement du deuil) jusqu'à la "
            "décision entre interruption de grossesse et poursuite jusqu'au terme, avec un "
            "soutien quelle que soit la décision et les deux partenaires impliqués, puis le "
            "suivi (S000 scénario 3, S002).",
        },
        [("pathway", "pregnancy-loss-congenital-anomaly"), ("scenario", s)],
        [
            pathway_group(
                s,
                title,
                [
                    loss_anchor(
                        s,
                        {
                            "en": "Anomaly suspected",
                            "nl-BE": "Vermoeden van een afwijking",
                            "fr-BE": "Suspicion d'une anomalie",
                        },
                        "the anomaly was suspected",
                    ),
                    suspicion,
                    diagnosis,
                    decision,
                    follow_up,
                    cross_group(s),
                ],
            )
        ],
        LOSS_GOALS,
    )


# -- the 13 per-indicator pathways (skeleton; the content is the expert panels', domain.md 8.4) ----

INDICATOR_SERVICES = {
    # indicator -> (organisation type to look for in the social map, what to look for)
    "country-of-birth": ("welfare-organisation", "integration and newcomer support"),
    "education": ("huis-van-het-kind", "parenting and education support"),
    "anxiety": ("cgg", "mental-health care (first-line psychologist or CGG)"),
    "employment-status": ("ocmw", "work and income support"),
    "partner-employment-status": ("ocmw", "work and income support for the partner"),
    "communication": ("welfare-organisation", "interpreting and intercultural mediation"),
    "income": ("ocmw", "financial and social assistance"),
    "social-support": ("huis-van-het-kind", "parent groups and social support"),
    "residence-status": ("caw", "legal and residence-status advice"),
    "depression": ("cgg", "mental-health care (first-line psychologist or CGG)"),
    "housing": ("ocmw", "housing assistance"),
    "substance-use": ("addiction-service", "addiction care"),
    "violence": ("caw", "family-violence support"),
}


def pd_indicator(indicator: str) -> dict[str, Any]:
    pathway = f"vulnerability-{indicator}"
    org, looking_for = INDICATOR_SERVICES[indicator]
    indicator_name = names("indicator", indicator)
    flagged = (
        f"%flaggedIndicators contains '{indicator}'",
        f"the {indicator} indicator is flagged in her screening (its latest indicator Observation)",
    )
    actions = [
        anchor(
            "anchor",
            {"en": "Pathway started", "nl-BE": "Zorgpad gestart", "fr-BE": "Trajet démarré"},
            "%today",
            "the date the pathway starts",
        ),
        act(
            "coordinator",
            ("step", "coordinator-assignment"),
            ("midwife", "social-worker"),
            ("d", 0, 7),
            desc="Name the professional who coordinates this pathway and is the family's "
            "contact person.",
        ),
        act(
            "social-map-referral",
            ("step", "social-map-referral"),
            (f"org:{org}",),
            ("d", 0, 14),
            desc=f"Look up in the social map a service for {looking_for} near the family "
            f"(organisation type: {concept('organization', org)['display']}) and propose it.",
        ),
        act(
            "warm-guidance",
            ("referral", "warm-guidance"),
            ("midwife", "social-worker"),
            ("d", 7, 28),
            desc="Warm guidance: accompany the family to the service (a warm handover, not only "
            "an address).",
        ),
        act(
            "follow-up-check",
            ("step", "follow-up-check"),
            ("midwife", "social-worker"),
            ("wk", 6),
            desc="Check whether the guidance was realised and record the outcome.",
        ),
    ]
    title = names("pathway", pathway)
    return plan(
        f"pd-vulnerability-{indicator}",
        title,
        {
            "en": f"BiB pathway when the indicator '{indicator_name['en']}' is flagged in the "
            "screening: a coordinator, a social-map referral suggestion, warm guidance and a "
            "follow-up check. The content of the step is the programme's (skeleton, domain.md "
            "8.4).",
            "nl-BE": f"BiB-zorgpad wanneer de indicator '{indicator_name['nl-BE']}' bij de "
            "screening gesignaleerd is: een coördinator, een doorverwijssuggestie uit de sociale "
            "kaart, warme doorverwijzing en een opvolgcontrole.",
            "fr-BE": f"Trajet BiB lorsque l'indicateur « {indicator_name['fr-BE']} » est signalé "
            "lors du dépistage : un coordinateur, une suggestion d'orientation depuis la carte "
            "sociale, une orientation accompagnée et une vérification du suivi.",
        },
        [("pathway", pathway)],
        [
            group(
                "pathway",
                title,
                actions,
                cond=flagged,
                inputs=[data_requirement("Observation", "code", "indicator", indicator)],
            )
        ],
    )


# -- stepped and matched perinatal mental-health care (domain.md 4b.2) -----------------------------


def pd_pmh_stepped_care() -> dict[str, Any]:
    def when(*levels: str) -> tuple[str, str]:
        values = " | ".join(f"'{lvl}'" for lvl in levels)
        return (f"%severity in ({values})", "severity " + " or ".join(levels))

    actions = [
        anchor(
            "anchor",
            {"en": "Severity assessed", "nl-BE": "Ernst ingeschat", "fr-BE": "Sévérité évaluée"},
            "%today",
            "the date the care starts",
        ),
        act(
            "continuity",
            ("principle", "wraparound"),
            ("midwife", "general-practitioner"),
            ("d", 0, 365),
            codes=(("line", "line-1"),),
            desc="The line 0/1 provider stays involved throughout: the family's contact person, "
            "follow-up contacts while a line 2/3 module runs, and part of the evaluations.",
            title={
                "en": "Line 0/1 provider stays involved",
                "nl-BE": "Zorgverlener uit lijn 0/1 blijft betrokken",
                "fr-BE": "Le prestataire de ligne 0/1 reste impliqué",
            },
        ),
        group(
            "mild",
            names("severity", "mild"),
            [
                act(
                    "basic-care",
                    ("line", "basic"),
                    ("midwife", "general-practitioner"),
                    ("d", 0, 14),
                    codes=(("principle", "stepped"),),
                    desc="Basic care: orienting conversations, psycho-education and "
                    "strengthening the network (proportionate universalism).",
                ),
                act(
                    "first-line-psychologist",
                    ("loss", "first-line-psychologist-referral"),
                    ("first-line-psychologist",),
                    ("d", 0, 28),
                    desc="Short intervention by a first-line psychologist.",
                    title={
                        "en": "Referral to a first-line psychologist",
                        "nl-BE": "Doorverwijzing naar een eerstelijnspsycholoog",
                        "fr-BE": "Orientation vers un psychologue de première ligne",
                    },
                ),
            ],
            cond=when("mild"),
        ),
        group(
            "moderate",
            names("severity", "moderate"),
            [
                act(
                    "line-2",
                    ("line", "line-2"),
                    ("psychologist", "psychiatrist-perinatal", "org:cgg"),
                    ("d", 0, 14),
                    codes=(("principle", "stepped"), ("nccmh", "pmh-professional-assessment")),
                    desc="Appeal to line 2 (e.g. CGG modules): assessment and treatment by a "
                    "perinatal mental-health professional.",
                )
            ],
            cond=when("moderate"),
        ),
        group(
            "severe",
            names("severity", "severe"),
            [
                act(
                    "line-3",
                    ("line", "line-3"),
                    ("psychiatrist-perinatal", "org:pmht"),
                    ("d", 0, 7),
                    codes=(("principle", "matched"), ("pmh", "specialist-clinical-assessment")),
                    desc="Direct appeal to line 3 (perinatal mental-health team, mother-baby "
                    "unit modules): matched care.",
                    prio="urgent",
                )
            ],
            cond=when("severe"),
        ),
        group(
            "acute",
            names("severity", "acute"),
            [
                act(
                    "urgent-assessment",
                    ("nccmh", "urgent-assessment"),
                    ("psychiatrist-perinatal", "org:mobile-crisis-team"),
                    ("d", 0, 1),
                    codes=(("pmh", "specialist-clinical-assessment-urgent"),),
                    desc="Urgent assessment 'met bekwame spoed' (e.g. suicidal thoughts of the "
                    "mother): mobile crisis team or perinatal psychiatrist.",
                    prio="stat",
                )
            ],
            cond=when("acute"),
        ),
        group(
            "step-down",
            {
                "en": "After line 3",
                "nl-BE": "Na lijn 3",
                "fr-BE": "Après la ligne 3",
            },
            [
                {
                    **act(
                        "line-2-after-line-3",
                        ("line", "line-2"),
                        ("psychologist", "org:cgg"),
                        ("wk", 8, 12),
                        to="line-3",
                        rel="after-end",
                        codes=(("principle", "stepped"),),
                        desc="After the line-3 treatment, further therapeutic support at line 2 "
                        "(stepped down).",
                        title={
                            "en": "Step down to line 2",
                            "nl-BE": "Afschalen naar lijn 2",
                            "fr-BE": "Retour vers la ligne 2",
                        },
                    ),
                }
            ],
            cond=when("severe", "acute"),
        ),
        act(
            "joint-evaluation",
            ("step", "joint-evaluation"),
            ("midwife", "general-practitioner"),
            ("wk", 6, 8),
            desc="Evaluate the care together with the line 0/1 provider.",
            cond=(
                "%severity in ('moderate' | 'severe' | 'acute')",
                "specialised care (line 2 or 3) is involved",
            ),
        ),
    ]
    # the step-down relates to whichever of line 3 or the urgent assessment applies
    step_down = actions[6]["action"][0]
    step_down["relatedAction"].append(
        {
            "actionId": "urgent-assessment",
            "relationship": "after-end",
            "offsetRange": {"low": duration("wk", 8), "high": duration("wk", 12)},
        }
    )
    return plan(
        "pd-pmh-stepped-care",
        {
            "en": "Stepped and matched perinatal mental-health care",
            "nl-BE": "Getrapte en gematchte perinatale geestelijke gezondheidszorg",
            "fr-BE": "Soins de santé mentale périnatale échelonnés et adaptés",
        },
        {
            "en": "Line-linking rules for perinatal mental health: mild problems to basic care "
            "(with a first-line psychologist), moderate to line 2, severe directly to line 3, "
            "acute to an urgent assessment; after line 3 a step down to line 2; the line 0/1 "
            "provider stays involved throughout (S002:973-1013).",
            "nl-BE": "Regels voor het verbinden van de lijnen in de perinatale geestelijke "
            "gezondheidszorg: milde problemen naar basiszorg (met een eerstelijnspsycholoog), "
            "matige naar lijn 2, ernstige rechtstreeks naar lijn 3, acute naar een dringende "
            "inschatting; na lijn 3 afschalen naar lijn 2; de zorgverlener uit lijn 0/1 blijft "
            "betrokken (S002:973-1013).",
            "fr-BE": "Règles d'articulation des lignes en santé mentale périnatale : problèmes "
            "légers vers les soins de base (avec un psychologue de première ligne), modérés vers "
            "la ligne 2, sévères directement vers la ligne 3, aigus vers une évaluation urgente ; "
            "après la ligne 3, retour vers la ligne 2 ; le prestataire de ligne 0/1 reste "
            "impliqué (S002:973-1013).",
        },
        [("pathway", "pmh-specialised")],
        [
            group(
                "pathway",
                {
                    "en": "Stepped and matched care",
                    "nl-BE": "Getrapte en gematchte zorg",
                    "fr-BE": "Soins échelonnés et adaptés",
                },
                actions,
                cond=(
                    "%severity.exists()",
                    "a perinatal mental-health severity is known for her: an assessment (an "
                    "Observation valued with a bib-pmh-severity code) or EPDS, PHQ-9 or GAD-7 "
                    "totals that the severity rules classify",
                ),
                inputs=[
                    {
                        "type": "Observation",
                        "codeFilter": [
                            {
                                "path": "code",
                                "code": [
                                    {"system": LOINC, "code": c}
                                    for c in ("99046-5", "44261-6", "70274-6")
                                ],
                            }
                        ],
                    },
                    {
                        "type": "Observation",
                        "codeFilter": [
                            {
                                "path": "value",
                                "code": [
                                    coding("severity", c)
                                    for c in ("mild", "moderate", "severe", "acute")
                                ],
                            }
                        ],
                    },
                ],
            )
        ],
        [
            goal(
                "right-level",
                {
                    "en": "Care at the level the problems need, without a gap between lines",
                    "nl-BE": "Zorg op het niveau dat de problemen vragen, zonder breuk tussen "
                    "de lijnen",
                    "fr-BE": "Des soins au niveau que les problèmes demandent, sans rupture "
                    "entre les lignes",
                },
            )
        ],
    )


# -- postnatal care (KCE report 232, domain.md 4c)


def pd_postnatal() -> dict[str, Any]:
    before_birth = ("%birthDate.empty()", "she has not given birth yet")
    actions = [
        anchor(
            "edd",
            {
                "en": "Estimated due date",
                "nl-BE": "Vermoedelijke bevallingsdatum",
                "fr-BE": "Date présumée de l'accouchement",
            },
            "%dueDate",
            "the estimated due date: an Observation LOINC 11778-8 (delivery date, estimated) "
            "for her, or the dueDate parameter",
            cond=before_birth[0],
        ),
        anchor(
            "birth",
            {"en": "Birth", "nl-BE": "Geboorte", "fr-BE": "Naissance"},
            "iif(%birthDate.exists(), %birthDate, %dueDate)",
            "the birth date or, before the birth, the estimated due date: a delivery record "
            "(Procedure SNOMED CT 236973005 or Observation LOINC 93857-1), an Observation LOINC "
            "11778-8, or the birthDate / dueDate parameter",
        ),
        group(
            "prenatal",
            {
                "en": "Before the birth",
                "nl-BE": "Voor de geboorte",
                "fr-BE": "Avant la naissance",
            },
            [
                act(
                    "coordinator",
                    ("postnatal", "coordinator-assignment"),
                    ("midwife", "gynaecologist", "general-practitioner"),
                    ("wk", 26, 30),
                    to="edd",
                    rel="before-start",
                    desc="A perinatal care coordinator, the fixed contact person, from early in "
                    "pregnancy.",
                    goal=("seamless",),
                ),
                act(
                    "preparation",
                    ("postnatal", "prenatal-postnatal-preparation"),
                    ("midwife",),
                    ("wk", 12, 24),
                    to="edd",
                    rel="before-start",
                    desc="Inform about the length of stay, discharge criteria and home care; "
                    "record the parents' preferences; detect risks and vulnerability.",
                ),
                act(
                    "care-plan",
                    ("postnatal", "postnatal-care-plan"),
                    ("midwife",),
                    ("wk", 6, 8),
                    to="edd",
                    rel="before-start",
                    desc="The individual postnatal care plan, drawn up with the parents before "
                    "the birth (a living document): expected stay, paediatric check at day "
                    "7-10, gynaecological check at 6 weeks, the network's contact details, who "
                    "to notify at discharge.",
                    goal=("seamless",),
                ),
                act(
                    "short-stay",
                    ("postnatal", "short-stay-eligibility"),
                    ("midwife",),
                    ("wk", 4, 6),
                    to="edd",
                    rel="before-start",
                    desc="Postnatal checklist: is a short stay suitable?",
                ),
            ],
            cond=before_birth,
        ),
        act(
            "hospital-stay",
            ("postnatal", "hospital-stay-max-72h"),
            ("midwife", "paediatrician"),
            ("d", 0),
            to="birth",
            length=("h", 72),
            desc="Postnatal stay of at most 72 hours after an uncomplicated birth; paediatrician "
            "contact in the first 24 hours and before discharge.",
        ),
        act(
            "discharge",
            ("postnatal", "discharge-procedure"),
            ("midwife",),
            ("d", 0),
            to="hospital-stay",
            rel="concurrent-with-end",
            desc="Needs assessment of mother and child; appointments for the first home visit "
            "and the paediatric check; kraamhulp if wanted.",
        ),
        act(
            "notify-gp",
            ("postnatal", "discharge-notification-gp"),
            ("midwife",),
            ("d", 0),
            to="hospital-stay",
            rel="concurrent-with-end",
            desc="Inform the GP of the discharge and the midwife's appointments.",
        ),
        act(
            "home-visit-24h",
            ("postnatal", "home-visit-24h"),
            ("midwife",),
            ("d", 0, 1),
            to="hospital-stay",
            rel="after-end",
            desc="First home visit by the midwife (or GP) within 24 hours after discharge, "
            "whatever the length of stay.",
            prio="urgent",
            goal=("seamless",),
        ),
        act(
            "home-visits",
            ("postnatal", "home-visit-follow-up"),
            ("midwife",),
            ("d", 2, 10),
            to="birth",
            desc="Further home visits depending on the length of stay, ideally up to day 10.",
        ),
        act(
            "reachable",
            ("postnatal", "midwife-24-7-line"),
            ("midwife",),
            ("d", 0, 10),
            to="birth",
            desc="A midwife reachable 24/7 during the first ten days.",
        ),
        act(
            "neonatal-screening",
            ("postnatal", "neonatal-screening-verification"),
            ("midwife",),
            ("d", 0, 5),
            to="birth",
            desc="Verify and register every neonatal screening (incl. jaundice).",
        ),
        act(
            "paediatric-check",
            ("postnatal", "paediatric-check-d7-10"),
            ("paediatrician", "general-practitioner"),
            ("d", 7, 10),
            to="birth",
            desc="The baby is seen by a physician, preferably a paediatrician, between day 7 "
            "and 10; the GP is informed if not providing the care.",
        ),
        act(
            "kraamhulp",
            ("postnatal", "kraamhulp"),
            ("maternity-care-assistant",),
            ("d", 0, 10),
            to="birth",
            desc="Maternity home help (household, childcare, breastfeeding support) in tandem "
            "with the midwife, if wanted.",
            required="could",
        ),
        act(
            "kg-visit",
            ("postnatal", "kg-one-home-visit"),
            ("kg-consultant",),
            ("wk", 2),
            to="birth",
            desc="Home visit by Kind en Gezin / ONE / DKF.",
        ),
        act(
            "gynaecological-check",
            ("postnatal", "gynaecological-check-6w"),
            ("gynaecologist",),
            ("wk", 6),
            to="birth",
            desc="Gynaecological check at 6 weeks.",
        ),
        act(
            "parent-group",
            ("postnatal", "parent-group"),
            ("midwife",),
            ("wk", 2, 52),
            to="birth",
            desc="Parent groups (e.g. CenteringParenting) during the first year.",
            required="could",
        ),
        group(
            "vulnerable",
            {
                "en": "For vulnerable families",
                "nl-BE": "Voor kwetsbare gezinnen",
                "fr-BE": "Pour les familles vulnérables",
            },
            [
                act(
                    "telephone-follow-up",
                    ("postnatal", "telephone-follow-up"),
                    ("midwife",),
                    ("d", 10, 42),
                    to="birth",
                    desc="Telephone follow-up by a midwife.",
                ),
                act(
                    "buddy",
                    ("postnatal", "perinatal-buddy"),
                    ("buddy", "social-worker"),
                    ("mo", 0, 18),
                    to="birth",
                    desc="A perinatal buddy for 18 months.",
                ),
            ],
            cond=(
                "%flaggedIndicators.exists()",
                "an indicator of her screening is flagged",
            ),
        ),
    ]
    return plan(
        "pd-postnatal-short-stay",
        {
            "en": "Postnatal care (KCE)",
            "nl-BE": "Postnatale zorg (KCE)",
            "fr-BE": "Soins postnatals (KCE)",
        },
        {
            "en": "The KCE postnatal pathway: a coordinator and a postnatal care plan before the "
            "birth, a stay of at most 72 hours, a midwife home visit within 24 hours after "
            "discharge, a midwife reachable 24/7, the GP informed at discharge, a paediatric "
            "check at day 7-10 and a gynaecological check at 6 weeks. Dates follow from the "
            "due date, and from the birth once it is recorded (KCE report 232).",
            "nl-BE": "Het postnatale zorgpad van het KCE: een coördinator en een postnataal "
            "zorgplan voor de geboorte, een verblijf van hoogstens 72 uur, een huisbezoek door "
            "de vroedvrouw binnen 24 uur na ontslag, een vroedvrouw die 24/7 bereikbaar is, de "
            "huisarts geïnformeerd bij ontslag, een pediatrisch onderzoek op dag 7-10 en een "
            "gynaecologische controle na 6 weken. De data volgen uit de vermoedelijke "
            "bevallingsdatum, en uit de geboorte zodra die geregistreerd is (KCE-rapport 232).",
            "fr-BE": "Le trajet postnatal du KCE : un coordinateur et un plan de soins postnatal "
            "avant la naissance, un séjour de 72 heures au plus, une visite à domicile de la "
            "sage-femme dans les 24 heures après la sortie, une sage-femme joignable 24h/24, le "
            "médecin généraliste informé à la sortie, un examen pédiatrique au jour 7-10 et un "
            "contrôle gynécologique à 6 semaines. Les dates découlent de la date présumée de "
            "l'accouchement, puis de la naissance dès qu'elle est enregistrée (rapport KCE 232).",
        },
        [("pathway", "postnatal-short-stay")],
        actions,
        [
            goal(
                "seamless",
                {
                    "en": "A seamless transfer from the maternity to home care",
                    "nl-BE": "Een naadloze overgang van de materniteit naar de thuiszorg",
                    "fr-BE": "Une transition sans rupture de la maternité aux soins à domicile",
                },
                ("wk", 6),
            )
        ],
    )


# -- the screening schedule (screening issue; domain.md 2.3)


def pd_screening_schedule() -> dict[str, Any]:
    actions = [
        anchor(
            "edd",
            {
                "en": "Estimated due date",
                "nl-BE": "Vermoedelijke bevallingsdatum",
                "fr-BE": "Date présumée de l'accouchement",
            },
            "%dueDate",
            "the estimated due date: an Observation LOINC 11778-8 (delivery date, estimated) "
            "for her, or the dueDate parameter",
        ),
        anchor(
            "birth",
            {"en": "Birth", "nl-BE": "Geboorte", "fr-BE": "Naissance"},
            "iif(%birthDate.exists(), %birthDate, %dueDate)",
            "the birth date or, before the birth, the estimated due date",
        ),
        act(
            "first-contact",
            ("screening", "first-contact-le-16w"),
            ("midwife", "gynaecologist", "general-practitioner"),
            ("wk", 24, 40),
            to="edd",
            rel="before-start",
            codes=(("instrument", "bib-pro-psychosocial"),),
            desc="Psychosocial assessment with the BiB tool at the first perinatal contact, at "
            "the latest at 16 weeks.",
        ),
        act(
            "weeks-20-21",
            ("screening", "gestation-20-21w"),
            ("midwife", "gynaecologist"),
            ("wk", 19, 20),
            to="edd",
            rel="before-start",
            codes=(("instrument", "pmg-protocol-anxiety-depression"),),
            desc="Screening for anxiety and depression at 20-21 weeks (Flemish protocol: "
            "Whooley + GAD-2, then EPDS + GAD-7 if indicated).",
            cond=(
                "%gestationalAgeWeeks.empty() or %gestationalAgeWeeks <= 21",
                "she is not past 21 weeks",
            ),
        ),
        act(
            "re-evaluation",
            ("screening", "repeated-during-pregnancy"),
            ("midwife",),
            ("wk", 15, 16),
            to="edd",
            rel="before-start",
            codes=(("instrument", "bib-pro-psychosocial"),),
            desc="Re-evaluation of the psychosocial situation and of the agreed plan at about "
            "24 weeks.",
            cond=(
                "%gestationalAgeWeeks.empty() or %gestationalAgeWeeks <= 24",
                "she is not past 24 weeks",
            ),
        ),
        act(
            "postpartum-6w",
            ("screening", "postpartum-0-6w"),
            ("midwife", "general-practitioner", "gynaecologist"),
            ("wk", 6),
            to="birth",
            codes=(("instrument", "pmg-protocol-anxiety-depression"),),
            desc="Postnatal screening and detection at 6 weeks after the birth.",
        ),
        act(
            "extension-2y",
            ("screening", "postpartum-6w-2y"),
            ("kg-consultant", "general-practitioner", "paediatrician"),
            ("mo", 2, 24),
            to="birth",
            desc="Screening, detection and warm referral continued up to 2 years after the "
            "birth (parents and baby: regulation, development, attachment).",
        ),
    ]
    return plan(
        "pd-pmh-screening-detection",
        {
            "en": "Screening schedule",
            "nl-BE": "Screeningsschema",
            "fr-BE": "Calendrier de dépistage",
        },
        {
            "en": "The screening moments of a pregnancy as dated tasks: the psychosocial "
            "assessment at the first contact (at the latest at 16 weeks), anxiety and depression "
            "screening at 20-21 weeks, a re-evaluation, postnatal screening at 6 weeks and the "
            "extension up to 2 years after the birth.",
            "nl-BE": "De screeningsmomenten van een zwangerschap als gedateerde taken: het "
            "psychosociaal assessment bij het eerste contact (ten laatste op 16 weken), screening "
            "op angst en depressie op 20-21 weken, een herevaluatie, postnatale screening op 6 "
            "weken en de verlenging tot 2 jaar na de geboorte.",
            "fr-BE": "Les moments de dépistage d'une grossesse sous forme de tâches datées : "
            "l'évaluation psychosociale au premier contact (au plus tard à 16 semaines), le "
            "dépistage de l'anxiété et de la dépression à 20-21 semaines, une réévaluation, le "
            "dépistage postnatal à 6 semaines et l'extension jusqu'à 2 ans après la naissance.",
        },
        [("pathway", "pmh-screening-detection")],
        actions,
        [
            goal(
                "detected",
                {
                    "en": "Every vulnerability is detected in time and followed up",
                    "nl-BE": "Elke kwetsbaarheid wordt tijdig opgespoord en opgevolgd",
                    "fr-BE": "Chaque vulnérabilité est détectée à temps et suivie",
                },
            )
        ],
    )


# -- OperationDefinitions


def op_param(name: str, use: str, mn: int, mx: str, type_: str, doc: str) -> dict[str, Any]:
    return {"name": name, "use": use, "min": mn, "max": mx, "documentation": doc, "type": type_}


APPLY_COMMON = [
    op_param(
        "subject",
        "in",
        1,
        "1",
        "string",
        "The patient (Patient/[id]) the definition is "
        "applied to. This server applies a definition to one subject per call.",
    ),
    op_param(
        "encounter",
        "in",
        0,
        "1",
        "string",
        "The encounter (Encounter/[id]) of the subject in whose context the plan is made.",
    ),
    op_param(
        "practitioner",
        "in",
        0,
        "1",
        "string",
        "The practitioner (Practitioner or "
        "PractitionerRole) applying the plan: the plan's author and the requests' requester.",
    ),
    op_param(
        "organization",
        "in",
        0,
        "1",
        "string",
        "The organization applying the plan (author and requester when no practitioner is given).",
    ),
    op_param("userType", "in", 0, "1", "string", "Available to expressions as %userType."),
    op_param(
        "userLanguage",
        "in",
        0,
        "1",
        "string",
        "Language of the titles and descriptions (nl-BE, fr-BE, en); otherwise Accept-Language.",
    ),
    op_param("userTaskContext", "in", 0, "1", "string", "Available as %userTaskContext."),
    op_param("setting", "in", 0, "1", "string", "Available as %setting."),
    op_param("settingContext", "in", 0, "1", "string", "Available as %settingContext."),
    op_param(
        "url",
        "in",
        0,
        "1",
        "canonical",
        "BiB extension: at type level, the canonical URL of a stored definition to apply.",
    ),
    op_param("version", "in", 0, "1", "string", "BiB extension: the version of url."),
    op_param(
        "dueDate",
        "in",
        0,
        "1",
        "date",
        "BiB extension: the estimated due date, when the "
        "patient's data has none (Observation LOINC 11778-8).",
    ),
    op_param(
        "lossDate",
        "in",
        0,
        "1",
        "date",
        "BiB extension: the date of the pregnancy loss, "
        "overriding the recorded loss Condition's onset.",
    ),
    op_param(
        "birthDate",
        "in",
        0,
        "1",
        "date",
        "BiB extension: the date the baby was born, when "
        "the patient's data has no delivery record.",
    ),
]


def operation_definitions() -> list[dict[str, Any]]:
    common = {
        "version": VERSION,
        "status": "active",
        "kind": "operation",
        "experimental": False,
        "date": DATE,
        "publisher": "Born in Belgium Professionals",
        "affectsState": False,
    }
    plan_apply = {
        "resourceType": "OperationDefinition",
        "id": "PlanDefinition-apply",
        "url": f"{BIB}/OperationDefinition/PlanDefinition-apply",
        "name": "PlanDefinitionApply",
        "title": "Apply a care pathway (PlanDefinition) to a patient",
        **common,
        "description": "R4 PlanDefinition $apply: evaluates the applicability conditions and "
        "dynamic values (FHIRPath) over the patient's data as the caller may see it, turns "
        "relative timing into dates and returns a draft CarePlan (intent proposal) whose "
        "activities reference the generated RequestGroup, ServiceRequests and Tasks (contained); "
        "with output=transaction, a transaction Bundle that stores all of it. Missing data (a "
        "due date, a loss date) or a plan that does not apply gives an OperationOutcome (422) "
        "that says what is missing.",
        "code": "apply",
        "base": "http://hl7.org/fhir/OperationDefinition/PlanDefinition-apply",
        "resource": ["PlanDefinition"],
        "system": False,
        "type": True,
        "instance": True,
        "parameter": [
            op_param(
                "planDefinition",
                "in",
                0,
                "1",
                "PlanDefinition",
                "The plan definition to apply (type level only; or url).",
            ),
            *APPLY_COMMON,
            op_param(
                "output",
                "in",
                0,
                "1",
                "code",
                "BiB extension: careplan (default, the R4 "
                "result) or transaction (a transaction Bundle to POST to the base).",
            ),
            op_param(
                "return",
                "out",
                1,
                "1",
                "Resource",
                "The CarePlan (or, with output=transaction, the Bundle).",
            ),
        ],
    }
    activity_apply = {
        "resourceType": "OperationDefinition",
        "id": "ActivityDefinition-apply",
        "url": f"{BIB}/OperationDefinition/ActivityDefinition-apply",
        "name": "ActivityDefinitionApply",
        "title": "Apply an ActivityDefinition to a patient",
        **common,
        "description": "R4 ActivityDefinition $apply: the request (ServiceRequest, Task or "
        "CommunicationRequest, status draft, intent proposal) the definition describes for the "
        "patient, with its dynamic values evaluated.",
        "code": "apply",
        "base": "http://hl7.org/fhir/OperationDefinition/ActivityDefinition-apply",
        "resource": ["ActivityDefinition"],
        "system": False,
        "type": True,
        "instance": True,
        "parameter": [
            op_param(
                "activityDefinition",
                "in",
                0,
                "1",
                "ActivityDefinition",
                "The activity definition to apply (type level only; or url).",
            ),
            *APPLY_COMMON,
            op_param("return", "out", 1, "1", "Resource", "The request."),
        ],
    }
    everything = {
        "resourceType": "OperationDefinition",
        "id": "Patient-everything",
        "url": f"{BIB}/OperationDefinition/Patient-everything",
        "name": "PatientEverything",
        "title": "Everything the caller may see about a patient",
        **common,
        "description": "R4 Patient $everything: the patient and the resources of her Patient "
        "compartment that the caller may see (care relationship, consent and security labels "
        "apply), as a searchset Bundle with paging links. start/end filter by the R4 'date' "
        "search parameter where the type has one (resources without it are kept); _since by "
        "last update; _type limits the types.",
        "code": "everything",
        "base": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
        "resource": ["Patient"],
        "system": False,
        "type": False,
        "instance": True,
        "parameter": [
            op_param("start", "in", 0, "1", "date", "Care dates from this date."),
            op_param("end", "in", 0, "1", "date", "Care dates up to this date."),
            op_param("_since", "in", 0, "1", "instant", "Resources updated since this instant."),
            op_param("_type", "in", 0, "*", "code", "Only these resource types."),
            op_param("_count", "in", 0, "1", "integer", "Page size."),
            op_param("return", "out", 1, "1", "Bundle", "A searchset Bundle, paged."),
        ],
    }
    return [plan_apply, activity_apply, everything]


# -- writing


def dump(path: Path, resource: dict[str, Any]) -> None:
    path.write_text(json.dumps(resource, indent=2, ensure_ascii=False) + "\n")


def build() -> dict[str, dict[str, Any]]:
    """Every file of content/pathways/, by name."""
    KINDS.clear()
    DEFAULT_PERFORMERS.clear()
    plans = [
        pd_loss_early(),
        pd_loss_mors_in_utero(),
        pd_loss_congenital_anomaly(),
        *(pd_indicator(i) for i in INDICATOR_SERVICES),
        pd_pmh_stepped_care(),
        pd_postnatal(),
        pd_screening_schedule(),
    ]
    files: dict[str, dict[str, Any]] = {}
    for resource in plans:
        files[f"PlanDefinition-{resource['id']}.json"] = resource
    files["ActivityDefinitions.json"] = {
        "resourceType": "Bundle",
        "id": "bib-pathway-activity-definitions",
        "type": "collection",
        "entry": [{"fullUrl": r["url"], "resource": r} for r in activity_definitions()],
    }
    for resource in operation_definitions():
        files[f"OperationDefinition-{resource['id']}.json"] = resource
    return files


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    files = build()
    for old in OUT.glob("*.json"):
        if old.name not in files:
            old.unlink()
    for name, resource in files.items():
        dump(OUT / name, resource)
    print(f"wrote {len(files)} files to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
