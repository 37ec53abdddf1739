"""The harness of bench/scale_bench.py (issue 18): fresh processes under ``/usr/bin/time``, the table's rows,
the checks whose failure makes the run exit non-zero, and private copies of the cached states.

A check (``log NAME`` lists what git lists, ``reconcile`` had nothing to do, a command exited 0 ...) that fails
is printed with the notes and makes the run exit 1 once everything is printed: a figure of a command that
did the wrong thing is no figure.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
sys.path.insert(0, ROOT)
sys.path.insert(0, BENCH)

import scale_states as states  # noqa: E402

TIME = "/usr/bin/time"
ENV = {**os.environ, "PYTHONPATH": ROOT}
for _name in ("TOOLSTACK_REPO", "TOOLSTACK_DRIVER"):
    ENV.pop(_name, None)
MB = 1024  # /usr/bin/time reports KiB; MB here means MiB, GB GiB


@dataclass
class Run:
    """One fresh process: wall seconds (median of the runs), peak RSS in KiB (max of the runs), output."""

    wall: float
    rss: int
    stdout: str
    ok: bool = True


@dataclass
class Row:
    """A line of the table: our figure, its baseline from the same run, and the issue's target."""

    measure: str
    ours: float | None
    unit: str  # "s", "KB" (RSS) or "B" (bytes on disk)
    baseline: float | None
    what: str  # what the baseline is
    target: str = "-"
    met: bool | None = None


class Bench:
    """The measures of one run, with their deadlines."""

    def __init__(self, repeat: int, timeout: float, budget: float) -> None:
        self.repeat = repeat
        self.timeout = timeout  # one process
        self.budget = budget  # the repeats of one measure
        self.rows: list[Row] = []
        self.notes: list[str] = []
        self.failures: list[str] = []  # failed checks: the run exits 1 once everything is printed

    def fail(self, what: str) -> None:
        """A check failed: say so among the notes (marked), and make the run exit non-zero."""
        self.failures.append(what)
        self.notes.append(f"FAILED CHECK: {what}")

    def run(self, argv: list[str], cwd: str | None = None, repeat: int | None = None) -> Run:
        """Run ``argv`` in fresh processes under /usr/bin/time: up to ``repeat`` times, within the budget."""
        walls, rss, out, ok = [], 0, "", True
        deadline = time.monotonic() + self.budget
        with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
            for _ in range(repeat or self.repeat):
                started = time.perf_counter()
                try:
                    done = subprocess.run(
                        [TIME, "-f", "%e %M", "-o", report.name, *argv],
                        cwd=cwd,
                        env=ENV,
                        capture_output=True,
                        text=True,
                        timeout=self.timeout,
                    )
                except subprocess.TimeoutExpired:
                    self.fail(f"timed out after {self.timeout:.0f} s: {' '.join(argv)[:120]}")
                    return Run(float("nan"), 0, "", ok=False)
                walls.append(time.perf_counter() - started)
                report.seek(0)
                rss = max(rss, int(report.read().split()[-1]))
                out = done.stdout
                if done.returncode != 0:
                    ok = False
                    self.fail(f"exit {done.returncode}: {' '.join(argv)[:120]}: {done.stderr.strip()[-300:]}")
                    break
                if time.monotonic() > deadline:
                    break
        # A failed command's time is no figure of ours: n/a in the table, the error in the notes.
        return Run(statistics.median(walls) if ok else float("nan"), rss, out, ok)

    def shell(self, script: str, cwd: str | None = None) -> Run:
        """:meth:`run` for a shell pipeline (the floor's ``git archive | wc -c``)."""
        return self.run(["sh", "-c", script], cwd=cwd)

    def add(
        self,
        measure: str,
        ours: float | None,
        unit: str,
        baseline: float | None,
        what: str,
        target: str = "-",
        limit: float | None = None,
    ) -> None:
        """A row of the table; ``limit`` (in ``unit``) is the target's bound on ``ours``, if it has one."""
        row = Row(
            measure, ours, unit, baseline, what, target, None if limit is None else at_most(ours, limit)
        )
        self.rows.append(row)
        print("  " + " | ".join(cells(row)), flush=True)


def toolstack(repo: str, driver: str, *args: str) -> list[str]:
    """The command line of a fresh ``toolstack`` process on ``repo``, as this host."""
    return [
        sys.executable,
        "-m",
        "toolstack.cli",
        "--repo",
        repo,
        "--driver",
        driver,
        "--host",
        states.HOST,
        *args,
    ]


def warm(kind: str, repo: str, driver: str, *extra: str) -> dict[str, float]:
    """The first and second in-process call of a measure (bench/scale_warm.py), in a process of its own."""
    argv = [sys.executable, os.path.join(BENCH, "scale_warm.py"), kind, repo, driver, states.HOST, *extra]
    done = subprocess.run(argv, env=ENV, capture_output=True, text=True, timeout=1800, check=True)
    return json.loads(done.stdout)


