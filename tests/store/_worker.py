"""Subprocess workers for the multi-process tests (run as a script)."""

from __future__ import annotations

import json
import sys
import threading
import traceback
from collections.abc import Callable

from store import JSON, Conflict, Store, TooManyRetries


def in_threads(run: Callable[[int], None], threads: int) -> None:
    """Run ``run(0)``, ..., ``run(threads - 1)`` in as many threads at once, and wait for them all."""
    pool = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


def counters(repo: str, worker: int, threads: int, increments: int) -> None:
    """Each thread increments counter paths and writes disjoint keys; any Conflict is a failure."""
    store = Store.open(repo)
    store.schema.add("count/*", "counter")
    main = store.branch()
    failures: list[BaseException] = []

    def run(thread: int) -> None:
        try:
            for i in range(increments):
                with main.transaction(message=f"w{worker}.{thread} {i}", author=f"worker{worker}") as tx:
                    path = f"count/{(worker + thread + i) % 3}"
                    tx.set(path, (tx.get(path, codec=JSON) or 0) + 1, codec=JSON)
                    tx.set(f"own/{worker}/{thread}/{i}", b"x")
        except Conflict as err:
            failures.append(err)
        except BaseException as err:
            failures.append(err)

    in_threads(run, threads)
    store.close()
    if failures:
        traceback.print_exception(failures[0])
        print(f"worker {worker} failed: {failures[0]!r}", file=sys.stderr)
        sys.exit(1)


def increments(repo: str, worker: int, threads: int, count: int) -> None:
    """Each thread increments "n" (default merge rule) ``count`` times with ``Branch.atomically``; prints
    {"acked": ..., "conflicts": ...}: an increment either is acknowledged or raises, never both."""
    store = Store.open(repo)
    main = store.branch()
    acked = [0] * threads
    conflicts = [0] * threads
    failures: list[BaseException] = []

    def body(tx) -> None:  # type: ignore[no-untyped-def]
        tx.set("n", tx.get("n", codec=JSON) + 1, codec=JSON)

    def run(thread: int) -> None:
        try:
            for i in range(count):
                try:
                    main.atomically(body, message=f"w{worker}.{thread} n+1 ({i})", author=f"worker{worker}")
                    acked[thread] += 1
                except (Conflict, TooManyRetries):
                    conflicts[thread] += 1
        except BaseException as err:
            failures.append(err)

    in_threads(run, threads)
    store.close()
    if failures:
        traceback.print_exception(failures[0])
        sys.exit(1)
    print(json.dumps({"acked": sum(acked), "conflicts": sum(conflicts)}))


def loop(repo: str) -> None:
    """Commit forever, printing each acknowledged commit id."""
    store = Store.open(repo)
    main = store.branch()
    i = 0
    while True:
        with main.transaction(message=f"loop {i}", author="looper") as tx:
            tx.set(f"loop/{i % 50}", str(i).encode())
        sys.stdout.write(tx.commit_id + "\n")
        sys.stdout.flush()
        i += 1


def compact(repo: str) -> None:
    """Compact the repository's packs, again and again (until killed)."""
    store = Store.open(repo)
    while True:
        store.compact()


if __name__ == "__main__":
    if sys.argv[1] == "counters":
        counters(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    elif sys.argv[1] == "increments":
        increments(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    elif sys.argv[1] == "loop":
        loop(sys.argv[2])
    elif sys.argv[1] == "compact":
        compact(sys.argv[2])
