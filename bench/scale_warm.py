"""Warm figures for bench/scale_bench.py: one toolstack operation run twice in one process.

The first call pays for what a process fills once (imports are already done, but parsed trees, the VM cache,
the simulator's parsed domains, the log index's connection); the second is the warm figure. Run in its own
process so that the harness's memory and caches stay out of it.

Run: ``python bench/scale_warm.py {list,plan,log} REPO DRIVER HOST [NAME]``; prints one JSON object:
``{"first": seconds, "second": seconds, "count": items}``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from toolstack.ops import Toolstack
from toolstack.status import listing


def twice(call: Callable[[], int]) -> dict[str, float]:
    """Time ``call`` twice; it returns how many items it produced (a check that it did the work)."""
    started = time.perf_counter()
    call()
    first = time.perf_counter() - started
    started = time.perf_counter()
    count = call()
    return {"first": first, "second": time.perf_counter() - started, "count": count}


def main(argv: list[str]) -> None:
    kind, repo, driver, host = argv[:4]
    with Toolstack.open(repo, driver, host=host, author="bench") as ts:
        if kind == "list":
            result = twice(lambda: len(listing(ts)))
        elif kind == "plan":
            # What `reconcile --dry-run` computes; with nothing to do, `reconcile` computes just this too.
            result = twice(lambda: len(ts.reconcile(dry_run=True).actions))
        elif kind == "log":
            result = twice(lambda: len(ts.log(argv[4])))
        else:
            raise SystemExit(f"unknown measure {kind!r}")
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
