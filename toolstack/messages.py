"""Commit messages that say what changed, in git's habit: a subject of at most 72 columns, a body, trailers.

The subject names the operation, the VM and the change ("vm set web1: memory 1024→2048 MiB, vcpus 2→4");
what does not fit is cut with "…" and the body lists every change in full. The uuid and the task are
trailers (``VM: <uuid>``, ``Task: <id>``; ``git interpret-trailers --parse`` reads them): the VM log index
(:mod:`toolstack.log_index`) lists a commit under each VM its ``VM:`` trailers name, so drift and reconcile
commits, which change only observed state, are in that VM's log. A GitOps merge names, per VM, who made
the edits it takes (``Edited-by: <uuid> <author>``): the log shows them, not the operator who pulled.

Imports no models and no drivers (the log parses trailers without them).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from toolstack import layout
from toolstack.fielddiff import ABSENT, FieldChange, changes_between, show

if TYPE_CHECKING:
    from store import Tree

SUBJECT_WIDTH = 72
MORE = "…"
VM_TRAILER = "VM"
TASK_TRAILER = "Task"
EDITED_BY_TRAILER = "Edited-by"  # on a GitOps merge: "<uuid> <author>", one per VM and author
POOL_TRAILER = "Pool"  # on a pool's first commit: its id
SHORT_VALUE = 20  # a value longer than this is cut in a subject (the body has it whole)
_VM_LINE = re.compile(rf"^{VM_TRAILER}: ({layout.UUID_PATTERN})$", re.MULTILINE)
_TRAILER = re.compile(r"^([A-Za-z][A-Za-z0-9-]*): (.+)$")
_DRIFT = re.compile(rf"^vm (.+?) \(({layout.UUID_PATTERN})\) (.*?)(?:: changed outside the toolstack)?$")


# -- composing -------------------------------------------------------------------------------------------
def cut(text: str, width: int = SUBJECT_WIDTH) -> str:
    """``text`` on one line, at most ``width`` columns (cut with "…")."""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + MORE


def fit(head: str, parts: Sequence[str], width: int = SUBJECT_WIDTH, sep: str = ": ") -> str:
    """``head`` then as many of ``parts`` as fit in ``width`` columns, joined by ", "; "…" when cut."""
    subject = cut(head, width)
    if not parts or len(subject) + len(sep) + 1 > width:
        return subject if not parts or subject.endswith(MORE) else cut(subject + sep + MORE, width)
    shown: list[str] = []
    for n, part in enumerate(parts):
        tail = "" if n == len(parts) - 1 else ", " + MORE
        if len(subject + sep + ", ".join([*shown, part]) + tail) > width:
            break
        shown.append(part)
    if len(shown) == len(parts):
        return subject + sep + ", ".join(shown)
    return subject + sep + ", ".join([*shown, MORE]) if shown else cut(subject + sep + parts[0], width)


def compose(subject: str, body: Iterable[str] = (), trailers: Iterable[tuple[str, str]] = ()) -> str:
    """A commit message: the subject, a blank line, the body, a blank line, the trailers (last, as
    ``git interpret-trailers`` expects them)."""
    paragraphs = [cut(subject, SUBJECT_WIDTH)]
    lines = [line for line in body if line]
    if lines:
        paragraphs.append("\n".join(lines))
    pairs = list(dict.fromkeys(trailers))
    if pairs:
        paragraphs.append("\n".join(f"{key}: {value}" for key, value in pairs))
    return "\n\n".join(paragraphs) + "\n"


def init_message(name: str, pool_id: str) -> str:
    """The first commit of pool ``name``: its id in a trailer, as the VMs' uuids are in theirs."""
    return compose(f"Initialize pool {name}", (), [(POOL_TRAILER, pool_id)])


def parse_trailers(message: str) -> list[tuple[str, str]]:
    """The trailers of a message: the ``Key: value`` lines of its last paragraph (when all of it is)."""
    paragraphs = message.strip().split("\n\n")
    if len(paragraphs) < 2:
        return []
    found = []
    for line in paragraphs[-1].splitlines():
        match = _TRAILER.match(line)
        if match is None:
            return []
        found.append((match.group(1), match.group(2).strip()))
    return found


def trailer_vms(message: str) -> set[str]:
    """The uuids named by a message's ``VM: <uuid>`` lines: any line, as ``git log --grep='^VM: <uuid>$'``
    finds them (the VM log must agree with that command; the toolstack writes them only as trailers)."""
    return set(_VM_LINE.findall(message))


