"""The shared ring page a domain speaks xenstore through (``struct xenstore_domain_interface``).

The page (xen/include/public/io/xs_wire.h) holds two 1024-byte rings, requests (written by the domain) and
responses (written by the daemon), each with a consumer and a producer index::

    char req[1024]; char rsp[1024];
    uint32_t req_cons, req_prod, rsp_cons, rsp_prod;
    uint32_t server_features, connection, error;

Indexes are free-running 32-bit counters: a byte at index ``i`` lives at ``i % 1024``, ``prod - cons`` (mod
2**32) is what is in a ring, and it can never exceed 1024 unless the other side is broken or hostile. Each
side writes the data before moving its producer index, and reads the index before the data: on x86, where
this daemon runs, stores are seen in program order and loads are not reordered with loads, so no barrier
is needed beyond doing the two in that order (which CPython does: each is one call).

Kicks are not sent for every change. Linux's xenbus (drivers/xen/xenbus/xenbus_comms.c) kicks after
producing requests only if the daemon had consumed everything before (``prod <= req_cons``), and after
consuming responses only if the ring was full. So whoever consumes or produces must look at the ring again
once its own index is visible (after a full barrier, :mod:`xenstored.barrier`): bytes that came meanwhile
came with no kick. :class:`~xenstored.ringtransport.RingTransport` does.

:class:`Ring` is the daemon's side; :class:`GuestRing` the domain's, for tests and tools.
"""

from __future__ import annotations

import struct

from xenstored.errors import XenstoredError

RING_SIZE = 1024
REQ_OFFSET = 0
RSP_OFFSET = RING_SIZE
REQ_CONS = 2 * RING_SIZE
REQ_PROD = REQ_CONS + 4
RSP_CONS = REQ_CONS + 8
RSP_PROD = REQ_CONS + 12
SERVER_FEATURES = REQ_CONS + 16
CONNECTION = REQ_CONS + 20
ERROR = REQ_CONS + 24
INTERFACE_SIZE = REQ_CONS + 28
PAGE_SIZE = 4096

_INDEX = struct.Struct("=I")
_MASK = 0xFFFFFFFF


