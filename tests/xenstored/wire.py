"""A bare-bones synchronous xenstore client for tests that need the raw wire: exact headers, malformed
packets, req_id and tx_id of watch events."""

from __future__ import annotations

import socket
from collections.abc import Iterable

from tests.xenstored.client import XenbusClient
from xenstored.protocol import HEADER, Op, Packet


class WireClient(XenbusClient):
    """One unix-socket connection."""

    def __init__(self, path: str, timeout: float = 10.0) -> None:
        super().__init__()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> WireClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, data: bytes, chunks: Iterable[int] = ()) -> None:
        view = memoryview(data)
        for size in (size for size in chunks if size > 0):
            self.sock.sendall(view[:size])
            view = view[size:]
        if view:
            self.sock.sendall(view)

    def receive(self) -> Packet:
        """The next packet, whatever its type (None never: raises on a closed connection)."""
        header = self._exactly(HEADER.size)
        op, req_id, tx_id, length = HEADER.unpack(header)
        return Packet(op, req_id, tx_id, self._exactly(length))

    def _exactly(self, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            if not chunk:
                raise ConnectionError("the daemon closed the connection")
            data += chunk
        return data


def error_name(packet: Packet) -> str | None:
    """The errno name of an ERROR reply, None for any other reply."""
    return packet.payload.rstrip(b"\0").decode() if packet.op == Op.ERROR else None


def names(packet: Packet) -> list[str]:
    return [n.decode() for n in packet.payload.split(b"\0") if n]


def all_of(packets: Iterable[Packet]) -> list[tuple[int, bytes]]:
    return [(p.op, p.payload) for p in packets]
