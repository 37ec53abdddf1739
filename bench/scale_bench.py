"""Scale benchmark (issue 18): 10,000 VMs and 100,000 operations, each figure beside a same-run baseline.

Builds two states (bench/scale_states.py; cached under ``--cache``, keyed by their parameters, so a rerun
skips the build) and measures, each beside its baseline, with the ratio and the issue's target:

* ``toolstack --help``, fresh process, beside the bare interpreter's start-up;
* ``toolstack log NAME`` on 100,000 operations / 1,000 VMs, fresh process, beside ``git log -- PATH``
  without and with a changed-paths commit-graph (written on a hard-linked copy: our repository stays as
  the toolstack left it), and warm (in process, second call);
* the per-VM log index built from scratch (its cache deleted; a fresh ``log NAME``) beside
  ``git commit-graph write --reachable --changed-paths``, on the same repository and on the repacked
  copy below; peak RSS for all (it counts the pages of the packs a process maps: git and dulwich map them);
* the repository on disk beside what ``git repack -adf`` makes of a bare clone of it, and its objects
  by type (what the size is made of): as written, and after ``toolstack gc --compact`` (on a hard-linked
  copy, timed beside the repack), with ``log NAME`` and the index build again on the compacted copy;
* with 10,000 VMs: ``vm list``, ``reconcile --dry-run`` and ``reconcile`` (nothing to do) in fresh
  processes, and warm in process, beside the floor: reading all the data (``git archive main | wc -c``
  plus ``cat`` of every simulator file); peak RSS beside a process that only imports the toolstack.

Fresh processes run under ``/usr/bin/time -f '%e %M'`` for their peak RSS; wall times are the harness's
clock around them, the median of ``--repeat`` runs. "cold" means a fresh process: the page cache is warm
(each command runs more than once, as operators run them). Every loop has a deadline. Create+start over
HTTP is bench/api_bench.py's, not repeated here.

Run: ``.venv/bin/python bench/scale_bench.py [--quick] [--cache DIR]``. Full size on a 2-core machine: the
states take ~2.5 min to build the first time (5 GB in the cache), the measures 8 to 12 min; ``--quick`` (1,000
VMs, 10,000 operations) takes under a minute.
"""

from __future__ import annotations

import argparse
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

from toolstack import layout  # noqa: E402

TIME = "/usr/bin/time"
ENV = {**os.environ, "PYTHONPATH": ROOT}
for _name in ("TOOLSTACK_REPO", "TOOLSTACK_DRIVER"):
    ENV.pop(_name, None)
STAGES = ("startup", "history", "size", "vms")
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
                    self.notes.append(f"timed out after {self.timeout:.0f} s: {' '.join(argv)[:120]}")
                    return Run(float("nan"), 0, "", ok=False)
                walls.append(time.perf_counter() - started)
                report.seek(0)
                rss = max(rss, int(report.read().split()[-1]))
                out = done.stdout
                if done.returncode != 0:
                    ok = False
                    self.notes.append(
                        f"exit {done.returncode}: {' '.join(argv)[:120]}: {done.stderr.strip()[-300:]}"
                    )
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


# -- the measures -------------------------------------------------------------------------------------------
def measure_startup(b: Bench) -> None:
    bare = b.run([sys.executable, "-c", "pass"])
    helped = b.run([sys.executable, "-m", "toolstack.cli", "--help"])
    b.add("toolstack --help, cold", helped.wall, "s", bare.wall, "python -c pass", "<= 150 ms", 0.150)


def drop_log_index(repo: str) -> None:
    """Delete the per-VM log index (derived data in the git directory), as a clone or a gc leaves it."""
    index = os.path.join(repo, "gitstore", "vm-log.sqlite")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(index + suffix):
            os.unlink(index + suffix)


def check_log(b: Bench, repo: str, name: str, path: str) -> None:
    """Note whether ``log NAME`` lists the commits ``git log --first-parent -- PATH`` does."""
    argv = toolstack(repo, "sim://", "--json", "log", name)
    out = subprocess.run(argv, env=ENV, capture_output=True, text=True, timeout=b.timeout, check=True).stdout
    ours = [json.loads(line)["commit"] for line in out.splitlines() if line.strip()]
    expected = git(repo, "log", "--first-parent", "--format=%H", "main", "--", path).split()
    same = "the same" if ours == expected else "NOT the same"
    b.notes.append(f"log {name}: {len(ours)} commits, {same} as git log --first-parent -- {path}")


