"""A guest without Xen: a domain's side of a file ring (``--ring-dir``), as a guest kernel's xenbus uses its
shared page and event channel (kicking only when Linux's would), for the ring transport's tests."""

from __future__ import annotations

import mmap
import os
import select
from collections.abc import Iterable

from tests.xenstored.client import XenbusClient
from xenstored.protocol import HEADER, Packet
from xenstored.ring import PAGE_SIZE, GuestRing

# How long a guest waits for the daemon's kick before the test fails: a guard against a hung daemon, not a
# measurement (a kick takes microseconds).
KICK_TIMEOUT = 20.0


class FileGuest(XenbusClient):
    """Domain ``domid``'s page and event channel under ``ring_dir``, made before its INTRODUCE.

    Args:
        ring_dir: The daemon's ``--ring-dir``.
        domid: The domain.
        start: Where the ring's free-running indexes start (to put the wrap where a test wants it).
    """

    def __init__(self, ring_dir: str, domid: int, start: int = 0) -> None:
        super().__init__()
        self.domid = domid
        base = os.path.join(ring_dir, str(domid))
        os.makedirs(base, exist_ok=True)
        page_path = os.path.join(base, "page")
        with open(page_path, "wb") as handle:
            handle.write(bytes(PAGE_SIZE))
        for name in ("kick", "notify"):
            path = os.path.join(base, name)
            if os.path.exists(path):
                os.unlink(path)
            os.mkfifo(path)
        with open(page_path, "r+b") as handle:
            self._mmap = mmap.mmap(handle.fileno(), PAGE_SIZE)
        self.page = memoryview(self._mmap)
        self.ring = GuestRing(self.page)
        self.ring.start_at(start)
        self._kick = os.open(os.path.join(base, "kick"), os.O_RDWR | os.O_NONBLOCK)
        self._notify = os.open(os.path.join(base, "notify"), os.O_RDWR | os.O_NONBLOCK)
        self._received = bytearray()

    def close(self) -> None:
        os.close(self._kick)
        os.close(self._notify)
        self.ring.close()
        self.page.release()
        self._mmap.close()

    def kick(self) -> None:
        os.write(self._kick, b"k")

    def _wait(self) -> None:
        """Wait for the daemon's kick, then take every kick pending."""
        ready, _, _ = select.select([self._notify], [], [], KICK_TIMEOUT)
        assert ready, f"dom{self.domid}: no kick from the daemon within {KICK_TIMEOUT} s"
        try:
            while os.read(self._notify, 4096):
                pass
        except BlockingIOError:
            pass

    def _take_responses(self) -> None:
        data, kick = self.ring.consume()
        self._received += data
        if kick:
            self.kick()

    def send(self, data: bytes, chunks: Iterable[int] = ()) -> None:
        """Produce ``data`` on the request ring in pieces of the given sizes (the rest in one piece), kicking
        when Linux's xenbus would (only if the daemon had consumed everything before), waiting for room
        whenever the ring is full."""
        view = memoryview(data)
        sizes = [size for size in chunks if size > 0]
        while view:
            size = sizes.pop(0) if sizes else len(view)
            piece = view[:size]
            while piece:
                written, kick = self.ring.produce(piece)
                if written:
                    piece = piece[written:]
                    if kick:
                        self.kick()
                else:
                    self._wait()
                    self._take_responses()
            view = view[size:]

    def receive(self) -> Packet:
        """The next packet the daemon produced."""
        while True:
            if len(self._received) >= HEADER.size:
                op, req_id, tx_id, length = HEADER.unpack_from(self._received)
                end = HEADER.size + length
                if len(self._received) >= end:
                    packet = Packet(op, req_id, tx_id, bytes(self._received[HEADER.size : end]))
                    del self._received[:end]
                    return packet
            before = len(self._received)
            self._take_responses()
            if len(self._received) == before:
                self._wait()
