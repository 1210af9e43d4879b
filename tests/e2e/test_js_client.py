"""End-to-end: a JavaScript FHIR client (fhir-kit-client, pinned in tests/e2e/js/package-lock.json)
drives the real server over HTTP: tests/e2e/js/smoke.mjs.

Node.js and the pinned packages come from tests/e2e/node.py (``npm ci`` when they are missing);
a missing node/npm or a failed install FAILS this test with the reason: it is never skipped.
"""

from __future__ import annotations

import subprocess

from tests.e2e.node import JS_DIR, ensure_node_modules, tool

SMOKE = JS_DIR / "smoke.mjs"


def test_fhir_kit_client_smoke(live_server) -> None:
    node = tool("node")
    ensure_node_modules()
    result = subprocess.run(
        [node, str(SMOKE), live_server.base],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, (
        f"fhir-kit-client smoke test failed (exit {result.returncode}):\n{result.stdout}\n"
        f"{result.stderr}\nserver log tail:\n{live_server.log.read_text()[-2000:]}"
    )
    assert "smoke: all" in result.stdout
    for step in (
        "create",
        "read",
        "update",
        "patch (JSON Patch)",
        "search with paging (next links)",
        "transaction",
        "delete",
    ):
        assert f"ok   {step}" in result.stdout
