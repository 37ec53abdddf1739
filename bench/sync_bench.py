"""Benchmark of sync through git servers, against the git CLI measured in the same run.

1. Push and pull of 1,000 commits between two stores over a real ``git daemon`` on 127.0.0.1, beside
   ``git push`` and ``git fetch`` of the same commits between the same kind of repositories (target: within
   2x of the git CLI).
2. Event latency: a commit on one host until the event is seen on another host, through ``git daemon``
   (host B polls by fetching, as the agent does).
3. Cold: host B's pull of one new commit, and the events it brings, in a fresh process (importing the store
   and opening the repository first, as ``toolstack pull`` does), with its peak RSS, beside the warm
   round of stage 2 (bench/fresh.py); and this process's own peak RSS.

Every loop has a deadline (``--deadline`` seconds each): a loop that reaches it stops, says so on its line, and
its figures come from the iterations it completed.

Run: ``.venv/bin/python bench/sync_bench.py [--commits 1000] [--latency-samples 10] [--deadline 300]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fresh import PYTHON, Fresh, Runs, cold_warm, fresh, peak_rss_mb, timed_runs  # bench/fresh.py

from store import Store
from tests.store.git_servers import git_daemon
from toolstack import layout
from toolstack.events import events_since

# A VM's config where the sharded layout reads it: a change to it is an event (vms/00/config is none).
BENCH_VM = "00000000-0000-4000-8000-000000000001"
POLL_DEADLINE = 30.0  # seconds host B polls for one event before the bench gives up
# Host B's pull in a fresh process: it must see the event host A pushed.
ONE_PULL = """
import sys
from store import Store
from toolstack.events import events_since
with Store.open(sys.argv[1]) as store:
    token = store.branch("main").head
    store.remote("origin").pull("main", strategy="ff-only")
    assert events_since(store, token), "the pull brought no event"
