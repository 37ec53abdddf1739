"""Branches: a live pointer into history, with reads at head, transactions, history and watches."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from store.codec import Codec
from store.errors import HistoryLost, MissingObject, ReadConflict, UnknownCommit
from store.history import HistoryEntry, LogEntry
from store.paths import Path, join, parse
from store.transaction import Transaction, TransactionOptions
from store.tree import Tree

T = TypeVar("T")
RETRY_BACKOFF_SECONDS = 0.0005  # Branch.atomically waits up to this times 2**attempt (at most 64) to retry

if TYPE_CHECKING:
    from store.store import Store
    from store.watch import Watch


@dataclass(frozen=True)
class ChangeEvent:
    """One path changed by one commit: what watches deliver and ``changes`` yields."""

    commit: str
    path: str
    old: bytes | None
    new: bytes | None

    def __iter__(self) -> Iterator[Any]:
        return iter((self.commit, self.path, self.old, self.new))


class Branch:
    """A named branch (``refs/heads/<name>``). It may not exist yet: then it reads as empty, and its first
    transaction creates it."""

    def __init__(self, store: Store, name: str) -> None:
        self.store = store
        self.name = name
        self.ref = store.ref_name(name)
        self._repo = store.repo

    def __repr__(self) -> str:
        return f"Branch({self.name!r})"

    # -- reads at head -------------------------------------------------------------------------------------
    @property
    def head(self) -> str | None:
        """The commit id at the tip, or None if the branch does not exist."""
        return self._repo.read_ref(self.ref)

    @property
    def tree(self) -> Tree:
        return self._repo.tree_at(self.head)

    def verify(self) -> str | None:
        """Check that the head commit and its root tree are in the repository; returns the head.

        Two lookups, no parsing of the tree: cheap enough for every command. It catches what git's unsafe
        maintenance leaves behind (``git gc --prune=now`` or ``git repack -ad`` racing a writer), which would
        otherwise surface as an unexplained error somewhere deeper, or be built upon.

        Raises:
            MissingObject: the head commit or its tree is missing.
        """
        head = self.head
        if head is None:
            return None
        objects = self._repo.objects
        if not objects.contains(head.encode("ascii")):
            raise MissingObject(head, "commit", self.name)
        tree = self._repo.graph.tree_of(head)
        if tree is not None and not objects.contains(tree):
            raise MissingObject(tree.decode("ascii"), "tree", self.name)
        return head

    def get(self, path: Path, default: Any = None, codec: Codec | None = None) -> Any:
        """The value at ``path`` at head (decoded with ``codec`` if given), or ``default``."""
        value = self.tree.get(path)
        if value is None:
            return default
        return codec.decode(value) if codec else value

    def list(self, path: Path = "") -> list[str]:
        """Child names of the directory at ``path`` at head."""
        return self.tree.list(path)

    def exists(self, path: Path) -> bool:
        return path in self.tree

    # -- writing -------------------------------------------------------------------------------------------
    def transaction(self, message: str, author: str | None = None, **options: Any) -> Transaction:
        """Start a transaction on this branch (use it in a ``with`` block).

        By default (``Strategy.TEST_AND_SET``) what the block read through the transaction is validated when
        it commits: if a concurrent commit changed a path it read, it raises ReadConflict rather than merge
        writes computed from stale values (a lost update). A ``with`` block cannot be re-run: to retry,
        use :meth:`atomically`.

        Args:
            message: The commit message.
            author: "Name <email>" or a plain name; defaults to git's own choice of identity.
            options: The other fields of :class:`~store.transaction.TransactionOptions` by name (``retries``,
                ``keep_branch``, ``no_ff``, ``schema``, ``base``, ``parents``, ``merge_message``,
                ``strategy``), where each is described.
        """
        return self._begin(TransactionOptions(message, author, **options))

    def _begin(self, settings: TransactionOptions) -> Transaction:
        return Transaction(self._repo, self.name, settings, self.store.schema)

    def atomically(
        self, function: Callable[[Transaction], T], message: str, author: str | None = None, **options: Any
    ) -> T:
        """Run ``function(tx)`` in a transaction and commit it; on a ReadConflict, run it again on a fresh
        snapshot, up to ``retries`` times (snapshot, function, compare-and-swap, as Irmin's ``with_tree``).

        ``function`` must be safe to run more than once: it should only read and write through ``tx``.
        ``options`` are those of :meth:`transaction`; ``retries`` also bounds the runs.

        Returns:
            What ``function`` returned in the run that committed.

        Raises:
            ReadConflict: Every run read something a concurrent commit changed (``attempts`` says how many).
            Conflict: The writes could not be merged (not retried: the same writes would conflict again).
            TooManyRetries: The branch kept moving while the commit was being published.
        """
        settings = TransactionOptions(message, author, **options)
        retries = settings.retries
        for attempt in range(1, retries + 2):
            tx = self._begin(settings)
            try:
                result = function(tx)
            except BaseException:
                tx.abort()
                raise
            try:
                tx.commit()
            except ReadConflict as err:
                if attempt > retries:
                    raise ReadConflict(err.conflicts, err.branch, attempts=attempt) from err
                # Writers racing for one path would collide again at once: back off, randomised.
                time.sleep(random.uniform(0, RETRY_BACKOFF_SECONDS * (1 << min(attempt, 6))))
                continue
            return result
        raise AssertionError("unreachable")

    def revert_to(
        self,
        commit_id: str,
        paths: list[Path] | None = None,
        message: str | None = None,
        author: str | None = None,
    ) -> str | None:
        """Make a new commit whose tree equals that of ``commit_id`` (only under ``paths`` if given).

        History is never rewritten: the revert is a forward commit. Returns the new head (unchanged if the
        tree already matched).
        """
        target = self.store.resolve(commit_id)
        old = self._repo.tree_at(target)
        with self.transaction(message or f"Revert to {target[:12]}", author) as tx:
            if paths is None:
                tx.tree = old
            else:
                for path in paths:
                    key = parse(path)
                    kind = old.kind(key)
                    if kind == "directory":
                        tx.tree = tx.tree.graft(key, old.subtree(key))
                    elif kind == "value":
                        if tx.tree.kind(key) == "directory":
                            tx.tree = tx.tree.remove(key)
                        tx.tree = tx.tree.set(key, old.get(key))  # type: ignore[arg-type]
                    else:
                        tx.tree = tx.tree.remove(key)
        return tx.commit_id

    # -- history -------------------------------------------------------------------------------------------
    def log(self, path: Path | None = None, limit: int | None = None) -> list[LogEntry]:
        """Commits newest first, each with the paths it changed against its first parent.

        With ``path``, only the commits that changed something at or under it (git's history
        simplification: merges that took one side unchanged are skipped).
        """
        head = self.head
        if head is None:
            return []
        graph = self._repo.graph
        if path is None:
            commits: Iterator[str] = graph.walk([head])
        else:
            commits = graph.walk_path(head, parse(path))
        entries = []
        for commit_id in commits:
            if limit is not None and len(entries) >= limit:
                break
            entries.append(LogEntry(graph.info(commit_id), self._repo.changed_paths(commit_id)))
        return entries

    def history(self, path: Path, limit: int | None = None) -> list[HistoryEntry]:
        """The commits that changed the value at ``path``, newest first, with its value after each."""
        key = parse(path)
        head = self.head
        if head is None:
            return []
        graph = self._repo.graph
        entries = []
        for commit_id in graph.walk_path(head, key):
            if limit is not None and len(entries) >= limit:
                break
            node = graph.path_node(graph.tree_of(commit_id), key)
            value = None if node is None or node[0] else self._repo.objects.blob(node[1])
            entries.append(HistoryEntry(graph.info(commit_id), value))
        return entries

    def changes(self, since: str | None = None, prefix: Path = "") -> Iterator[ChangeEvent]:
        """Every change after commit ``since`` up to the current head, oldest first, one event per path.

        Follows the first-parent chain, so a merge contributes what it brought into this branch. If
        ``since`` is an ancestor off that chain, its net difference to the head is given as one step.

        Raises:
            HistoryLost: ``since`` is not in this branch's history (squashed away, or never there).
        """
        head = self.head
        key = parse(prefix, allow_root=True)
        if head is None or head == since:
            if since is not None and head is None:
                raise HistoryLost(since, self.name)
            return
        steps = self._steps(head, since)
        for older, newer in steps:
            old_tree = self._repo.tree_at(older).subtree(key)
            new_tree = self._repo.tree_at(newer).subtree(key)
            for change in old_tree.diff(new_tree):
                path = join((*key, *parse(change.path))) if key else change.path
                yield ChangeEvent(newer, path, change.old, change.new)

    def _steps(self, head: str, since: str | None) -> list[tuple[str | None, str]]:
        graph = self._repo.graph
        if since is not None:
            try:
                since_time = graph.time(since)
            except UnknownCommit:
                raise HistoryLost(since, self.name) from None
        chain: list[str] = []
        found = since is None
        for commit_id in graph.first_parent_chain(head):
            if commit_id == since:
                found = True
                break
            if since is not None and graph.time(commit_id) < since_time - 86400:
                break
            chain.append(commit_id)
        if not found:
            assert since is not None
            if not graph.is_ancestor(since, head):
                raise HistoryLost(since, self.name)
            return [(since, head)]
        chain.reverse()
        steps: list[tuple[str | None, str]] = []
        for commit_id in chain:
            parents = graph.parents(commit_id)
            steps.append((parents[0] if parents else None, commit_id))
        return steps

    def watch(self, prefix: Path, callback: Callable[[ChangeEvent], None]) -> Watch:
        """Call ``callback`` for every change at or under ``prefix`` from now on, at least once each.

        Changes made by other processes (or the git CLI) are noticed by polling the ref. If the callback
        raises, the same changes are delivered again later.
        """
        return self._repo.watcher.add(self, prefix, callback)