def measure_history(b: Bench, where: str, name: str, scratch: str, repack_too: bool = True) -> None:
    repo = os.path.join(where, "pool.git")
    path = layout.vm_dir(git(repo, "show", f"main:{layout.name_path(name)}").strip())
    plain = b.run(["git", "-C", repo, "log", "--format=%H", "main", "--", path])
    drop_log_index(repo)
    built = b.run(toolstack(repo, "sim://", "log", name), repeat=1)  # builds the index from scratch
    cold = b.run(toolstack(repo, "sim://", "log", name))
    check_log(b, repo, name, path)
    hot = warm("log", repo, "sim://", name)
    b.notes.append(
        f"log {name} in process: 1st call {show(hot['first'], 's')}, 2nd {show(hot['second'], 's')}"
    )
    # The commit-graph on a hard-linked copy (git writes new files, never into existing ones).
    graphed = os.path.join(scratch, "graphed.git")
    subprocess.run(["cp", "-al", repo, graphed], check=True, timeout=600)
    graph_write = ["commit-graph", "write", "--reachable", "--changed-paths"]
    graph = b.run(["git", "-C", graphed, *graph_write], repeat=1)
    fast = b.run(["git", "-C", graphed, "log", "--format=%H", "main", "--", path])
    first = b.run(["git", "-C", graphed, "log", "--first-parent", "--format=%H", "main", "--", path])
    if repack_too:
        # The repository as git would keep it: a bare clone, repacked with fresh deltas.
        packed = os.path.join(scratch, "packed.git")
        subprocess.run(["git", "clone", "-q", "--bare", "--local", repo, packed], check=True, timeout=600)
        repack = b.run(["nice", "-n", "10", "git", "-C", packed, "repack", "-q", "-adf"], repeat=1)
        packed_graph = b.run(["git", "-C", packed, *graph_write], repeat=1)
        ours_size, packed_size = disk_usage(repo), disk_usage(packed) if repack.ok else None

    log, graph_log = f"log {name}", "git log -- PATH, changed-paths graph"
    b.add(
        f"{log}, cold", cold.wall, "s", fast.wall, graph_log, "<= 150 ms, <= git log", min(0.150, fast.wall)
    )
    b.add(f"{log}, cold", cold.wall, "s", plain.wall, "git log -- PATH, no commit-graph")
    b.add(f"{log}, cold", cold.wall, "s", first.wall, "git log --first-parent -- PATH, graph")
    b.add(f"{log}, warm (in process, 2nd call)", hot["second"], "s", fast.wall, graph_log)
    index, write = "per-VM log index from scratch", "git commit-graph write --changed-paths"
    b.add(index, built.wall, "s", graph.wall, write, "<= 10 s", 10.0)
    b.add(f"{index}, peak RSS", built.rss, "KB", graph.rss, "git commit-graph write", "<= 300 MB", 300 * MB)
    if not repack_too:
        return
    b.add(index, built.wall, "s", packed_graph.wall, f"{write}, repacked copy")
    b.add(f"{index}, peak RSS", built.rss, "KB", packed_graph.rss, "git commit-graph write, repacked copy")
    b.add("repository on disk, as written", ours_size, "B", packed_size, "git clone --bare + repack -adf")
    b.notes.append(
        f"repository as written: objects {show(disk_usage(os.path.join(repo, 'objects')), 'B')}, log index "
        f"{show(disk_usage(os.path.join(repo, 'gitstore')), 'B')}; repack -adf took {show(repack.wall, 's')}"
    )
    b.notes.append("objects by type, as written: " + objects_by_type(repo))
    measure_compacted(
        b, repo, name, scratch, packed_size, repack.wall, (cold.wall, fast.wall, built.wall, built.rss)
    )


