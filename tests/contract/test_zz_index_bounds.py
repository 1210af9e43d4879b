"""Every query the MongoDB store runs for the contract suite is bounded by one of its indexes.

The queries are those the store sent to mongomock while the contract suite ran (recorded by
tests/mongomock_async.py, collected by tests/contract/conftest.py); this module's name makes it
run after the rest of tests/contract. Run alone, it runs the MongoDB half of the suite first, in
a subprocess. tests/contract/bounds.py says what counts as bounded (the check explain() makes
on a real server, on the index definitions); with MONGODB_URI set, tools/mongo_live.py asks a
real server's explain() the same question.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson

from tests.contract import conftest
from tests.contract.bounds import check, known_limit

ROOT = Path(__file__).resolve().parents[2]


def recorded(tmp_path: Path) -> list[tuple[str, dict]]:
    if conftest.RECORDED:
        return conftest.RECORDED
    dump = tmp_path / "queries.json"
    env = {**os.environ, "FHIR_BOUNDS_DUMP": str(dump)}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests/contract",
            "-q",
            "-p",
            "no:cacheprovider",
            "-k",
            "mongomock and not index_bounds",
            "-x",
        ],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=900,
    )
    return [tuple(item) for item in orjson.loads(dump.read_bytes())]


def test_every_query_of_the_contract_suite_is_index_bounded(tmp_path: Path):
    queries = recorded(tmp_path)
    assert len(queries) > 1000  # the suite ran on mongomock
    failures: dict[str, list[tuple[str, dict]]] = {}
    limits: Counter[str] = Counter()
    for test, query in queries:
        reason = check(query)
        if reason is None:
            continue
        limit = known_limit(query)
        if limit is not None:
            limits[limit] += 1
            continue
        failures.setdefault(reason, []).append((test, query))
    report = []
    for reason, items in failures.items():
        tests = Counter(test.split("[")[0].split("::")[-1] for test, _ in items)
        report.append(f"{reason}: {len(items)} queries, e.g. {items[0][1]} in {items[0][0]}")
        report.append(f"   tests: {dict(tests.most_common(8))}")
    assert not failures, "\n".join(report)
    # the documented limits (docs/architecture.md) are the only unbounded shapes, and are rare
    assert set(limits) <= {
        "parameter sort over a whole type",
        "exact count of a whole type",
        "token system without a code",
    }
    assert sum(limits.values()) < len(queries) / 50, limits