def edited_by(message: str, vm: str | None = None) -> list[str]:
    """The authors a GitOps merge names for ``vm``'s edits (for any VM when None)."""
    found = []
    for key, value in parse_trailers(message):
        uuid, _, author = value.partition(" ")
        if key == EDITED_BY_TRAILER and author and (vm is None or uuid == vm):
            found.append(author)
    return list(dict.fromkeys(found))


# -- the changes of one VM ---------------------------------------------------------------------------------
def vm_changes(before: Tree, after: Tree, uuid: str) -> list[FieldChange]:
    """The field changes to VM ``uuid``'s desired files (config, devices, desired, host...)."""
    where = layout.vm_dir(uuid)
    old, new = before.subtree(where), after.subtree(where)
    if old.oid == new.oid:
        return []
    return changes_between((f"{where}/{c.path}", c.old, c.new) for c in old.diff(new))


def _short(value: object) -> str:
    return cut(show(value), SHORT_VALUE)


def short(change: FieldChange) -> str:
    """A change in a subject: "memory 1024→2048 MiB", "disk1 added"."""
    if change.whole:
        return f"{change.field} {change.kind}"
    unit = f" {change.unit}" if change.unit else ""
    return f"{change.field} {_short(change.before)}→{_short(change.after)}{unit}"


def _device(change: FieldChange, raw: bytes | None) -> str:
    """An attached device in a subject: "data on xvdb", "net0 on br0"."""
    import json

    try:
        record = json.loads(raw or b"{}")
    except ValueError:
        return change.field
    where = (
        record.get("target") or record.get("bridge") or record.get("network")
        if isinstance(record, dict)
        else None
    )
    return f"{change.field} on {where}" if where else change.field


def _config(after: Tree, uuid: str) -> list[str]:
    """A new VM in a subject: "512 MiB, 2 vCPUs"."""
    import json

    try:
        config = json.loads(after.get(layout.config_path(uuid)) or b"{}")
    except ValueError:
        return []
    if not isinstance(config, dict):
        return []
    parts = []
    if "memory" in config:
        parts.append(f"{config['memory']} MiB")
    if "vcpus" in config:
        parts.append(f"{config['vcpus']} vCPU{'' if config['vcpus'] == 1 else 's'}")
    return parts


def operation_message(
    verb: str, vm_name: str, uuid: str, task_id: str, before: Tree, after: Tree, prefix: str = ""
) -> str:
    """The message of an operation's merge into main, from what it changed in the VM's files.

    Args:
        verb: The operation ("start", "set", "disk attach"...): device operations name the device kind.
        before: Main's tree the operation started from.
        after: The tree it leaves.
        prefix: Put before the subject ("task <id>: " for a claim commit).
    """
    label = f"{prefix}{verb if ' ' in verb else f'vm {verb}'} {vm_name}"
    changes = [c for c in vm_changes(before, after, uuid) if c.field not in ("desired", "migration")]
    if verb == "create":
        parts = _config(after, uuid)
    elif verb.endswith(" attach"):
        added = [c for c in changes if c.whole and c.before is ABSENT]
        parts = [_device(c, after.get(layout.device_path(uuid, c.field))) for c in added]
    elif verb.endswith(" detach"):
        parts = [c.field for c in changes if c.whole and c.after is ABSENT]
    elif verb == "delete":
        parts = []
    else:
        parts = [short(c) for c in changes]
    body = [] if verb == "delete" else [f"- {c.describe()}" for c in changes]
    return compose(fit(label, parts), body, [(VM_TRAILER, uuid), (TASK_TRAILER, task_id)])


def claim_message(task_id: str, verb: str, vm_name: str, uuid: str) -> str:
    """The message of a claim commit (the task running, written only when it fails or is recovered)."""
    label = f"task {task_id}: {verb if ' ' in verb else f'vm {verb}'} {vm_name}"
    return compose(label, (), [(VM_TRAILER, uuid), (TASK_TRAILER, task_id)])


def recovery_message(task_id: str, verb: str, vm_name: str, uuid: str) -> str:
    """The message of a recovery that rolled an interrupted task back."""
    subject = f"recover: task {task_id} (vm {verb} {vm_name}) rolled back"
    return compose(subject, (), [(VM_TRAILER, uuid), (TASK_TRAILER, task_id)])


