"""End-to-end: a SMART standalone launch in a real browser.

Headless Chromium (Debian's ``chromium``, driven by playwright-core) opens a small app built on
SMART's own JavaScript client (client-js: the browser bundle of ``fhirclient`` on npm, pinned and
integrity-checked in tests/e2e/node.py) served from another origin:
discovery, the sign-in page, the patient picker, the PKCE code exchange and FHIR reads all happen
in the browser, through CORS, against the real secure server process. This is how a BiB app in
a hospital portal would start. See tests/e2e/js/smart_browser.mjs and tests/e2e/js/smart-app.

Chromium must be installed (``.ci/run`` installs it); without it this test FAILS with the reason.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.conftest import LiveServer, free_port
from tests.e2e.node import JS_DIR, client_js_bundle, ensure_node_modules, tool
from tests.security.conftest import load_seed, midwife_user

SCOPE = "launch/patient openid fhirUser patient/*.rs"


def _clients(app_origin: str) -> dict:
    return {
        "clients": [
            {
                "client_id": "bib-browser-app",
                "type": "public",
                "redirect_uris": [f"{app_origin}/index.html"],
                "scope": SCOPE,
            }
        ],
        "users": [midwife_user()],
    }


def _secure_server(root: Path, app_origin: str) -> LiveServer:
    data = root / "data"
    data.mkdir()
    clients = root / "clients.json"
    clients.write_text(json.dumps(_clients(app_origin)))
    load_seed(root, data)
    return LiveServer(
        data,
        ["--no-demo", "--clients", str(clients)],
        env={"FHIR_LOAD_TERMINOLOGY": "false"},
        secure=True,
    )


def test_standalone_launch_with_client_js_in_chromium(tmp_path: Path) -> None:
    chromium = tool("chromium", "Debian's Chromium (`apt-get install chromium`)")
    node = tool("node")
    ensure_node_modules()
    bundle = client_js_bundle()
    app_port = free_port()
    server = _secure_server(tmp_path, f"http://127.0.0.1:{app_port}")
    server.start()
    try:
        result = subprocess.run(
            [
                node, str(JS_DIR / "smart_browser.mjs"), server.base, str(app_port),
                "midwife", "midwife-pw", chromium, str(bundle),
            ],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        log = server.log.read_text(errors="replace")
    finally:
        server.stop()
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{log[-2000:]}"
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["ok"], f"{seen}\nserver log tail:\n{log[-2000:]}"
    # the user went through the server's own pages, then back to the app with a code
    assert seen["signInTitle"] == "Sign in to BiB"
    assert seen["pickerTitle"] == "Select a patient"
    assert seen["pages"][0] == "/launch.html" and seen["pages"][-1] == "/index.html"
    assert "/auth/authorize" in seen["pages"]
    # the token carries the chosen patient and the granted scopes, with an OpenID identity
    assert seen["patientId"] == "p1"
    assert seen["patientName"] == "Alpha"
    assert set(seen["scope"].split()) >= {"launch/patient", "openid", "fhirUser", "patient/*.rs"}
    assert seen["needPatientBanner"] is True
    assert seen["hasIdToken"] is True
    assert seen["user"] == "Practitioner/mw-1"
    # FHIR reads with the access token: her observations, and nobody else's patient
    assert len(seen["observationSubjects"]) >= 3
    assert set(seen["observationSubjects"]) == {"Patient/p1"}
    assert seen["otherPatient"] in (403, 404)
    assert not seen["consoleErrors"] or all(
        "403" in e or "404" in e for e in seen["consoleErrors"]
    ), seen["consoleErrors"]
