"""The xenbus client the tests share, whatever carries the packets: a request gets its reply (checked by its
id), and the watch events that arrive first are set aside for :meth:`XenbusClient.event`.

A transport says how bytes go out and packets come in: :class:`tests.xenstored.wire.WireClient` over the unix
socket, :class:`tests.xenstored.ringguest.FileGuest` over a guest's file ring.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable

from xenstored.protocol import Op, Packet


class XenbusClient(ABC):
    """Requests and replies in order, watch events set aside in ``events``."""

    def __init__(self) -> None:
        self.events: list[Packet] = []
        self._next_req = 1

    @abstractmethod
    def send(self, data: bytes, chunks: Iterable[int] = ()) -> None:
        """Send ``data`` in pieces of the given sizes (the rest in one piece)."""

    @abstractmethod
    def receive(self) -> Packet:
        """The next packet the daemon sent, whatever its type."""

    def request(self, op: int, payload: bytes, tx_id: int = 0, chunks: Iterable[int] = ()) -> Packet:
        """Send one request (cut as ``chunks`` says) and return its reply; watch events go to ``events``."""
        req_id = self._next_req
        self._next_req += 1
        self.send(Packet(op, req_id, tx_id, payload).encode(), chunks)
        while True:
            packet = self.receive()
            if packet.op == Op.WATCH_EVENT:
                self.events.append(packet)
                continue
            assert packet.req_id == req_id, f"reply to request {packet.req_id}, expected {req_id}"
            return packet

    def event(self) -> Packet:
        """The next watch event (set aside already, or the next packet)."""
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
