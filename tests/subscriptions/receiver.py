"""A real HTTP endpoint for rest-hook notifications (a thread with ThreadingHTTPServer).

It records every POST (path, headers, body, the time it arrived) and answers with the next status
of ``script`` (then ``default``), or holds requests without answering while ``hold`` is set (an
endpoint that is slow, or a server killed between the commit and the delivery).
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    status: int = 0  # what the endpoint answered (0: it never answered)

    @property
    def bundle(self) -> dict[str, Any] | None:
        return json.loads(self.body) if self.body else None

    @property
    def parameters(self) -> dict[str, Any]:
        bundle = self.bundle or {}
        status = bundle["entry"][0]["resource"]
        out: dict[str, Any] = {}
        for p in status["parameter"]:
            if p["name"] == "notification-event":
                out.setdefault("events", []).append(
                    {
                        part["name"]: next(v for k, v in part.items() if k.startswith("value"))
                        for part in p["part"]
                    }
                )
            else:
                out[p["name"]] = next(v for k, v in p.items() if k.startswith("value"))
        return out

    @property
    def kind(self) -> str:
        return str(self.parameters.get("type"))

    @property
    def numbers(self) -> list[int]:
        return [int(e["event-number"]) for e in self.parameters.get("events", [])]


@dataclass
class Receiver:
    script: list[int] = field(default_factory=list)
    default: int = 200
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.release.set()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                item = Received(self.path, dict(self.headers), body, time.monotonic())
                with receiver.lock:
                    receiver.received.append(item)
                receiver.release.wait()
                with receiver.lock:
                    status = receiver.script.pop(0) if receiver.script else receiver.default
                item.status = status
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def hold(self) -> None:
        self.release.clear()

    def answer(self) -> None:
        self.release.set()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def on(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path]

    def acknowledged(self, path: str) -> list[Received]:
        return [r for r in self.on(path) if 200 <= r.status < 300]
