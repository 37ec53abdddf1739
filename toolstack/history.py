"""History of the state repository, as operations on VMs: log, show, diff and rollback.

Every operation is a merge commit on main's first-parent chain, so the operations on one VM are the
first-parent commits that changed ``vms/<xx>/<uuid>/``. Walking 100,000 commits for each ``log`` would be
slow, so a cache in the git directory (``gitstore/vm-log.sqlite``) indexes them: it is derived data, git
itself still reads everything, and a clone rebuilds it on first use by walking main once.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from dataclasses import dataclass

from store import Store, Tree
from store.objects import CommitInfo
from toolstack import layout
from toolstack.context import Context
from toolstack.models import read_vm, uuid_for_name


@dataclass(frozen=True)
class LogEntry:
    """One commit on main, as the log shows it (an operation, a merge, a reconcile, a revert...)."""

    commit: str
    time: int
    author: str
    message: str
    vms: tuple[str, ...]

    @property
    def subject(self) -> str:
        return self.message.splitlines()[0] if self.message else ""

    def to_dict(self) -> dict[str, object]:
        return {
            "commit": self.commit,
            "time": self.time,
            "author": self.author,
            "message": self.subject,
            "vms": list(self.vms),
        }


def changed_vms(store: Store, parent: str | None, commit: str) -> tuple[str, ...]:
    """The uuids whose ``vms/<xx>/<uuid>/`` differs between two commits (comparing subtree ids only).

    The trees come through the store's cache of recent commits' trees, so indexing the operation just made
    compares the entries it already holds in memory instead of parsing ``vms/`` again.
    """
    new = store.tree_at(commit).subtree(layout.VMS)
    old = store.tree_at(parent).subtree(layout.VMS) if parent else store.tree_at(None)
    if new.oid == old.oid:
        return ()
    return tuple(sorted(layout.changed_vm_uuids(old, new)))


SCHEMA_VERSION = "2"


class VMLogIndex:
    """first-parent commits of main and the VMs each changed, cached in SQLite beside the repository."""

    def __init__(self, store: Store) -> None:
        self.store = store
        gitdir = store.gitdir
        path = os.path.join(gitdir, "gitstore", "vm-log.sqlite") if gitdir else ":memory:"
        self._db = sqlite3.connect(path, timeout=30, check_same_thread=False)
        self._mutex = threading.Lock()
        with self._db:
            self._db.execute("PRAGMA journal_mode=WAL")
            # A cache of what git holds (rebuilt when its head is not main's ancestor): in WAL mode NORMAL
            # cannot corrupt it, and spares an fsync per indexed operation.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            version = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if version is None or version[0] != SCHEMA_VERSION:
                # A cache: an index written by another version is dropped and rebuilt from git.
                self._db.execute("DROP TABLE IF EXISTS ops")
                self._db.execute("DROP TABLE IF EXISTS op_vms")
                self._db.execute("DELETE FROM meta")
                self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS ops (seq INTEGER PRIMARY KEY, commit_id TEXT, time INTEGER, "
                "author TEXT, message TEXT)"
            )
            self._db.execute("CREATE TABLE IF NOT EXISTS op_vms (vm TEXT, seq INTEGER)")
            self._db.execute("CREATE INDEX IF NOT EXISTS op_vms_by_vm ON op_vms (vm, seq)")
            self._db.execute("CREATE INDEX IF NOT EXISTS op_vms_by_seq ON op_vms (seq)")

    def close(self) -> None:
        self._db.close()

    def _indexed_head(self) -> tuple[str | None, int]:
        row = self._db.execute("SELECT value FROM meta WHERE key='head'").fetchone()
        seq = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM ops").fetchone()[0]
        return (row[0] if row else None), seq

    def update(self) -> None:
        """Index main's first-parent commits added since the last update."""
        with self._mutex:
            # Main's head is read under the mutex: a head read before it could be older than the one the
            # previous holder indexed, and look like main had been reset (a rebuild from scratch).
            head = self.store.branch(layout.MAIN).head
            indexed, seq = self._indexed_head()
            if head is None or head == indexed:
                return
            graph = self.store.graph
            if indexed is not None and not graph.is_ancestor(indexed, head):
                indexed, seq = None, 0  # main was reset or squashed: rebuild
                with self._db:
                    self._db.execute("DELETE FROM ops")
                    self._db.execute("DELETE FROM op_vms")
            pending = list(graph.first_parent_chain(head, stop=indexed))
            rows, vm_rows = [], []
            for commit_id in reversed(pending):
                seq += 1
                info = graph.info(commit_id)
                parents = info.parents
                vms = changed_vms(self.store, parents[0] if parents else None, commit_id)
                rows.append((seq, commit_id, info.author_time, info.author, info.message))
                vm_rows.extend((vm, seq) for vm in vms)
            with self._db:
                self._db.executemany("INSERT OR REPLACE INTO ops VALUES (?, ?, ?, ?, ?)", rows)
                self._db.executemany("INSERT INTO op_vms VALUES (?, ?)", vm_rows)
                self._db.execute("INSERT OR REPLACE INTO meta VALUES ('head', ?)", (head,))

    def last_change(self, vm: str) -> str | None:
        """The newest operation that changed ``vm`` (its commit id), or None if none did."""
        self.update()
        row = self._db.execute(
            "SELECT o.commit_id FROM op_vms v JOIN ops o ON o.seq = v.seq WHERE v.vm = ? "
            "ORDER BY v.seq DESC LIMIT 1",
            (vm,),
        ).fetchone()
        return row[0] if row else None

    def log(self, vm: str | None = None, limit: int | None = None, offset: int = 0) -> list[LogEntry]:
        """Operations newest first: all of them, or those that changed one VM."""
        self.update()
        bound = -1 if limit is None else limit
        if vm is None:
            rows = self._db.execute(
                "SELECT seq, commit_id, time, author, message FROM ops ORDER BY seq DESC LIMIT ? OFFSET ?",
                (bound, offset),
            ).fetchall()
        else:
            rows = self._db.execute(
                "SELECT o.seq, o.commit_id, o.time, o.author, o.message FROM op_vms v JOIN ops o "
                "ON o.seq = v.seq WHERE v.vm = ? ORDER BY v.seq DESC LIMIT ? OFFSET ?",
                (vm, bound, offset),
            ).fetchall()
        out = []
        for seq, commit_id, when, author, message in rows:
            found = self._db.execute("SELECT vm FROM op_vms WHERE seq = ?", (seq,))
            out.append(LogEntry(commit_id, when, author, message, tuple(row[0] for row in found)))
        return out


