"""A bystander during a boot storm: one client doing sequential READ round trips, as xenconsoled does.

xenconsoled sets up each new guest's console with a handful of sequential round trips, and libxl gives it a
fixed time: what matters to it is not the storm's throughput but how long one request waits for its reply
while the storm's clients keep the daemon busy. :class:`Bystander` runs this client in a process of its own
(``python bench/bystander.py SOCKET``: a blocking socket, no event loop, so the figures are the daemon's and
the host's, not the storm client's asyncio loop), reading one node, one request at a time with a short pause
between them, until it is stopped; it then reports each round trip's seconds.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from xenstored.protocol import HEADER, Op  # noqa: E402 - after the sys.path line

NODE = "/bystander/tty"
PAUSE_SECONDS = 0.001  # between two round trips: a client that waits for replies, not a flood


def round_trip(sock: socket.socket, req_id: int, op: int, payload: bytes) -> bytes:
    """Send one request and return its reply's payload (watch events are not expected: no watch is set)."""
    sock.sendall(HEADER.pack(op, req_id, 0, len(payload)) + payload)
    header = _receive(sock, HEADER.size)
    reply_op, reply_id, _, length = HEADER.unpack(header)
    body = _receive(sock, length)
    if reply_op == Op.ERROR or reply_id != req_id:
        raise RuntimeError(f"bystander: request {req_id} answered {reply_op} {body!r}")
    return body


def _receive(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("bystander: the daemon closed the connection")
        data += chunk
    return data


def run(path: str) -> None:
    """Connect, write the node, say ``ready``, then read it until SIGTERM; print the seconds as JSON."""
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    round_trip(sock, 1, Op.WRITE, NODE.encode() + b"\0" + b"/dev/pts/7")
    print("ready", flush=True)
    seconds: list[float] = []
    req_id = 2
    while not stopping:
        started = time.perf_counter()
        round_trip(sock, req_id, Op.READ, NODE.encode() + b"\0")
        seconds.append(time.perf_counter() - started)
        req_id += 1
        time.sleep(PAUSE_SECONDS)
    sock.close()
    print(json.dumps(seconds), flush=True)


class Bystander:
    """The bystander process on ``path`` (started by the constructor, which returns once it is connected)."""

    def __init__(self, path: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), path], stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "ready":
            self.process.kill()
            raise ConnectionError("bystander: could not connect and write its node")

    def stop(self) -> list[float]:
        """Stop it; the seconds of every round trip it made (none if it failed)."""
        self.process.send_signal(signal.SIGTERM)
        out, _ = self.process.communicate(timeout=30)
        lines = out.strip().splitlines()
        return json.loads(lines[-1]) if lines else []


@dataclass(frozen=True)
class Latencies:
    """Round trips' median, mean and 99th percentile (seconds), and how many there were."""

    median: float
    mean: float
    p99: float
    count: int

    def cell(self, reference: Latencies | None = None) -> str:
        """``median / mean / p99`` in ms, and each as a ratio to ``reference``'s, or the count."""
        cell = f"{self.median * 1e3:.2f} / {self.mean * 1e3:.2f} / {self.p99 * 1e3:.1f}"
        if reference is None:
            return f"{cell} ({self.count} READs)"
        ratios = (self.median / reference.median, self.mean / reference.mean, self.p99 / reference.p99)
        return f"{cell} (x{ratios[0]:.1f} / x{ratios[1]:.1f} / x{ratios[2]:.1f})"


def latencies(seconds: list[float]) -> Latencies:
    """The summary of these round trips (NaN figures if there are none)."""
    mean = sum(seconds) / len(seconds) if seconds else math.nan
    return Latencies(percentile(seconds, 0.5), mean, percentile(seconds, 0.99), len(seconds))


def percentile(seconds: list[float], fraction: float) -> float:
    """The ``fraction`` percentile (nearest rank) of ``seconds``; NaN if there are none."""
    if not seconds:
        return math.nan
    ordered = sorted(seconds)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


if __name__ == "__main__":
    run(sys.argv[1])