"""


def cold_pulls(a: Store, host_b: str, samples: int, deadline: float) -> tuple[Fresh, Runs]:
    """Host A commits and pushes; host B pulls it in a fresh process; ``samples`` times (the median), or as
    many as fit before ``deadline`` (monotonic)."""
    runs: list[Fresh] = []

    def one(n: int) -> None:
        if runs and not runs[-1].ok:  # a failed pull is reported, not repeated
            return
        with a.branch("main").transaction(message=f"vm set cold {n}", author="host-a") as tx:
            tx.set(layout.config_path(BENCH_VM), f'{{"memory": {20_000 + n}}}\n'.encode())
        a.remote("origin").push("main")
        runs.append(fresh([PYTHON, "-c", ONE_PULL, host_b], repeat=1, timeout=POLL_DEADLINE))

    rounds = timed_runs(one, samples, deadline)
    if not runs[-1].ok:
        return runs[-1], rounds
    walls = sorted(run.seconds for run in runs)
    return Fresh(walls[len(walls) // 2], max(run.rss_mb for run in runs), True, ""), rounds


def make_history(path: str, commits: int, deadline: float) -> int:
    """Up to ``commits`` commits on main, until ``deadline`` (monotonic); returns how many were made."""
    with Store.open(path, durable=False) as store:
        branch = store.branch("main")
        for i in range(commits):
            if time.monotonic() >= deadline:
                return i
            with branch.transaction(message=f"change {i}", author="bench") as tx:
                tx.set(f"vms/{i % 50:02d}/config", f'{{"memory": {i}}}\n'.encode())
    return commits


def git(*args: str) -> None:
    subprocess.run(["git", *args], check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--commits", type=int, default=1000)
    parser.add_argument("--latency-samples", type=int, default=10)
    parser.add_argument("--deadline", type=float, default=300.0, help="seconds allowed for each loop")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="sync-bench-")
    try:
        base = os.path.join(workdir, "server")
        os.makedirs(base)
        source = os.path.join(workdir, "source.git")
        commits = make_history(source, args.commits, time.monotonic() + args.deadline)
        with git_daemon(base) as daemon:
            cut = f" (deadline reached: {commits} of {args.commits} built)" if commits < args.commits else ""
            print(f"# sync benchmark: {commits} commits over git daemon on 127.0.0.1, in {workdir}{cut}")
            # The store pushes into an empty server repository, then another store pulls it all.
            git("init", "-q", "--bare", os.path.join(base, "ours.git"))
            git("-C", os.path.join(base, "ours.git"), "config", "receive.fsckObjects", "false")
            with Store.open(source) as store:
                started = time.perf_counter()
                store.remote("bench", f"{daemon}/ours.git").push("main")
                ours_push = time.perf_counter() - started
            started = time.perf_counter()
            with Store.clone(f"{daemon}/ours.git", os.path.join(workdir, "ours-clone.git")) as clone:
                ours_fetch = time.perf_counter() - started
                assert clone.branch("main").head is not None
            # The git CLI does the same between the same kinds of repositories.
            git("init", "-q", "--bare", os.path.join(base, "theirs.git"))
            started = time.perf_counter()
            git("-C", source, "push", "-q", f"{daemon}/theirs.git", "main")
            git_push = time.perf_counter() - started
            target = os.path.join(workdir, "theirs-clone.git")
            git("init", "-q", "--bare", target)
            started = time.perf_counter()
            git("-C", target, "fetch", "-q", f"{daemon}/theirs.git", "main:main")
            git_fetch = time.perf_counter() - started
            print(
                f"push  {commits} commits: store {ours_push:6.2f} s   git push  {git_push:6.2f} s   "
                f"store/git = {ours_push / git_push:5.2f}x (target <= 2x)"
            )
            print(
                f"pull  {commits} commits: store {ours_fetch:6.2f} s   git fetch {git_fetch:6.2f} s   "
                f"store/git = {ours_fetch / git_fetch:5.2f}x (target <= 2x)"
            )

            # Event latency: host A commits and pushes; host B fetches until it sees the event.
            a = Store.clone(f"{daemon}/ours.git", os.path.join(workdir, "host-a.git"))
            b = Store.clone(f"{daemon}/ours.git", os.path.join(workdir, "host-b.git"))
            fetches = []

            def event_round(n: int) -> None:
                token = b.branch("main").head
                with a.branch("main").transaction(message=f"vm set {n}", author="host-a") as tx:
                    tx.set(layout.config_path(BENCH_VM), f'{{"memory": {10_000 + n}}}\n'.encode())
                a.remote("origin").push("main")
                polls = 0
                deadline = time.monotonic() + POLL_DEADLINE
                while True:
                    polls += 1
                    b.remote("origin").pull("main", strategy="ff-only")
                    if events_since(b, token):
                        break
                    if time.monotonic() > deadline:
                        raise SystemExit(
                            f"host B saw no event {POLL_DEADLINE:.0f} s after host A pushed sample {n} "
                            f"({polls} fetches)"
                        )
                fetches.append(polls)

            rounds = timed_runs(event_round, args.latency_samples, time.monotonic() + args.deadline)
            latencies = rounds.seconds
            b.close()
            cold, pulls = cold_pulls(
                a, os.path.join(workdir, "host-b.git"), 3, time.monotonic() + args.deadline
            )
            a.close()
            fetch = f"{daemon}/theirs.git"
            no_ops = timed_runs(
                lambda _: git("-C", target, "fetch", "-q", fetch, "main:main"),
                5,
                time.monotonic() + args.deadline,
            )
            git_round_trip = 1 / no_ops.per_second
            median = rounds.median
            print(
                f"event latency host A commit -> host B event: median {median * 1e3:6.1f} ms, "
                f"max {max(latencies) * 1e3:6.1f} ms over {len(latencies)} samples "
                f"(= {median / git_round_trip:4.1f}x one no-op `git fetch` round trip of {git_round_trip * 1e3:.1f} ms)"
                f"{rounds.note()}{no_ops.note().replace('runs', 'git fetches')}"
            )
            print(
                cold_warm("host B pulls one commit and its event", cold, median, "commit, push, pull, median")
                + pulls.note()
            )
            print(f"peak RSS of this benchmark process (the warm figures): {peak_rss_mb():.0f} MB")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
