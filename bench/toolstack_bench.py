"""Benchmark of the toolstack against baselines measured in the same run.

1. create+start operations per second through ``toolstack.ops`` (each operation a task branch merged into
   main, durably), on the simulator and on libvirt's ``test:///default``, beside the raw driver's
   define+start rate: the ratio is the cost of keeping every change in git.
2. ``toolstack log VM`` on a repository with 100,000 commits on main, beside ``git log -- vms/<xx>/<uuid>``
   (target: >= 50x faster and <= 50 ms). The history is written directly with the store (shaped like the
   toolstack's: one first-parent commit per operation on one of 100 VMs), since 100,000 real operations would
   take an hour here.

3. What an operator waits for: ``toolstack vm create``, ``vm start``, ``vm list`` and ``log VM`` each in a
   fresh process (imports, opening the repository, first reads), with its peak RSS, beside the same call
   warm (the second in one process) and the bare interpreter's start-up (bench/fresh.py).

Every loop has a deadline (``--deadline`` seconds each): a loop that reaches it stops, says so on its line, and
its figures come from the iterations it completed (a history cut short is measured at the size it reached).

Run: ``.venv/bin/python bench/toolstack_bench.py [--ops 200] [--commits 100000] [--repeat 3] [--deadline 300]``
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid as uuidlib
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fresh import PYTHON, Runs, cold_warm, fresh, peak_rss_mb, timed_runs, toolstack  # bench/fresh.py

import drivers
from drivers import DomainSpec
from store import Store
from store.objects import COMMIT, encode_commit, object_id
from toolstack import layout
from toolstack.models import Desired, vm_files
from toolstack.ops import Toolstack
from toolstack.pool import init_pool


def raw_define_start(uri: str, count: int, deadline: float) -> Runs:
    driver = drivers.open(uri)
    specs = [
        DomainSpec(uuid=uuidlib.uuid4(), name=f"raw-{uuidlib.uuid4().hex[:10]}", memory=64)
        for _ in range(count)
    ]

    def define_start(n: int) -> None:
        driver.define(specs[n])
        driver.start(specs[n].uuid)

    runs = Runs([], count)
    try:
        runs = timed_runs(define_start, count, deadline)
    finally:
        for spec in specs[: runs.done]:
            driver.destroy(spec.uuid)
            driver.undefine(spec.uuid)
        driver.close()
    return runs


def toolstack_create_start(workdir: str, uri: str, count: int, deadline: float) -> Runs:
    repo = os.path.join(workdir, f"ops-{uuidlib.uuid4().hex[:6]}.git")
    with Toolstack.init(repo, uri, author="bench") as ts:
        names = [f"vm-{uuidlib.uuid4().hex[:10]}" for _ in range(count)]

        def create_start(n: int) -> None:
            ts.create(names[n], memory="64M")
            ts.start(names[n])

        runs = timed_runs(create_start, count, deadline)
        for vm in ts.vms():
            ts.driver.destroy(vm.uuid)
            ts.driver.undefine(vm.uuid)
    return runs


def build_history(repo: str, commits: int, deadline: float, vms: int = 100) -> tuple[str, int]:
    """Up to ``commits`` first-parent commits on main, each changing one VM's config, until ``deadline``
    (monotonic); returns one VM's uuid and how many commits were built."""
    rng = random.Random(7)
    uuids = [str(uuidlib.UUID(int=rng.getrandbits(128), version=4)) for _ in range(vms)]
    with Store.open(repo, durable=False) as store:
        tree = store.tree_at(None)
        for n, uuid in enumerate(uuids):
            spec = DomainSpec(uuid=uuid, name=f"vm{n}", memory=512)
            for path, value in vm_files(spec, Desired.STOPPED).items():
                tree = tree.set(path, value)
        head = store.write_commit(tree, [], "seed", "bench")
        pending = []
        built = 0
        for i in range(commits):
            if time.monotonic() >= deadline:
                break
            built = i + 1
            n = rng.randrange(vms)
            uuid = uuids[n]
            spec = DomainSpec(uuid=uuid, name=f"vm{n}", memory=256 + i % 4096)
            config = layout.config_path(uuid)
            tree = tree.set(config, vm_files(spec, Desired.STOPPED)[config])
            raw = encode_commit(
                tree.oid,
                [head],
                "bench <b@x>",
                "bench <b@x>",
                f"vm set vm{n} ({uuid})",
                timestamp=1_700_000_000 + i,
            )
            pending.extend(tree.new_objects())
            tree.mark_stored()
            oid = object_id(COMMIT, raw)
            pending.append((oid, COMMIT, raw))
            head = oid.decode()
            if len(pending) > 20_000:
                store.backend.write_objects(pending)
                pending = []
        store.backend.write_objects(pending)
        store.set_branch("main", head)
    init_pool(repo, "bench")  # the pool record, as on a repository an older release made
    return uuids[0], built


def warm(call: Callable[[int], object], deadline: float, times: int = 3) -> float:
    """Median seconds of ``call(n)`` after a first call (which fills the process's caches) is left out; up
    to ``times`` calls before ``deadline`` (NaN if only the first fitted)."""
    call(-1)
    return timed_runs(call, times, deadline).median


