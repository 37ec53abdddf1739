"""Group commit: threads that publish at the same moment share one durable write, taking turns to lead.

The first thread to arrive leads: it takes every request queued so far and publishes them as one batch (one
pack and one fsync, or one compare-and-swap of a branch). Requests arriving meanwhile queue up. Once its
own request is published, the leader hands the lead to the oldest queued request's thread, which publishes
the next batch; with nobody queued, the lead is dropped. So each leader publishes one batch, its own: under
a steady stream of requests no thread keeps publishing everyone else's while its own caller waits. Where
batches are short (a pack write), a leader may instead go on until the queue is empty (``hand_off=False``),
saving a thread hand-off per batch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar


class Waiter:
    """One request waiting for its batch to be published.

    Attributes:
        error: Why publishing it failed, once finished (None: it succeeded).
    """

    def __init__(self) -> None:
        self.error: BaseException | None = None
        self._done = threading.Event()
        # Set when the request is finished, or when its thread is handed the lead.
        self._wake = threading.Event()
        self._promoted = False

    @property
    def finished(self) -> bool:
        return self._done.is_set()

    def finish(self, error: BaseException | None = None) -> None:
        """Mark the request published (or failed with ``error``) and wake its thread."""
        if error is not None and self.error is None:
            self.error = error
        self._done.set()
        self._wake.set()


W = TypeVar("W", bound=Waiter)


class GroupCommit(Generic[W]):
    """Publishes requests in batches: each by the thread of its oldest request (with hand-off), or by one
    leader until nothing is queued (without).

    Args:
        publish: Publishes one batch. It should finish every request in it; those it leaves unfinished are
            finished with the error it raises, or with a ``RuntimeError`` if it returns without doing so.
        hand_off: Pass the lead on after each batch (the default). False: a leader goes on publishing
            until nothing is queued, which saves a thread hand-off per batch when batches are short.
    """

    def __init__(self, publish: Callable[[list[W]], None], hand_off: bool = True) -> None:
        self._publish = publish
        self._hand_off = hand_off
        self._mutex = threading.Lock()
        self._queue: list[W] = []
        self._leading = False

    def submit(self, request: W) -> None:
        """Publish ``request`` with what else is queued; return once it is finished, or raise its error."""
        with self._mutex:
            self._queue.append(request)
            lead = not self._leading
            if lead:
                self._leading = True
        if not lead:
            request._wake.wait()
            lead = request._promoted and not request.finished
        while lead:
            lead = self._lead()
        request._done.wait()
        if request.error is not None:
            raise request.error

    def _lead(self) -> bool:
        """Publish one batch; True if this thread keeps the lead for the next one."""
        with self._mutex:
            batch, self._queue = self._queue, []
        try:
            self._publish(batch)
        except BaseException as err:
            for request in batch:
                if not request.finished:
                    request.finish(err)
            if not isinstance(err, Exception):
                self._pass_lead(keep=False)
                raise
        for request in batch:
            if not request.finished:
                request.finish(RuntimeError("group commit: the batch was left unpublished"))
        return self._pass_lead(keep=not self._hand_off)

    def _pass_lead(self, keep: bool) -> bool:
        with self._mutex:
            if not self._queue:
                self._leading = False
                return False
            if keep:
                return True
            successor = self._queue[0]
            successor._promoted = True  # the lead passes on: _leading stays set
        successor._wake.set()
        return False
