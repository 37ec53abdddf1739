"""The journal in process: what it writes, and how it survives a failing disk."""

from __future__ import annotations

import time

import pytest

from store import Store, StoreError
from tests.conftest import git
from xenstored import journal as journal_module
from xenstored import nodes
from xenstored.admin import AdminRequests
from xenstored.dispatch import Dispatcher
from xenstored.domains import DomainTable
from xenstored.journal import GitJournal
from xenstored.perms import Caller
from xenstored.protocol import Op, Packet
from xenstored.quotas import Quotas
from xenstored.requests import NodeRequests
from xenstored.session import NoHooks, Outcome
from xenstored.state import State


class Dom0Session:
    caller = Caller(0)

    def __init__(self) -> None:
        self.transactions: dict = {}

    def send_event(self, path: str, token: bytes) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.fixture
def daemon_parts(tmp_path):
    store = Store.open(str(tmp_path / "xs.git"), create=True)
    state = State(nodes.EMPTY, Quotas())
    journal = GitJournal(store.branch("main"), state)
    journal.flush()
    dispatcher = Dispatcher(NodeRequests(state), AdminRequests(state, DomainTable(), NoHooks()))
    session = Dom0Session()

    def request(op: int, payload: bytes, tx: int = 0) -> bytes:
        outcome = dispatcher.handle(session, Packet(op, 1, tx, payload))
        assert isinstance(outcome, Outcome), outcome
        return outcome.payload

    yield store, state, journal, request
    store.close()


class TestFailingDisk:
    def test_a_failed_write_keeps_the_changes_queued_and_the_next_one_lands_them(self, daemon_parts, mocker):
        store, state, journal, request = daemon_parts
        request(Op.WRITE, b"/a\0" + b"1")
        tx = int(request(Op.TRANSACTION_START, b"\0")[:-1])
        request(Op.WRITE, b"/t\0" + b"in-tx", tx)
        request(Op.TRANSACTION_END, b"T\0", tx)
        head = store.branch("main").head
        real_write = store.backend.write_objects
        failing = mocker.patch.object(store.backend, "write_objects", side_effect=OSError("disk full"))
        with pytest.raises(OSError, match="disk full"):
            journal.flush()
        assert failing.called
        assert store.branch("main").head == head  # nothing published
        assert journal.flushed_seq < state.last_seq  # still owed
        mocker.patch.object(store.backend, "write_objects", side_effect=real_write)
        journal.flush()
        assert journal.flushed_seq == state.last_seq
        repo = store.gitdir
        assert git(repo, "show", "main:a/.value") == "1"
        assert git(repo, "show", "main:t/.value") == "in-tx"
        merge = git(repo, "log", "-1", "--format=%H", "--grep=^merge transaction", "main").strip()
        assert git(repo, "show", f"{merge}^2:t/.value") == "in-tx"
        assert git(repo, "fsck", "--full", "--strict").strip() == ""

    def test_a_leaf_encoded_for_a_failed_write_is_written_with_the_next_one(self, daemon_parts, mocker):
        # The encoder caches leaf encodings: a node made later with the same value and permissions reuses
        # the id without collecting the object again. The failed write's objects must still reach the disk.
        store, _state, journal, request = daemon_parts
        request(Op.WRITE, b"/first/leaf\0" + b"same")
        real_write = store.backend.write_objects
        mocker.patch.object(store.backend, "write_objects", side_effect=OSError("disk full"))
        with pytest.raises(OSError, match="disk full"):
            journal.flush()
        request(Op.WRITE, b"/second/leaf\0" + b"same")
        mocker.patch.object(store.backend, "write_objects", side_effect=real_write)
        journal.flush()
        repo = store.gitdir
        assert git(repo, "rev-parse", "main:first/leaf") == git(repo, "rev-parse", "main:second/leaf")
        assert git(repo, "show", "main:second/leaf/.value") == "same"
        # The failed attempt's commit is written too, unreferenced (the retry's batch holds both writes):
        # harmless, unlike an object missing.
        report = git(repo, "fsck", "--full", "--strict").splitlines()
        assert all(line.startswith("dangling commit ") for line in report), report

    def test_a_branch_that_never_stops_moving_is_reported(self, daemon_parts, mocker):
        store, _state, journal, request = daemon_parts
        request(Op.WRITE, b"/b\0" + b"2")
        mocker.patch.object(store.backend, "compare_and_swap", return_value=False)
        with pytest.raises(StoreError, match="kept moving"):
            journal.flush()
        mocker.stopall()
        journal.flush()
        assert git(store.gitdir, "show", "main:b/.value") == "2"


