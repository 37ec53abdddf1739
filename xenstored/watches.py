"""Watches: who is told about which changes.

A watch on a path fires for every change at or under it, and fires once when registered. When a subtree is
removed, a watch on a node inside it fires too, with its own path (as C xenstored does). Events are delivered
at least once; a watch may see an extra event, never miss one. An unprivileged watcher only hears about
nodes it may read.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from xenstored import nodes
from xenstored.errors import AlreadyExists, NoSuchNode, QuotaExceeded, TooBig
from xenstored.nodes import LeafChange, Node
from xenstored.paths import Key, WatchPath, from_key, to_key
from xenstored.perms import Access, Caller
from xenstored.quotas import Quotas


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


class _Trie:
    """Watches on node paths, by path segment: a change walks down only as far as some watch lies."""

    __slots__ = ("children", "watches")

    def __init__(self) -> None:
        self.children: dict[str, _Trie] = {}
        self.watches: list[Watch] = []

    def find(self, key: Key) -> _Trie | None:
        trie: _Trie | None = self
        for name in key:
            trie = trie.children.get(name)  # type: ignore[union-attr]
            if trie is None:
                return None
        return trie

    def below(self) -> Iterator[Watch]:
        """Every watch strictly under this point."""
        stack = list(self.children.values())
        while stack:
            trie = stack.pop()
            yield from trie.watches
            stack.extend(trie.children.values())


class WatchRegistry:
    """Every watch of every connection, indexed by path (special names) and by path segment (nodes), so that
    firing walks a change's path only as deep as some watch lies."""

    def __init__(self, quotas: Quotas) -> None:
        self._quotas = quotas
        self._by_path: dict[str, list[Watch]] = {}
        self._trie = _Trie()
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
        if not path.special:
            trie = self._trie
            for name in watch.key:
                trie = trie.children.setdefault(name, _Trie())
            trie.watches.append(watch)
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
        if not watch.path.special:
            self._untrie(watch)
        domid = watch.sink.caller.domid
        self._per_domain[domid] = max(0, self._per_domain.get(domid, 0) - 1)

    def _untrie(self, watch: Watch) -> None:
        key = watch.key
        trail = [self._trie]
        for name in key:
            child = trail[-1].children.get(name)
            if child is None:
                return
            trail.append(child)
        if watch in trail[-1].watches:
            trail[-1].watches.remove(watch)
        for depth in range(len(key), 0, -1):  # prune branches left without watches
            if trail[depth].watches or trail[depth].children:
                break
            del trail[depth - 1].children[key[depth - 1]]

    # -- firing --------------------------------------------------------------------------------------------
    def fire_special(self, name: str) -> None:
        """Fire ``@introduceDomain`` or ``@releaseDomain`` watches."""
        for watch in list(self._by_path.get(name, [])):
            watch.deliver(name)

    def fire(self, changes: Iterable[LeafChange], tree: Node, touched: Iterable[Key] = ()) -> None:
        """Fire every watch concerned by these changes, and by writes to ``touched`` nodes that changed
        nothing (C xenstored and oxenstored fire for every successful write); ``tree`` is the state after
        them."""
        top = self._trie
        if not top.children and not top.watches:
            return
        removals: dict[Key, bool] = {}  # changed node -> whether some blob of it was removed
        created: set[Key] = set()
        for key, old, new in changes:
            node = key[:-1]
            if new is None:
                removals[node] = True
            elif node not in removals:
                removals[node] = False
            if old is None and key[-1] == nodes.PERMS:
                created.add(node)
        for node in touched:
            removals.setdefault(node, False)
        # The trie first: a changed node no watch lies on, above or (when removed) below is skipped, so
        # that the filters below run only for nodes some watch cares about.
        concerned: list[tuple[Key, list[list[Watch]], _Trie | None]] = []
        for node, removal in removals.items():
            on_path: list[list[Watch]] = []
            trie: _Trie | None = top
            depth = 0
            while trie is not None:
                if trie.watches:
                    on_path.append(trie.watches)
                if depth == len(node):
                    break
                trie = trie.children.get(node[depth])
                depth += 1
            below = trie if removal and trie is not None and trie.children else None
            if on_path or below is not None:
                concerned.append((node, on_path, below))
        if not concerned:
            return
        delivered: set[tuple[int, str]] = set()
        above: set[Key] | None = None
        for node, on_path, below in concerned:
            if node in created:
                # A node created only as the parent of a written one is told through that one (as in C
                # xenstored).
                if above is None:
                    above = _strict_prefixes(removals)
                if node in above:
                    continue
            gone = removals[node] and not nodes.exists(tree, node)
            if gone and any(
                removals.get(node[:depth]) and not nodes.exists(tree, node[:depth])
                for depth in range(len(node))
            ):
                continue  # told through its removed ancestor, and through exact watches below
            if on_path:
                event_path = from_key(node)
                for watches in on_path:
                    for watch in watches:
                        self._deliver(watch, event_path, node, tree, delivered)
            if gone and below is not None:
                for watch in list(below.below()):
                    self._deliver(watch, watch.path.absolute, watch.key, tree, delivered)

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


def _strict_prefixes(keys: Iterable[Key]) -> set[Key]:
    """Every proper prefix of the keys. Each key's ancestors are walked up only until one already known:
    a chain of created nodes a thousand deep costs a thousand prefixes, not half a million."""
    found: set[Key] = set()
    for key in keys:
        for depth in range(len(key) - 1, -1, -1):
            prefix = key[:depth]
            if prefix in found:
                break
            found.add(prefix)
    return found
