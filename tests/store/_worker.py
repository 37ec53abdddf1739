"""Subprocess workers for the multi-process tests (run as a script)."""

from __future__ import annotations

import sys
import threading
import traceback

from store import JSON, Conflict, Store


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

    pool = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    store.close()
    if failures:
        traceback.print_exception(failures[0])
        print(f"worker {worker} failed: {failures[0]!r}", file=sys.stderr)
        sys.exit(1)


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


if __name__ == "__main__":
    if sys.argv[1] == "counters":
        counters(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    elif sys.argv[1] == "loop":
        loop(sys.argv[2])
