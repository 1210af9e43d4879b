"""A pytest plug-in (``-p tests.zz_plugin_bounds.dump``): at the end of the session, write the
queries the MongoDB store ran for the plug-ins' suites to FHIR_PLUGIN_BOUNDS_DUMP."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from tests import mongomock_async


def pytest_sessionfinish(session: pytest.Session) -> None:
    target = os.environ.get("FHIR_PLUGIN_BOUNDS_DUMP")
    if target:
        Path(target).write_bytes(
            orjson.dumps(
                mongomock_async.PLUGIN_QUERIES, default=str, option=orjson.OPT_NON_STR_KEYS
            )
        )
