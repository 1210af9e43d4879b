"""Validations per second against the BiB profiles, next to the structural validator (same run).

For each resource (the BiB examples in tests/validation/examples/, a BiB Patient first) it reports:

* ``structural``: the R4 structural validator alone (it runs on every write) - the reference;
* ``profile``: the profile validator alone (``ProfileValidator.validate``, what a write adds for a
  resource claiming a profile or whose type has a required profile);
* ``write path``: both, as ``FhirService.validate`` runs them.

Each number is the best of ``--rounds`` timed rounds of ``--n`` validations on one CPU, in process.

    python bench/validation_bench.py [--n 5000] [--rounds 5] [--all]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fhir_server.validation.profiles import ProfileValidator
from fhir_server.validation.structure import StructuralValidator

EXAMPLES = Path(__file__).resolve().parents[1] / "tests" / "validation" / "examples"
FIRST = "Patient-bib-example-patient-rrn"
TARGET = 2000  # validations per second for a BiB Patient (issue requirement)


def rate(fn: Callable[[], Any], n: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, time.perf_counter() - start)
    return n / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=5000, help="validations per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--all", action="store_true", help="every BiB example, not only Patient")
    args = parser.parse_args()

    structural = StructuralValidator()
    profiles = ProfileValidator()
    names = [FIRST]
    if args.all:
        names += sorted(p.stem for p in EXAMPLES.glob("*.json") if p.stem != FIRST)
    print(f"{'resource':52} {'structural/s':>13} {'profile/s':>10} {'write path/s':>13} {'µs':>7}")
    patient_rate = 0.0
    for name in names:
        resource = json.loads((EXAMPLES / f"{name}.json").read_text(encoding="utf-8"))
        kind = resource["resourceType"]
        issues = structural.validate(resource, kind) + profiles.validate(resource, kind)
        assert not issues, issues  # the examples are valid: measure the common case
        r_struct = rate(lambda r=resource, k=kind: structural.validate(r, k), args.n, args.rounds)
        r_prof = rate(lambda r=resource, k=kind: profiles.validate(r, k), args.n, args.rounds)
        r_both = rate(
            lambda r=resource, k=kind: (structural.validate(r, k), profiles.validate(r, k)),
            args.n,
            args.rounds,
        )
        if name == FIRST:
            patient_rate = r_prof
        print(f"{name:52} {r_struct:13,.0f} {r_prof:10,.0f} {r_both:13,.0f} {1e6 / r_prof:7.1f}")
    verdict = "meets" if patient_rate >= TARGET else "MISSES"
    print(
        f"\nBiB Patient: {patient_rate:,.0f} profile validations/s "
        f"({verdict} the target of {TARGET:,}/s)"
    )


if __name__ == "__main__":
    main()
