"""The pregnancy- and perinatal-loss pathways: each scenario applied to a patient gives the phases,
actions, need domains, performer types and dates of seed S000 (domain.md 4a); the anomaly scenario
offers both branches of its decision point; the pathway starts from the recorded loss, never from a
screening; recording a loss makes a draft suggestion, never an active plan."""

from __future__ import annotations

import pytest

from tests.pathways.conftest import (
    CARE_LINE,
    EXT_NEED_DOMAIN,
    EXT_PHASE,
    INDICATOR,
    LOSS_ACTIVITY,
    NEED_DOMAIN,
    PHASE,
    PRACTITIONER_TYPE,
    SCENARIO,
    Applied,
    apply,
    codes,
    create,
    dates,
    extension_codes,
    indicator,
    loss_condition,
    new_patient,
    ref,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")
OPTION = "https://borninbelgiumpro.be/fhir/CodeSystem/bib-loss-management-option"
NEED_DOMAINS = {
    "medical",
    "psychosocial",
    "practical-organisational",
    "practical",
    "organisational",
    "administrative",
}
# every activity of the scenario tables of domain.md 4a, per scenario
SCENARIO_TABLES = {
    "early-pregnancy-loss": {
        "medical-explanation", "ultrasound", "emotional-acknowledgement", "peer-contact",
        "appointment-support", "sick-note", "midwife-continuous-presence", "see-fetus-option",
        "comfort-box", "home-needs-information", "medical-follow-up", "cause-discussion",
        "future-pregnancy-advice", "telephone-check-up", "support-organisation-referral",
        "household-support",
    },
    "mors-in-utero": {
        "medical-explanation", "bad-news-conversation", "midwife-continuous-presence",
        "shock-emotion-regulation-support", "trusted-person-assignment", "sick-note",
        "work-leave-arrangement", "repeat-ultrasound", "keepsake-case", "grief-counselling",
        "peer-contact", "support-organisation-referral", "death-certificate",
        "birth-declaration", "leave", "cause-discussion", "future-pregnancy-advice",
        "remembrance-card", "annual-remembrance", "long-term-support-referral",
        "kraamzorg-referral", "municipal-service-referral",
    },
    "congenital-anomaly-loss": {
        "medical-explanation", "prenatal-diagnostics-referral", "trusted-person-assignment",
        "on-call-availability", "case-manager-assignment", "grief-counselling", "peer-contact",
        "support-organisation-referral", "support-plan", "sick-note", "legal-arrangements",
        "medical-follow-up", "future-pregnancy-advice", "remembrance-card", "kraamzorg-referral",
        "municipal-service-referral", "psychological-help-decision-doubt",
        "psychological-help-post-top", "self-help-group-information", "partner-support",
    },
}  # fmt: skip
OPTIONS = {
    "early-pregnancy-loss": {"expectant", "medication", "curettage"},
    "mors-in-utero": {"await-spontaneous-delivery", "induced-delivery"},
    "congenital-anomaly-loss": {"termination", "continue-pregnancy"},
}
# the cross-scenario building blocks every loss pathway has
CROSS = {
    "partner-support", "leave", "sibling-school-support", "culturally-sensitive-communication",
    "self-help-group-information", "peer-contact", "support-organisation-referral",
    "annual-remembrance", "long-term-support-referral", "municipal-service-referral",
    "orienting-conversation", "first-line-psychologist-referral",
}  # fmt: skip
PLANS = {
    "early-pregnancy-loss": "pd-loss-early",
    "mors-in-utero": "pd-loss-mors-in-utero",
    "congenital-anomaly-loss": "pd-loss-congenital-anomaly",
}
PHASES = {
    "early-pregnancy-loss": ["diagnosis", "expulsion-delivery-termination", "follow-up"],
    "mors-in-utero": ["diagnosis", "expulsion-delivery-termination", "follow-up"],
    "congenital-anomaly-loss": [
        "suspicion",
        "diagnosis",
        "expulsion-delivery-termination",
        "follow-up",
    ],
}


async def loss_patient(client, scenario: str, **patient) -> tuple[str, dict]:
    pid = await new_patient(client, **patient)
    condition = await create(client, loss_condition(pid, scenario))
    return pid, condition


@pytest.mark.parametrize("scenario", list(PLANS))
async def test_each_scenario_gives_its_phases_actions_domains_performers_and_dates(
    client, scenario
):
    pid, condition = await loss_patient(client, scenario)
    result = Applied(await apply(client, PLANS[scenario], pid))
    plan = result.careplan
    assert plan["resourceType"] == "CarePlan"
    assert (plan["status"], plan["intent"]) == ("draft", "proposal")
    assert plan["instantiatesCanonical"] == [
        f"https://borninbelgiumpro.be/fhir/PlanDefinition/{PLANS[scenario]}|0.1.0"
    ]
    assert codes(plan["category"], SCENARIO) == [scenario]
    assert plan["addresses"] == [ref(f"Condition/{condition['id']}")]
    assert plan["subject"] == ref(f"Patient/{pid}")
    assert plan["period"]["start"] == "2026-10-01"
    assert extension_codes(plan, EXT_PHASE) == [PHASES[scenario][0]]

    requests = result.requests()
    phases = [
        code for action in result.actions.values() for code in codes(action.get("code"), PHASE)
    ]
    assert phases == PHASES[scenario]
    activities = {c for r in requests.values() for c in codes(r.get("code"), LOSS_ACTIVITY)}
    options = {c for r in requests.values() for c in codes(r.get("code"), OPTION)}
    assert activities >= SCENARIO_TABLES[scenario], SCENARIO_TABLES[scenario] - activities
    assert activities >= CROSS, CROSS - activities
    assert options == OPTIONS[scenario]
    for action_id, request in requests.items():
        domains = extension_codes(request, EXT_NEED_DOMAIN)
        assert domains and set(domains) <= NEED_DOMAINS, action_id
        if request["resourceType"] == "ServiceRequest":
            assert codes(request["category"], NEED_DOMAIN) == domains
            performer = [request.get("performerType")] if request.get("performerType") else []
        else:
            performer = request.get("performerType", [])
        assert performer, f"{action_id} has no performer type"
        assert request["status"] == "draft" and request["intent"] == "proposal"
        assert request["basedOn"] == [ref("#")]
        start, end = dates(request)
        assert "2026-10-01" <= start <= end, action_id
        if result.phase_of(action_id) is not None:
            assert extension_codes(request, EXT_PHASE) == [result.phase_of(action_id)]
    # the CarePlan lists every request as an activity, with its need domain
    referenced = [a["reference"]["reference"] for a in plan["activity"]]
    assert referenced[0] == "#rg"
    assert sorted(referenced[1:]) == sorted(
        result.actions[a]["resource"]["reference"] for a in requests
    )
    for activity in plan["activity"][1:]:
        assert extension_codes(activity, EXT_NEED_DOMAIN)
    # goals become Goal resources
    goals = [r for r in result.contained.values() if r["resourceType"] == "Goal"]
    assert len(goals) == 2 and plan["goal"] == [ref("#goal-1"), ref("#goal-2")]


async def test_early_loss_dates_follow_the_loss(client):
    pid, _ = await loss_patient(client, "early-pregnancy-loss")
    result = Applied(await apply(client, "pd-loss-early", pid))
    expected = {
        "d-explanation": ("2026-10-01", "2026-10-01"),
        "d-ultrasound": ("2026-10-01", "2026-10-03"),
        "d-sick-note": ("2026-10-01", "2026-10-02"),
        "f-telephone": ("2026-10-06", "2026-10-11"),
        "f-medical": ("2026-10-29", "2026-11-12"),
        "x-annual-remembrance": ("2027-10-01", "2027-10-01"),
    }
    for action_id, span in expected.items():
        assert dates(result.request(action_id)) == span, action_id
    # performer types and need domains of one action, exactly
    explanation = result.request("d-explanation")
    assert explanation["resourceType"] == "Task"
    assert [codes(p, PRACTITIONER_TYPE)[0] for p in explanation["performerType"]] == [
        "gynaecologist",
        "midwife",
        "general-practitioner",
    ]
    assert extension_codes(explanation, EXT_NEED_DOMAIN) == ["medical"]
    ultrasound = result.request("d-ultrasound")
    assert ultrasound["resourceType"] == "ServiceRequest"
    assert codes(ultrasound["performerType"], PRACTITIONER_TYPE) == ["gynaecologist"]
    # the management choice: one of three options
    choice = result.actions["e-management"]
    assert choice["selectionBehavior"] == "exactly-one"
    assert [a["id"] for a in choice["action"]] == ["e-expectant", "e-medication", "e-curettage"]
    # the annual remembrance repeats every year
    assert result.request("x-annual-remembrance")["resourceType"] == "Task"
    # the loss event anchors the dates; as a milestone that asks for nothing it is not a
    # RequestGroup action itself (R4 rqg-1: every action has a resource or actions)
    assert "anchor" not in result.actions
    assert all(("resource" in a) != ("action" in a) for a in result.actions.values())
    assert any(a.get("timingDateTime") == "2026-10-01" for a in result.actions.values())


async def test_anomaly_offers_both_branches_of_the_decision(client):
    pid, _ = await loss_patient(client, "congenital-anomaly-loss")
    result = Applied(await apply(client, "pd-loss-congenital-anomaly", pid))
    decision = result.actions["t-decision"]
    assert decision["selectionBehavior"] == "exactly-one"
    assert decision["requiredBehavior"] == "must"
    assert [a["id"] for a in decision["action"]] == ["t-termination", "t-carry"]
    top = result.request("t-top")
    carry = result.request("t-continue")
    assert codes(top["code"], OPTION) == ["termination"]
    assert codes(carry["code"], OPTION) == ["continue-pregnancy"]
    # support is given whatever the decision, both partners involved
    assert "t-support-plan" in result.actions and "t-both-partners" in result.actions
    partner = result.actions["t-both-partners"]
    assert result.request("t-both-partners")["resourceType"] == "Task"
    assert partner["title"]
    # chained offsets: diagnostics within a week, case manager after them, help after the TOP
    assert dates(result.request("s-prenatal-diagnostics")) == ("2026-10-01", "2026-10-08")
    assert dates(result.request("d-case-manager")) == ("2026-10-08", "2026-10-15")
    assert dates(top) == ("2026-10-22", "2026-11-05")
    assert dates(result.request("t-post-top")) == ("2026-11-05", "2026-11-19")
    assert result.phase_of("t-top") == "expulsion-delivery-termination"


async def test_interpreter_only_when_language_or_communication_needs_it(client):
    pid, _ = await loss_patient(
        client,
        "mors-in-utero",
        communication=[
            {
                "language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "pl"}]},
                "preferred": True,
            }
        ],
    )
    result = Applied(await apply(client, "pd-loss-mors-in-utero", pid))
    assert "x-interpreter" in result.actions
    assert result.request("x-interpreter")["priority"] == "urgent"

    dutch = [
        {
            "language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "nl-BE"}]},
            "preferred": True,
        }
    ]
    pid2, _ = await loss_patient(client, "mors-in-utero", communication=dutch)
    plan = await apply(client, "pd-loss-mors-in-utero", pid2)
    assert "x-interpreter" not in Applied(plan).actions
    await create(client, indicator(pid2, "communication"))
    plan = await apply(client, "pd-loss-mors-in-utero", pid2)
    assert "x-interpreter" in Applied(plan).actions


async def test_titles_in_the_users_language(client):
    pid, _ = await loss_patient(client, "early-pregnancy-loss")
    nl = await apply(client, "pd-loss-early", pid, userLanguage="nl-BE")
    fr = (
        await client.get(
            "/PlanDefinition/pd-loss-early/$apply",
            params={"subject": f"Patient/{pid}"},
            headers={"Accept-Language": "fr-BE, en;q=0.5"},
        )
    ).json()
    en = await apply(client, "pd-loss-early", pid)
    assert nl["title"] == "Zorgpad pril zwangerschapsverlies"
    assert fr["title"].startswith("Trajet")
    assert en["title"] == "Early pregnancy loss pathway"
    explanation = {
        lang: Applied(plan).request("d-explanation")["description"]
        for lang, plan in (("nl", nl), ("fr", fr), ("en", en))
    }
    assert explanation["nl"].startswith("Heldere medische uitleg")
    assert explanation["fr"].startswith("Explication médicale claire")
    assert explanation["en"].startswith("Clear medical explanation")


async def test_missing_loss_date_is_named(client):
    pid = await new_patient(client)
    await create(client, loss_condition(pid, "mors-in-utero", onset=None))
    outcome = await apply(client, "pd-loss-mors-in-utero", pid, expect=422)
    issue = outcome["issue"][0]
    assert issue["code"] == "required"
    assert "the date the fetal death was established" in issue["diagnostics"]
    assert "lossDate" in issue["diagnostics"]
    # the lossDate parameter fills the gap
    result = Applied(await apply(client, "pd-loss-mors-in-utero", pid, lossDate="2026-11-03"))
    assert dates(result.request("d-bad-news")) == ("2026-11-03", "2026-11-03")


async def test_no_loss_recorded_means_the_pathway_does_not_apply(client):
    pid = await new_patient(client)
    await create(client, indicator(pid, "depression"))
    outcome = await apply(client, "pd-loss-early", pid, expect=422)
    assert outcome["issue"][0]["code"] == "business-rule"
    assert "never from a screening" in outcome["issue"][0]["diagnostics"]
    # another scenario's loss does not make this one apply
    await create(client, loss_condition(pid, "mors-in-utero"))
    await apply(client, "pd-loss-early", pid, expect=422)


async def careplans(client, pid: str) -> list[dict]:
    bundle = (await client.get("/CarePlan", params={"patient": f"Patient/{pid}"})).json()
    return [e["resource"] for e in bundle.get("entry", ())]


async def test_recording_a_loss_suggests_the_pathway_as_a_draft(client):
    pid = await new_patient(client)
    condition = await create(
        client, loss_condition(pid, "congenital-anomaly-loss", verification="provisional")
    )
    [plan] = await careplans(client, pid)
    assert (plan["status"], plan["intent"]) == ("draft", "proposal")
    assert plan["instantiatesCanonical"][0].startswith(
        "https://borninbelgiumpro.be/fhir/PlanDefinition/pd-loss-congenital-anomaly"
    )
    assert plan["addresses"] == [ref(f"Condition/{condition['id']}")]
    assert any("Suggested by the server" in n["text"] for n in plan["note"])
    # the requests were stored with it, drafted, and based on it
    tasks = (
        await client.get("/Task", params={"based-on": f"CarePlan/{plan['id']}", "_count": "200"})
    ).json()
    services = (
        await client.get(
            "/ServiceRequest", params={"based-on": f"CarePlan/{plan['id']}", "_count": "200"}
        )
    ).json()
    stored = [e["resource"] for b in (tasks, services) for e in b.get("entry", ())]
    assert len(stored) == len(plan["activity"]) - 1
    assert {r["status"] for r in stored} == {"draft"}
    group = (await client.get(plan["activity"][0]["reference"]["reference"].join(["/", ""]))).json()
    assert group["resourceType"] == "RequestGroup"
    # a second loss record of the same pathway does not add a second suggestion
    await create(client, loss_condition(pid, "congenital-anomaly-loss"))
    assert len(await careplans(client, pid)) == 1


async def test_an_episode_of_care_with_the_scenario_also_starts_it(client):
    pid = await new_patient(client)
    await create(
        client,
        {
            "resourceType": "EpisodeOfCare",
            "status": "active",
            "type": [{"coding": [{"system": SCENARIO, "code": "mors-in-utero"}]}],
            "patient": ref(f"Patient/{pid}"),
            "period": {"start": "2026-10-05"},
        },
    )
    [plan] = await careplans(client, pid)
    assert plan["status"] == "draft" and plan["period"]["start"] == "2026-10-05"
    assert "pd-loss-mors-in-utero" in plan["instantiatesCanonical"][0]


async def test_a_screening_never_starts_a_loss_pathway(client):
    pid = await new_patient(client)
    for code in ("depression", "anxiety", "social-support"):
        await create(client, indicator(pid, code))
    await create(
        client,
        {
            "resourceType": "QuestionnaireResponse",
            "status": "completed",
            "subject": ref(f"Patient/{pid}"),
            "item": [
                {
                    "linkId": "loss",
                    "answer": [
                        {"valueCoding": {"system": SCENARIO, "code": "early-pregnancy-loss"}}
                    ],
                }
            ],
        },
    )
    await create(
        client,
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": SCENARIO, "code": "early-pregnancy-loss"}]},
            "subject": ref(f"Patient/{pid}"),
            "valueBoolean": True,
        },
    )
    assert await careplans(client, pid) == []


