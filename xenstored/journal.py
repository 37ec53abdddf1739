"""The journal: commits the state's changes to the git branch, and brings in changes made by others.

Group commit: a background thread takes every change queued since its last write and writes them as one
batch (one pack, one fsync, one compare-and-swap of the branch ref). Requests outside transactions that
queue up together become one commit, which lists each with its author; a lone request is its own commit
(author ``dom3``, message ``write /local/domain/3/... = 4``). Replies do not wait for the write unless the
daemon runs in durable mode, where a reply to a change is sent only once the batch holding it is on disk.
Outside durable mode the thread also yields to requests: its work competes with theirs for the interpreter
(and, on a small host, for a core), so while changes keep coming it waits for a pause before it writes, and
it writes a long queue in batches of BATCH_ENTRIES, going back to waiting when requests resume; a change
waits at most about MAX_DELAY_SECONDS.

Transactions are branches: a transaction's own commit holds its tree and has as parent the commit of the
state it forked from; its TRANSACTION_END lands as a merge commit whose second parent is that commit. So
``git log --graph`` shows each transaction forking and merging back, and ``git show <merge>^2`` shows what
the transaction itself saw and wrote.

A journal that cannot commit (a full disk, a repository it cannot write) says so once in the log and refuses
every change with EROFS until a commit succeeds again, rather than acknowledging changes it cannot save;
in durable mode, the requests waiting for the failed commit are answered EIO. It retries with exponential
backoff (BACKOFF_MAX_SECONDS at most), and CONTROL ``status`` (``toolstack xenstored --status``) reports its
health.

Other writers of the repository: the thread polls the branch head; when it moved to a commit this daemon did
not make, the difference from the last commit this daemon wrote is applied to the state (where the daemon
has not changed the same node since), which fires the watches on those nodes; queued changes are rebased
onto it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from store import Branch, Store, StoreError
from store.objects import COMMIT, encode_commit, normalise_identity, object_id
from xenstored.nodes import GitEncoder, GitObject, LeafChange, Node
from xenstored.state import JournalEntry, State, rebase

log = logging.getLogger(__name__)
POLL_SECONDS = 0.05
# Outside durable mode: how long changes must pause before the journal writes. It must outlast the gaps
# inside a burst of requests (a boot storm's are well under a millisecond): writing in the middle of one
# takes a core from the requests, on a 2-core host a third of the storm's time.
QUIET_SECONDS = 0.1
MAX_DELAY_SECONDS = 1.0
# Outside durable mode, changes written per batch (one pack and one compare-and-swap of the ref each): a
# boot storm queues thousands, and a second storm should not wait for the first one's commits.
BATCH_ENTRIES = 64
SUBJECT_MAX = 200
ATTEMPTS = 20
# Retries of a failing commit wait POLL_SECONDS, then twice as long each time, up to this.
BACKOFF_MAX_SECONDS = 30.0


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
        flushed: Called with the highest sequence number on disk after each write (from the thread).
        window: How long to let changes gather before writing them (0: write as soon as woken). Outside
            durable mode nobody waits for a write, and a wider batch costs the request path less CPU.
        failed: Called (from the thread) with the reason when commits start failing.

    Attributes:
        failing: Why commits fail, while they do (None: healthy).
        failing_since: When they started failing (``time.time()``).
    """

    def __init__(
        self,
        branch: Branch,
        state: State,
        flushed: Callable[[int], None] = lambda seq: None,
        window: float = 0.0,
        failed: Callable[[str], None] = lambda reason: None,
    ) -> None:
        self._store = branch.store
        self._ref = Store.ref_name(branch.name)
        self._state = state
        self._flushed_cb = flushed
        self._window = window
        self._failed_cb = failed
        self._wake = threading.Condition()
        self._stopping = False
        self._urgent = False
        self._idle = False
        self._thread: threading.Thread | None = None
        self._encoder = GitEncoder()
        self._unwritten: list[GitObject] = []
        self.commit_id = branch.head
        self.flushed_seq = 0
        self.commits = 0
        self.failures = 0
        self.failing: str | None = None
        self.failing_since: float | None = None
        self.backoff = 0.0
        state.on_change(self.wake)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="xenstored-journal", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """A change was queued. Outside durable mode only the first change after a quiet spell wakes the
        thread; it then polls while it gathers, rather than being woken by every request."""
        if self._idle or not self._window:
            with self._wake:
                self._wake.notify()

    def write_now(self) -> None:
        """Write what is queued without waiting for the window to close."""
        with self._wake:
            self._urgent = True
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
                    self._idle = True
                    self._wake.wait(POLL_SECONDS)
                    self._idle = False
            if self._window:
                self._gather()
            urgent, self._urgent = self._urgent, False
            try:
                self.sync()
                if self._window and not urgent:
                    self.write_yielding()
                else:
                    self.flush()
            except Exception as err:  # the daemon must outlive a failing disk; the changes stay queued
                self._failed(err)
                with self._wake:
                    if not self._stopping:
                        self._wake.wait(self.backoff)
                continue
            if self.failing is not None and self._state.last_seq == self.flushed_seq:
                self._recovered()

    def _failed(self, err: Exception) -> None:
        """A commit failed: refuse changes, and say why once (not at every retry)."""
        reason = f"{type(err).__name__}: {err}"
        self.failures += 1
        self.backoff = min(BACKOFF_MAX_SECONDS, POLL_SECONDS * 2 ** min(self.failures - 1, 16))
        if self.failing is None:
            self.failing, self.failing_since = reason, time.time()
            self._state.refuse_changes(reason)
            log.error(
                "journal: cannot commit (%s); changes are refused (EROFS) until a commit succeeds",
                reason,
                exc_info=err,
            )
            self._failed_cb(reason)
        elif reason != self.failing:
            self.failing = reason
            self._state.refuse_changes(reason)
            log.error("journal: still cannot commit, now: %s", reason)
        else:
            log.debug("journal: retry %d failed; next in %.2fs", self.failures, self.backoff)

    def _recovered(self) -> None:
        log.warning(
            "journal: commits succeed again after %d failure(s) (%s); changes are accepted",
            self.failures,
            self.failing,
        )
        self.failing = self.failing_since = None
        self.backoff = 0.0
        self._state.refuse_changes(None)

    def status(self) -> dict[str, str]:
        """The journal's health, for CONTROL ``status``."""
        report = {
            "journal": "failing" if self.failing is not None else "ok",
            "head": self.commit_id or "",
            "commits": str(self.commits),
            "failures": str(self.failures),
            "pending": str(self._state.last_seq - self.flushed_seq),
        }
        if self.failing is not None:
            report["reason"] = self.failing
            report["failing-since"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self.failing_since))
            report["retry-in"] = f"{self.backoff:.2f}s"
        return report

    def _gather(self) -> None:
        """Outside durable mode, let changes gather for the window, and yield to requests while they keep
        coming (the journal's work competes with theirs for the interpreter): write once changes pause for
        QUIET_SECONDS, and at the latest MAX_DELAY_SECONDS after the first change waiting."""
        start = self._state.oldest_pending() or time.monotonic()
        while not (self._stopping or self._urgent) and self._state.last_seq != self.flushed_seq:
            now = time.monotonic()
            if now - start >= MAX_DELAY_SECONDS:
                return
            quiet = now - self._state.last_change
            if now - start >= self._window and quiet >= QUIET_SECONDS:
                return
            time.sleep(max(self._window - (now - start), QUIET_SECONDS - quiet, 0.001))

    def sync(self) -> list[LeafChange]:
        """Bring changes another writer committed into the state; returns the changes applied."""
        store = self._store
        head = store.repo.read_ref(self._ref)
        if head == self.commit_id or head is None:
            return []
        before = store.tree_at(self.commit_id)  # the empty tree for None
        changes = [
            LeafChange(tuple(c.path.split("/")), c.old, c.new) for c in before.diff(store.tree_at(head))
        ]
        applied = self._state.incorporate(changes, head)
        self.commit_id = head
        log.info("journal: %d change(s) from another writer (commit %s)", len(applied), head[:12])
        return applied

    def write_yielding(self) -> None:
        """Write the queue in batches, and go back to waiting for a pause if requests resume (unless the
        oldest change has waited MAX_DELAY_SECONDS, or the daemon is stopping or asked for a flush)."""
        while True:
            started = time.monotonic()
            self._write_batch(BATCH_ENTRIES)
            oldest = self._state.oldest_pending()
            if oldest is None:
                return
            if self._stopping or self._urgent or time.monotonic() - oldest >= MAX_DELAY_SECONDS:
                break
            if self._state.last_change > started:
                return  # requests resumed: yield to them
        self.flush()

    def flush(self) -> None:
        """Write every queued change, retrying on top of another writer's commits if the branch moves."""
        self._write_batch(None)

    def _write_batch(self, limit: int | None) -> None:
        """Write the oldest queued changes (at most ``limit``; None: all, including any queued meanwhile)."""
        held: list[JournalEntry] = []
        repo = self._store.repo
        try:
            for _attempt in range(ATTEMPTS):
                if limit is None or not held:
                    held.extend(self._state.take_pending(limit))
                if not held:
                    return
                head, made = self._build(self.commit_id, held)
                self._unwritten.extend(self._encoder.take())
                published = repo.publish(self._ref, self.commit_id, head, self._unwritten)
                self._unwritten = []  # written, whether or not the branch had moved
                if published:
                    for entry, commit_id in made:
                        entry.commit_id = commit_id
                    self.commit_id = head
                    self.commits += len(made)
                    self.flushed_seq = held[-1].seq
                    self._flushed_cb(self.flushed_seq)
                    return
                rebase(held, self.sync())
            raise StoreError(f"the branch kept moving: {ATTEMPTS} attempts to commit failed")
        except BaseException:
            self._state.requeue(held)
            raise

    # -- building the commits --------------------------------------------------------------------------------
    def _build(
        self, parent: str | None, entries: list[JournalEntry]
    ) -> tuple[str, list[tuple[JournalEntry, str]]]:
        """The commits of ``entries`` on ``parent``: groups of requests end at boundaries, and each
        transaction lands as its own commit (on the commit it forked from) merged by a merge commit.

        Returns:
            The new head, and the commit ending at each entry that ends one.
        """
        chain = parent
        made: list[tuple[JournalEntry, str]] = []
        made_here: dict[int, str] = {}
        group: list[JournalEntry] = []
        last = len(entries) - 1

        def close_group() -> None:
            nonlocal chain, group
            message, author = commit_message(group)
            chain = self._commit(group[-1].tree, [chain] if chain else [], message, author)
            made.append((group[-1], chain))
            made_here[id(group[-1])] = chain
            group = []

        for index, entry in enumerate(entries):
            tip = entry.tip
            if tip is None:
                group.append(entry)
                if entry.boundary or index == last:
                    close_group()
                continue
            if group:
                close_group()
            fork = made_here.get(id(tip.fork)) or tip.fork.commit_id
            if fork is None:  # cannot happen: a fork point is a boundary, committed before the merge
                log.warning("journal: the fork point of %r is not committed; using the head", tip.lines[0])
                fork = chain
            message = "\n".join(_paragraphs(tip.lines))
            own = self._commit(tip.tree, [fork] if fork else [], message, tip.author)
            chain = self._commit(entry.tree, [chain, own] if chain else [own], entry.lines[0], entry.author)
            made.append((entry, chain))
            made_here[id(entry)] = chain
        assert chain is not None
        return chain, made

    def _commit(self, tree: Node, parents: list[str], message: str, author: str) -> str:
        identity = normalise_identity(author)
        raw = encode_commit(self._encoder.tree_id(tree), parents, identity, identity, message)
        oid = object_id(COMMIT, raw)
        self._encoder.objects.append((oid, COMMIT, raw))
        return oid.decode("ascii")


def _paragraphs(lines: tuple[str, ...]) -> tuple[str, ...]:
    """A subject line, a blank line, then the details."""
    return (lines[0], "", *lines[1:]) if len(lines) > 1 else lines
