"""End-to-end: a JavaScript FHIR client (fhir-kit-client, pinned in tests/e2e/js/package-lock.json)
drives the real server over HTTP: tests/e2e/js/smoke.mjs.

``npm ci`` runs only when tests/e2e/js/node_modules is missing (it then takes about a second from
npm's cache, a few seconds from the registry). A missing node/npm or a failed install FAILS this
test with the reason: it is never skipped.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

JS_DIR = Path(__file__).parent / "js"
SMOKE = JS_DIR / "smoke.mjs"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"`{name}` is not on PATH: the JavaScript end-to-end test needs Node.js >= 20 and npm "
            "(install them, e.g. `apt-get install nodejs npm`)",
            pytrace=False,
        )
    return path


def _ensure_node_modules() -> None:
    installed = JS_DIR / "node_modules" / "fhir-kit-client" / "package.json"
    if installed.exists():
        return
    npm = _tool("npm")
    command = [npm, "ci", "--prefix", str(JS_DIR), "--prefer-offline", "--no-audit", "--no-fund"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(
            "`npm ci` for tests/e2e/js did not finish within 180 s: is the npm registry "
            "reachable (or fhir-kit-client in npm's cache)?",
            pytrace=False,
        )
    if result.returncode != 0 or not installed.exists():
        pytest.fail(
            f"`{' '.join(command)}` failed (exit {result.returncode}): could not install "
            "fhir-kit-client for the JavaScript end-to-end test; the npm registry must be "
            f"reachable or the package in npm's cache.\n{result.stdout[-2000:]}\n"
            f"{result.stderr[-3000:]}",
            pytrace=False,
        )


def test_fhir_kit_client_smoke(live_server) -> None:
    node = _tool("node")
    _ensure_node_modules()
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
