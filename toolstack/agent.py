"""The pool agent: one per host. It pulls the desired state from a shared git server, runs the VMs placed
on its host (``vms/<xx>/<uuid>/host``), and pushes what it observed under ``hosts/<host>/`` (a path only it
writes, so its pushes never conflict; a push race is retried after merging).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from store import Conflict, RemoteError
from toolstack.errors import HistoryRewritten, ToolstackError, UnrequestedRemoval
from toolstack.ops import Toolstack
from toolstack.pool import clone_pool
from toolstack.sync import pull, resync

log = logging.getLogger(__name__)


def open_agent(repo: str, driver_uri: str, host: str, url: str) -> tuple[Toolstack, bool]:
    """The agent's toolstack on its own clone of the shared repository (cloned on first start); returns it
    and whether it just joined the pool (then its first round validates every VM, not only new changes)."""
    joined = not os.path.exists(repo) or not os.listdir(repo)
    if joined:
        clone_pool(url, repo)
    ts = Toolstack.open(repo, driver_uri, host=host, author=f"agent {host} <agent@{host}>")
    ts.store.remote("origin", url)
    return ts, joined


def _resync(ts: Toolstack, say: Callable[[str], None], rewritten: HistoryRewritten) -> None:
    try:
        done = resync(ts, "origin")
    except (ToolstackError, RemoteError, Conflict) as err:
        say(f"agent {ts.host}: {type(rewritten).__name__}: {rewritten}; resync failed: {err} (retrying)")
        return
    say(
        f"agent {ts.host}: the pool's history was rewritten by gc; resynced: main "
        f"{(done.before or '-')[:10]} -> {(done.after or '-')[:10]}, old main kept as {done.kept}, "
        f"{len(done.local_only)} local-only commit(s)"
    )


def run_agent(
    ts: Toolstack,
    interval: float = 1.0,
    once: bool = False,
    stop: threading.Event | None = None,
    report: Callable[[str], None] | None = None,
    joined: bool = False,
) -> None:
    """Pull, reconcile this host's VMs, push; every ``interval`` seconds until ``stop`` (or once).

    ``joined``: the repository was just cloned, so the first round validates every VM on main.

    A round that finds the pool's history rewritten by gc resyncs (as ``toolstack pull --resync``: the old
    main is kept under ``refs/resync/``). A round whose push would delete VMs nobody asked to delete changes
    nothing, reports it and tries again next round (the report names what to do)."""
    say = report or (lambda line: log.info("%s", line))
    waiting: list[str] = []  # said once, not every round, until it changes
    while True:
        started = time.monotonic()
        ts.verify()  # damaged by unsafe git maintenance: stop loudly rather than push over it
        try:
            result = pull(ts, "origin", push=True, placed_only=True, validate_all=joined)
            joined = False
            if result.before != result.after or (result.plan and result.plan.actions):
                actions = ", ".join(a.describe() for a in result.plan.actions) if result.plan else ""
                say(
                    f"agent {ts.host}: main {(result.before or '-')[:10]} -> {(result.after or '-')[:10]}"
                    + (f"; {actions}" if actions else "")
                    + ("; pushed" if result.pushed else "")
                )
            for uuid, error in result.rejected.items():
                say(f"agent {ts.host}: rejected an invalid edit of {uuid}: {error}")
            now_waiting = result.plan.waiting if result.plan is not None else []
            if now_waiting and now_waiting != waiting:
                say(f"agent {ts.host}: waiting: {'; '.join(now_waiting)}")
            waiting = now_waiting
            if result.plan and result.plan.errors:
                say(f"agent {ts.host}: errors: {'; '.join(result.plan.errors)}")
        except (RemoteError, Conflict) as err:
            say(f"agent {ts.host}: {type(err).__name__}: {err} (retrying)")
        except HistoryRewritten as err:
            # The pool's history was squashed by gc: an agent follows the pool, so it resyncs as an operator
            # would (its own commits are observations, which it reports again; the old main is kept).
            _resync(ts, say, err)
        except UnrequestedRemoval as err:
            # Nothing was merged or pushed: the pool is left alone until an operator acts on the message.
            say(f"agent {ts.host}: {type(err).__name__}: {err}")
        if once or (stop is not None and stop.is_set()):
            return
        remaining = interval - (time.monotonic() - started)
        if stop is not None:
            if stop.wait(max(0.0, remaining)):
                return
        elif remaining > 0:
            time.sleep(remaining)