def cold_commands(workdir: str, repeat: int, seconds: float) -> None:
    """create, start and list as an operator runs them, in fresh processes, beside the same calls warm."""
    repo, driver = os.path.join(workdir, "cli.git"), f"sim://{workdir}/cli-sim"
    with Toolstack.init(repo, driver, author="bench") as ts:
        for n in range(20):
            ts.create(f"seed-{n}", memory="64M")
        warm_create = warm(lambda n: ts.create(f"warm-{n}", memory="64M"), time.monotonic() + seconds)
        warm_start = warm(lambda n: ts.start(f"warm-{n}"), time.monotonic() + seconds)
        warm_list = warm(lambda n: ts.vms(), time.monotonic() + seconds)
    cli = ["--repo", repo, "--driver", driver, "--author", "bench"]
    print(cold_warm("python -c pass (the floor)", fresh([PYTHON, "-c", "pass"], repeat=repeat), None))
    create = fresh(lambda n: toolstack(*cli, "vm", "create", f"cold-{n}", "--memory", "64M"), repeat=repeat)
    print(cold_warm("toolstack vm create (sim, durable)", create, warm_create))
    start = fresh(lambda n: toolstack(*cli, "vm", "start", f"cold-{n}"), repeat=repeat)
    print(cold_warm("toolstack vm start", start, warm_start))
    listing = fresh(toolstack(*cli, "vm", "list"), repeat=repeat)
    print(cold_warm(f"toolstack vm list ({20 + 4 + repeat} VMs)", listing, warm_list))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ops", type=int, default=200)
    parser.add_argument("--commits", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="fresh processes per cold figure (median)")
    parser.add_argument("--deadline", type=float, default=300.0, help="seconds allowed for each loop")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="toolstack-bench-")
    try:
        print(f"# toolstack benchmark in {workdir}")
        print(f"\n## create+start, {args.ops} VMs (each operation a durable task branch merged into main)")
        for label, uri in (
            ("simulator (sim://, in memory)", "sim://"),
            ("libvirt test:///default", "test:///default"),
        ):
            raw_runs = raw_define_start(uri, args.ops, time.monotonic() + args.deadline)
            our_runs = toolstack_create_start(workdir, uri, args.ops, time.monotonic() + args.deadline)
            raw, ours = raw_runs.per_second, our_runs.per_second
            print(
                f"{label:32} raw driver define+start {raw:8.0f}/s{raw_runs.note()}   toolstack create+start "
                f"{ours:6.1f}/s{our_runs.note()}   = 1/{raw / ours:.0f} of the raw rate"
            )

        print("\n## cold: each command in a fresh process, beside the same call warm (2nd in one process)")
        cold_commands(workdir, args.repeat, args.deadline)

        print(f"\n## per-VM log with {args.commits} commits on main (target >= 50x git log, <= 50 ms)")
        repo = os.path.join(workdir, "history.git")
        started = time.perf_counter()
        vm, built = build_history(repo, args.commits, time.monotonic() + args.deadline)
        cut = f": deadline reached, {built} of {args.commits}; the figures below are for {built}"
        print(
            f"(built {built} commits in {time.perf_counter() - started:.1f} s{cut if built < args.commits else ''})"
        )
        started = time.perf_counter()
        expected = subprocess.run(
            ["git", "-C", repo, "log", "--format=%H", "main", "--", layout.vm_dir(vm)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        git_log = time.perf_counter() - started
        with Toolstack.open(repo, "sim://", author="bench") as ts:
            started = time.perf_counter()
            first = ts.log(vm)
            index_build = time.perf_counter() - started
            entries = first
            samples = timed_runs(lambda _: ts.log(vm), 20, time.monotonic() + args.deadline)
            ts.set_resources(vm, memory="1G")  # one more operation: the index catches up incrementally
            started = time.perf_counter()
            after_op = ts.log(vm)
            catch_up = time.perf_counter() - started
        query = samples.median
        same = [e.commit for e in first][: len(expected)] == expected[: len(first)] and len(first) == len(
            expected
        )
        print(
            f"git log -- vms/<xx>/<uuid>                {git_log * 1e3:8.1f} ms   ({len(expected)} commits)"
        )
        print(
            f"toolstack log, index up to date (median)  {query * 1e3:8.1f} ms   git log / toolstack = {git_log / query:6.0f}x"
            f"   ({len(entries)} entries, {'same commits as git' if same else 'DIFFERENT from git'}){samples.note()}"
        )
        print(
            f"toolstack log after one more operation    {catch_up * 1e3:8.1f} ms   ({len(after_op)} entries)"
        )
        print(f"toolstack log, first use (builds index)   {index_build:8.2f} s    (once per clone)")
        log_cold = fresh(toolstack("--repo", repo, "--driver", "sim://", "log", vm), repeat=args.repeat)
        print(cold_warm("toolstack log VM", log_cold, query, "index up to date, median"))
        print(f"\npeak RSS of this benchmark process (the warm figures): {peak_rss_mb():.0f} MB")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
