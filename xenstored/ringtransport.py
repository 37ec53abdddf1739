"""A ring page and its event channel as an asyncio transport, so that a connection
(:class:`~xenstored.connection.Connection`) serves a domain's shared ring exactly as it serves a unix socket.

The domain kicks the event channel after producing requests or consuming responses; the daemon kicks it
after consuming requests (the domain may be waiting for room) or producing responses. On every kick this
transport moves what it can both ways. Responses that do not fit wait in an output buffer, counted by
``get_write_buffer_size`` exactly as a socket's, so the connection's output limit applies to rings too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from typing import Any, Protocol

from xenstored.barrier import full_barrier
from xenstored.ring import Ring, RingError

log = logging.getLogger(__name__)


class Doorbell(Protocol):
    """An event channel, as a ring transport uses it."""

    def start(self, kicked: Callable[[], None]) -> None:
        """Call ``kicked`` on the event loop each time the other side notifies."""

    def notify(self) -> None:
        """Notify the other side."""

    def close(self) -> None:
        """Stop calling back and release the channel."""


class PipeDoorbell:
    """An event channel made of two pipes (or FIFOs): the other side writes a byte to ``incoming`` to kick
    the daemon, and the daemon writes one to ``outgoing``. Stands in for Xen's event channel in tests and
    without Xen. Takes ownership of both descriptors.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, incoming: int, outgoing: int) -> None:
        self._loop = loop
        self._incoming = incoming
        self._outgoing = outgoing
        os.set_blocking(incoming, False)
        os.set_blocking(outgoing, False)
        self._open = True

    def start(self, kicked: Callable[[], None]) -> None:
        self._loop.add_reader(self._incoming, self._drain, kicked)

    def _drain(self, kicked: Callable[[], None]) -> None:
        # Many kicks make one event, as on Xen: a pending event is a bit, not a count.
        with contextlib.suppress(BlockingIOError):
            while os.read(self._incoming, 4096):
                pass
        kicked()

    def notify(self) -> None:
        # A full pipe already holds an unread kick: this one can go.
        with contextlib.suppress(BlockingIOError, BrokenPipeError):
            os.write(self._outgoing, b"!")

    def close(self) -> None:
        if not self._open:
            return
        self._open = False
        self._loop.remove_reader(self._incoming)
        for fd in {self._incoming, self._outgoing}:
            os.close(fd)


class RingTransport(asyncio.Transport):
    """One domain's ring page and event channel, driving a protocol (a connection).

    Args:
        loop: The event loop the protocol lives on.
        ring: The daemon's side of the page.
        doorbell: The domain's event channel.
        protocol: What receives the requests and writes the responses.
        release: Called once the transport is closed (unmaps the page).
        name: Who is on the other side, for logs (``dom5``).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        ring: Ring,
        doorbell: Doorbell,
        protocol: asyncio.Protocol,
        release: Callable[[], None] = lambda: None,
        name: str = "ring",
    ) -> None:
        super().__init__()
        self._loop = loop
        self._ring = ring
        self._doorbell = doorbell
        self._protocol = protocol
        self._release = release
        self.name = name
        self._output = bytearray()
        self._paused = False
        self._closing = False
        protocol.connection_made(self)
        doorbell.start(self._kicked)
        # Requests may be on the ring already (a guest that booted before this daemon started, or dom0's
        # kernel, which waits for a first kick before it probes xenbus): look, and kick once.
        self._doorbell.notify()
        loop.call_soon(self._kicked)

    def _kicked(self) -> None:
        if self._closing:
            return
        try:
            sent = self._flush()
            received = b"" if self._paused else self._ring.read_requests()
            again = bool(sent or received) and self._more_without_a_kick()
        except RingError as err:
            self._broken(err)
            return
        if sent or received:
            self._doorbell.notify()
        if received:
            self._protocol.data_received(received)
        if again:
            # Another turn of the loop rather than a loop here: other domains' rings get theirs between.
            self._loop.call_soon(self._kicked)

    def _more_without_a_kick(self) -> bool:
        """After moving an index: whether the domain produced requests, or made room for held responses,
        while this side was at work. The domain does not kick for those (its ring was not empty, or not full,
        when it looked), so this side must look again, once its own index is visible to the domain."""
        full_barrier()
        if self._output and self._ring.response_room:
            return True
        return not self._paused and self._ring.requests_pending

    def _broken(self, err: RingError) -> None:
        log.warning("%s: impossible ring indexes (%s); dropping its ring connection", self.name, err.reason)
        self.abort()

    def _flush(self) -> int:
        if not self._output:
            return 0
        count = self._ring.write_responses(self._output)
        del self._output[:count]
        return count

    # -- asyncio.WriteTransport ----------------------------------------------------------------------------
    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or not data:
            return
        self._output += data
        try:
            sent = self._flush()
            again = bool(sent and self._output) and self._more_without_a_kick()
        except RingError as err:
            self._broken(err)
            return
        if sent:
            self._doorbell.notify()
        if again:
            self._loop.call_soon(self._kicked)

    def get_write_buffer_size(self) -> int:
        return len(self._output)

    def can_write_eof(self) -> bool:
        return False

    # -- asyncio.ReadTransport -----------------------------------------------------------------------------
    def pause_reading(self) -> None:
        self._paused = True

    def resume_reading(self) -> None:
        if self._paused:
            self._paused = False
            # Kicks that came while paused were answered with nothing read: read now.
            self._loop.call_soon(self._kicked)

    def is_reading(self) -> bool:
        return not self._paused and not self._closing

    # -- closing -------------------------------------------------------------------------------------------
    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self.abort()

    def abort(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._output.clear()
        self._doorbell.close()
        self._release()
        self._loop.call_soon(self._protocol.connection_lost, None)

    def describe(self) -> str:
        """One line for diagnosis: the ring's indexes, what is held back, and whether reading is paused."""
        if self._closing:
            return f"{self.name}: closed"
        return (
            f"{self.name}: {self._ring.describe()} held {len(self._output)}"
            f" paused {'yes' if self._paused else 'no'}"
        )

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default
