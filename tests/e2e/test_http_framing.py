"""End-to-end: HTTP framing of FHIR responses from the real server process (uvicorn).

Integration engines and HTTP/1.0 proxies rely on ``Content-Length``; ``HEAD`` must answer the
headers of the ``GET`` without a body; ``304`` and ``204`` carry no body and no length.
Checked on the raw socket as well, because HTTP client libraries hide the framing.
"""

from __future__ import annotations

import socket

import httpx

PATIENT = {"resourceType": "Patient", "name": [{"family": "Framing"}], "gender": "female"}


def _raw(port: int, request: bytes) -> bytes:
    """One request on a fresh connection; everything the server sent until it closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_read_has_content_length_and_no_chunking(live_server) -> None:
    created = httpx.post(f"{live_server.base}/Patient", json=PATIENT)
    assert created.status_code == 201
    assert created.headers["content-length"] == str(len(created.content))
    pid = created.json()["id"]
    raw = _raw(
        live_server.port,
        f"GET /fhir/Patient/{pid} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode(),
    )
    head, _, body = raw.partition(b"\r\n\r\n")
    headers = head.lower().split(b"\r\n")
    assert headers[0] == b"http/1.1 200 ok"
    assert b"transfer-encoding: chunked" not in headers
    assert f"content-length: {len(body)}".encode() in headers
    assert httpx.Response(200, content=body).json()["id"] == pid


def test_head_answers_the_get_headers_without_a_body(live_server) -> None:
    pid = httpx.post(f"{live_server.base}/Patient", json=PATIENT).json()["id"]
    got = httpx.get(f"{live_server.base}/Patient/{pid}")
    raw = _raw(
        live_server.port,
        f"HEAD /fhir/Patient/{pid} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode(),
    )
    head, _, body = raw.partition(b"\r\n\r\n")
    status, *lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines)
    assert status == "HTTP/1.1 200 OK"
    assert body == b""
    assert headers["content-length"] == str(len(got.content))
    assert headers["etag"] == got.headers["etag"].lower()
    missing = httpx.head(f"{live_server.base}/Patient/no-such-patient")
    assert missing.status_code == 404
    assert missing.content == b""


def test_not_modified_and_no_content_carry_no_length(live_server) -> None:
    created = httpx.post(f"{live_server.base}/Patient", json=PATIENT)
    pid = created.json()["id"]
    not_modified = httpx.get(
        f"{live_server.base}/Patient/{pid}", headers={"If-None-Match": created.headers["etag"]}
    )
    assert not_modified.status_code == 304
    assert not_modified.content == b""
    assert "content-length" not in not_modified.headers
    deleted = httpx.delete(f"{live_server.base}/Patient/{pid}")
    assert deleted.status_code in (200, 204)
    if deleted.status_code == 204:
        assert "content-length" not in deleted.headers
    else:
        assert deleted.headers["content-length"] == str(len(deleted.content))
    # the connection stays usable after each of them (keep-alive framing is right)
    with httpx.Client() as client:
        for _ in range(3):
            assert client.get(f"{live_server.base}/Patient/{pid}").status_code == 410
            reread = client.get(
                f"{live_server.base}/Patient/{pid}/_history/1",
                headers={"If-None-Match": created.headers["etag"]},
            )
            assert reread.status_code in (200, 304)