@dataclass(frozen=True)
class CommitView:
    """A commit with what it changed against its first parent."""

    info: CommitInfo
    changes: list[tuple[str, bytes | None, bytes | None]]


def show(ctx: Context, rev: str) -> CommitView:
    """Commit ``rev`` (any revision git takes) with what it changed against its first parent."""
    store = ctx.store
    commit_id = store.resolve(rev)
    info = store.graph.info(commit_id)
    parent = info.parents[0] if info.parents else None
    old = store.tree_at(parent) if parent else store.tree_at(None)
    changes = [(c.path, c.old, c.new) for c in old.diff(store.tree_at(commit_id))]
    return CommitView(info, changes)


def rollback_tree(ctx: Context, rev: str, vm: str | None = None, base: str | None = None) -> tuple[str, Tree]:
    """The desired-state tree after rolling back to ``rev``: ``vms/`` and ``names/`` as they were then
    (only one VM's, if ``vm`` is given), applied to commit ``base`` (default: main's head). Observed state
    and task records are facts, not desired state: they stay."""
    store = ctx.store
    target = store.resolve(rev)
    old = layout.shard(store.tree_at(target))  # a commit from before the shards, read in today's layout
    tree = ctx.main.tree if base is None else store.tree_at(base)
    if vm is None:
        tree = tree.graft(layout.VMS, old.subtree(layout.VMS)).graft(layout.NAMES, old.subtree(layout.NAMES))
        return target, tree
    uuid = uuid_for_name(tree, vm) or uuid_for_name(old, vm) or vm
    for _, path in layout.name_records(tree):
        if tree.get(path) == f"{uuid}\n".encode():
            tree = tree.remove(path)
    tree = tree.graft(layout.vm_dir(uuid), old.subtree(layout.vm_dir(uuid)))
    if old.kind(layout.vm_dir(uuid)) == "directory":
        tree = tree.set(layout.name_path(read_vm(old, uuid).name), f"{uuid}\n".encode())
    return target, tree
