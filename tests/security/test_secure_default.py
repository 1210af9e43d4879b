"""A fresh ``fhir-server serve`` (demo content, no flags) requires tokens, and
``fhir-server demo-token`` gives a newcomer one; ``--insecure-open`` is loud."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import LiveServer


def demo_token(server: LiveServer, *args: str) -> str:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "fhir_server",
            "demo-token",
            "--data-dir",
            str(server.data_dir),
            "--port",
            str(server.port),
            *args,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    assert "curl" in done.stderr
    return done.stdout.strip()


def test_fresh_server_requires_tokens_and_demo_token_works(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    server = LiveServer(
        data, env={"FHIR_LOAD_TERMINOLOGY": "false"}, secure=True
    )  # with demo content
    server.start()
    try:
        assert httpx.get(f"{server.base}/Patient").status_code == 401
        assert httpx.get(f"{server.base}/metadata").status_code == 200
        assert "demo-token --data-dir" in server.log.read_text()
        role_a = {"Authorization": f"Bearer {demo_token(server)}"}
        patients = httpx.get(f"{server.base}/Patient", headers=role_a).json()
        seen_by_a = {e["resource"]["id"] for e in patients["entry"]}
        assert "demo-patient-1" in seen_by_a and "demo-patient-2" not in seen_by_a
        assert (
            httpx.get(
                f"{server.base}/Observation/demo-indicator-depression-1", headers=role_a
            ).status_code
            == 200
        )
        role_b = {"Authorization": f"Bearer {demo_token(server, '--role', 'B')}"}
        seen = httpx.get(f"{server.base}/Patient", headers=role_b).json()
        assert {"demo-patient-1", "demo-patient-2"} <= {e["resource"]["id"] for e in seen["entry"]}
        assert (
            httpx.get(
                f"{server.base}/Observation/demo-indicator-depression-1", headers=role_b
            ).status_code
            == 404
        )
        context = {"Authorization": f"Bearer {demo_token(server, '--patient', 'demo-patient-1')}"}
        assert (
            httpx.get(f"{server.base}/Observation/demo-weight-1", headers=context).status_code
            == 200
        )
    finally:
        server.stop()


def test_insecure_open_is_loud(tmp_path: Path) -> None:
    data = tmp_path / "open"
    data.mkdir()
    server = LiveServer(
        data, ["--no-demo"], env={"FHIR_LOAD_TERMINOLOGY": "false"}
    )  # --insecure-open
    server.start()
    try:
        assert httpx.get(f"{server.base}/Patient").status_code == 200
        statement = httpx.get(f"{server.base}/metadata").json()
        assert "AUTHENTICATION IS DISABLED" in statement["rest"][0]["security"]["description"]
        log = server.log.read_text()
        assert "--insecure-open" in log and "DISABLED" in log
    finally:
        server.stop()