def git(repo: str, *args: str) -> str:
    """The output of a git command on ``repo`` (not measured: checks and set-up)."""
    return subprocess.run(
        ["git", "-C", repo, *args], capture_output=True, text=True, check=True, timeout=600
    ).stdout


def disk_usage(path: str) -> int:
    """Bytes on disk under ``path`` (allocated blocks, as du counts them; hard links counted once)."""
    total, seen = 0, set()
    for parent, _, files in os.walk(path):
        for name in files:
            st = os.lstat(os.path.join(parent, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def show(value: float | None, unit: str) -> str:
    """A figure for people: ms or s, MB of RSS (``unit`` "KB": KiB), MB or GB on disk (``unit`` "B")."""
    if value is None or value != value:  # None or NaN: not measured
        return "n/a"
    if unit == "s":
        if value < 0.1:
            return f"{value * 1e3:.1f} ms"
        return f"{value * 1e3:.0f} ms" if value < 1 else f"{value:.2f} s"
    if unit == "KB":
        return f"{value / MB:.0f} MB"
    return f"{value / 2**30:.2f} GB" if value >= 2**30 else f"{value / 2**20:.0f} MB"


def cells(row: Row) -> list[str]:
    """A row's cells: measure, ours, baseline (and what it is), ratio, target, met."""
    ratio = (
        f"{row.ours / row.baseline:.2f}x"
        if row.ours is not None and row.baseline and row.ours == row.ours
        else "n/a"
    )
    met = {True: "yes", False: "NO", None: "-"}[row.met]
    base = f"{show(row.baseline, row.unit)} ({row.what})"
    return [row.measure, show(row.ours, row.unit), base, ratio, row.target, met]


def at_most(value: float | None, limit: float) -> bool | None:
    """Whether a figure meets its bound; None when it was not measured (a failed or timed-out run)."""
    return None if value is None or value != value else value <= limit


def drop_log_index(repo: str) -> None:
    """Delete the per-VM log index (derived data in the git directory), as a clone or a gc leaves it."""
    index = os.path.join(repo, "gitstore", "vm-log.sqlite")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(index + suffix):
            os.unlink(index + suffix)


def check_log(b: Bench, repo: str, name: str, path: str) -> None:
    """Check that ``log NAME`` lists the commits ``git log --first-parent -- PATH`` does (a note either way)."""
    argv = toolstack(repo, "sim://", "--json", "log", name)
    out = subprocess.run(argv, env=ENV, capture_output=True, text=True, timeout=b.timeout, check=True).stdout
    ours = [json.loads(line)["commit"] for line in out.splitlines() if line.strip()]
    expected = git(repo, "log", "--first-parent", "--format=%H", "main", "--", path).split()
    what = f"log {name}: {len(ours)} commits, %s as git log --first-parent -- {path} ({len(expected)})"
    if ours == expected:
        b.notes.append(what % "the same")
    else:
        b.fail(what % "NOT the same")


# Where a command writes only new files, renamed into place (git's objects and refs, the parse caches, the
# simulator's domains): a hard link to the cached state's file is never written through. Every other file
# (the log index's SQLite files, the simulator's event log, locks, config) may be rewritten in place.
WRITTEN_BY_RENAME = ("objects", "gitstore/vm-cache", "cache", "domains", "names")


def private_copy(source: str, into: str) -> str:
    """A copy of the state directory ``source`` at ``into`` that commands may change: hard links (``cp -al``:
    seconds for gigabytes), except for the files a command may rewrite in place, which are copied.

    A file under one of :data:`WRITTEN_BY_RENAME` (relative to a repository or simulator directory) stays
    a link: it is replaced, never written through. The cached state is never changed through the copy.
    """
    subprocess.run(["cp", "-al", source, into], check=True, timeout=600)
    for top in os.listdir(into):
        base = os.path.join(into, top)
        if not os.path.isdir(base):
            continue
        for parent, dirs, files in os.walk(base):
            rel = os.path.relpath(parent, base)
            dirs[:] = [d for d in dirs if os.path.normpath(os.path.join(rel, d)) not in WRITTEN_BY_RENAME]
            for name in files:
                break_link(os.path.join(parent, name))
    return into


def break_link(path: str) -> None:
    """Give ``path`` its own inode with the same bytes and mode (a no-op for a file with one link)."""
    st = os.lstat(path)
    if st.st_nlink < 2 or not os.path.isfile(path) or os.path.islink(path):
        return
    temporary = path + ".unlinking"
    shutil.copy2(path, temporary)
    os.replace(temporary, path)


def drop_parse_caches(where: str) -> None:
    """Delete the on-disk parse caches of the state at ``where`` (the pool's VMs, the simulator's domains)."""
    for cache in (
        os.path.join(where, "pool.git", "gitstore", "vm-cache"),
        os.path.join(where, "pool.sim", "cache"),
    ):
        shutil.rmtree(cache, ignore_errors=True)