class TestYieldingToRequests:
    """Outside durable mode a long queue is written in batches, and the journal goes back to waiting when
    requests resume, unless the oldest change has waited too long."""

    def queue_writes(self, request, count: int) -> None:
        for index in range(count):
            request(Op.WRITE, b"/k%d\0v" % index)

    def test_requests_arriving_during_a_batch_make_it_stop_after_that_batch(self, daemon_parts, mocker):
        store, state, journal, request = daemon_parts
        batch = journal_module.BATCH_ENTRIES
        self.queue_writes(request, 3 * batch + 5)
        real_write = store.backend.write_objects
        calls = []

        def write_while_a_request_arrives(objects):
            calls.append(len(objects))
            if len(calls) == 1:
                request(Op.WRITE, b"/late\0v")
            return real_write(objects)

        mocker.patch.object(store.backend, "write_objects", side_effect=write_while_a_request_arrives)
        first = journal.flushed_seq
        journal.write_yielding()
        assert len(calls) == 1
        assert journal.flushed_seq == first + batch  # the oldest batch, and nothing more
        repo = store.gitdir
        assert git(repo, "show", f"main:k{batch - 1}/.value") == "v"
        assert git(repo, "ls-tree", "main", f"k{batch}") == ""
        journal.write_yielding()  # no request meanwhile: the rest goes out
        assert journal.flushed_seq == state.last_seq
        assert git(repo, "show", "main:late/.value") == "v"
        assert git(repo, "fsck", "--full", "--strict").strip() == ""

    def test_a_change_that_waited_too_long_is_written_even_while_requests_keep_coming(
        self, daemon_parts, mocker, monkeypatch
    ):
        store, state, journal, request = daemon_parts
        monkeypatch.setattr(journal_module, "MAX_DELAY_SECONDS", 0.0)
        self.queue_writes(request, 2 * journal_module.BATCH_ENTRIES + 1)
        real_write = store.backend.write_objects
        batches = []

        def write_while_requests_arrive(objects):
            batches.append(len(objects))
            request(Op.WRITE, b"/busy\0%d" % len(batches))  # a new change during every batch
            return real_write(objects)

        mocker.patch.object(store.backend, "write_objects", side_effect=write_while_requests_arrive)
        queued = state.last_seq
        journal.write_yielding()
        assert len(batches) > 1
        assert journal.flushed_seq >= queued

    def test_a_flush_asked_for_is_done_at_once_even_while_requests_keep_coming(
        self, daemon_parts, monkeypatch
    ):
        # CONTROL flush: everything queued before it goes out now, not once a change has waited too long.
        store, state, _durable, request = daemon_parts
        monkeypatch.setattr(journal_module, "MAX_DELAY_SECONDS", 30.0)
        journal = GitJournal(store.branch("main"), state, window=0.02)  # outside durable mode
        self.queue_writes(request, 3 * journal_module.BATCH_ENTRIES)
        journal.start()
        try:
            queued = state.last_seq
            journal.write_now()
            deadline = time.monotonic() + 10
            busy = 0
            while journal.flushed_seq < queued and time.monotonic() < deadline:
                busy += 1
                request(Op.WRITE, b"/busy\0%d" % busy)
                time.sleep(0.002)
            assert journal.flushed_seq >= queued
        finally:
            journal.stop()
