"""The VM log index: main's first-parent commits and the VMs each changed, in SQLite beside the repository.

Every operation is a merge commit on main's first-parent chain, so the operations on one VM are the
first-parent commits that changed ``vms/<xx>/<uuid>/``, and those whose message names it on a ``VM: <uuid>``
line (the trailers of :mod:`toolstack.messages`: drift and reconcile commits, which change only observed
state, an interrupted task rolled back): the union of ``git log --first-parent main -- vms/<xx>/<uuid>``
and ``git log --first-parent --grep='^VM: <uuid>$' main`` (README "Using git on the state"). Walking
100,000 commits for each ``log`` would be slow, so ``gitstore/vm-log.sqlite`` indexes them: derived data
(git itself still reads everything), built by one walk of main when it is missing (a clone) or shares
nothing with main, and otherwise brought up to date by reading main's new first-parent commits, down to
where they meet the indexed ones (dropping those that left the chain: a reset, a gc, a fast-forward to
another clone's merge). Operations bring it up to
date with their own merge (:meth:`VMLogIndex.catch_up`); queries with whatever else landed.

The walk reads raw objects through a :class:`store.scan.ScanReader` (no cache; the packs read with pread,
not mapped) and compares ``vms/`` and its shards by entry ids (:class:`store.scan.RawTree`), so that a build
from scratch streams: its memory is that of one batch of rows, whatever the length of the history. This
module imports neither the models nor the drivers: ``toolstack log`` answers from it without them.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from store import Store
from store.scan import RawTree, ScanReader, commit_summary, raw_subtree
from toolstack import layout
from toolstack.messages import edited_by, trailer_vms

SCHEMA_VERSION = "4"  # 4: a commit is also a VM's if a ``VM:`` line names it (3: ops by commit id)
BATCH = 2048  # rows written to SQLite at once by a build from scratch
INDEXES = {  # made after the rows by a build from scratch: one sort each, not 100,000 inserts into a b-tree
    "op_vms_by_vm": "CREATE INDEX op_vms_by_vm ON op_vms (vm, seq)",
    "op_vms_by_seq": "CREATE INDEX op_vms_by_seq ON op_vms (seq)",
    "ops_by_commit": "CREATE INDEX ops_by_commit ON ops (commit_id)",
}
REBUILD_AFTER = 8192  # new commits walked without meeting an indexed one before rebuilding instead
# An update after an operation walks a commit or two, which the store's own reader holds in memory: a scan
# opens the packs only past this many objects (a long catch-up, a rebuild).
WARM_READS = 256
BUSY_TIMEOUT_MS = 60_000  # a query waits this long for another process's update (a rebuild: seconds)


@dataclass(frozen=True)
class LogEntry:
    """One commit on main, as the log shows it (an operation, a merge, a reconcile, a revert...)."""

    commit: str
    time: int
    author: str
    message: str
    vms: tuple[str, ...]  # whose directory it changed, and those its VM: trailers name

    edited_by: tuple[str, ...] = ()  # a GitOps merge: who made the edits it took (of the VM asked about)

    @property
    def subject(self) -> str:
        return self.message.splitlines()[0] if self.message else ""

    @property
    def who(self) -> str:
        """Who made the change: the authors of a GitOps edit (and who merged it), else the commit's author."""
        return f"{', '.join(self.edited_by)} (merged by {self.author})" if self.edited_by else self.author

    def to_dict(self) -> dict[str, object]:
        return {
            "commit": self.commit,
            "time": self.time,
            "author": self.author,
            "edited_by": list(self.edited_by),
            "message": self.subject,
            "vms": list(self.vms),
        }


@dataclass(frozen=True)
class IndexedCommit:
    """A first-parent commit of main as the index records it."""

    commit: str
    time: int
    author: str
    message: str
    vms: tuple[str, ...]  # whose directory it changed
    parent: str | None  # the first
    named: tuple[str, ...] = ()  # the others a VM: line names


def _decode(name: bytes) -> str:
    return name.decode("utf-8", "surrogateescape")


EMPTY = RawTree(b"")


