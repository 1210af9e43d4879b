"""Validations per second against the BiB profiles, next to the structural validator (same run).

For each resource (the BiB examples in tests/validation/examples/, a BiB Patient first) it reports:

* ``structural``: the R4 structural validator alone (it runs on every write) - the reference;
* ``profile``: the profile validator alone (``ProfileValidator.validate``, what a write adds for a
  resource claiming a profile or whose type has a required profile);
* ``write path``: both, as ``FhirService.validate`` runs them.

Each number is the best of ``--rounds`` timed rounds of ``--n`` validations on one CPU, in process.

    python bench/validation_bench.py [--n 5000] [--rounds 5] [--all]
    python bench/validation_bench.py --baseline REV [--n 2000] [--rounds 5]

``--baseline REV``: the structural validator (which runs the R4 core invariants on every write)
of this code next to that of git revision REV, on every BiB example and on R4 resources where
core invariants apply (an Observation with a Period and reference range, a Questionnaire with
enableWhen, a Task, a transaction Bundle), turn by turn in one process, in CPU µs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fhir_server.json_codec import parse
from fhir_server.validation.profiles import ProfileValidator
from fhir_server.validation.structure import StructuralValidator

CORE_CASES: dict[str, dict[str, Any]] = {
    "R4 Observation (Period, Quantity, range)": {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": "Patient/p"},
        "effectivePeriod": {"start": "2024-03-01T10:00:00+01:00", "end": "2024-03-01T10:05:00Z"},
        "valueQuantity": {
            "value": 72,
            "unit": "/min",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
        "referenceRange": [{"low": {"value": 60}, "high": {"value": 100}, "text": "normal"}],
    },
    "R4 Questionnaire (enableWhen)": {
        "resourceType": "Questionnaire",
        "status": "active",
        "item": [
            {"linkId": "a", "type": "boolean", "text": "A?"},
            {"linkId": "b", "type": "boolean", "text": "B?"},
            {
                "linkId": "c",
                "type": "string",
                "text": "C?",
                "enableWhen": [
                    {"question": "a", "operator": "=", "answerBoolean": True},
                    {"question": "b", "operator": "exists", "answerBoolean": True},
                ],
                "enableBehavior": "any",
            },
        ],
    },
    "R4 Task (dates, references)": {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "for": {"reference": "Patient/p"},
        "authoredOn": "2024-03-01T10:00:00+01:00",
        "lastModified": "2024-03-01T10:00:00Z",
        "restriction": {"period": {"start": "2024-03-01", "end": "2024-04-01"}},
    },
}
CORE_CASES["R4 transaction Bundle (3 entries)"] = {
    "resourceType": "Bundle",
    "type": "transaction",
    "entry": [
        {"resource": case, "request": {"method": "POST", "url": case["resourceType"]}}
        for case in CORE_CASES.values()
    ],
}

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rest_throughput import PATIENT  # noqa: E402

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
    parser.add_argument("--baseline", help="git revision to compare the structural validator with")
    args = parser.parse_args()
    if args.baseline:
        compare(args.baseline, args.n, args.rounds)
        return

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


def cases() -> dict[str, dict[str, Any]]:
    out = {
        p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(EXAMPLES.glob("*.json"))
    }
    out.update(CORE_CASES)
    return out


def compare(revision: str, n: int, rounds: int) -> None:
    """Structural validation (with the core invariants) of this code next to ``revision``.

    The old ``validation/structure.py`` is loaded from the revision's tree as a module of its
    own in this process, and both validators are timed turn by turn on the same resources with
    the thread's CPU time, so the machine's drifting load hits both alike. (The old module runs
    with this tree's primitive checks, which cost the same.)"""
    import gc
    import importlib.util

    from baseline import extract

    tree = extract(revision)

    def load(name: str, relative: str) -> Any:
        spec = importlib.util.spec_from_file_location(name, tree / relative)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    module = load("structure_before", "fhir_server/validation/structure.py")
    codec = load("json_codec_before", "fhir_server/json_codec.py")
    validators = {"before": module.StructuralValidator(), "after": StructuralValidator()}
    parsers = {"before": codec.parse, "after": parse}
    resources = {"bench Patient (rest_throughput.py, the create benchmark)": PATIENT}
    resources.update(cases())
    bodies = {name: json.dumps(resource).encode() for name, resource in resources.items()}
    for resource in resources.values():
        for validator in validators.values():
            validator.validate(resource, resource["resourceType"])  # warm caches and plans
    gc.freeze()  # as the server does after start-up
    best: dict[tuple[str, str], float] = {}
    for _ in range(rounds):
        for name, resource in resources.items():
            kind = resource["resourceType"]
            body = bodies[name]
            for side, validator in validators.items():
                read = parsers[side]
                started = time.thread_time()
                for _ in range(n):
                    validator.validate(read(body), kind)
                cost = (time.thread_time() - started) / n * 1e6
                best[(name, side)] = min(best.get((name, side), cost), cost)
    print(f"JSON parse + structural validation (+ R4 core invariants): {revision} vs this tree")
    print(f"{'resource':52} {'before µs':>10} {'after µs':>10} {'added':>8} {'change':>8}")
    for name in resources:
        before, after = best[(name, "before")], best[(name, "after")]
        print(
            f"{name:52} {before:10.1f} {after:10.1f} {after - before:+8.1f} "
            f"{(after / before - 1) * 100:+7.1f}%"
        )
    print(f"CPU µs per parse + validation, best of {rounds} rounds of {n}, turn by turn")


if __name__ == "__main__":
    main()
