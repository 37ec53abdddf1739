"""Watches: deliver a branch's changes to callbacks, at least once, whoever made them."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from store.errors import HistoryLost
from store.paths import Path, join, parse

if TYPE_CHECKING:
    from store.branch import Branch, ChangeEvent

log = logging.getLogger(__name__)
POLL_SECONDS = 0.05


class Watch:
    """One registered watch; ``cancel()`` stops it."""

    def __init__(
        self, watcher: Watcher, branch: Branch, prefix: str, callback: Callable[[ChangeEvent], None]
    ):
        self._watcher = watcher
        self.branch = branch
        self.prefix = prefix
        self.callback = callback
        self.cursor = branch.head
        self.failures = 0

    def cancel(self) -> None:
        self._watcher.remove(self)

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()


class Watcher:
    """A background thread per store that polls the refs of watched branches and wakes on local commits."""

    def __init__(self) -> None:
        self._watches: list[Watch] = []
        self._mutex = threading.Lock()
        self._wake = threading.Condition(self._mutex)
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._generation = 0

    def add(self, branch: Branch, prefix: Path, callback: Callable[[ChangeEvent], None]) -> Watch:
        watch = Watch(self, branch, join(parse(prefix, allow_root=True)), callback)
        with self._mutex:
            self._watches.append(watch)
            if self._thread is None:
                self._stopping = False
                self._thread = threading.Thread(target=self._run, name="store-watcher", daemon=True)
                self._thread.start()
        return watch

    def remove(self, watch: Watch) -> None:
        with self._mutex:
            if watch in self._watches:
                self._watches.remove(watch)

    def notify(self) -> None:
        with self._wake:
            self._generation += 1
            self._wake.notify_all()

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
            thread = self._thread
            self._thread = None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._wake:
                if self._stopping:
                    return
                watches = list(self._watches)
            for watch in watches:
                self._deliver(watch)
            with self._wake:
                if self._stopping:
                    return
                generation = self._generation
                self._wake.wait_for(
                    lambda g=generation: self._generation != g or self._stopping, POLL_SECONDS
                )

    def _deliver(self, watch: Watch) -> None:
        try:
            head = watch.branch.head
        except Exception:  # a transient read failure: try again next round
            log.exception("watch: cannot read %s", watch.branch.ref)
            return
        if head == watch.cursor:
            return
        try:
            events = list(watch.branch.changes(since=watch.cursor, prefix=watch.prefix))
        except HistoryLost:
            # The old cursor is gone (history squashed or reset): deliver the net difference from scratch.
            events = list(watch.branch.changes(since=None, prefix=watch.prefix))
        except Exception:
            log.exception("watch: cannot read changes of %s", watch.branch.ref)
            return
        cursor = watch.cursor
        current: str | None = None
        for event in events:
            if current is not None and event.commit != current:
                cursor = current  # every event of the previous commit was delivered
            current = event.commit
            try:
                watch.callback(event)
            except Exception:
                watch.failures += 1
                watch.cursor = cursor
                log.exception("watch callback failed on %s; it will be delivered again", event.path)
                return
        watch.cursor = head
