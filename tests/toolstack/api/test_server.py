"""How ``toolstack serve`` sets up its process."""

from __future__ import annotations

import gc

from toolstack.api.server import GC_YOUNG_THRESHOLD, tune_gc_for_serving


def test_serving_freezes_the_start_up_heap_and_collects_young_objects_less_often():
    before = gc.get_threshold()
    try:
        tune_gc_for_serving()
        assert gc.get_freeze_count() > 0  # start-up objects are out of the collector's scans
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, *before[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