class _VMSTree:
    """One raw ``vms/`` tree, with the shards read from it kept for the comparison at hand."""

    def __init__(self, reader: ScanReader, tree: RawTree) -> None:
        self.reader = reader
        self.tree = tree
        self._shards: dict[bytes, RawTree | None] = {}

    def shard(self, name: bytes) -> RawTree:
        if name not in self._shards:
            self._shards[name] = raw_subtree(self.reader, self.tree, name) if self.tree.raw else None
        return self._shards[name] or EMPTY

    def vm_dir_id(self, uuid: str) -> bytes | None:
        """The id of ``<xx>/<uuid>``, else of a flat ``<uuid>`` (:func:`toolstack.layout._vm_dir_id`)."""
        name = uuid.encode("utf-8", "surrogateescape")
        found = self.shard(uuid[:2].encode("utf-8", "surrogateescape")).lookup(name)
        if found is None and self.tree.raw:
            found = self.tree.lookup(name)
        return None if found is None else found[1]


def vm_changes(reader: ScanReader, old_vms: RawTree, new_vms: RawTree) -> set[str]:
    """The VMs whose directory differs between two raw ``vms/`` trees, as
    :func:`toolstack.layout.changed_vm_uuids` finds them: the shards that differ, then the VMs in them, less
    those that only moved into their shard."""
    if old_vms.raw == new_vms.raw:
        return set()
    old, new = _VMSTree(reader, old_vms), _VMSTree(reader, new_vms)
    changed: set[str] = set()
    for name in new_vms.changed(old_vms):
        entry = _decode(name)
        if layout.is_shard(entry):
            changed.update(_decode(uuid) for uuid in new.shard(name).changed(old.shard(name)))
        else:
            changed.add(entry)
    return {uuid for uuid in changed if old.vm_dir_id(uuid) != new.vm_dir_id(uuid)}


def _vms_of(reader: ScanReader, commit_raw: bytes) -> RawTree:
    """The raw ``vms/`` tree of a raw commit (empty if it has none)."""
    _, root = reader.get_raw(commit_raw[5:45])  # a commit's first line is "tree <id>"
    return raw_subtree(reader, RawTree(root), layout.VMS.encode()) or EMPTY


def walk_back(reader: ScanReader, head: str, stop: str | None) -> Iterator[IndexedCommit]:
    """Main's first-parent commits from ``head`` down to (not including) ``stop`` or the root, newest first,
    each with the VMs it changed against its first parent. Holds two commits' trees at a time."""
    commit_id: str | None = head
    raw = reader.commit(head)
    vms = _vms_of(reader, raw)
    while commit_id is not None and commit_id != stop:
        parent, author, when, message = commit_summary(raw)
        if parent is None:
            parent_raw, parent_vms = b"", EMPTY
        else:
            parent_raw = reader.commit(parent)
            parent_vms = vms if parent_raw[5:45] == raw[5:45] else _vms_of(reader, parent_raw)
        changed = vm_changes(reader, parent_vms, vms)
        named = tuple(sorted(trailer_vms(message) - changed))
        yield IndexedCommit(commit_id, when, author, message, tuple(sorted(changed)), parent, named)
        commit_id, raw, vms = parent, parent_raw, parent_vms


def index_path(store: Store) -> str | None:
    """Where the index of ``store`` lives (None for a repository in memory)."""
    gitdir = store.gitdir
    return os.path.join(gitdir, "gitstore", "vm-log.sqlite") if gitdir else None


