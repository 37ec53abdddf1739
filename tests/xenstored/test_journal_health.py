"""A journal that cannot commit fails loudly: changes are refused (never acknowledged and then lost), the
reason is logged once, retries back off, and ``toolstack xenstored --status`` reports it.

The daemon runs in this process (its real server, on a real socket and repository) so that the disk can be
made to fail: the repository's object writes are the one thing mocked.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.conftest import git
from tests.xenstored.conftest import ROOT
from tests.xenstored.wire import WireClient, error_name
from xenstored import journal as journal_module
from xenstored.protocol import Op
from xenstored.server import ServerConfig, XenstoreServer


@contextmanager
def server_in_thread(directory: str, durable: bool) -> Iterator[XenstoreServer]:
    """The real daemon, serving from a thread of this process until the block ends."""
    os.makedirs(directory, exist_ok=True)
    server = XenstoreServer(
        ServerConfig(
            socket=os.path.join(directory, "socket"),
            repo=os.path.join(directory, "state.git"),
            durable=durable,
        )
    )
    ready = threading.Event()
    loops: list[asyncio.AbstractEventLoop] = []

    async def serve() -> None:
        loops.append(asyncio.get_running_loop())
        await server.serve(ready.set)

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(30), "the daemon did not start"
    try:
        yield server
    finally:
        loops[0].call_soon_threadsafe(server.stop)
        thread.join(60)
        assert not thread.is_alive()


def status(socket: str) -> subprocess.CompletedProcess[str]:
    """``toolstack xenstored --socket S --status``, as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "xenstored", "--socket", socket, "--status"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def wait_until(predicate, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def fast_retries(monkeypatch):
    """Retries every 50 ms at most, so that a test sees several of them."""
    monkeypatch.setattr(journal_module, "BACKOFF_MAX_SECONDS", 0.05, raising=False)


class TestAFailingJournal:
    def test_changes_are_refused_with_erofs_until_commits_succeed_again(
        self, tmp_path, mocker, caplog, fast_retries
    ):
        caplog.set_level(logging.DEBUG, logger="xenstored.journal")
        with server_in_thread(str(tmp_path / "xs"), durable=False) as server:
            backend = server.store.backend
            real_write = backend.write_objects
            with WireClient(server.config.socket) as dom0:
                assert dom0.write("/before", "1").payload == b"OK\0"
                server.admin.flush_now()
                wait_until(lambda: git(server.config.repo, "show", "main:before/.value", check=False) == "1")

                failing = mocker.patch.object(backend, "write_objects", side_effect=OSError(28, "disk full"))
                # Outside durable mode a reply precedes the commit: this one is owed, not yet known lost.
                assert dom0.write("/owed", "2").payload == b"OK\0"
                server.admin.flush_now()
                wait_until(lambda: failing.call_count >= 3)  # it retries, with backoff

                assert error_name(dom0.write("/refused", "3")) == "EROFS"
                assert error_name(dom0.call(Op.MKDIR, "/refused")) == "EROFS"
                assert error_name(dom0.call(Op.RM, "/before")) == "EROFS"
                tx = dom0.start()
                assert error_name(dom0.write("/refused", "3", tx)) == "EROFS"
                assert dom0.call(Op.READ, "/owed").payload == b"2"  # reads are still served
                report = status(server.config.socket)
                assert report.returncode == 1, report
                assert "journal failing" in report.stdout and "disk full" in report.stdout

                said = [r for r in caplog.records if "cannot commit" in r.getMessage()]
                assert len(said) == 1, [r.getMessage() for r in said]  # once, however many retries

                failing.side_effect = real_write
                wait_until(lambda: server.state.refusing is None)
                assert dom0.write("/after", "4").payload == b"OK\0"
            report = status(server.config.socket)
            assert report.returncode == 0 and report.stdout.startswith("journal ok"), report
        repo = server.config.repo
        assert git(repo, "show", "main:owed/.value") == "2"
        assert git(repo, "show", "main:after/.value") == "4"
        assert git(repo, "ls-tree", "main", "refused") == ""
        git(repo, "fsck", "--full", "--strict")

    def test_in_durable_mode_a_write_whose_commit_fails_is_answered_eio_not_left_hanging(
        self, tmp_path, mocker, fast_retries
    ):
        with server_in_thread(str(tmp_path / "xs"), durable=True) as server:
            backend = server.store.backend
            real_write = backend.write_objects
            failing = mocker.patch.object(backend, "write_objects", side_effect=OSError(5, "I/O error"))
            with (
                WireClient(server.config.socket, timeout=10) as dom0,
                WireClient(server.config.socket) as other,
            ):
                assert error_name(dom0.write("/unsaved", "1")) == "EIO"
                # Every connection still gets answers, dom0 included: reads, and EROFS for changes.
                assert other.call(Op.READ, "/tool").payload == b""
                assert error_name(other.write("/x", "1")) == "EROFS"
                assert failing.called
                failing.side_effect = real_write
                wait_until(lambda: server.state.refusing is None)
                assert dom0.write("/saved", "2").payload == b"OK\0"
                assert git(server.config.repo, "show", "main:saved/.value") == "2"


class TestStatus:
    def test_a_healthy_daemon_reports_its_journal_ok(self, daemon):
        daemon.run("xenstore-write", "/s", "1")
        report = status(daemon.socket)
        assert report.returncode == 0, report
        fields = dict(line.split(" ", 1) for line in report.stdout.splitlines())
        assert fields["journal"] == "ok"
        assert fields["failures"] == "0"

    def test_no_daemon_is_reported_as_unreachable(self, tmp_path):
        report = status(str(tmp_path / "nothing"))
        assert report.returncode == 1
        assert "does not answer" in report.stderr
