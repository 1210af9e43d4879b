"""docker/: the image's command line and health check run outside Docker, and the compose file,
the proxy configuration and the replica-set initiation agree with each other and the README.

No Docker engine runs on these machines, so the image itself is not built here; what can run
without it does: the Dockerfile's ENTRYPOINT + CMD with its ENV (a real server process), its
HEALTHCHECK command against that server, the start-up failure with the compose file's store URL
when MongoDB cannot be reached, and (where nginx is installed) the proxy configuration in front
of two server processes.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import yaml

from fhir_server.store.mongo.config import parse_url
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"


@dataclass
class Image:
    """The instructions of the Dockerfile's runtime (last) stage that matter outside Docker."""

    stages: int
    env: dict[str, str] = field(default_factory=dict)
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    user: str = ""
    expose: str = ""
    healthcheck: list[str] = field(default_factory=list)

    @property
    def command(self) -> list[str]:
        return [*self.entrypoint, *self.cmd]


def dockerfile() -> Image:
    text = re.sub(r"\\\n", " ", (DOCKER / "Dockerfile").read_text())
    stages = re.split(r"(?m)^FROM ", text)
    image = Image(stages=len(stages) - 1)
    for line in stages[-1].splitlines():
        instruction, _, rest = line.strip().partition(" ")
        if instruction == "ENV":
            image.env.update(p.split("=", 1) for p in shlex.split(rest))
        elif instruction == "ENTRYPOINT":
            image.entrypoint = json.loads(rest)
        elif instruction == "CMD":
            image.cmd = json.loads(rest)
        elif instruction == "USER":
            image.user = rest.strip()
        elif instruction == "EXPOSE":
            image.expose = rest.strip()
        elif instruction == "HEALTHCHECK":
            image.healthcheck = json.loads(rest.split(" CMD ", 1)[1])
    return image