class VMLogIndex:
    """first-parent commits of main and the VMs each changed, cached in SQLite beside the repository."""

    def __init__(self, store: Store, path: str | None = None) -> None:
        self.store = store
        path = path or index_path(store) or ":memory:"
        # Transactions are explicit (BEGIN IMMEDIATE): an update re-reads what is indexed under the lock.
        self._db = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False, isolation_level=None
        )
        # One connection for the threads of a process: a query waits for an update in progress, which would
        # show it rows not yet committed.
        self._mutex = threading.RLock()
        db = self._db
        db.execute("PRAGMA journal_mode=WAL")
        # A cache of what git holds (rebuilt when its head is not main's ancestor): in WAL mode NORMAL cannot
        # corrupt it, and spares an fsync per indexed operation.
        db.execute("PRAGMA synchronous=NORMAL")
        if self._schema() == SCHEMA_VERSION:
            return
        with self._transaction():
            if self._schema() == SCHEMA_VERSION:
                return  # another process made it meanwhile
            db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            # A cache: an index written by another version is dropped and rebuilt from git.
            db.execute("DROP TABLE IF EXISTS ops")
            db.execute("DROP TABLE IF EXISTS op_vms")
            db.execute("DELETE FROM meta")
            db.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
            db.execute(
                "CREATE TABLE ops (seq INTEGER PRIMARY KEY, commit_id TEXT, time INTEGER, author TEXT, "
                "message TEXT)"
            )
            # changed: the commit changed the VM's directory (1), or only names it on a VM: line (0).
            db.execute("CREATE TABLE op_vms (vm TEXT, seq INTEGER, changed INTEGER)")
            for create in INDEXES.values():
                db.execute(create)

    def _schema(self) -> str | None:
        try:
            row = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        except sqlite3.OperationalError:  # no meta table yet
            return None
        return row[0] if row else None

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    def close(self) -> None:
        self._db.close()

    def indexed_head(self) -> str | None:
        """The head of main the index was last brought up to (None: nothing indexed)."""
        row = self._db.execute("SELECT value FROM meta WHERE key='head'").fetchone()
        return row[0] if row else None

    def catch_up(self, limit: int) -> bool:
        """Index main's new commits now, if that is quick: at most ``limit`` of them, without waiting for
        another thread or process that is writing the index (a rebuild, say). Operations call it after their
        merge, so that the index follows main as commits land; whatever it leaves (a rebuild, a long
        catch-up after a pull) the next query does.

        Returns:
            Whether the index is up to date with the head of main it read.
        """
        if not self._mutex.acquire(blocking=False):
            return False
        try:
            self._db.execute("PRAGMA busy_timeout = 0")
            try:
                return self.update(limit)
            except sqlite3.OperationalError:  # locked by another process's update: it indexes the same
                return False
            finally:
                self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        finally:
            self._mutex.release()

    def update(self, limit: int | None = None) -> bool:
        """Bring the index to main's first-parent chain: index the commits added since the last update, and
        drop those that are no longer on it (main reset, squashed by gc, or fast-forwarded to a merge whose
        first parent is another clone's history); all of main if the index is empty or shares nothing.

        Args:
            limit: Index nothing, and return False, if that is more than this many commits (or a rebuild).

        Returns:
            Whether the index is up to date with the head of main it read.
        """
        with self._mutex:
            # Cheap when nothing is new (every query asks): no write lock.
            head = self.store.branch(layout.MAIN).head
            if head is None or head == self.indexed_head():
                return True
            with self._transaction():
                # Main's head is read again under the index's write lock: one read before it could be
                # older than the head another process indexed meanwhile, and look like main had been reset.
                head = self.store.branch(layout.MAIN).head
                if head is None or head == self.indexed_head():
                    return True
                with ScanReader(self.store.objects, warm=WARM_READS) as reader:
                    done = self._catch_up(reader, head, limit)
                    if done is None and limit is None:
                        self._rebuild(reader, head)
                        done = True
                if not done:
                    return False
                self._db.execute("INSERT OR REPLACE INTO meta VALUES ('head', ?)", (head,))
            return True

    def _rebuild(self, reader: ScanReader, head: str) -> None:
        """Index all of main, newest first, in batches: the head is seq 0, its first parent -1, and so on
        (later commits are appended above 0)."""
        for name in INDEXES:
            self._db.execute(f"DROP INDEX IF EXISTS {name}")
        self._db.execute("DELETE FROM ops")
        self._db.execute("DELETE FROM op_vms")
        rows: list[tuple[int, str, int, str, str]] = []
        vm_rows: list[tuple[str, int, int]] = []
        for seq, commit in enumerate(walk_back(reader, head, None)):
            rows.append((-seq, commit.commit, commit.time, commit.author, commit.message))
            vm_rows.extend(_vm_rows(commit, -seq))
            if len(rows) >= BATCH:
                self._insert(rows, vm_rows)
                rows, vm_rows = [], []
        self._insert(rows, vm_rows)
        for create in INDEXES.values():
            self._db.execute(create)

    def _catch_up(self, reader: ScanReader, head: str, limit: int | None) -> bool | None:
        """Walk main's first parents down from ``head`` to the newest commit the index holds (the last
        indexed head, usually), drop the rows above that one, and index the commits walked.

        Returns:
            True once done; False if that is more than ``limit`` commits; None if the walk met no indexed
            commit within :data:`REBUILD_AFTER` (or ``limit``) commits: a rebuild's work.
        """
        indexed = self.indexed_head()
        if indexed is None:
            return None  # nothing indexed yet: a build from scratch
        pending: list[IndexedCommit] = []
        fork = None
        for commit in walk_back(reader, head, indexed):
            fork = self._seq_of(commit.commit)
            if fork is not None:
                break
            if limit is not None and len(pending) >= limit:
                return False
            if len(pending) >= REBUILD_AFTER:
                return None  # a history the index does not know: rebuilt in batches, not held here
            pending.append(commit)
        else:  # down to the last indexed head (the usual end), or to the root: all of main is new
            end = pending[-1].parent if pending else head
            if end is None:
                self._db.execute("DELETE FROM ops")
                self._db.execute("DELETE FROM op_vms")
                fork = 0
            else:
                fork = self._seq_of(end)
        if fork is None:
            return None
        self._db.execute("DELETE FROM op_vms WHERE seq > ?", (fork,))
        self._db.execute("DELETE FROM ops WHERE seq > ?", (fork,))
        rows = [(fork + n, c.commit, c.time, c.author, c.message) for n, c in enumerate(reversed(pending), 1)]
        vm_rows = [row for n, c in enumerate(reversed(pending), 1) for row in _vm_rows(c, fork + n)]
        self._insert(rows, vm_rows)
        return True

    def _seq_of(self, commit: str) -> int | None:
        row = self._db.execute("SELECT seq FROM ops WHERE commit_id = ?", (commit,)).fetchone()
        return None if row is None else int(row[0])

    def _insert(
        self, rows: list[tuple[int, str, int, str, str]], vm_rows: list[tuple[str, int, int]]
    ) -> None:
        self._db.executemany("INSERT INTO ops VALUES (?, ?, ?, ?, ?)", rows)
        self._db.executemany("INSERT INTO op_vms VALUES (?, ?, ?)", vm_rows)

    def last_change(self, vm: str) -> str | None:
        """The newest commit that changed ``vm``'s directory (its commit id), or None if none did: its
        version (the API's ETag), which a drift or reconcile commit that only names it does not change."""
        with self._mutex:
            self.update()
            row = self._db.execute(
                "SELECT o.commit_id FROM op_vms v JOIN ops o ON o.seq = v.seq WHERE v.vm = ? AND v.changed "
                "ORDER BY v.seq DESC LIMIT 1",
                (vm,),
            ).fetchone()
        return row[0] if row else None

    def log(self, vm: str | None = None, limit: int | None = None, offset: int = 0) -> list[LogEntry]:
        """Operations newest first: all of them, or those that changed one VM."""
        with self._mutex:
            self.update()
            return self._query(vm, limit, offset)

    def _query(self, vm: str | None, limit: int | None, offset: int) -> list[LogEntry]:
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
            # The VMs it is about: those whose directory it changed and those a VM: trailer names (a drift
            # or reconcile commit changes only observed state), as the per-VM log counts them.
            found = self._db.execute("SELECT vm FROM op_vms WHERE seq = ? ORDER BY vm", (seq,))
            vms = tuple(row[0] for row in found)
            out.append(LogEntry(commit_id, when, author, message, vms, tuple(edited_by(message, vm))))
        return out


def _vm_rows(commit: IndexedCommit, seq: int) -> list[tuple[str, int, int]]:
    return [(vm, seq, 1) for vm in commit.vms] + [(vm, seq, 0) for vm in commit.named]


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on an exception): one writer of the index at a time,
    across processes, each seeing what the previous one wrote."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, *rest: object) -> None:
        self._db.execute("ROLLBACK" if kind is not None else "COMMIT")
