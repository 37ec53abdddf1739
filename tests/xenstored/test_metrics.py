"""The daemon's counters, written as a Prometheus textfile (``--metrics-file``) and read back with
``prometheus_client``'s parser: requests by type and outcome (a failure by its errno, a transaction conflict
as EAGAIN), watch events fired, connections."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.xenstored.conftest import Daemon, finish, start_daemon
from tests.xenstored.wire import error_name
from xenstored.protocol import Op

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def requests(found: Samples, op: str, outcome: str) -> float:
    return found.get(("xenstored_requests_total", (("outcome", outcome), ("type", op))), 0.0)


def read_when(path: Path, ready: Callable[[Samples], bool], timeout: float = 15.0) -> Samples:
    """The file's samples once ``ready(samples)`` holds (it is rewritten every --metrics-interval)."""
    deadline = time.monotonic() + timeout
    while True:
        found = samples(path.read_text()) if path.exists() else {}
        if found and ready(found):
            return found
        assert time.monotonic() < deadline, f"the metrics never got there: {found}"
        time.sleep(0.05)


def serve_some_requests(daemon: Daemon) -> None:
    """3 writes outside transactions, 1 failing read (ENOENT), 1 transaction conflict (EAGAIN), 1 watch
    (its first event) and 1 event from a change under it, over 2 connections."""
    with daemon.wire() as a, daemon.wire() as b:
        assert a.write("/m/x", "1").payload == b"OK\0"
        assert error_name(a.call(Op.READ, "/m/missing")) == "ENOENT"
        assert a.call(Op.WATCH, "/m/x", "tok").payload == b"OK\0"
        tx = a.start()
        assert a.call(Op.READ, "/m/x", tx_id=tx).payload == b"1"
        assert b.write("/m/x", "2").payload == b"OK\0"  # changes what the transaction read
        assert a.write("/m/y", "from-tx", tx_id=tx).payload == b"OK\0"
        assert error_name(a.end(tx)) == "EAGAIN"
        assert b.write("/m/z", "3").payload == b"OK\0"
        a.event()  # the watch's first firing
        a.event()  # b's write of /m/x


def test_the_textfile_counts_requests_by_type_and_outcome_events_and_connections(tmp_path):
    metrics = tmp_path / "xenstored.prom"
    daemon = start_daemon(str(tmp_path / "xs"), "--metrics-file", str(metrics), "--metrics-interval", "0.1")
    try:
        serve_some_requests(daemon)
        found = read_when(metrics, lambda f: requests(f, "TRANSACTION_END", "EAGAIN") == 1)
        assert requests(found, "WRITE", "ok") == 4  # 3 outside the transaction, 1 inside it
        assert requests(found, "READ", "ENOENT") == 1
        assert requests(found, "READ", "ok") == 1
        assert requests(found, "TRANSACTION_START", "ok") == 1
        assert requests(found, "TRANSACTION_END", "ok") == 0
        assert requests(found, "WATCH", "ok") == 1
        assert found[("xenstored_watch_events_total", ())] == 2
        assert found[("xenstored_connections_opened_total", ())] == 2
    finally:
        finish(daemon)
    # At exit the daemon writes its last counts: the two connections are gone.
    last = samples(metrics.read_text())
    assert last[("xenstored_connections", ())] == 0
    assert requests(last, "TRANSACTION_END", "EAGAIN") == 1
    assert [name for name in os.listdir(tmp_path) if name.endswith(".tmp")] == []  # renamed into place


def test_the_textfile_is_beside_the_repository_by_default_and_can_be_turned_off(tmp_path):
    daemon = start_daemon(str(tmp_path / "xs"), repo=str(tmp_path / "xenstore.git"))
    off = str(tmp_path / "q" / "quiet.git")
    quiet = start_daemon(str(tmp_path / "quiet"), "--metrics-file", "", repo=off)
    try:
        with daemon.wire() as client:
            assert client.write("/d", "1").payload == b"OK\0"
    finally:
        finish(daemon)
        finish(quiet)
    assert requests(samples((tmp_path / "xenstore.prom").read_text()), "WRITE", "ok") == 1
    assert sorted(os.listdir(tmp_path / "q")) == ["quiet.git"]
