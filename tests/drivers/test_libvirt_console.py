"""Keystrokes to a libvirt console stream (``drivers/libvirt/console.py``): a stream that says it would
block (-2) is waited on, not spun on, and not forever."""

from __future__ import annotations

import time

import pytest

from drivers.errors import InvalidState
from drivers.libvirt.console import SEND_RETRY_SECONDS, _send_all


class Stream:
    """A virStream's send: ``blocked`` calls answer -2 (would block), then at most ``chunk`` bytes go."""

    def __init__(self, blocked: int | None, chunk: int = 3) -> None:
        self.blocked, self.chunk = blocked, chunk
        self.calls = 0
        self.received = b""

    def send(self, data: bytes) -> int:
        self.calls += 1
        if self.blocked is None or self.blocked > 0:
            if self.blocked is not None:
                self.blocked -= 1
            return -2
        self.received += data[: self.chunk]
        return min(len(data), self.chunk)


def test_every_byte_is_sent_after_the_stream_stops_saying_it_would_block():
    stream = Stream(blocked=3)
    started = time.monotonic()
    _send_all(stream, b"root\n")  # type: ignore[arg-type]
    assert stream.received == b"root\n"
    assert stream.calls == 3 + 2, "three refusals, then two chunks of three bytes at most"
    assert time.monotonic() - started >= 3 * SEND_RETRY_SECONDS, "it waited between refusals"


def test_a_stream_that_never_takes_input_fails_after_the_timeout_without_spinning():
    stream = Stream(blocked=None)
    started = time.monotonic()
    with pytest.raises(InvalidState, match=r"accepted no input for 0\.3 s \(5 bytes unsent\)"):
        _send_all(stream, b"root\n", timeout=0.3)  # type: ignore[arg-type]
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 2
    assert stream.calls <= 0.3 / SEND_RETRY_SECONDS + 2, f"{stream.calls} sends in {elapsed:.2f} s: it spun"
