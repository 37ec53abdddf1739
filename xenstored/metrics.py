"""The daemon's counters, written for Prometheus as a textfile (node_exporter's "textfile collector" habit).

The daemon serves no HTTP: every few seconds, and once more at exit, it writes its counters in Prometheus's
text format to a file (``--metrics-file``), replaced atomically by a rename so that a reader never sees half
of it. ``toolstack serve`` appends such files to its own ``/metrics`` (its ``metrics_textfiles``), and so can
node_exporter's textfile collector.

Every count is made on the event loop's thread (events fired from the journal's thread are counted when the
loop writes them), so the counters need no lock: a request costs one dictionary update more.
"""

from __future__ import annotations

import contextlib
import os
import time

from xenstored.protocol import Op

# Seconds between two writes of the file while the daemon runs.
WRITE_INTERVAL = 5.0


def _op_name(op: int) -> str:
    try:
        return Op(op).name
    except ValueError:
        return f"UNKNOWN_{op}"


class XenstoredMetrics:
    """What the daemon counted since it started.

    Attributes:
        requests: {(message type, outcome): replies}, the outcome ``ok`` or the errno name of an error reply
            (``EAGAIN`` at TRANSACTION_END: a transaction conflict).
        watch_events: Watch events sent to clients, the first firing of a new watch included.
        connections_opened: Client connections accepted (unix sockets and rings).
        connections_open: Connections open now (kept by the server).
    """

    def __init__(self) -> None:
        self.requests: dict[tuple[int, str], int] = {}
        self.watch_events = 0
        self.connections_opened = 0
        self.connections_open = 0
        self.started = time.time()

    def reply(self, op: int, outcome: str) -> None:
        """Count one reply: ``outcome`` is ``ok`` or the errno name sent."""
        key = (op, outcome)
        self.requests[key] = self.requests.get(key, 0) + 1

    def exposition(self) -> str:
        """The counters in Prometheus's text format (version 0.0.4)."""
        lines = [
            "# HELP xenstored_requests_total Requests answered, by message type and outcome (ok, or the "
            "errno of the error reply; EAGAIN at TRANSACTION_END is a transaction conflict)",
            "# TYPE xenstored_requests_total counter",
        ]
        rows = sorted((_op_name(op), outcome, count) for (op, outcome), count in self.requests.items())
        lines += [f'xenstored_requests_total{{type="{op}",outcome="{out}"}} {n}' for op, out, n in rows]
        lines += [
            "# HELP xenstored_watch_events_total Watch events fired (a new watch's first included)",
            "# TYPE xenstored_watch_events_total counter",
            f"xenstored_watch_events_total {self.watch_events}",
            "# HELP xenstored_connections_opened_total Client connections accepted (sockets and rings)",
            "# TYPE xenstored_connections_opened_total counter",
            f"xenstored_connections_opened_total {self.connections_opened}",
            "# HELP xenstored_connections Client connections open",
            "# TYPE xenstored_connections gauge",
            f"xenstored_connections {self.connections_open}",
            "# HELP xenstored_start_time_seconds When the daemon started (Unix time)",
            "# TYPE xenstored_start_time_seconds gauge",
            f"xenstored_start_time_seconds {self.started:.3f}",
        ]
        return "\n".join(lines) + "\n"

    def write(self, path: str) -> None:
        """Replace ``path`` with the counters: written beside it, then renamed over it (atomic)."""
        write_atomically(path, self.exposition())


def write_atomically(path: str, text: str) -> None:
    """Write ``text`` to ``path`` so that a reader finds the old content or the new, never a part of it."""
    staging = f"{path}.{os.getpid()}.tmp"
    try:
        with open(staging, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(staging, 0o644)  # read by the API's user (toolstack serve), not only by this daemon's
        os.replace(staging, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(staging)
        raise