def measure_compacted(
    b: Bench,
    repo: str,
    name: str,
    scratch: str,
    packed_size: int | None,
    repack_wall: float,
    before: tuple[float, float, float, int],
) -> None:
    """The repository after the toolstack's own compaction (``toolstack gc --compact``, on a hard-linked
        copy: the cached state stays as written), its size beside ``git repack -adf``'s, and reads on it.

        A state the store writes today is compacted as it is written (roll-ups make deltas); the cached state
        may predate that, so the figure is "after toolstack gc --compact", the way an existing repository gets
        there. ``before``: (log NAME cold, git log with a graph, the log index's build and its peak RSS), measured
    on the state as written.
    """
    compacted = os.path.join(scratch, "compacted.git")
    subprocess.run(["cp", "-al", repo, compacted], check=True, timeout=600)
    drop_log_index(compacted)  # the index is written in place: the copy must not share the cache's file
    gc = b.run(["nice", "-n", "10", *toolstack(compacted, "sim://", "gc", "--compact")], repeat=1)
    size = disk_usage(compacted) if gc.ok else None
    limit = None if packed_size is None else 1.5 * packed_size
    what = "git clone --bare + repack -adf"
    b.add("repository on disk, after toolstack gc --compact", size, "B", packed_size, what, "<= 1.5x", limit)
    b.add("toolstack gc --compact (nice 10)", gc.wall, "s", repack_wall, "git repack -adf (nice 10)")
    b.add("toolstack gc --compact, peak RSS", gc.rss, "KB", None, "-")
    built = b.run(toolstack(compacted, "sim://", "log", name), repeat=1)  # builds the index from scratch
    cold = b.run(toolstack(compacted, "sim://", "log", name))
    cold_before, fast, built_before, rss_before = before
    b.add(f"log {name}, cold, compacted", cold.wall, "s", cold_before, f"log {name}, cold, as written")
    b.add(f"log {name}, cold, compacted", cold.wall, "s", fast, "git log -- PATH, changed-paths graph")
    index = "per-VM log index from scratch, compacted"
    b.add(index, built.wall, "s", built_before, "the same, as written")
    b.add(f"{index}, peak RSS", built.rss, "KB", rss_before, "the same, as written")
    if gc.ok:
        b.notes.append(
            f"after toolstack gc --compact: objects {show(disk_usage(os.path.join(compacted, 'objects')), 'B')}, "
            f"packs {len([n for n in os.listdir(os.path.join(compacted, 'objects', 'pack')) if n.endswith('.pack')])}"
        )
        b.notes.append("objects by type, after toolstack gc --compact: " + objects_by_type(compacted))


def objects_by_type(repo: str) -> str:
    """How many objects of each type the repository holds, and their bytes on disk (what its size is)."""
    out = git(repo, "cat-file", "--batch-all-objects", "--batch-check=%(objecttype) %(objectsize:disk)")
    count: dict[str, int] = {}
    size: dict[str, int] = {}
    for line in out.splitlines():
        kind, disk = line.split()
        count[kind] = count.get(kind, 0) + 1
        size[kind] = size.get(kind, 0) + int(disk)
    return ", ".join(
        f"{count[k]} {k}s {show(size[k], 'B')}" for k in sorted(size, key=size.__getitem__)[::-1]
    )


