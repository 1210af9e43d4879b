"""The referral demo: what a new user sees of the loop (fhir_server/demo/3x-referrals-*.json)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from fhir_server.app import ServerApp
from tests.conftest import TEST_BASE, make_settings
from tools.referral_demo import DEMO, build


def test_the_demo_files_are_what_the_generator_writes() -> None:
    for name, content in build().items():
        assert json.loads((DEMO / name).read_text(encoding="utf-8")) == content, name


async def test_a_new_user_sees_referrals_in_every_state_with_their_threads(tmp_path: Path) -> None:
    server = ServerApp(make_settings(tmp_path), load_demo=True)
    await server.startup()
    try:
        transport = httpx.ASGITransport(app=server)
        async with httpx.AsyncClient(transport=transport, base_url=TEST_BASE) as http:
            tasks = (await http.get("/Task?focus:missing=false&_count=100")).json()["entry"]
            referral_tasks = [
                e["resource"]
                for e in tasks
                if e["resource"]["focus"]["reference"].startswith("ServiceRequest/")
            ]
            statuses = {t["status"] for t in referral_tasks}
            assert statuses >= {
                "draft",
                "requested",
                "accepted",
                "rejected",
                "cancelled",
                "in-progress",
                "on-hold",
                "completed",
                "failed",
                "entered-in-error",
            }
            for task in referral_tasks:
                request_ref = task["focus"]["reference"]
                request = (await http.get(f"/{request_ref}")).json()
                assert request["status"] != "draft" or task["status"] == "draft"
                if task["status"] in ("rejected", "cancelled", "failed", "on-hold"):
                    assert task["statusReason"]["text"]
                if task["status"] == "completed":
                    assert task["businessStatus"]["coding"][0]["code"] == "realised"
            # the loop of the warm handover, in its history, and its thread
            history = (await http.get("/Task/demo-referral-3-task/_history")).json()
            loop = [e["resource"]["status"] for e in reversed(history["entry"])]
            assert loop == ["requested", "accepted", "in-progress", "completed"]
            thread = (
                await http.get("/Communication?based-on=ServiceRequest/demo-referral-3")
            ).json()
            assert len(thread["entry"]) == 4
            back = (
                await http.get("/ServiceRequest?based-on=ServiceRequest/demo-referral-3")
            ).json()
            assert back["entry"][0]["resource"]["category"][0]["coding"][0]["code"] == (
                "back-referral"
            )
            # the profiles' referral went through the loop too
            grief = (await http.get("/Task/demo-bib-referral-task")).json()
            assert grief["status"] == "completed" and grief["meta"]["versionId"] == "4"
            report = await http.get("/Measure/bib-referral-outcomes/$evaluate-measure")
            assert report.status_code == 404  # the Measure ships with content, off in tests
    finally:
        await server.shutdown()


async def test_the_shipped_content_loads_and_validates(tmp_path: Path) -> None:
    """content/referrals and content/subscriptions: every resource is written at start-up (a
    shipped resource that does not validate would be skipped) and the topics parse."""
    from fhir_server.content.shipped import library_resources
    from fhir_server.subscriptions.topics import shipped_topics

    server = ServerApp(make_settings(tmp_path, load_content=True))
    await server.startup()
    try:
        for folder in ("referrals", "subscriptions"):
            for resource in library_resources(folder):
                stored = await server.store.current(resource["resourceType"], resource["id"])
                assert stored is not None and not stored.deleted, resource["id"]
                issues = server.service.validator.validate(resource, resource["resourceType"])
                assert not [i for i in issues if i.severity in ("error", "fatal")], resource["id"]
    finally:
        await server.shutdown()
    topics = shipped_topics()
    engine = server.service.subscriptions
    for topic in topics.values():
        assert engine.check_topic(topic) is None, topic.url
    assert set(engine.topics) == set(topics)
    assert set(topics) == {
        f"https://borninbelgiumpro.be/fhir/SubscriptionTopic/{name}"
        for name in (
            "referral-new",
            "referral-status",
            "referral-message",
            "careplan-change",
            "safety-alert",
        )
    }
    assert (
        topics["https://borninbelgiumpro.be/fhir/SubscriptionTopic/referral-new"]
        .triggers[0]
        .audience
        == "Task.owner"
    )
