"""Run a benchmark against another revision of the server in the same run ("before" next to
"after"): ``git archive`` of the revision into a temporary folder, whose ``fhir_server`` is put
first on ``PYTHONPATH`` of a subprocess (the same interpreter and installed dependencies)."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def extract(revision: str) -> Path:
    """The tree of ``revision`` in a temporary folder (removed when the process ends)."""
    folder = Path(tempfile.mkdtemp(prefix=f"bench-{revision[:12]}-"))
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", revision],
        check=True,
        capture_output=True,
    ).stdout
    archive_path = folder / "tree.tar"
    archive_path.write_bytes(archive)
    with tarfile.open(archive_path) as tar:
        tar.extractall(folder / "tree", filter="data")
    archive_path.unlink()
    return folder / "tree"


def run(tree: Path | None, script: str, args: list[str]) -> str:
    """stdout of this tree's ``bench/<script> args`` run with the server code (``fhir_server``)
    of ``tree`` (None: this tree). The benchmark script is the same for both sides."""
    env = dict(os.environ)
    root = tree or REPO
    env["PYTHONPATH"] = os.pathsep.join([str(root), str(REPO / "bench")])
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), *args],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=str(root),
    )
    return result.stdout
