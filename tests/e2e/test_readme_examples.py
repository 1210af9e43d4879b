"""Every request example of the README, run as written against `fhir-server serve` in its
secure default with the demo content (the server `./scripts/serve` starts).

The README's shell blocks are read at test time, so a new or edited example is checked too. Each
block runs in bash, as a reader would paste it: `./scripts/demo-token` (the token for that server)
and the address are the only things replaced. A `curl` answers 200 unless the line says which
status a reader should expect (`# 404 ...`). Blocks that need what this machine lacks (Docker, a
MongoDB server), that start servers or test runs, or that name a reader's own export file are
listed in SKIPPED with the reason (they are exercised by their own tests) and not run.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import LiveServer

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"

# first word of a line -> why the line is not run here
SKIPPED = {
    "./scripts/serve": "starts the server this test started",
    "./scripts/test": "the test run itself",
    "docker": "no Docker here (tests/unit/test_mongo_deployment.py checks the compose files)",
    "MONGODB_URI=": "needs a MongoDB server (tools/mongo_live.py)",
    "fhir-server": "names a reader's own export file (tests/socialmap covers the import)",
    "python": "a benchmark",
}
CURL_STATUS = re.compile(r"#\s*(\d{3})\b")


def shell_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", README.read_text(), re.S)


def commands(block: str) -> list[str]:
    """The block's commands, continuation lines joined."""
    return [c.strip() for c in re.sub(r"\\\n\s*", " ", block).splitlines() if c.strip()]


def runnable(command: str) -> bool:
    return not any(command.startswith(prefix) for prefix in SKIPPED)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("readme"), secure=True)  # demo content on
    live.start(timeout=180)
    yield live
    live.stop()


def as_run_here(command: str, server: LiveServer) -> str:
    token = f"{shlex.quote(sys.executable)} -m fhir_server demo-token --data-dir {server.data_dir} "
    token += f"--port {server.port}"
    command = command.replace("./scripts/demo-token", token)
    for address in ("http://127.0.0.1:8080", "http://localhost:8080"):
        command = command.replace(address, f"http://127.0.0.1:{server.port}")
    return command


def test_the_readme_has_examples() -> None:
    runnable_curls = [c for b in shell_blocks() for c in commands(b) if c.startswith("curl")]
    assert len(runnable_curls) >= 8  # the examples are there to be read and tried


def request_blocks() -> list[str]:
    return [b for b in shell_blocks() if any(runnable(c) for c in commands(b))]


@pytest.mark.parametrize("block", request_blocks(), ids=lambda b: commands(b)[0][:60])
def test_readme_example(block: str, server: LiveServer, tmp_path: Path) -> None:
    lines = [c for c in commands(block) if runnable(c)]
    if "$TOKEN" in block and "TOKEN=" not in block:  # the reader's TOKEN from "Two commands"
        lines.insert(0, "TOKEN=$(./scripts/demo-token)")
    script, expected = ["set -eu"], []
    for line in lines:
        line = as_run_here(line, server)
        if line.startswith("curl"):
            command, _, comment = line.partition(" #")
            status = CURL_STATUS.search("#" + comment) if comment else None
            body = tmp_path / f"{len(expected)}.json"
            expected.append((line, int(status.group(1)) if status else 200, body))
            script.append(f"{command} -sS -o {body} -w '%{{http_code}}\\n'")
        else:
            script.append(line)
    result = subprocess.run(
        ["bash", "-c", "\n".join(script)], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    statuses = [int(s) for s in result.stdout.split()]
    for (line, want, body), got in zip(expected, statuses, strict=True):
        answer = body.read_text()[:500]
        assert got == want, f"{line}\nanswered {got}, the README implies {want}: {answer}"
