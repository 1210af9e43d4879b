"""The other shipped pathways: the 13 per-indicator pathways apply only when their indicator is
flagged (read from the indicator Observations the screening extraction writes), stepped care picks
the line from the severity, the postnatal plan and the screening schedule take their dates from the
due date (and from the birth once it is recorded)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.pathways.conftest import (
    CARE_LINE,
    INDICATOR,
    Applied,
    apply,
    codes,
    create,
    dates,
    due_date,
    indicator,
    new_patient,
    ref,
    score,
    severity,
    today,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")
INDICATORS = [
    "country-of-birth", "education", "anxiety", "employment-status",
    "partner-employment-status", "communication", "income", "social-support",
    "residence-status", "depression", "housing", "substance-use", "violence",
]  # fmt: skip
ORG_TYPE = "https://borninbelgiumpro.be/fhir/CodeSystem/bib-organization-type"
PATHWAY = "https://borninbelgiumpro.be/fhir/CodeSystem/bib-care-pathway"
R_LABEL = {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}


# -- the 13 per-indicator pathways ----------------------------------------------------------------


@pytest.mark.parametrize("code", INDICATORS)
async def test_an_indicator_pathway_applies_only_when_its_indicator_is_flagged(client, code):
    pid = await new_patient(client)
    pd = f"pd-vulnerability-{code}"
    outcome = await apply(client, pd, pid, expect=422)
    assert f"the {code} indicator is flagged" in outcome["issue"][0]["diagnostics"]
    await create(client, indicator(pid, code, flagged=False))
    await apply(client, pd, pid, expect=422)
    others = [c for c in INDICATORS if c != code][:3]
    for other in others:
        await create(client, indicator(pid, other, flagged=True))
    await apply(client, pd, pid, expect=422)  # other indicators flagged: still not this one

    flagged = await create(client, indicator(pid, code, flagged=True, when="2026-09-15T10:00:00Z"))
    result = Applied(await apply(client, pd, pid))
    plan = result.careplan
    assert codes(plan["category"], PATHWAY) == [f"vulnerability-{code}"]
    assert plan["supportingInfo"] == [ref(f"Observation/{flagged['id']}")]
    requests = result.requests()
    assert set(requests) == {
        "coordinator",
        "social-map-referral",
        "warm-guidance",
        "follow-up-check",
    }
    referral = requests["social-map-referral"]
    assert referral["resourceType"] == "ServiceRequest"
    assert codes(referral["performerType"], ORG_TYPE)  # the service type to look for
    assert "social map" in referral["note"][0]["text"]
    # every request carries the pathway code, so labels follow a sensitive pathway
    for request in requests.values():
        reason = request["reasonCode"]
        reason = reason if isinstance(reason, list) else [reason]
        assert codes(reason, PATHWAY) == [f"vulnerability-{code}"]
    start = today()
    assert dates(requests["follow-up-check"]) == ((start + timedelta(weeks=6)).isoformat(),) * 2


@pytest.mark.parametrize("shape", ["boolean", "component", "interpretation"])
async def test_the_flag_shapes_the_screening_may_write(client, shape):
    pid = await new_patient(client)
    await create(client, indicator(pid, "housing", flagged=True, shape=shape))
    await apply(client, "pd-vulnerability-housing", pid)
    # a newer unflagged result un-flags the indicator
    await create(
        client,
        indicator(pid, "housing", flagged=False, shape=shape, when="2026-10-20T10:00:00+02:00"),
    )
    await apply(client, "pd-vulnerability-housing", pid, expect=422)


async def test_a_stored_sensitive_pathway_is_labelled_with_its_requests(client):
    pid = await new_patient(client)
    await create(client, indicator(pid, "violence"))
    bundle = await apply(client, "pd-vulnerability-violence", pid, output="transaction")
    response = await client.post("/", json=bundle)
    assert response.status_code == 200, response.text
    for entry in response.json()["entry"]:
        stored = (
            await client.get(
                "/" + entry["response"]["location"].split("/_history")[0].split("/fhir/")[-1]
            )
        ).json()
        # the open test server runs without the security plug-in's labeller; the pathway code
        # the labeller keys on must be on every stored resource that is not a Goal
        if stored["resourceType"] in ("CarePlan",):
            assert codes(stored["category"], PATHWAY) == ["vulnerability-violence"]
        elif stored["resourceType"] == "RequestGroup":
            assert codes(stored["reasonCode"], PATHWAY) == ["vulnerability-violence"]
        else:
            reason = stored["reasonCode"]
            reason = reason if isinstance(reason, list) else [reason]
            assert codes(reason, PATHWAY) == ["vulnerability-violence"]


# -- stepped and matched care ---------------------------------------------------------------------


def lines(result: Applied) -> list[str]:
    return sorted(c for r in result.requests().values() for c in codes(r.get("code"), CARE_LINE))


@pytest.mark.parametrize(
    ("level", "expected", "present", "absent"),
    [
        ("mild", ["basic"], {"basic-care", "first-line-psychologist"}, {"line-2", "line-3"}),
        ("moderate", ["line-2"], {"line-2", "joint-evaluation"}, {"line-3", "basic-care"}),
        ("severe", ["line-2", "line-3"], {"line-3", "line-2-after-line-3"}, {"line-2"}),
        ("acute", ["line-2"], {"urgent-assessment", "line-2-after-line-3"}, {"line-3"}),
    ],
)
async def test_stepped_care_picks_the_line_from_the_severity(
    client, level, expected, present, absent
):
    pid = await new_patient(client)
    await create(client, severity(pid, level))
    result = Applied(await apply(client, "pd-pmh-stepped-care", pid))
    assert lines(result) == expected
    assert present <= set(result.requests())
    assert not absent & set(result.requests())
    # line 0/1 stays involved throughout
    continuity = result.request("continuity")
    start = today()
    assert dates(continuity) == (start.isoformat(), (start + timedelta(days=365)).isoformat())
    assert "note" not in result.careplan  # a clinical assessment: nothing derived


async def test_step_down_is_dated_after_line_3(client):
    pid = await new_patient(client)
    await create(client, severity(pid, "severe"))
    result = Applied(await apply(client, "pd-pmh-stepped-care", pid))
    line3 = dates(result.request("line-3"))
    step_down = dates(result.request("line-2-after-line-3"))
    end3 = today() + timedelta(days=7)
    assert line3[1] == end3.isoformat()
    assert step_down == (
        (end3 + timedelta(weeks=8)).isoformat(),
        (end3 + timedelta(weeks=12)).isoformat(),
    )
    assert result.request("line-3")["priority"] == "urgent"


async def test_acute_is_an_urgent_assessment(client):
    pid = await new_patient(client)
    await create(client, severity(pid, "acute"))
    result = Applied(await apply(client, "pd-pmh-stepped-care", pid))
    urgent = result.request("urgent-assessment")
    assert urgent["priority"] == "stat"
    assert dates(urgent) == (today().isoformat(), (today() + timedelta(days=1)).isoformat())


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        ({"99046-5": 12}, "mild"),
        ({"99046-5": 15}, "moderate"),
        ({"70274-6": 16}, "moderate"),
        ({"44261-6": 22, "99046-5": 9}, "severe"),
    ],
)
async def test_severity_derived_from_scores_is_said(client, scores, expected):
    pid = await new_patient(client)
    for loinc, value in scores.items():
        await create(client, score(pid, loinc, value))
    result = Applied(await apply(client, "pd-pmh-stepped-care", pid))
    note = result.careplan["note"][0]["text"]
    assert f"Severity '{expected}' was derived from the screening scores" in note
    assert len(result.careplan["supportingInfo"]) == len(scores)


async def test_an_assessment_wins_over_scores_and_no_severity_means_no_plan(client):
    pid = await new_patient(client)
    outcome = await apply(client, "pd-pmh-stepped-care", pid, expect=422)
    assert "severity is known" in outcome["issue"][0]["diagnostics"]
    await create(client, score(pid, "99046-5", 5))  # below every threshold
    await apply(client, "pd-pmh-stepped-care", pid, expect=422)
    await create(client, score(pid, "99046-5", 18, when="2026-09-10"))
    await create(client, severity(pid, "mild", when="2026-09-11"))
    result = Applied(await apply(client, "pd-pmh-stepped-care", pid))
    assert lines(result) == ["basic"]


# -- postnatal care (KCE) --------------------------------------------------------------------------


async def test_postnatal_dates_follow_the_due_date(client):
    pid = await new_patient(client)
    due = today() + timedelta(weeks=20)
    await create(client, due_date(pid, due.isoformat()))
    result = Applied(await apply(client, "pd-postnatal-short-stay", pid))
    requests = result.requests()

    def day(n: int) -> str:
        return (due + timedelta(days=n)).isoformat()

    assert dates(requests["care-plan"]) == (day(-56), day(-42))  # before the birth
    assert dates(requests["coordinator"]) == (day(-210), day(-182))
    assert dates(requests["hospital-stay"]) == (day(0), day(3))  # at most 72 h
    assert dates(requests["discharge"]) == (day(3), day(3))
    assert dates(requests["notify-gp"]) == (day(3), day(3))  # GP informed at discharge
    assert dates(requests["home-visit-24h"]) == (day(3), day(4))  # within 24 h of discharge
    assert dates(requests["reachable"]) == (day(0), day(10))  # midwife 24/7
    assert dates(requests["paediatric-check"]) == (day(7), day(10))
    assert dates(requests["gynaecological-check"]) == (day(42), day(42))
    assert "telephone-follow-up" not in requests  # no flagged indicator
    assert result.request("home-visit-24h")["priority"] == "urgent"


async def test_after_the_birth_the_dates_follow_the_birth(client):
    pid = await new_patient(client)
    await create(client, due_date(pid, "2026-12-01"))
    await create(client, indicator(pid, "income"))
    result = Applied(await apply(client, "pd-postnatal-short-stay", pid, birthDate="2026-11-20"))
    requests = result.requests()
    assert "care-plan" not in requests and "coordinator" not in requests  # prenatal part done
    assert dates(requests["paediatric-check"]) == ("2026-11-27", "2026-11-30")
    assert dates(requests["gynaecological-check"]) == ("2027-01-01", "2027-01-01")
    assert dates(requests["buddy"]) == ("2026-11-20", "2028-05-20")  # 18 months, vulnerable


async def test_postnatal_without_a_due_date_names_it(client):
    pid = await new_patient(client)
    outcome = await apply(client, "pd-postnatal-short-stay", pid, expect=422)
    assert outcome["issue"][0]["code"] == "required"
    assert "the estimated due date" in outcome["issue"][0]["diagnostics"]
    assert "dueDate" in outcome["issue"][0]["diagnostics"]
    due = (today() + timedelta(weeks=10)).isoformat()
    result = Applied(await apply(client, "pd-postnatal-short-stay", pid, dueDate=due))
    assert dates(result.request("hospital-stay"))[0] == due


# -- the screening schedule ------------------------------------------------------------------------


async def test_a_pregnancy_gets_its_screening_moments_as_dated_tasks(client):
    pid = await new_patient(client)
    due = today() + timedelta(weeks=30)  # 10 weeks pregnant
    await create(client, due_date(pid, due.isoformat()))
    result = Applied(await apply(client, "pd-pmh-screening-detection", pid))
    requests = result.requests()
    assert set(requests) == {
        "first-contact",
        "weeks-20-21",
        "re-evaluation",
        "postpartum-6w",
        "extension-2y",
    }
    assert {r["resourceType"] for r in requests.values()} == {"Task"}

    def week(n: int) -> str:  # the day gestation reaches n weeks
        return (due - timedelta(weeks=40 - n)).isoformat()

    assert dates(requests["first-contact"]) == (week(0), week(16))
    assert dates(requests["weeks-20-21"]) == (week(20), week(21))
    assert dates(requests["re-evaluation"]) == (week(24), week(25))
    assert dates(requests["postpartum-6w"])[0] == (due + timedelta(weeks=6)).isoformat()
    assert dates(requests["extension-2y"])[1] == due.replace(year=due.year + 2).isoformat()


async def test_past_moments_are_left_out(client):
    pid = await new_patient(client)
    due = today() + timedelta(weeks=12)  # 28 weeks pregnant
    await create(client, due_date(pid, due.isoformat()))
    result = Applied(await apply(client, "pd-pmh-screening-detection", pid))
    assert "weeks-20-21" not in result.requests()
    assert "re-evaluation" not in result.requests()
    assert "first-contact" in result.requests()


async def test_screening_schedule_needs_a_due_date(client):
    pid = await new_patient(client)
    outcome = await apply(client, "pd-pmh-screening-detection", pid, expect=422)
    assert "the estimated due date" in outcome["issue"][0]["diagnostics"]
    assert INDICATOR  # the indicator fixtures come from the same module
    assert R_LABEL