# -- reconcile, drift, rollback, GitOps ----------------------------------------------------------------------
def _drift_label(what: str) -> str:
    """What drifted, in a subject: "stopped" (its state), "memory"."""
    if what.startswith("is "):
        state = what[3:].split(",", 1)[0]
        return "stopped" if state == "shutoff" else state
    return what.split(" ", 1)[0]


def drift_message(entries: Sequence[str]) -> str:
    """The message of a drift commit: a few VMs in the subject ("drift: 200 VMs (web1 memory, web2
    stopped, …)"), every entry in the body, a ``VM:`` trailer each.

    Args:
        entries: The plan's drift lines ("vm web1 (<uuid>) is shutoff, was running, desired running: changed
            outside the toolstack").
    """
    labels: dict[str, list[str]] = {}
    names: dict[str, str] = {}
    whats: list[str] = []
    for entry in entries:
        match = _DRIFT.match(entry)
        if match is None:
            whats.append(entry)
            continue
        name, uuid, what = match.groups()
        names[uuid] = name
        labels.setdefault(uuid, []).append(_drift_label(what))
        whats.append(f"{name} {what}")
    if len(entries) == 1:
        subject = fit("drift", [whats[0]])
    else:
        count = len(labels) or len(entries)
        parts = [f"{names[uuid]} {'/'.join(dict.fromkeys(found))}" for uuid, found in labels.items()]
        head = f"drift: {count} VM{'' if count == 1 else 's'}"
        # One column kept for the closing parenthesis.
        subject = fit(head, parts, SUBJECT_WIDTH - 1, sep=" (") + ")" if parts else head
    body = [f"- {entry}" for entry in entries]
    return compose(subject, body, [(VM_TRAILER, uuid) for uuid in labels])


def reconcile_message(actions: Sequence[tuple[str, str, str, str]]) -> str:
    """The message of a reconcile's commit of what it did.

    Args:
        actions: (kind, uuid, name, reason) of each action applied.
    """
    vms = list(dict.fromkeys(uuid for _, uuid, _, _ in actions))
    parts = [f"{kind} {name}" for kind, _, name, _ in actions]
    head = (
        "reconcile"
        if len(actions) == 1
        else f"reconcile: {len(actions)} actions on {len(vms)} VM{'' if len(vms) == 1 else 's'}"
    )
    # One column kept for the closing parenthesis.
    many = len(actions) > 1
    subject = fit(head, parts, SUBJECT_WIDTH - 1, sep=" (") + ")" if many else fit(head, parts)
    body = [f"- {kind} {name} ({uuid}): {reason}" for kind, uuid, name, reason in actions]
    return compose(subject, body, [(VM_TRAILER, uuid) for uuid in vms])


def rollback_message(what: str, target: str, changes: Sequence[FieldChange]) -> str:
    """The message of a rollback's commit: what it rolls back, to which commit, and the fields it changes.

    Args:
        what: "vm web1" or "all VMs".
        changes: The field changes it makes to VMs' desired files.
    """
    vms = list(dict.fromkeys(c.vm for c in changes if c.vm))
    head = f"rollback {what} to {target[:12]}"
    parts = [short(c) for c in changes] if len(vms) <= 1 else [f"{len(vms)} VMs"]
    body = [f"- {c.vm}: {c.describe()}" if len(vms) > 1 else f"- {c.describe()}" for c in changes]
    return compose(fit(head, parts), body, [(VM_TRAILER, uuid) for uuid in vms])


def pull_message(remote: str, branch: str, edits: dict[str, tuple[str, list[str]]]) -> str:
    """The message of a pull's merge: the VMs its incoming commits changed, and who made each edit.

    Args:
        edits: {uuid: (name, authors of the incoming commits that changed it)}.
    """
    head = f"Merge {remote}/{branch} into {branch}"
    parts = [name or uuid[:8] for uuid, (name, _) in edits.items()]
    body = [f"- {name or uuid}: {', '.join(authors)}" for uuid, (name, authors) in edits.items()]
    trailers = [(VM_TRAILER, uuid) for uuid in edits]
    trailers += [(EDITED_BY_TRAILER, f"{uuid} {a}") for uuid, (_, authors) in edits.items() for a in authors]
    return compose(fit(head, parts), body, trailers)
