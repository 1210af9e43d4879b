"""Package data: the official R4 4.0.1 definitions (see tools/import_r4_definitions.py)."""

from __future__ import annotations

import gzip
from functools import cache
from importlib import resources
from typing import Any

import orjson


@cache
def load_r4(name: str) -> Any:
    """Load one gzip-compressed R4 definition file shipped inside the package (cached)."""
    ref = resources.files(__package__).joinpath("r4", f"{name}.json.gz")
    with ref.open("rb") as fh:
        return orjson.loads(gzip.decompress(fh.read()))
