"""`pip install .` carries everything the server needs: definitions, demo content, shipped
content (profiles, terminology, mappings) and the `fhir-server` command."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_contains_package_data_and_the_command(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "fhir_server/definitions/r4/profiles-resources.json.gz",
        "fhir_server/definitions/r4/search-parameters.json.gz",
        "fhir_server/definitions/r4/valuesets.json.gz",
        "fhir_server/demo/10-organisations-and-people.json",
    ):
        assert required in names, required
    shipped = [n for n in names if n.startswith("fhir_server/content/terminology/bib/")]
    assert len(shipped) == len(list((ROOT / "terminology" / "bib").glob("*.json")))
    library = {
        "fhir_server/content/library/" + str(p.relative_to(ROOT / "content"))
        for p in (ROOT / "content").rglob("*.json")
    }
    assert library <= names, sorted(library - names)[:5]
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "fhir-server = fhir_server.cli:main" in text
