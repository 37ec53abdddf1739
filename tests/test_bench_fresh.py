"""bench/fresh.py's counted loop: every bench loop stops at a wall-clock deadline and says how far it got."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from fresh import Runs, timed_runs


def test_a_loop_within_its_deadline_runs_every_time_and_says_nothing() -> None:
    calls: list[int] = []
    runs = timed_runs(calls.append, 5, time.monotonic() + 60)
    assert calls == [0, 1, 2, 3, 4]
    assert (runs.done, runs.asked, runs.cut, runs.note()) == (5, 5, False, "")
    assert all(seconds >= 0 for seconds in runs.seconds)


def test_a_loop_that_reaches_its_deadline_stops_and_says_where() -> None:
    calls: list[int] = []

    def slow(n: int) -> None:
        calls.append(n)
        time.sleep(0.05)

    runs = timed_runs(slow, 1000, time.monotonic() + 0.2)
    assert 1 <= runs.done < 1000
    assert calls == list(range(runs.done)), "each completed run is timed; none is started past the deadline"
    assert runs.cut
    assert runs.note() == f" (deadline reached: {runs.done} of 1000 runs)"
    assert runs.median >= 0.05


def test_a_deadline_already_past_runs_nothing() -> None:
    runs = timed_runs(lambda n: None, 3, time.monotonic() - 1)
    assert runs == Runs([], 3)
    assert runs.cut and math.isnan(runs.median)


def test_the_rate_counts_the_runs_completed_not_the_runs_asked_for() -> None:
    assert Runs([0.5, 0.25, 0.25], 100).per_second == 3.0
    assert math.isnan(Runs([], 100).per_second)