def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def server_env(image: Image, tmp_path: Path, **overrides: str) -> dict[str, str]:
    env = {**os.environ, **image.env}
    env.update(
        FHIR_DATA_DIR=str(tmp_path),
        FHIR_PORT=str(free_port()),
        FHIR_HOST="127.0.0.1",  # tests listen on the loopback only
        FHIR_STORE=f"sqlite:///{tmp_path / 'fhir.db'}",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    env.update(overrides)
    return env


def wait_healthy(port: int, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read().decode() if process.stdout else ""
            raise AssertionError(f"server exited: {output[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("server did not become healthy")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# -- the image --------------------------------------------------------------------------------


def test_image_runs_as_a_non_root_user_with_a_health_check():
    image = dockerfile()
    assert image.stages == 2
    assert image.user not in ("root", "0", "")
    assert image.expose == image.env["FHIR_PORT"] == "8080"
    assert image.entrypoint == ["fhir-server"] and "serve" in image.cmd
    assert "/health" in " ".join(image.healthcheck)
    ignored = (DOCKER / "Dockerfile.dockerignore").read_text().split()
    assert {"tests", ".git", ".venv"} <= set(ignored)


def test_image_command_line_and_health_check_work_outside_docker(tmp_path: Path):
    image = dockerfile()
    env = server_env(image, tmp_path)
    process = subprocess.Popen(
        image.command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path
    )
    try:
        wait_healthy(int(env["FHIR_PORT"]), process)
        check = subprocess.run(image.healthcheck, env=env, capture_output=True, timeout=30)
        assert check.returncode == 0, check.stderr
    finally:
        stop(process)
    env["FHIR_PORT"] = str(free_port())  # nothing listens there: the check must fail
    check = subprocess.run(image.healthcheck, env=env, capture_output=True, timeout=30)
    assert check.returncode != 0


def test_image_with_an_unreachable_mongodb_stops_with_a_clear_error(tmp_path: Path):
    image = dockerfile()
    store = compose()["services"]["fhir-1"]["environment"]["FHIR_STORE"]
    unreachable = store.replace("mongo:27017", f"127.0.0.1:{free_port()}")
    unreachable += "&serverSelectionTimeoutMS=500"
    env = server_env(image, tmp_path, FHIR_STORE=unreachable)
    result = subprocess.run(image.command, env=env, capture_output=True, timeout=120, cwd=tmp_path)
    output = (result.stdout + result.stderr).decode()
    assert result.returncode != 0
    assert "cannot reach MongoDB at mongodb://127.0.0.1:" in output


# -- compose, proxy, replica set ----------------------------------------------------------------


def test_compose_file_is_consistent():
    spec = compose()
    services = spec["services"]
    assert set(services) == {"mongo", "fhir-1", "fhir-2", "proxy"}
    mongod = services["mongo"]["command"]
    replica_set = mongod[mongod.index("--replSet") + 1]
    init = (DOCKER / "mongo-init-replica-set.js").read_text()
    assert f'_id: "{replica_set}"' in init and 'host: "mongo:27017"' in init
    mounted = {v.split(":")[1]: v.split(":")[0] for v in services["mongo"]["volumes"][1:]}
    script = services["mongo"]["healthcheck"]["test"][-1]
    assert (DOCKER / mounted[script]).is_file()
    for name in ("fhir-1", "fhir-2"):
        server = services[name]
        assert (DOCKER / server["build"]["context"] / server["build"]["dockerfile"]).is_file()
        assert server["depends_on"]["mongo"]["condition"] == "service_healthy"
        url = server["environment"]["FHIR_STORE"]
        assert parse_qs(urlsplit(url).query)["replicaSet"] == [replica_set]
        assert parse_url(url).database == "fhir"
    assert services["fhir-1"] == services["fhir-2"]  # two replicas of one definition
    public = urlsplit(services["fhir-1"]["environment"]["FHIR_PUBLIC_URL"])
    assert services["proxy"]["ports"] == [f"{public.port}:8080"]


def test_proxy_sends_to_both_replicas():
    config = (DOCKER / "nginx.conf").read_text()
    upstream = set(re.findall(r"server (fhir-\d):(\d+)", config))
    assert upstream == {("fhir-1", "8080"), ("fhir-2", "8080")}
    assert re.search(r"listen 8080;", config)
    # no sticky sessions: every step of a sign-in may reach either replica (tests/authshare)
    assert "hash $remote_addr" not in config and "location /auth/" not in config
    mounted = compose()["services"]["proxy"]["volumes"][0]
    assert mounted.startswith("./nginx.conf:/etc/nginx/nginx.conf")


def test_readme_documents_the_compose_deployment():
    readme = (ROOT / "README.md").read_text()
    assert "docker compose -f docker/compose.yaml up" in readme
    assert "MONGODB_URI=" in readme
    assert (ROOT / "docs" / "deploy.md").is_file()


def test_proxy_configuration_runs_in_front_of_two_servers(tmp_path: Path):
    # nginx comes from Debian (.ci/run installs nginx-light); without it this test fails
    assert shutil.which("nginx"), "nginx is needed: apt-get install nginx-light"
    image = dockerfile()
    ports = [free_port(), free_port()]
    servers = []
    proxy_port = free_port()
    config = (DOCKER / "nginx.conf").read_text()
    for index, port in enumerate(ports, start=1):
        config = config.replace(f"fhir-{index}:8080", f"127.0.0.1:{port}")
    config = config.replace("listen 8080;", f"listen 127.0.0.1:{proxy_port};")
    (tmp_path / "nginx.conf").write_text(config)
    nginx = None
    try:
        for index, port in enumerate(ports):
            data = tmp_path / f"server{index}"
            data.mkdir()
            env = server_env(image, data, FHIR_PORT=str(port))
            servers.append(
                subprocess.Popen(
                    image.command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
                )
            )
        for port, process in zip(ports, servers, strict=True):
            wait_healthy(port, process)
        globals_ = f"pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log; daemon off;"
        nginx = subprocess.Popen(
            ["nginx", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-g", globals_]
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{proxy_port}/fhir/metadata", timeout=2)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert response.status_code == 200
        assert response.json()["resourceType"] == "CapabilityStatement"
    finally:
        if nginx is not None:
            stop(nginx)
        for process in servers:
            stop(process)
