"""What a user waits for, beside the warm figure: a command in a fresh process, timed, with its peak RSS.

Issue 18 asks every benchmark to measure "cold processes as well as warm calls, and peak memory": a warm call
in a process that has imported everything and filled its caches hides the start-up an operator pays on every
command. :func:`fresh` runs a command in new processes ("cold": imports, opening the repository, first reads;
the page cache stays warm, as it is for an operator's second command) and reads each one's peak RSS from the
kernel through ``/usr/bin/time``, under a deadline; :func:`peak_rss_mb` is the benchmark process's own peak,
for the figures it measures in process; :func:`cold_warm` prints one line with both. :func:`timed_runs` is
the counted loop every bench uses for repeated work: it stops at a wall-clock deadline and says how far it got.
"""

from __future__ import annotations

import math
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = sys.executable
# A fresh command sees the checkout, not whatever repository or driver the shell names.
ENV = {key: value for key, value in os.environ.items() if key not in {"TOOLSTACK_REPO", "TOOLSTACK_DRIVER"}}
ENV["PYTHONPATH"] = ROOT
TIME = "/usr/bin/time"


@dataclass(frozen=True)
class Fresh:
    """Fresh processes of one command: wall seconds (the median), peak RSS in MiB (the largest), whether
    every run exited 0 within its deadline, and the last run's output (or what went wrong)."""

    seconds: float
    rss_mb: float
    ok: bool
    output: str


def fresh(
    argv: list[str] | Callable[[int], list[str]],
    *,
    cwd: str | None = None,
    repeat: int = 3,
    timeout: float = 120.0,
) -> Fresh:
    """Run ``argv`` (or ``argv(n)`` for run ``n``: a command that must differ each time, say a new VM's
    name) in ``repeat`` fresh processes, one after the other; each is killed at ``timeout`` seconds.

    The peak RSS is ``/usr/bin/time``'s (NaN without it): the kernel's figure for a child forked from this
    process would count this process's own pages, which the child holds until it executes the command.
    """
    walls: list[float] = []
    rss_kib = math.nan
    output = ""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        for n in range(repeat):
            command = argv(n) if callable(argv) else argv
            timed = [TIME, "-f", "%M", "-o", report.name, *command] if os.path.exists(TIME) else command
            started = time.perf_counter()
            try:
                done = subprocess.run(
                    timed, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout, check=False
                )
            except subprocess.TimeoutExpired:
                return Fresh(
                    math.nan, rss_kib / 1024, False, f"{' '.join(command)[:120]}: killed at {timeout:.0f} s"
                )
            walls.append(time.perf_counter() - started)
            output = done.stdout
            if done.returncode != 0:
                return Fresh(
                    math.nan, math.nan, False, f"{' '.join(command)[:120]}: {done.stderr.strip()[-300:]}"
                )
            if timed is not command:
                report.seek(0)
                peak = int(report.read().split()[-1])
                rss_kib = peak if math.isnan(rss_kib) else max(rss_kib, peak)
    return Fresh(statistics.median(walls), rss_kib / 1024, True, output)


def toolstack(*args: str) -> list[str]:
    """A ``toolstack`` command line, as an operator runs it (``python -m toolstack.cli``)."""
    return [PYTHON, "-m", "toolstack.cli", *args]


def peak_rss_mb(pid: int | None = None) -> float:
    """The peak RSS so far, in MiB, of this process or of the running process ``pid`` (its VmHWM; NaN if
    it cannot be read: the process is gone)."""
    if pid is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            found = re.search(r"^VmHWM:\s+(\d+)", status.read(), re.M)
    except OSError:
        return float("nan")
    return int(found.group(1)) / 1024 if found else float("nan")


@dataclass(frozen=True)
class Runs:
    """The seconds of each run a counted loop completed, and how many it was asked for."""

    seconds: list[float]
    asked: int

    @property
    def done(self) -> int:
        """How many runs completed."""
        return len(self.seconds)

    @property
    def cut(self) -> bool:
        """Whether the deadline stopped the loop before it had run ``asked`` times."""
        return self.done < self.asked

    @property
    def median(self) -> float:
        """The median run's seconds (NaN if none completed)."""
        return statistics.median(self.seconds) if self.seconds else math.nan

    @property
    def per_second(self) -> float:
        """Completed runs per second of their own time (NaN if none completed)."""
        total = sum(self.seconds)
        return self.done / total if total > 0 else math.nan

    def note(self) -> str:
        """What to append to the figure's line: nothing, or that the deadline cut the loop and where."""
        return f" (deadline reached: {self.done} of {self.asked} runs)" if self.cut else ""


def timed_runs(run: Callable[[int], object], count: int, deadline: float) -> Runs:
    """Call ``run(n)`` for ``n`` in ``range(count)``, timing each, until ``deadline`` (``time.monotonic()``).

    The deadline is checked before each run, so a loop overruns it by one run at most; figures are computed
    from the runs completed (``Runs.done``), never from ``count``.
    """
    seconds: list[float] = []
    for n in range(count):
        if time.monotonic() >= deadline:
            break
        started = time.perf_counter()
        run(n)
        seconds.append(time.perf_counter() - started)
    return Runs(seconds, count)


def cold_warm(label: str, cold: Fresh, warm_seconds: float | None, warm_how: str = "in process") -> str:
    """One line: the fresh process's time and peak RSS, beside the warm call's time, and their ratio."""
    if not cold.ok:
        return f"{label:40} cold: NOT MEASURED ({cold.output.strip()})"
    line = f"{label:40} cold (fresh process) {cold.seconds * 1e3:9.1f} ms, peak RSS {cold.rss_mb:5.0f} MB"
    if warm_seconds is not None and warm_seconds > 0:
        line += f" | warm ({warm_how}) {warm_seconds * 1e3:8.2f} ms | cold/warm {cold.seconds / warm_seconds:6.1f}x"
    return line
