"""One client connection: framing, in-order replies, watch events, and cleanup on disconnect."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import cast

from xenstored.dispatch import Dispatcher
from xenstored.errors import ProtocolError, RequestError
from xenstored.metrics import XenstoredMetrics
from xenstored.perms import Caller
from xenstored.protocol import Packet, PacketReader, watch_event
from xenstored.session import Outcome
from xenstored.transactions import Transaction

log = logging.getLogger(__name__)

# A client that stops reading its socket while events pile up is disconnected past this much.
OUTPUT_LIMIT = 8 * 1024 * 1024
# Requests received but not yet handled (a client that pipelines without end is paused).
QUEUE_LIMIT = 1024

DurableWait = Callable[[int], "asyncio.Future[None] | None"]


class Connection(asyncio.Protocol):
    """A client on a unix socket, speaking as one domain.

    Requests are handled in order, one at a time; in durable mode a change's reply waits until it is
    committed, and the connection's next request waits with it.

    Args:
        caller: The domain this connection speaks as (dom0 on the main socket).
        dispatcher: Runs requests.
        durable_wait: Given a change's sequence number, a future done once it is on disk (None: it is, or
            the daemon is not in durable mode).
        closed: Called once when the connection is gone.
        metrics: Counts its replies and the watch events it sends (a fresh, unread one if not given).
    """

    def __init__(
        self,
        caller: Caller,
        dispatcher: Dispatcher,
        durable_wait: DurableWait,
        closed: Callable[[Connection], None],
        metrics: XenstoredMetrics | None = None,
    ) -> None:
        self.caller = caller
        self._metrics = metrics or XenstoredMetrics()
        self.transactions: dict[int, Transaction] = {}
        self._dispatcher = dispatcher
        self._durable_wait = durable_wait
        self._closed_cb = closed
        self._reader = PacketReader()
        self._queue: deque[Packet] = deque()
        self._waiting = False
        self._paused = False
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self.closed = False

    # -- asyncio.Protocol ----------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            packets = self._reader.feed(data)
        except ProtocolError as err:
            log.warning("dom%d: %s; closing the connection", self.caller.domid, err.reason)
            self.close()
            return
        self._queue.extend(packets)
        self._drain()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cleanup()

    # -- requests ------------------------------------------------------------------------------------------
    def _drain(self) -> None:
        while self._queue and not self._waiting and not self.closed:
            packet = self._queue.popleft()
            result = self._dispatcher.handle(self, packet)
            if isinstance(result, Outcome) and result.seq is not None:
                waiter = self._durable_wait(result.seq)
                if waiter is not None:
                    self._waiting = True
                    waiter.add_done_callback(lambda f, p=packet, r=result: self._resume(p, r, f))
                    break
            self._answer(packet, result)
        self._flow_control()

    def _resume(self, packet: Packet, result: Outcome, waited: asyncio.Future[None]) -> None:
        self._waiting = False
        if not self.closed:
            failure = waited.exception()  # the commit failed: never acknowledge what is not saved
            self._answer(packet, failure if isinstance(failure, RequestError) else result)
            self._drain()

    def _answer(self, packet: Packet, result: Outcome | RequestError) -> None:
        if isinstance(result, RequestError):
            self._metrics.reply(packet.op, result.errno)
            self._write(packet.error(result.errno).encode())
            return
        self._metrics.reply(packet.op, "ok")
        reply = packet.encoded_reply(result.payload)
        for path, token in result.events:  # a new watch's first event, in the same write
            reply += watch_event(path, token).encode()
        self._metrics.watch_events += len(result.events)
        self._write(reply)

    def _flow_control(self) -> None:
        if self._transport is None or self.closed:
            return
        backlog = len(self._queue) > QUEUE_LIMIT or self._waiting
        if backlog and not self._paused:
            self._transport.pause_reading()
            self._paused = True
        elif not backlog and self._paused:
            self._transport.resume_reading()
            self._paused = False

    # -- output --------------------------------------------------------------------------------------------
    def send_event(self, path: str, token: bytes) -> None:
        """Queue a watch event (from any thread)."""
        data = watch_event(path, token).encode()
        if threading.get_ident() == self._loop_thread:
            self._write_event(data)
        else:
            self._loop.call_soon_threadsafe(self._write_event, data)

    def _write_event(self, data: bytes) -> None:
        self._metrics.watch_events += 1  # counted on the loop's thread, as every count is
        self._write(data)

    def _write(self, data: bytes) -> None:
        transport = self._transport
        if transport is None or self.closed or transport.is_closing():
            return
        transport.write(data)
        if transport.get_write_buffer_size() > OUTPUT_LIMIT:
            log.warning("dom%d does not read its socket; closing the connection", self.caller.domid)
            self.close()

    # -- lifecycle -----------------------------------------------------------------------------------------
    def close(self) -> None:
        """Drop the connection: its transactions are aborted and its watches removed."""
        if threading.get_ident() != self._loop_thread:
            self._loop.call_soon_threadsafe(self.close)
            return
        if self._transport is not None:
            self._transport.abort()
        self._cleanup()

    def _cleanup(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._queue.clear()
        self.transactions.clear()
        self._closed_cb(self)
