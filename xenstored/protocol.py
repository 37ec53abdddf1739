"""The xenstore wire protocol: packet framing, message types and payload encoding.

A packet is a header of four host-order uint32 (type, req_id, tx_id, len) followed by ``len`` payload
bytes, at most :data:`PAYLOAD_MAX`. Arguments in a payload are NUL-terminated strings; the value of a WRITE
is the raw rest of the payload.
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import NamedTuple

from xenstored.errors import InvalidRequest, ProtocolError

HEADER = struct.Struct("=IIII")
PAYLOAD_MAX = 4096


class Op(IntEnum):
    """Message types (xen/include/public/io/xs_wire.h); 20 was RESTRICT, removed and invalid."""

    CONTROL = 0
    DIRECTORY = 1
    READ = 2
    GET_PERMS = 3
    WATCH = 4
    UNWATCH = 5
    TRANSACTION_START = 6
    TRANSACTION_END = 7
    INTRODUCE = 8
    RELEASE = 9
    GET_DOMAIN_PATH = 10
    WRITE = 11
    MKDIR = 12
    RM = 13
    SET_PERMS = 14
    WATCH_EVENT = 15
    ERROR = 16
    IS_DOMAIN_INTRODUCED = 17
    RESUME = 18
    SET_TARGET = 19
    RESET_WATCHES = 21
    DIRECTORY_PART = 22


OK = b"OK\0"


class Packet(NamedTuple):
    """One message in either direction. ``op`` stays an int so that unknown types can be answered.

    (A named tuple: the daemon makes one per request.)
    """

    op: int
    req_id: int
    tx_id: int
    payload: bytes

    def encode(self) -> bytes:
        return self.encoded_reply(self.payload)

    def encoded_reply(self, payload: bytes) -> bytes:
        """The answer to this request, encoded: same type, request id and transaction id."""
        return HEADER.pack(self.op, self.req_id, self.tx_id, len(payload)) + payload

    def error(self, errno: str) -> Packet:
        """An ERROR reply naming ``errno``, echoing the request and transaction ids."""
        return Packet(Op.ERROR, self.req_id, self.tx_id, errno.encode("ascii") + b"\0")

    @property
    def op_name(self) -> str:
        try:
            return Op(self.op).name
        except ValueError:
            return f"type {self.op}"


def watch_event(path: str, token: bytes) -> Packet:
    """A WATCH_EVENT: always req_id 0 and tx_id 0."""
    return Packet(Op.WATCH_EVENT, 0, 0, path.encode("ascii") + b"\0" + token + b"\0")


class PacketReader:
    """Cuts a byte stream into packets, refusing any header that announces more than PAYLOAD_MAX."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Packet]:
        """Add bytes; return every complete packet they finish.

        Raises:
            ProtocolError: A header announces a payload over PAYLOAD_MAX.
        """
        # Usually nothing is buffered: data starts on a packet boundary and is cut without a copy.
        buffered = bool(self._buffer)
        if buffered:
            self._buffer += data
            data = bytes(self._buffer)
        packets = []
        start, size = 0, len(data)
        while size - start >= HEADER.size:
            op, req_id, tx_id, length = HEADER.unpack_from(data, start)
            if length > PAYLOAD_MAX:
                raise ProtocolError(f"payload of {length} bytes announced (max {PAYLOAD_MAX})")
            end = start + HEADER.size + length
            if end > size:
                break
            packets.append(Packet(op, req_id, tx_id, data[start + HEADER.size : end]))
            start = end
        if buffered or start < size:
            self._buffer[:] = data[start:]
        return packets

    @property
    def pending(self) -> int:
        """Bytes received that do not make a whole packet yet."""
        return len(self._buffer)


def strings(payload: bytes, count: int) -> list[bytes]:
    """Exactly ``count`` NUL-terminated strings, and nothing after them.

    Raises:
        InvalidRequest: Too few or too many strings, or a missing final NUL.
    """
    if not payload.endswith(b"\0"):
        raise InvalidRequest("arguments must be NUL-terminated")
    parts = payload[:-1].split(b"\0")
    if len(parts) != count:
        raise InvalidRequest(f"expected {count} argument(s), got {len(parts)}")
    return parts


def string_list(payload: bytes) -> list[bytes]:
    """Any number (at least one) of NUL-terminated strings."""
    if not payload.endswith(b"\0"):
        raise InvalidRequest("arguments must be NUL-terminated")
    return payload[:-1].split(b"\0")


def path_and_value(payload: bytes) -> tuple[bytes, bytes]:
    """A WRITE payload: a NUL-terminated path, then the raw value (which may contain NULs)."""
    path, nul, value = payload.partition(b"\0")
    if not nul:
        raise InvalidRequest("WRITE needs a NUL after the path")
    return path, value


def decimal(raw: bytes, what: str, maximum: int = 0xFFFFFFFF) -> int:
    """A non-negative decimal number from the wire.

    Raises:
        InvalidRequest: Not a number, or out of range.
    """
    if not raw or not raw.isdigit() or len(raw) > len(str(maximum)):
        raise InvalidRequest(f"{what} must be a decimal number, got {raw[:32]!r}")
    value = int(raw)
    if value > maximum:
        raise InvalidRequest(f"{what} {value} is out of range (max {maximum})")
    return value


def join_strings(items: list[bytes]) -> bytes:
    """NUL-terminate each string and concatenate them (DIRECTORY, GET_PERMS replies)."""
    return b"".join(item + b"\0" for item in items)
