"""The served process tunes the garbage collector once start-up is done (fhir_server/cli.py)."""

from __future__ import annotations

import gc

from fhir_server.cli import GC_YOUNG_THRESHOLD, _freeze_heap


async def test_start_up_freezes_the_heap_and_collects_young_objects_less_often():
    before = gc.get_threshold()
    try:
        await _freeze_heap()
        assert gc.get_freeze_count() > 0  # the long-lived heap is out of the collector's way
        assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
