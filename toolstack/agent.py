"""The pool agent: one per host. It pulls the desired state from a shared git server, runs the VMs placed
on its host (``vms/<xx>/<uuid>/host``), and pushes what it observed under ``hosts/<host>/`` (a path only it
writes, so its pushes never conflict; a push race is retried after merging).

Removing the VMs deleted or migrated away on main is the agent's job, so it needs no confirmation for it, but
a round that would remove more than a share of the VMs placed on its host (:class:`RemovalLimit`) looks
like a mistake upstream (a bad merge, a rollback too far): the agent withholds those removals, records why in
``hosts/<host>/agent``, and applies the rest of the round.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import threading
import time
from collections.abc import Callable

from drivers import DriverError
from store import Conflict, RemoteError, Tree
from toolstack import layout, metrics
from toolstack.errors import HistoriesUnrelated, HistoryRewritten, ToolstackError, UnrequestedRemoval
from toolstack.ops import Toolstack
from toolstack.plan import Plan
from toolstack.pool import clone_pool
from toolstack.resync import resync
from toolstack.sync import pull, push

DEFAULT_MAX_REMOVAL_SHARE = 0.5  # more than half of a host's VMs at once is refused (and more than one)

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


def _resync(
    ts: Toolstack, say: Callable[[str], None], rewritten: HistoryRewritten, limit: RemovalLimit
) -> None:
    try:
        done = resync(ts, "origin", placed_only=True, confirm=limit)
    except (ToolstackError, RemoteError, Conflict) as err:
        say(f"agent {ts.host}: {type(rewritten).__name__}: {rewritten}; resync failed: {err} (retrying)")
        return
    say(
        f"agent {ts.host}: the pool's history was rewritten by gc; resynced: main "
        f"{(done.before or '-')[:10]} -> {(done.after or '-')[:10]}, old main kept as {done.kept}, "
        f"{len(done.local_only)} local-only commit(s)"
    )


def placed_on(tree: Tree, host: str) -> set[str]:
    """The VMs of ``tree`` placed on ``host`` (valid or not: a broken entry is still that host's VM)."""
    return {
        uuid
        for uuid in layout.vm_uuids(tree)
        if (tree.get(layout.host_path(uuid)) or b"").decode(errors="replace").strip() == host
    }


class RemovalLimit:
    """The agent's answer to a destructive plan (a :data:`toolstack.reconcile.Confirm`): yes, but a round that
    would remove (undefine) more than ``max_share`` of the VMs placed on this host, and more than one, has
    those removals withheld and recorded in ``hosts/<host>/agent``; the rest of the round goes ahead.

    The share is of the VMs placed on this host: those main places here (after the round's merge) plus those
    the round would remove. Stopping a VM main wants stopped is not a removal and is always applied.

    Attributes:
        refused: Whether the current round withheld removals (reset by :meth:`new_round`).
    """

    def __init__(self, ts: Toolstack, max_share: float = DEFAULT_MAX_REMOVAL_SHARE) -> None:
        self.ts = ts
        self.max_share = max_share
        self.refused = False

    def new_round(self) -> None:
        self.refused = False

    def __call__(self, plan: Plan) -> bool:
        removals = {a.uuid for a in plan.actions if a.kind == "undefine"}
        placed = len(placed_on(self.ts.main.tree, self.ts.host) | removals)
        if len(removals) <= 1 or len(removals) <= self.max_share * placed:
            return True
        withheld = plan.withhold(removals)
        self.refused = True
        names = ", ".join(sorted({a.name for a in withheld}))
        reason = (
            f"would remove {len(removals)} of the {placed} VMs placed on {self.ts.host} ({names}): "
            f"more than the limit of {self.max_share:g} of them (agent --max-removal-share); withheld until "
            "main is fixed or the limit is raised"
        )
        self._record(removals, reason, plan)
        return True

    def _record(self, removals: set[str], reason: str, plan: Plan) -> None:
        """Write the refusal to ``hosts/<host>/agent``, unless the same one is recorded already (a refusal
        stands round after round: one commit, not one per round)."""
        path = layout.agent_path(self.ts.host)
        try:
            current = json.loads(self.ts.main.tree.get(path) or b"null")
        except ValueError:
            current = None
        if (
            isinstance(current, dict)
            and sorted(current.get("removals", [])) == sorted(removals)
            and current.get("max_removal_share") == self.max_share
        ):
            return
        record = {
            "refused": reason,
            "removals": sorted(removals),
            "placed": len(placed_on(self.ts.main.tree, self.ts.host) | removals),
            "max_removal_share": self.max_share,
            "plan": plan.to_dict(),
            "main": self.ts.main.head,
            "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }
        with self.ts.main.transaction(
            message=f"agent {self.ts.host}: refused a round: {reason}", author=self.ts.author
        ) as tx:
            tx.set(path, json.dumps(record, indent=2, sort_keys=True).encode() + b"\n")

    def clear(self) -> bool:
        """After a round that refused nothing: drop a standing refusal record (history keeps it). Returns
        whether it did (then main has a commit to push)."""
        path = layout.agent_path(self.ts.host)
        if self.refused or self.ts.main.tree.get(path) is None:
            return False
        with self.ts.main.transaction(
            message=f"agent {self.ts.host}: no removal withheld any more", author=self.ts.author
        ) as tx:
            tx.remove(path)
        return True


def _write_metrics(path: str, failing: bool) -> bool:
    """Write the agent's metrics to ``path``; whether it failed. A failure is never fatal (VMs come first)
    and is logged once until a write works again (rounds come every second)."""
    try:
        metrics.write_textfile(path, metrics.exposition(metrics.AGENT))
    except OSError as err:
        if not failing:
            log.warning("agent: cannot write the metrics file %s: %s", path, err)
        return True
    return False


def run_agent(
    ts: Toolstack,
    interval: float = 1.0,
    once: bool = False,
    stop: threading.Event | None = None,
    report: Callable[[str], None] | None = None,
    joined: bool = False,
    max_removal_share: float = DEFAULT_MAX_REMOVAL_SHARE,
    metrics_file: str | None = None,
) -> None:
    """Pull, reconcile this host's VMs, push; every ``interval`` seconds until ``stop`` (or once).

    ``joined``: the repository was just cloned, so the first round validates every VM on main.
    ``max_removal_share``: a round that would remove more than this share of the VMs placed here (and more
    than one) has its removals withheld and recorded in ``hosts/<host>/agent`` (:class:`RemovalLimit`).
    ``metrics_file``: after every round, the agent's metrics (``metrics.AGENT``: rounds by outcome, their
    and their reconciles' durations, drift found) are written there for ``serve``'s ``/metrics``.

    A round that finds the pool's history rewritten by gc resyncs (as ``toolstack pull --resync``: the old
    main is kept under ``refs/resync/``). A round whose push would delete VMs nobody asked to delete, or that
    finds another pool's history on the remote, changes nothing, reports it and tries again next round (the
    report names what to do)."""
    say = report or (lambda line: log.info("%s", line))
    waiting: list[str] = []  # said once, not every round, until it changes
    metrics_failing = False  # the metrics file could not be written: said once until it can again
    limit = RemovalLimit(ts, max_removal_share)
    while True:
        started = time.monotonic()
        ts.verify()  # damaged by unsafe git maintenance: stop loudly rather than push over it
        outcome = "ok"
        try:
            limit.new_round()
            result = pull(ts, "origin", push=True, placed_only=True, validate_all=joined, confirm=limit)
            joined = False
            if result.plan is not None:
                metrics.AGENT_RECONCILE_SECONDS.observe(result.reconcile_seconds)
                metrics.AGENT_DRIFT_FOUND.inc(amount=len(result.plan.drift))
            if result.plan is not None and limit.clear():
                push(ts, "origin")  # the pool sees at once that the refusal is over
            if result.plan and result.plan.withheld:
                record = json.loads(ts.main.tree.get(layout.agent_path(ts.host)) or b"{}")
                say(f"agent {ts.host}: refused: {record.get('refused', '')} (hosts/{ts.host}/agent)")
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
        except (RemoteError, Conflict, DriverError) as err:
            # The pool's server or this host's hypervisor is away for now (libvirtd restarting): a daemon
            # stays up and tries again next round. Damage to the repository stops it above (verify).
            outcome = "conflict" if isinstance(err, Conflict) else "remote_error"
            outcome = "driver_error" if isinstance(err, DriverError) else outcome
            say(f"agent {ts.host}: {type(err).__name__}: {err} (retrying)")
        except HistoryRewritten as err:
            # The pool's history was squashed by gc: an agent follows the pool, so it resyncs as an operator
            # would (its own commits are observations, which it reports again; the old main is kept).
            outcome = "history_rewritten"
            _resync(ts, say, err, limit)
        except (UnrequestedRemoval, HistoriesUnrelated) as err:
            # Nothing was merged or pushed: the pool is left alone until an operator acts on the message,
            # which names what to do (roll the VMs back, check the remote's URL).
            outcome = "unrequested_removal" if isinstance(err, UnrequestedRemoval) else "histories_unrelated"
            say(f"agent {ts.host}: {type(err).__name__}: {err}")
        metrics.AGENT_ROUNDS.inc(outcome)
        metrics.AGENT_ROUND_SECONDS.observe(time.monotonic() - started)
        if metrics_file:
            metrics_failing = _write_metrics(metrics_file, metrics_failing)
        if once or (stop is not None and stop.is_set()):
            return
        remaining = interval - (time.monotonic() - started)
        if stop is not None:
            if stop.wait(max(0.0, remaining)):
                return
        elif remaining > 0:
            time.sleep(remaining)
