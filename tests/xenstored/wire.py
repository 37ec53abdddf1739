"""A bare-bones synchronous xenstore client for tests that need the raw wire: exact headers, malformed
packets, req_id and tx_id of watch events."""

from __future__ import annotations

import socket
from collections.abc import Iterable

from xenstored.protocol import HEADER, Op, Packet


class WireClient:
    """One unix-socket connection; replies are matched in order, watch events are set aside."""

    def __init__(self, path: str, timeout: float = 10.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.events: list[Packet] = []
        self._next_req = 1

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> WireClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send_bytes(self, data: bytes) -> None:
        self.sock.sendall(data)

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

    def request(self, op: int, payload: bytes, tx_id: int = 0) -> Packet:
        """Send one request and return its reply (watch events that arrive first are kept in events)."""
        req_id = self._next_req
        self._next_req += 1
        self.send_bytes(Packet(op, req_id, tx_id, payload).encode())
        while True:
            packet = self.receive()
            if packet.op == Op.WATCH_EVENT:
                self.events.append(packet)
                continue
            assert packet.req_id == req_id, f"reply to request {packet.req_id}, expected {req_id}"
            return packet

    def event(self) -> Packet:
        """The next watch event (already received, or the next packet)."""
        if self.events:
            return self.events.pop(0)
        packet = self.receive()
        assert packet.op == Op.WATCH_EVENT, packet
        return packet

    # -- conveniences (payload helpers; replies are returned raw) ------------------------------------------
    @staticmethod
    def args(*items: bytes | str) -> bytes:
        return b"".join((i.encode() if isinstance(i, str) else i) + b"\0" for i in items)

    def call(self, op: int, *items: bytes | str, tx_id: int = 0) -> Packet:
        return self.request(op, self.args(*items), tx_id)

    def write(self, path: str, value: bytes | str, tx_id: int = 0) -> Packet:
        data = value.encode() if isinstance(value, str) else value
        return self.request(Op.WRITE, path.encode() + b"\0" + data, tx_id)

    def start(self) -> int:
        reply = self.call(Op.TRANSACTION_START, "")
        assert reply.op == Op.TRANSACTION_START, reply
        return int(reply.payload.rstrip(b"\0"))

    def end(self, tx_id: int, commit: bool = True) -> Packet:
        return self.call(Op.TRANSACTION_END, "T" if commit else "F", tx_id=tx_id)


def error_name(packet: Packet) -> str | None:
    """The errno name of an ERROR reply, None for any other reply."""
    return packet.payload.rstrip(b"\0").decode() if packet.op == Op.ERROR else None


def names(packet: Packet) -> list[str]:
    return [n.decode() for n in packet.payload.split(b"\0") if n]


def all_of(packets: Iterable[Packet]) -> list[tuple[int, bytes]]:
    return [(p.op, p.payload) for p in packets]
