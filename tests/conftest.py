"""Shared fixtures: a started server app on a temporary SQLite file, an HTTP client for it, and a
real server process (uvicorn) for end-to-end tests."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from fhir_server.app import ServerApp
from fhir_server.config import Settings

TEST_BASE = "http://testserver/fhir"


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": tmp_path,
        "public_url": TEST_BASE,
        "store": f"sqlite:///{tmp_path / 'fhir.db'}",
        # the tests start from an empty store; tests/terminology turns this on
        "load_terminology": False,
        "load_content": False,
        # the ASGI app runs open (like --insecure-open); tests/security uses real tokens
        "auth": "open",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[ServerApp]:
    server = ServerApp(make_settings(tmp_path))
    await server.startup()
    try:
        yield server
    finally:
        await server.shutdown()


@pytest.fixture
async def client(app: ServerApp) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=TEST_BASE) as http:
        yield http


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """A real ``fhir-server serve`` process on a free port and a temporary data folder."""

    def __init__(
        self,
        data_dir: Path,
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
        secure: bool = False,
    ) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        self.base = f"http://127.0.0.1:{self.port}/fhir"
        self.args = [
            sys.executable,
            "-m",
            "fhir_server",
            "serve",
            "--port",
            str(self.port),
            "--data-dir",
            str(data_dir),
            "--log-level",
            "warning",
            *([] if secure else ["--insecure-open"]),  # tests/security passes secure=True
            *(extra_args or []),
        ]
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None
        self.log = data_dir / "server.log"

    def start(self, timeout: float = 30) -> None:
        self.process = subprocess.Popen(
            self.args, env=self.env, stdout=self.log.open("wb"), stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server did not start in time")

    def stop(self, kill: bool = False) -> None:
        if self.process is None:
            return
        if kill:
            self.process.kill()
        else:
            self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


_LIVE_TEMPLATE: list[Path] = []  # a data folder a first live server filled (see live_server)


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A real server process on an empty store with the shipped terminology and content. The
    first one of a test process loads them (about 3 s); the later ones start on a copy of its
    data folder and find them in place, as a restarted deployment does."""
    if not _LIVE_TEMPLATE:
        first = LiveServer(Path(tempfile.mkdtemp(prefix="fhir-live-template-")), ["--no-demo"])
        first.start()
        first.stop()
        first.log.unlink()
        _LIVE_TEMPLATE.append(first.data_dir)
    server = LiveServer(tmp_path / "live", ["--no-demo"])
    shutil.copytree(_LIVE_TEMPLATE[0], server.data_dir)
    server.start()
    try:
        yield server
    finally:
        server.stop()
