"""The journal: commits the state's changes to the git branch, and brings in changes made by others.

Group commit: a background thread takes every change queued since its last commit and makes one commit of
them. A lone change is its own commit (author ``dom3``, message ``write /local/domain/3/... = 4``); changes
that queue up while a commit is being written go into the next one together, which lists each with its
author. Replies do not wait for the commit unless the daemon runs in durable mode, where a reply to a change
is sent only once the commit holding it is on disk (the store fsyncs before it returns).

Other writers of the repository: the thread polls the branch head; when it moved to a commit this daemon did
not make, the difference from the last tree this daemon committed is applied to the state (where the daemon
has not changed the same node since), which fires the watches on those nodes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from store import Branch, Conflict, StoreError, Tree
from toolstack.xenstored.nodes import LeafChange
from toolstack.xenstored.state import JournalEntry, State

log = logging.getLogger(__name__)
POLL_SECONDS = 0.05
SUBJECT_MAX = 200


def commit_message(entries: list[JournalEntry]) -> tuple[str, str]:
    """The (message, author) of one commit holding these entries."""
    if len(entries) == 1:
        entry = entries[0]
        return "\n".join(
            (entry.lines[0], *(("", *entry.lines[1:]) if len(entry.lines) > 1 else ()))
        ), entry.author
    authors = sorted({entry.author for entry in entries}, key=lambda a: (len(a), a))
    author = authors[0] if len(authors) == 1 else "xenstored"
    subject = f"{len(entries)} requests from {', '.join(authors)}"
    if len(subject) > SUBJECT_MAX:
        subject = f"{len(entries)} requests from {len(authors)} domains"
    body = []
    for entry in entries:
        body.append(f"{entry.author}: {entry.lines[0]}")
        body.extend(f"    {line}" for line in entry.lines[1:])
    return "\n".join((subject, "", *body)), author


class GitJournal:
    """The thread that keeps the branch in step with the state.

    Args:
        branch: The branch holding the state.
        state: The daemon's state.
        flushed: Called with the highest sequence number on disk after each commit (from the thread).
    """

    def __init__(
        self, branch: Branch, state: State, flushed: Callable[[int], None] = lambda seq: None
    ) -> None:
        self._branch = branch
        self._state = state
        self._flushed_cb = flushed
        self._wake = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.commit_id = branch.head
        self._committed_tree: Tree = (
            state.tree if self.commit_id is None else branch.store.tree_at(self.commit_id)
        )
        self.flushed_seq = 0
        self.commits = 0
        self.failures = 0
        state.on_change(self.wake)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="xenstored-journal", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        with self._wake:
            self._wake.notify()

    def stop(self) -> None:
        """Commit what is queued, then stop the thread."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout=60)
        self.flush()

    def _run(self) -> None:
        while True:
            with self._wake:
                if self._stopping:
                    return
                if self._state.last_seq == self.flushed_seq:
                    self._wake.wait(POLL_SECONDS)
            try:
                self.sync()
                self.flush()
            except Exception:  # the daemon must outlive a failing disk; the changes stay queued
                self.failures += 1
                log.exception("journal: commit failed; will retry")
                with self._wake:
                    self._wake.wait(POLL_SECONDS)

    def sync(self) -> int:
        """Bring changes another writer committed into the state; returns how many blobs changed."""
        head = self._branch.head
        if head == self.commit_id or head is None:
            return 0
        head_tree = self._branch.store.tree_at(head)
        changes = [
            LeafChange(tuple(c.path.split("/")), c.old, c.new) for c in self._committed_tree.diff(head_tree)
        ]
        applied = self._state.incorporate(changes, f"changes from commit {head[:12]}")
        self.commit_id, self._committed_tree = head, head_tree
        log.info("journal: %d change(s) from another writer (commit %s)", applied, head[:12])
        return applied

    def flush(self) -> None:
        """Commit every queued change (one commit), retrying if another writer moves the branch."""
        pending: list[JournalEntry] = []
        try:
            for _attempt in range(20):
                tree, taken = self._state.take_pending()
                pending.extend(taken)
                if not pending:
                    return
                message, author = commit_message(pending)
                try:
                    with self._branch.transaction(message=message, author=author) as tx:
                        if tx.base != self.commit_id:
                            raise _Moved
                        tx.tree = tree
                except (_Moved, Conflict):
                    self.sync()
                    continue
                # After a merge with a concurrent writer the head is a merge commit: keep our own commit and
                # tree as the reference, so that the next sync brings in exactly what the other side did.
                self.commit_id = tx.own_commit or tx.commit_id
                self._committed_tree = tree
                self.commits += 1
                self.flushed_seq = pending[-1].seq
                self._flushed_cb(self.flushed_seq)
                return
            raise StoreError("the branch kept moving: 20 attempts to commit failed")
        except BaseException:
            self._state.requeue(pending)
            raise


class _Moved(Exception):
    """The branch moved under a commit being prepared: sync, then try again."""