class RingError(XenstoredError):
    """A ring's indexes are impossible (more than a ring's worth of bytes between them): the other side is
    broken or hostile, and the connection is dropped.

    Attributes:
        reason: Which ring and which indexes.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class _Page:
    """Index and data access on a writable buffer holding the interface."""

    def __init__(self, buffer: memoryview) -> None:
        if buffer.nbytes < INTERFACE_SIZE or buffer.readonly:
            raise ValueError(f"a ring page needs {INTERFACE_SIZE} writable bytes, got {buffer.nbytes}")
        self.buffer = buffer.cast("B")

    def close(self) -> None:
        self.buffer.release()

    def index(self, offset: int) -> int:
        return _INDEX.unpack_from(self.buffer, offset)[0]

    def set_index(self, offset: int, value: int) -> None:
        _INDEX.pack_into(self.buffer, offset, value & _MASK)

    def used(self, cons_at: int, prod_at: int, name: str) -> tuple[int, int]:
        """(consumer index, bytes in the ring), checked."""
        cons, prod = self.index(cons_at), self.index(prod_at)
        used = (prod - cons) & _MASK
        if used > RING_SIZE:
            raise RingError(f"{name} ring: producer {prod} is {used} bytes past consumer {cons}")
        return cons, used

    def copy_out(self, base: int, start: int, count: int) -> bytes:
        """``count`` bytes of the ring at ``base`` from free-running index ``start``, across the wrap."""
        first = start % RING_SIZE
        head = min(count, RING_SIZE - first)
        data = bytes(self.buffer[base + first : base + first + head])
        if head < count:
            data += bytes(self.buffer[base : base + count - head])
        return data

    def copy_in(self, base: int, start: int, data: memoryview) -> None:
        first = start % RING_SIZE
        head = min(len(data), RING_SIZE - first)
        self.buffer[base + first : base + first + head] = data[:head]
        if head < len(data):
            self.buffer[base : base + len(data) - head] = data[head:]

    def consume(self, base: int, cons_at: int, prod_at: int, name: str) -> bytes:
        """Every byte produced on the ring at ``base`` (indexes at ``cons_at``/``prod_at``), consumed."""
        cons, used = self.used(cons_at, prod_at, name)
        if not used:
            return b""
        data = self.copy_out(base, cons, used)
        self.set_index(cons_at, cons + used)
        return data

    def produce(
        self, base: int, cons_at: int, prod_at: int, name: str, data: bytes | bytearray | memoryview
    ) -> int:
        """Produce as much of ``data`` as the ring at ``base`` has room for; returns how much."""
        cons, used = self.used(cons_at, prod_at, name)
        count = min(len(data), RING_SIZE - used)
        if count:
            prod = cons + used
            self.copy_in(base, prod, memoryview(data)[:count])
            self.set_index(prod_at, prod + count)
        return count


class Ring:
    """The daemon's side of a ring page: it consumes requests and produces responses.

    Args:
        buffer: The page (an mmap of a grant, of foreign memory, of ``/proc/xen/xsd_kva``, or of a file).
    """

    def __init__(self, buffer: memoryview) -> None:
        self._page = _Page(buffer)

    def read_requests(self) -> bytes:
        """Every request byte the domain has produced, consumed.

        Raises:
            RingError: The request ring's indexes are impossible.
        """
        return self._page.consume(REQ_OFFSET, REQ_CONS, REQ_PROD, "request")

    def write_responses(self, data: bytes | bytearray | memoryview) -> int:
        """Produce as much of ``data`` as the response ring has room for; returns how much.

        Raises:
            RingError: The response ring's indexes are impossible.
        """
        return self._page.produce(RSP_OFFSET, RSP_CONS, RSP_PROD, "response", data)

    @property
    def requests_pending(self) -> bool:
        """The domain has produced requests not yet consumed."""
        return self._page.index(REQ_PROD) != self._page.index(REQ_CONS)

    @property
    def response_room(self) -> int:
        """How many response bytes the ring has room for now.

        Raises:
            RingError: The response ring's indexes are impossible.
        """
        return RING_SIZE - self._page.used(RSP_CONS, RSP_PROD, "response")[1]

    def describe(self) -> str:
        """The four indexes, as ``req CONS/PROD rsp CONS/PROD``."""
        index = self._page.index
        return f"req {index(REQ_CONS)}/{index(REQ_PROD)} rsp {index(RSP_CONS)}/{index(RSP_PROD)}"

    def close(self) -> None:
        """Let go of the page (it can be unmapped once nothing else holds it)."""
        self._page.close()


class GuestRing:
    """The domain's side of a ring page: it produces requests and consumes responses (what a guest kernel's
    xenbus driver does; here for tests and tools)."""

    def __init__(self, buffer: memoryview) -> None:
        self._page = _Page(buffer)

    def write_requests(self, data: bytes | bytearray | memoryview) -> int:
        """Produce as much of ``data`` as the request ring has room for; returns how much."""
        return self._page.produce(REQ_OFFSET, REQ_CONS, REQ_PROD, "request", data)

    def read_responses(self) -> bytes:
        """Every response byte the daemon has produced, consumed."""
        return self._page.consume(RSP_OFFSET, RSP_CONS, RSP_PROD, "response")

    def produce(self, data: bytes | bytearray | memoryview) -> tuple[int, bool]:
        """Produce requests as Linux's xenbus does (``xb_write``): as much of ``data`` as fits, and whether to
        kick, which is only if the daemon had consumed every earlier byte (Linux's ``prod <= req_cons``,
        made safe across the counters' wrap).

        Returns:
            How many bytes were produced, and whether to kick.
        """
        before = self._page.index(REQ_PROD)
        count = self.write_requests(data)
        caught_up = (self._page.index(REQ_CONS) - before) & _MASK <= count
        return count, bool(count) and caught_up

    def consume(self) -> tuple[bytes, bool]:
        """Consume responses as Linux's xenbus does (``xb_read``): every byte produced, and whether to kick,
        which is only if the ring was full (the daemon may hold responses that did not fit).

        Returns:
            The bytes, and whether to kick.
        """
        before = self._page.index(RSP_CONS)
        data = self.read_responses()
        return data, bool(data) and (self._page.index(RSP_PROD) - before) & _MASK >= RING_SIZE

    def close(self) -> None:
        self._page.close()

    def start_at(self, index: int) -> None:
        """Set all four indexes to ``index`` (an empty ring whose next byte is at ``index``): lets tests put
        the wrap of the ring, and of the 32-bit counters, where they like."""
        for offset in (REQ_CONS, REQ_PROD, RSP_CONS, RSP_PROD):
            self._page.set_index(offset, index)
