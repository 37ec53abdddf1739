"""Watches: who is told about which changes.

A watch on a path fires for every change at or under it, and fires once when registered. When a subtree is
removed, a watch on a node inside it fires too, with its own path (as C xenstored does). Events are delivered
at least once; a watch may see an extra event, never miss one. An unprivileged watcher only hears about
nodes it may read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from toolstack.xenstored import nodes
from toolstack.xenstored.errors import AlreadyExists, NoSuchNode, QuotaExceeded, TooBig
from toolstack.xenstored.nodes import LeafChange, Node
from toolstack.xenstored.paths import Key, WatchPath, from_key, is_under, to_key
from toolstack.xenstored.perms import Access, Caller
from toolstack.xenstored.quotas import Quotas


class WatchSink(Protocol):
    """Where a watch's events go: a client connection."""

    @property
    def caller(self) -> Caller: ...

    def send_event(self, path: str, token: bytes) -> None: ...


@dataclass(eq=False, slots=True)
class Watch:
    """One registered watch."""

    sink: WatchSink
    path: WatchPath
    token: bytes

    @property
    def key(self) -> Key:
        return to_key(self.path.absolute)

    def deliver(self, event_path: str) -> None:
        self.sink.send_event(self.path.shown(event_path), self.token)


class WatchRegistry:
    """Every watch of every connection, indexed by path so that firing costs one lookup per ancestor."""

    def __init__(self, quotas: Quotas) -> None:
        self._quotas = quotas
        self._by_path: dict[str, list[Watch]] = {}
        self._by_sink: dict[int, list[Watch]] = {}
        self._per_domain: dict[int, int] = {}

    def add(self, sink: WatchSink, path: WatchPath, token: bytes) -> Watch:
        """Register a watch (the caller then sends the initial event).

        Raises:
            AlreadyExists: The connection already watches this path with this token.
            TooBig: The domain holds its quota of watches.
            QuotaExceeded: The connection holds the hard maximum of watches.
        """
        mine = self._by_sink.setdefault(id(sink), [])
        if any(w.path == path and w.token == token for w in mine):
            raise AlreadyExists("this connection already has that watch", path.absolute)
        caller = sink.caller
        if not caller.privileged and self._per_domain.get(caller.domid, 0) >= self._quotas.watches:
            raise TooBig(f"domain {caller.domid} holds {self._quotas.watches} watches (quota)")
        if len(mine) >= self._quotas.hard_watches:
            raise QuotaExceeded(f"a connection may hold at most {self._quotas.hard_watches} watches")
        watch = Watch(sink, path, token)
        mine.append(watch)
        self._by_path.setdefault(path.absolute, []).append(watch)
        self._per_domain[caller.domid] = self._per_domain.get(caller.domid, 0) + 1
        return watch

    def remove(self, sink: WatchSink, path: WatchPath, token: bytes) -> None:
        """Raises NoSuchNode if the connection has no such watch."""
        mine = self._by_sink.get(id(sink), [])
        for watch in mine:
            if watch.path == path and watch.token == token:
                self._drop(watch)
                return
        raise NoSuchNode("no such watch", path.absolute)

    def remove_all(self, sink: WatchSink) -> int:
        """Drop every watch of a connection; returns how many there were."""
        mine = list(self._by_sink.get(id(sink), []))
        for watch in mine:
            self._drop(watch)
        self._by_sink.pop(id(sink), None)
        return len(mine)

    def count(self, sink: WatchSink) -> int:
        return len(self._by_sink.get(id(sink), []))

    def _drop(self, watch: Watch) -> None:
        self._by_sink[id(watch.sink)].remove(watch)
        same_path = self._by_path.get(watch.path.absolute, [])
        if watch in same_path:
            same_path.remove(watch)
            if not same_path:
                del self._by_path[watch.path.absolute]
        domid = watch.sink.caller.domid
        self._per_domain[domid] = max(0, self._per_domain.get(domid, 0) - 1)

    # -- firing --------------------------------------------------------------------------------------------
    def fire_special(self, name: str) -> None:
        """Fire ``@introduceDomain`` or ``@releaseDomain`` watches."""
        for watch in list(self._by_path.get(name, [])):
            watch.deliver(name)

    def fire(self, changes: Iterable[LeafChange], tree: Node) -> None:
        """Fire every watch concerned by these changes; ``tree`` is the state after them."""
        changed: dict[Key, bool] = {}
        created: set[Key] = set()
        for change in changes:
            node = change.node
            if node not in changed:
                changed[node] = change.new is None and not nodes.exists(tree, node)
            if change.key[-1] == nodes.PERMS and change.old is None:
                created.add(node)
        if not changed or not self._by_path:
            return
        # A node created only as the parent of a written one is told through that one (as in C xenstored).
        above = {node[:depth] for node in changed for depth in range(len(node))}
        for node in created & above:
            del changed[node]
        removed = {node for node, gone in changed.items() if gone}
        roots = [node for node in removed if not any(node[:d] in removed for d in range(len(node)))]
        delivered: set[tuple[int, str]] = set()
        for node, gone in changed.items():
            if gone and node not in roots:
                continue  # told through its removed ancestor, and through exact watches below
            event_path = from_key(node)
            for depth in range(len(node) + 1):
                for watch in self._by_path.get(from_key(node[:depth]), ()):
                    self._deliver(watch, event_path, node, tree, delivered)
        for root in roots:
            for path, watches in list(self._by_path.items()):
                if path.startswith("/") and path != from_key(root):
                    key = to_key(path)
                    if is_under(key, root):
                        for watch in watches:
                            self._deliver(watch, path, key, tree, delivered)

    def _deliver(
        self, watch: Watch, event_path: str, node: Key, tree: Node, done: set[tuple[int, str]]
    ) -> None:
        mark = (id(watch), event_path)
        if mark in done:
            return
        done.add(mark)
        caller = watch.sink.caller
        if not caller.privileged:
            visible = node
            while visible and not nodes.exists(tree, visible):
                visible = visible[:-1]
            if not nodes.permissions(tree, visible).access(caller) & Access.READ:
                return
        watch.deliver(event_path)
