"""VM-level events derived from commit diffs on main: created, started, stopped, config changed, ...

A token is a commit id: ``events_since(token)`` gives every event after that commit, oldest first, and each
event carries the token to resume from. ``gc`` rewrites the commits after its squash point (same trees,
messages, authors and dates): a token among them resumes from the commit it became, and the squash point
itself from the new root (:func:`store.squash.rewritten_commit` finds it by content, on the host that ran gc
and on a peer after ``pull --resync``, both of which still hold the old commit). A token that was cut away
(older than the squash point), or is unknown here (main was reset under it), raises :class:`EventsLost`, as
xapi's EVENTS_LOST or etcd's compaction error do: the client must re-read the state and resume from the head.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

from store import HistoryLost, Store
from store.squash import rewritten_commit
from toolstack import layout
from toolstack.errors import ToolstackError


class EventsLost(ToolstackError):
    """The resume token is not in main's history any more: re-read the state, resume from the head."""

    def __init__(self, token: str) -> None:
        self.token = token
        super().__init__(f"events since {token[:12]} are lost (history was squashed or reset); resynchronise")


@dataclass(frozen=True)
class Event:
    """Something that happened to a VM, as recorded by one commit on main.

    Attributes:
        token: The commit id (resume after it).
        kind: created, deleted, started, stopped, paused, resumed, config-changed, device-added,
            device-removed, device-changed, observed.
        vm: The VM's uuid.
        name: Its name (at that commit, or before it for a deletion).
        time: The commit's time.
        author: Who made the change.
        detail: Kind-specific data (changed fields, device id, observed state...).
    """

    token: str
    kind: str
    vm: str
    name: str
    time: int
    author: str
    detail: dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


_DESIRED_TRANSITIONS = {
    ("stopped", "running"): "started",
    ("running", "stopped"): "stopped",
    ("paused", "stopped"): "stopped",
    ("running", "paused"): "paused",
    ("paused", "running"): "resumed",
    ("stopped", "paused"): "started",
}


def _json(value: bytes | None) -> dict[str, object]:
    if value is None:
        return {}
    try:
        document = json.loads(value)
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


def _events_of_commit(
    store: Store, commit: str, changes: list[tuple[str, bytes | None, bytes | None]]
) -> list[Event]:
    info = store.graph.info(commit)
    # Changes under vms/ by (uuid, path below its directory), so that a VM moved into its shard unchanged
    # (the commit that sharded a repository made before the shards) cancels out.
    vm_changes: dict[tuple[str, str], list[bytes | None]] = {}
    other_changes: list[tuple[str, bytes | None, bytes | None]] = []
    for path, old, new in changes:
        split = layout.split_vm_path(path)
        if split is None:
            other_changes.append((path, old, new))
            continue
        key = (split[0], "/".join(split[1]))
        pair = vm_changes.setdefault(key, [None, None])
        pair[0] = pair[0] if pair[0] is not None else old
        pair[1] = new if new is not None else pair[1]
    names: dict[str, str] = {}
    for (uuid, below), (old, new) in vm_changes.items():
        if below == "config":
            names[uuid] = str(_json(new or old).get("name", ""))
    tree = store.tree_at(commit)

    def name_of(uuid: str) -> str:
        if uuid not in names:
            names[uuid] = str(_json(tree.get(layout.config_path(uuid))).get("name", ""))
        return names[uuid]

    events: list[Event] = []

    def add(kind: str, uuid: str, **detail: object) -> None:
        events.append(Event(commit, kind, uuid, name_of(uuid), info.author_time, info.author, dict(detail)))

    for (uuid, below), (old, new) in vm_changes.items():
        if old == new:
            continue
        parts = below.split("/")
        leaf = parts[0]
        if leaf == "config":
            if old is None:
                add("created", uuid)
            elif new is None:
                add("deleted", uuid)
            else:
                before, after = _json(old), _json(new)
                fields = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
                add("config-changed", uuid, fields=fields)
        elif leaf == "desired" and new is not None:
            # A VM created running (created and booted by one task) starts from "stopped".
            transition = (old.decode().strip() if old is not None else "stopped", new.decode().strip())
            kind = _DESIRED_TRANSITIONS.get(transition)
            if kind is not None:
                add(kind, uuid, desired=transition[1])
        elif leaf == "devices" and len(parts) == 2:
            kind = "device-added" if old is None else "device-removed" if new is None else "device-changed"
            add(kind, uuid, device=parts[1])
    for path, old, new in other_changes:
        parts = path.split("/")
        if parts[0] == layout.HOSTS and len(parts) in (4, 5) and parts[2] == "domains":
            # hosts/<host>/domains/<xx>/<uuid>, or hosts/<host>/domains/<uuid> in older repositories
            before, after = _json(old), _json(new)
            if before.get("state") != after.get("state"):
                add("observed", parts[-1], host=parts[1], state=after.get("state", "absent"))
    # A creation comes before what the new VM holds, a deletion after what the VM held.
    events.sort(key=lambda e: {"created": 0, "deleted": 2}.get(e.kind, 1))
    return events


def events_since(store: Store, since: str | None = None, limit: int | None = None) -> list[Event]:
    """Events after commit ``since`` (all of main's history if None), oldest first.

    A ``since`` that ``gc`` rewrote resumes from its rewrite (the events are those after it, with the new
    commits' tokens).

    Raises:
        EventsLost: ``since`` is not in main's history any more, and no rewrite of it is.
    """
    branch = store.branch(layout.MAIN)
    try:
        changes = list(branch.changes(since=since))
    except HistoryLost as err:
        head = branch.head
        mapped = rewritten_commit(store, head, since) if since is not None and head is not None else None
        if mapped is None:
            raise EventsLost(since or "") from err
        changes = list(branch.changes(since=mapped))
    by_commit: dict[str, list[tuple[str, bytes | None, bytes | None]]] = {}
    order: list[str] = []
    for change in changes:
        if change.commit not in by_commit:
            by_commit[change.commit] = []
            order.append(change.commit)
        by_commit[change.commit].append((change.path, change.old, change.new))
    events: list[Event] = []
    for commit in order:
        events.extend(_events_of_commit(store, commit, by_commit[commit]))
        if limit is not None and len(events) >= limit:
            return events[:limit]
    return events


def follow(store: Store, since: str | None, poll: float = 0.2, stop: object = None) -> Iterator[Event]:
    """Events after ``since``, then new ones as main moves (whoever moves it), until ``stop`` is set.

    Args:
        store: The state repository.
        since: Resume token, or None to start at the current head (only new events).
        poll: Seconds between checks of main's ref.
        stop: An object with ``is_set()`` (e.g. threading.Event) that ends the stream.
    """
    branch = store.branch(layout.MAIN)
    token = since if since is not None else branch.head
    while stop is None or not stop.is_set():  # type: ignore[attr-defined]
        head = branch.head
        if head != token:
            yield from events_since(store, token)
            token = head
        time.sleep(poll)
