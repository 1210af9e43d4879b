"""The access log of a real server at the default log level: one line per request with the
route template and status, buffered (written within a fraction of a second and at shutdown),
never an identifier or a query value."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.conftest import LiveServer


def test_one_line_per_request_without_personal_data(tmp_path: Path) -> None:
    data = tmp_path / "live"
    data.mkdir()
    server = LiveServer(data, ["--no-demo"])
    server.args[server.args.index("--log-level") + 1] = "info"  # the default level
    server.start()
    try:
        base = server.base
        httpx.put(
            f"{base}/Patient/jansens-secret",
            json={"resourceType": "Patient", "id": "jansens-secret", "name": [{"family": "X"}]},
        )
        for _ in range(3):
            httpx.get(f"{base}/Patient/jansens-secret")
        httpx.get(f"{base}/Patient", params={"name": "Secretname", "birthdate": "1990-01-01"})
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            log = server.log.read_text()
            if log.count("GET /Patient/{id} -> 200") == 3:
                break
            time.sleep(0.05)
    finally:
        server.stop()
    log = server.log.read_text()
    assert log.count("GET /Patient/{id} -> 200") == 3, log[-2000:]
    assert "PUT /Patient/{id} -> 201" in log
    assert "GET /Patient -> 200" in log
    assert "jansens-secret" not in log and "Secretname" not in log and "1990" not in log
    line = next(x for x in log.splitlines() if "GET /Patient/{id}" in x)
    assert " INFO fhir_server.access: GET /Patient/{id} -> 200 (" in line and line.endswith("ms)")
