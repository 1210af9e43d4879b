"""Node.js for the JavaScript end-to-end tests: the tools, and tests/e2e/js/node_modules.

``npm ci`` runs only when a pinned package (tests/e2e/js/package-lock.json) is missing from
tests/e2e/js/node_modules (it then takes a few seconds from npm's cache, longer from the
registry). A missing tool or a failed install FAILS the test with the reason: it is never skipped.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

JS_DIR = Path(__file__).parent / "js"


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
