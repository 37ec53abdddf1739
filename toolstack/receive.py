"""A push to ``toolstack serve``'s git endpoint (issue 22): validated as a GitOps edit before main moves.

A pushed commit is an edit made outside the toolstack, like one a ``toolstack pull`` brings in, and it goes
through the same models, but before anything is applied rather than reverted after: every VM the pushed
history changes (from its merge base with main) must validate in the pushed tree (:func:`gitops.invalid_vms`),
or the push is refused with the error, main untouched. An accepted push is merged into main (a
fast-forward when main has not moved; otherwise a 3-way merge with what happened meanwhile, whose result is
validated again and any VM the merge made invalid reverted, as a pull does), then the hypervisor is
reconciled. Only ``refs/heads/main`` can be pushed: the toolstack's other branches are its own (claims,
failed tasks).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from store import Conflict
from toolstack import layout
from toolstack.errors import DestructivePlanRefused, InvalidInput, ToolstackError
from toolstack.gitops import _named_by_changes, _revert_invalid, invalid_vms
from toolstack.history import changed_vms
from toolstack.models import read_vm

if TYPE_CHECKING:
    from toolstack.ops import Toolstack

MAIN_REF = f"refs/heads/{layout.MAIN}"
PUSH_REMOTE = "a git push"  # how revert commits name where the edit came from


class PushRefused(ToolstackError):
    """A pushed ref is not applied; the message says why, and reaches the pusher in git's report."""


@dataclass
class PushOutcome:
    """What an accepted push did.

    Attributes:
        head: main after the merge (and any revert).
        changed: The uuids of the VMs the push changed.
        reverted: VMs the merge with concurrent changes made invalid, put back (with the error).
        reconciled: Whether the hypervisor was reconciled (False: a destructive plan was refused).
        note: What the pusher should know (a refused reconcile).
    """

    head: str
    changed: list[str] = field(default_factory=list)
    reverted: dict[str, str] = field(default_factory=dict)
    reconciled: bool = True
    note: str = ""


def _vm_label(ts: Toolstack, commit: str, uuid: str) -> str:
    """The VM's name for an error message: from its record if it validates, else from its config's JSON (an
    invalid VM still has one, usually), else its uuid."""
    tree = ts.store.tree_at(commit)
    try:
        return read_vm(tree, uuid).name
    except InvalidInput:
        pass
    try:
        name = json.loads(tree.get(f"{layout.vm_dir(uuid)}/config") or b"{}").get("name")
    except (ValueError, AttributeError):
        name = None
    return name if isinstance(name, str) and name else uuid


def check_push(ts: Toolstack, ref: str, old: str, new: str) -> list[str]:
    """The changed VMs of a push to ``ref`` from ``old`` to ``new`` (objects already written).

    Raises:
        PushRefused: not main, a deletion, a commit the store lacks, or a VM that does not validate.
    """
    store = ts.store
    if ref != MAIN_REF:
        raise PushRefused(f"only {MAIN_REF} can be pushed to the toolstack, not {ref}")
    if set(new) == {"0"}:
        raise PushRefused(f"{MAIN_REF} cannot be deleted")
    if not store.graph.exists(new):
        raise PushRefused(f"the pushed commit {new[:12]} is not in the pack sent")
    head = ts.main.head
    bases = store.graph.merge_bases(head, new) if head else []
    if head and not bases:
        raise PushRefused(
            f"{new[:12]} shares no history with main ({head[:12]}): fetch main and commit on it"
        )
    base = bases[0] if bases else None
    changed = list(changed_vms(store, base, new))
    suspects = sorted(set(changed) | _named_by_changes(store.tree_at(base), store.tree_at(new)))
    errors = invalid_vms(store.tree_at(new), suspects)
    if errors:
        raise PushRefused(
            "invalid VM configuration: "
            + "; ".join(f"{_vm_label(ts, new, uuid)}: {error}" for uuid, error in sorted(errors.items()))
        )
    return changed


def accept_push(ts: Toolstack, ref: str, old: str, new: str) -> PushOutcome:
    """Validate, merge into main and reconcile a push whose objects are in the store.

    Raises:
        PushRefused: see :func:`check_push`; or the merge with main conflicts (main is untouched).
    """
    changed = check_push(ts, ref, old, new)
    store = ts.store
    head = ts.main.head
    try:
        merged = store.merge(new, into=layout.MAIN, author=ts.author, message="Merge a git push into main")
    except Conflict as conflict:
        raise PushRefused(f"the push conflicts with main: {conflict}") from None
    outcome = PushOutcome(head=merged, changed=changed)
    if head is not None and merged != new:
        # main had moved: the merge combines two valid sides, which may still make a VM invalid.
        for rejection in _revert_invalid(
            ts, PUSH_REMOTE, head, new, merged, list(changed_vms(store, head, merged))
        ):
            outcome.reverted[rejection.uuid] = rejection.error
        outcome.head = ts.main.head or merged
    try:
        ts.reconcile(confirm=False)
    except DestructivePlanRefused as err:
        outcome.reconciled = False
        outcome.note = (
            f"main was updated, the hypervisor was not: {err} (`toolstack reconcile --yes` applies it)"
        )
    return outcome
