"""Node.js for the JavaScript end-to-end tests: the tools, and tests/e2e/js/node_modules.

``npm ci`` runs only when a pinned package (tests/e2e/js/package-lock.json) is missing from
tests/e2e/js/node_modules (it then takes a few seconds from npm's cache, longer from the
registry). A missing tool or a failed install FAILS the test with the reason: it is never skipped.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest

JS_DIR = Path(__file__).parent / "js"
# SMART's client-js, only its prebuilt browser bundle: installing the package would pull in
# ~700 packages (react-native peers of isomorphic-webcrypto) that a browser page never loads
CLIENT_JS = "fhirclient@2.6.3"
CLIENT_JS_INTEGRITY = (
    "sha512-CirZixcwWelbkIXxpxlNQx5+ZdJirl6F1s4y4yvA1X7hHAkr9n99aVHaMi0wX+97nATjKQ65X6NB5as/wZoJzg"
    "=="
)


def tool(name: str, hint: str = "Node.js >= 20 and npm (e.g. `apt-get install nodejs npm`)") -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` is not on PATH: this end-to-end test needs {hint}", pytrace=False)
    return path


def ensure_node_modules() -> None:
    wanted = json.loads((JS_DIR / "package.json").read_text())["dependencies"]
    missing = [n for n in wanted if not (JS_DIR / "node_modules" / n / "package.json").exists()]
    if not missing:
        return
    npm = tool("npm")
    command = [npm, "ci", "--prefix", str(JS_DIR), "--prefer-offline", "--no-audit", "--no-fund"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(
            "`npm ci` for tests/e2e/js did not finish within 300 s: is the npm registry "
            f"reachable (or {', '.join(missing)} in npm's cache)?",
            pytrace=False,
        )
    still = [n for n in wanted if not (JS_DIR / "node_modules" / n / "package.json").exists()]
    if result.returncode != 0 or still:
        pytest.fail(
            f"`{' '.join(command)}` failed (exit {result.returncode}): could not install "
            f"{', '.join(still or missing)} for the JavaScript end-to-end tests; the npm "
            f"registry must be reachable or the packages in npm's cache.\n"
            f"{result.stdout[-2000:]}\n{result.stderr[-3000:]}",
            pytrace=False,
        )


def client_js_bundle() -> Path:
    """``build/fhir-client.js`` of the pinned fhirclient release (``npm pack``, integrity
    checked), kept in tests/e2e/js/vendor (ignored by git)."""
    target = JS_DIR / "vendor" / f"{CLIENT_JS.replace('@', '-')}.js"
    if target.exists():
        return target
    npm = tool("npm")
    with tempfile.TemporaryDirectory() as folder:
        command = [npm, "pack", CLIENT_JS, "--pack-destination", folder, "--prefer-offline"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
        packed = list(Path(folder).glob("*.tgz"))
        if result.returncode != 0 or len(packed) != 1:
            pytest.fail(
                f"`{' '.join(command)}` failed (exit {result.returncode}): the npm registry must "
                f"be reachable or {CLIENT_JS} in npm's cache.\n{result.stderr[-2000:]}",
                pytrace=False,
            )
        digest = base64.b64encode(hashlib.sha512(packed[0].read_bytes()).digest()).decode()
        if f"sha512-{digest}" != CLIENT_JS_INTEGRITY:
            pytest.fail(f"{CLIENT_JS} from npm does not match its pinned integrity", pytrace=False)
        with tarfile.open(packed[0]) as archive:
            member = archive.extractfile("package/build/fhir-client.js")
            assert member is not None
            bundle = member.read()
    target.parent.mkdir(exist_ok=True)
    target.write_bytes(bundle)
    return target
