"""Group commit (store.group): batches, turns at leading, and failures that stay within their batch."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from store.group import GroupCommit, Waiter

# Group commit is about threads that queue behind each other: a browser's Python starts none.
pytestmark = pytest.mark.native


class Request(Waiter):
    def __init__(self, number: int) -> None:
        super().__init__()
        self.number = number
        self.thread = 0


class Recorder:
    """A publish function that records each batch and the thread that published it."""

    def __init__(self, delay: float = 0.002) -> None:
        self.delay = delay
        self.batches: list[tuple[int, list[Request]]] = []
        self._mutex = threading.Lock()

    def __call__(self, batch: list[Request]) -> None:
        time.sleep(self.delay)  # a write and its fsync: others queue up meanwhile
        with self._mutex:
            self.batches.append((threading.get_ident(), list(batch)))
        for request in batch:
            request.finish()


def submit_many(group: GroupCommit[Request], count: int, threads: int) -> list[Request]:
    requests = [Request(n) for n in range(count)]

    def submit(request: Request) -> None:
        request.thread = threading.get_ident()
        group.submit(request)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(submit, requests))
    return requests


def test_concurrent_requests_share_batches_and_each_is_published_once():
    recorder = Recorder()
    requests = submit_many(GroupCommit(recorder), count=200, threads=16)
    published = [request for _, batch in recorder.batches for request in batch]
    assert sorted(r.number for r in published) == list(range(200))
    assert all(r.finished and r.error is None for r in requests)
    assert len(recorder.batches) < 200  # some requests shared a batch


def test_each_leader_publishes_one_batch_its_own_then_passes_the_lead():
    recorder = Recorder()
    submit_many(GroupCommit(recorder), count=300, threads=12)
    for thread, batch in recorder.batches:
        # The first request queued leads: the thread that publishes a batch is the one whose request is
        # first in it, so no thread keeps publishing other threads' batches while its own caller waits.
        assert batch[0].thread == thread


def test_a_failed_publish_fails_its_batch_only_and_the_group_goes_on():
    calls = 0

    def publish(batch: list[Request]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("disk full")
        for request in batch:
            request.finish()

    group: GroupCommit[Request] = GroupCommit(publish)
    first = Request(0)
    with pytest.raises(OSError, match="disk full"):
        group.submit(first)
    assert first.finished and isinstance(first.error, OSError)
    second = Request(1)
    group.submit(second)  # the lead was given up: the next request leads and succeeds
    assert second.finished and second.error is None


def test_requests_a_publish_leaves_unfinished_fail_instead_of_waiting_forever():
    group: GroupCommit[Request] = GroupCommit(lambda batch: None)
    with pytest.raises(RuntimeError, match="left unpublished"):
        group.submit(Request(0))


def test_an_interrupt_while_leading_reaches_the_leader_and_fails_its_batch_but_not_the_queue():
    class Interrupt(BaseException):
        pass

    started = threading.Event()
    release = threading.Event()
    calls = 0

    def publish(batch: list[Request]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            started.set()
            release.wait(5)
            raise Interrupt
        for request in batch:
            request.finish()

    group: GroupCommit[Request] = GroupCommit(publish)
    leader, queued = Request(0), Request(1)
    outcome: dict[str, BaseException | None] = {}

    def lead() -> None:
        try:
            group.submit(leader)
        except BaseException as err:  # the test's own interrupt
            outcome["leader"] = err

    first = threading.Thread(target=lead)
    first.start()
    assert started.wait(5)
    second = threading.Thread(target=group.submit, args=(queued,))
    second.start()
    time.sleep(0.05)  # queued behind the interrupted batch
    release.set()
    first.join(5)
    second.join(5)
    assert isinstance(outcome["leader"], Interrupt)
    assert queued.finished and queued.error is None  # the next batch was still published


@pytest.mark.parametrize("hand_off", [True, False])
def test_the_next_batch_is_published_by_its_first_requests_thread_or_by_the_leader_without_hand_off(hand_off):
    first_batch_started = threading.Event()
    release = threading.Event()
    publishers: list[tuple[int, list[int]]] = []

    def publish(batch: list[Request]) -> None:
        if not publishers:
            first_batch_started.set()
            release.wait(5)
        publishers.append((threading.get_ident(), [r.number for r in batch]))
        for request in batch:
            request.finish()

    group: GroupCommit[Request] = GroupCommit(publish, hand_off=hand_off)
    requests = [Request(n) for n in range(3)]

    def submit(request: Request) -> None:
        request.thread = threading.get_ident()
        group.submit(request)

    threads = [threading.Thread(target=submit, args=(request,)) for request in requests]
    threads[0].start()
    assert first_batch_started.wait(5)
    for queued, thread in enumerate(threads[1:], start=1):
        thread.start()
        deadline = time.monotonic() + 5
        while len(group._queue) < queued and time.monotonic() < deadline:  # queued behind the first batch
            time.sleep(0.001)
    release.set()
    for thread in threads:
        thread.join(5)
    assert [numbers for _, numbers in publishers] == [[0], [1, 2]]
    expected = requests[1].thread if hand_off else requests[0].thread
    assert publishers[1][0] == expected
