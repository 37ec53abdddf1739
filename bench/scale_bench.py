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
* with 10,000 VMs (bench/scale_vms.py): ``vm list``, ``reconcile --dry-run`` and ``reconcile`` (nothing to
  do) in fresh processes (the first after the parse caches are deleted, then with them filled) and warm in
  process, beside the floor: reading all the data (``git archive main | wc -c`` plus ``cat`` of every
  simulator file); ``vm show``, ``log NAME``, ``events``, ``show``, ``agent --once``, ``serve`` (GET ``/vms``)
  and ``gc``; the peak RSS of each beside a process that only imports the toolstack.

Fresh processes run under ``/usr/bin/time -f '%e %M'`` for their peak RSS; wall times are the harness's
clock around them, the median of ``--repeat`` runs. "cold" means a fresh process: the page cache is warm
(each command runs more than once, as operators run them). Every loop has a deadline. The commands run on
private copies of the cached states (hard links, bench/scale_harness.py), which stay as built. A failed
check (``log NAME`` lists other commits than git, ``reconcile`` had something to do, a command failed or
timed out) makes the run exit 1 once everything is printed. Create+start over HTTP is bench/api_bench.py's,
not repeated here.

Run: ``.venv/bin/python bench/scale_bench.py [--quick] [--cache DIR]``. Full size on a 2-core machine: the
states take ~2.5 min to build the first time (5 GB in the cache), the measures 8 to 12 min; ``--quick`` (1,000
VMs, 10,000 operations) takes about two minutes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(BENCH))
sys.path.insert(0, BENCH)

import scale_states as states  # noqa: E402
from scale_harness import (  # noqa: E402
    MB,
    TIME,
    Bench,
    cells,
    check_log,
    disk_usage,
    drop_log_index,
    git,
    private_copy,
    show,
    toolstack,
    warm,
)
from scale_vms import measure_vms  # noqa: E402

from toolstack import layout  # noqa: E402

STAGES = ("startup", "history", "size", "vms")


# -- the measures -------------------------------------------------------------------------------------------
def measure_startup(b: Bench) -> None:
    bare = b.run([sys.executable, "-c", "pass"])
    helped = b.run([sys.executable, "-m", "toolstack.cli", "--help"])
    b.add("toolstack --help, cold", helped.wall, "s", bare.wall, "python -c pass", "<= 150 ms", 0.150)


def measure_history(b: Bench, state: str, name: str, scratch: str, repack_too: bool = True) -> None:
    # On a private copy: the index is built again in it, and the cached state's is never deleted.
    repo = os.path.join(private_copy(state, os.path.join(scratch, "history")), "pool.git")
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
    drop_log_index(compacted)  # built again below, from scratch
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
            print(f"  ({vms} VMs, on a private copy: the floor, every command ...)", flush=True)
            measure_vms(b, pool, vms, scratch)
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
    if b.failures:
        print(f"\n{len(b.failures)} check(s) failed:", *(f"- {f}" for f in b.failures), sep="\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