async def test_refuted_or_unrelated_conditions_suggest_nothing_and_a_later_coding_does(client):
    pid = await new_patient(client)
    await create(client, loss_condition(pid, "early-pregnancy-loss", verification="refuted"))
    other = await create(
        client,
        {
            "resourceType": "Condition",
            "subject": ref(f"Patient/{pid}"),
            "code": {"coding": [{"system": INDICATOR, "code": "housing"}]},
            "onsetDateTime": "2026-10-02",
        },
    )
    assert await careplans(client, pid) == []
    # the loss is coded later on the same Condition (data-modified)
    other["code"] = {"coding": [{"system": SCENARIO, "code": "early-pregnancy-loss"}]}
    response = await client.put(f"/Condition/{other['id']}", json=other)
    assert response.status_code == 200, response.text
    [plan] = await careplans(client, pid)
    assert plan["status"] == "draft"


async def test_care_team_and_line_codes_are_carried(client):
    pid, _ = await loss_patient(client, "early-pregnancy-loss")
    team = await create(
        client,
        {
            "resourceType": "CareTeam",
            "status": "active",
            "subject": ref(f"Patient/{pid}"),
            "participant": [{"member": ref("Practitioner/mw-x")}],
        },
    )
    plan = await apply(client, "pd-loss-early", pid)
    assert plan["careTeam"] == [ref(f"CareTeam/{team['id']}")]
    assert CARE_LINE  # imported for the stepped-care tests
