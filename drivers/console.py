"""A domain's serial console as a byte stream: what ``Driver.console`` returns.

Drivers differ in how bytes arrive (a libvirt ``virStream``, the simulator's fake boot log), so each gives
its bytes to a :class:`QueuedConsole` from whatever thread it reads them on; readers only see ``read``,
``write`` and ``close``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Self

# Ctrl-] ends a console session, as in virsh console and telnet.
ESCAPE = b"\x1d"


class ConsoleStream:
    """A duplex byte stream attached to one domain's serial console.

    ``read`` returns what the guest wrote since the last call (``b""`` once the console closed: the domain
    stopped or ``close`` was called), or None if nothing came within ``timeout``. ``write`` sends bytes to
    the guest as keystrokes. Safe to read on one thread while writing on another.
    """

    def read(self, timeout: float | None = None) -> bytes | None:
        """Bytes from the guest, ``b""`` at the end, None if none came within ``timeout`` seconds."""
        raise NotImplementedError

    def write(self, data: bytes) -> None:
        """Send ``data`` to the guest."""
        raise NotImplementedError

    def close(self) -> None:
        """Detach from the console (the domain runs on). Idempotent."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class QueuedConsole(ConsoleStream):
    """A ConsoleStream fed by its driver: ``feed`` hands over guest output, ``end`` marks the end.

    Args:
        send: Delivers the reader's ``write`` to the guest.
        on_close: Releases the driver's side (called once, by the first ``close``).
    """

    def __init__(self, send: Callable[[bytes], None], on_close: Callable[[], None] | None = None) -> None:
        self._send = send
        self._on_close = on_close
        self._queue: queue.Queue[bytes] = queue.Queue()
        self._lock = threading.Lock()
        self._closed = False
        self._ended = False

    def feed(self, data: bytes) -> None:
        """Hand ``data`` (guest output) to the reader; ignored once ended."""
        if data and not self._ended:
            self._queue.put(data)

    def end(self) -> None:
        """Mark the end of the output: the reader gets ``b""`` after what was fed before."""
        if not self._ended:
            self._ended = True
            self._queue.put(b"")

    def read(self, timeout: float | None = None) -> bytes | None:
        try:
            first = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if first == b"":
            self._queue.put(b"")  # every later read sees the end too
            return b""
        chunks = [first]
        while True:  # coalesce what is already queued, up to the end marker
            try:
                more = self._queue.get_nowait()
            except queue.Empty:
                break
            if more == b"":
                self._queue.put(b"")
                break
            chunks.append(more)
        return b"".join(chunks)

    def write(self, data: bytes) -> None:
        if self._closed:
            raise ValueError("console is closed")
        self._send(data)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.end()
        if self._on_close is not None:
            self._on_close()


__all__ = ["ESCAPE", "ConsoleStream", "QueuedConsole"]