def measure_vms(b: Bench, where: str, vms: int) -> None:
    repo, sim = os.path.join(where, "pool.git"), os.path.join(where, "pool.sim")
    driver = f"sim://{sim}"
    head = git(repo, "rev-parse", "main").strip()
    archive = b.shell(f"git -C '{repo}' archive main | wc -c")
    # The simulator's data, not its cache of parsed domains (derived data: the floor reads the data once).
    files = b.shell(f"find '{sim}' -path '{sim}/cache' -prune -o -type f -exec cat {{}} + | wc -c")
    floor = archive.wall + files.wall
    b.notes.append(
        f"floor: git archive main {show(archive.wall, 's')} ({int(archive.stdout) / 2**20:.1f} MB) "
        f"+ simulator files {show(files.wall, 's')} ({int(files.stdout) / 2**20:.1f} MB)"
    )
    imports = b.run([sys.executable, "-c", "import toolstack.ops, toolstack.status, toolstack.cli.vm"])
    listed = b.run(toolstack(repo, driver, "vm", "list"))
    if len(listed.stdout.splitlines()) != vms + 1:
        b.notes.append(f"vm list printed {len(listed.stdout.splitlines())} lines for {vms} VMs")
    dry = b.run(toolstack(repo, driver, "reconcile", "--dry-run"))
    real = b.run(toolstack(repo, driver, "reconcile"))
    for label, run in (("reconcile --dry-run", dry), ("reconcile", real)):
        said = run.stdout.strip()
        b.notes.append(f"{label}: {said[:300]!r}" + ("" if said == "nothing to do" else ": NOT FAITHFUL"))
    if git(repo, "rev-parse", "main").strip() != head:
        b.notes.append("reconcile changed main: the state was not faithful; it is rebuilt next run")
        states.invalidate(where)
    listing, plan = warm("list", repo, driver), warm("plan", repo, driver)
    for label, calls in (("vm list (status.listing)", listing), ("reconcile plan", plan)):
        b.notes.append(
            f"{label} in process: 1st call {show(calls['first'], 's')}, 2nd {show(calls['second'], 's')}"
        )

    what, n = "floor: git archive + cat sim files", f"{vms} VMs"
    b.add(f"vm list, {n}, cold", listed.wall, "s", floor, what, "<= 2x floor", 2.0 * floor)
    b.add(f"vm list, {n}, warm (in process, 2nd call)", listing["second"], "s", floor, what)
    b.add(f"reconcile --dry-run, {n}, cold", dry.wall, "s", floor, what)
    b.add(f"reconcile, nothing to do, {n}, cold", real.wall, "s", floor, what, "<= 3x floor", 3.0 * floor)
    b.add(f"reconcile plan, {n}, warm (in process, 2nd call)", plan["second"], "s", floor, what)
    for label, run in (("vm list", listed), ("reconcile --dry-run", dry), ("reconcile", real)):
        b.add(
            f"{label}, {n}, peak RSS",
            run.rss,
            "KB",
            imports.rss,
            "python + toolstack imports",
            "<= 300 MB",
            300 * MB,
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1,000 VMs and 10,000 operations (a smoke run)")
    parser.add_argument("--cache", default=os.path.expanduser("~/.cache/git-toolstack/scale"))
    parser.add_argument("--vms", type=int, help="VMs of the pool state [10000; quick 1000]")
    parser.add_argument("--operations", type=int, help="operations of the history [100000; quick 10000]")
    parser.add_argument("--history-vms", type=int, default=1000, help="VMs the operations act on")
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--repeat", type=int, default=3, help="fresh processes per measure (median)")
    parser.add_argument(
        "--only",
        default=",".join(STAGES),
        help=f"comma-separated stages to run, of {', '.join(STAGES)} [all]; 'history' without 'size' "
        "skips the repacked copy (minutes at full size)",
    )
    args = parser.parse_args()
    only = set(args.only.split(","))
    if only - set(STAGES):
        parser.error(f"--only: unknown stage(s) {', '.join(sorted(only - set(STAGES)))}; stages: {STAGES}")
    if not os.access(TIME, os.X_OK):
        raise SystemExit(f"{TIME} is missing (it measures peak RSS): apt-get install time")
    vms = args.vms or (1000 if args.quick else 10_000)
    ops = args.operations or (10_000 if args.quick else 100_000)
    build_deadline = 300 if args.quick else 1800
    b = Bench(args.repeat, timeout=300 if args.quick else 1800, budget=120 if args.quick else 600)
    print(f"# scale benchmark: {vms} VMs; {ops} operations on {args.history_vms} VMs; cache {args.cache}")
    os.makedirs(args.cache, exist_ok=True)

    def pool_builder(where: str) -> None:
        states.build_pool_of_vms(
            os.path.join(where, "pool.git"),
            os.path.join(where, "pool.sim"),
            vms,
            args.seed,
            time.monotonic() + build_deadline,
        )

    def history_builder(where: str) -> None:
        states.build_history(
            os.path.join(where, "pool.git"),
            ops,
            args.history_vms,
            args.seed,
            time.monotonic() + build_deadline,
        )

    key = f"v{states.FORMAT}-seed{args.seed}"
    pool, pool_took, history, history_took, commits = "", 0.0, "", 0.0, "-"
    if "vms" in only:  # a state is built (minutes, gigabytes) only for a stage that reads it
        pool, pool_took = states.cached(args.cache, f"vms-{vms}-{key}", pool_builder, print)
    if only & {"history", "size"}:
        history, history_took = states.cached(
            args.cache, f"history-{ops}x{args.history_vms}-{key}", history_builder, print
        )
        commits = git(os.path.join(history, "pool.git"), "rev-list", "--count", "main").strip()
    print(
        f"build: {vms} VMs in {pool_took:.1f} s; {ops} operations ({commits} commits) in {history_took:.1f} s"
    )
    print("\n  measure | ours | baseline | ratio | target | met")
    scratch = tempfile.mkdtemp(prefix="scratch-", dir=args.cache)  # beside the states: hard links work
    load = os.getloadavg()[0]  # the machine is shared: say how busy it was
    try:
        if "startup" in only:
            measure_startup(b)
        if only & {"history", "size"}:
            print(
                "  (history: git log, the log index from scratch, commit-graph, repack -adf ...)", flush=True
            )
            name = f"vm-{args.history_vms // 2:04d}"
            measure_history(b, history, name, scratch, repack_too="size" in only)
        if "vms" in only:
            print(f"  ({vms} VMs: the floor, vm list, reconcile ...)", flush=True)
            measure_vms(b, pool, vms)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"\n## Scale ({vms} VMs; {ops} operations, {commits} commits, on {args.history_vms} VMs)\n")
    print("| measure | ours | baseline | ratio | target | met |")
    print("|---|---|---|---|---|---|")
    for row in b.rows:
        print("| " + " | ".join(cells(row)) + " |")
    print("\nMB and GB are binary (MiB, GiB). Create+start over HTTP: bench/api_bench.py.")
    b.notes.append(
        f"load average (1 min): {load:.1f} at the start of the measures, {os.getloadavg()[0]:.1f} at the end"
    )
    for note in b.notes:
        print(f"- {note}")


if __name__ == "__main__":
    main()
