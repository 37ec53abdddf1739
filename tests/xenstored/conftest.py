"""Fixtures: the daemon as a real process on a real git repository, and the real clients that talk to it.

Every client command runs under ``timeout``: libxenstore retries EAGAIN forever, so a daemon bug must show
as a failed test, not a hung suite.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.conftest import git
from tests.xenstored.wire import WireClient
from xenstored.protocol import Op

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
XEN_BIN = "/usr/lib/xen-4.17/bin"
CLIENT_TIMEOUT = "20"


def require_tool(name: str, package: str) -> str:
    """The path of a tool the tests need; fails (never skips) if it is missing: bootstrap installs it."""
    path = shutil.which(name) or (
        os.path.join(XEN_BIN, name) if os.path.exists(os.path.join(XEN_BIN, name)) else None
    )
    if path is None:
        pytest.fail(f"{name} is missing: install the Debian package {package} (scripts/bootstrap.sh does)")
    return path


def wait_for_log(repo: str, text: str, timeout: float = 15.0, fmt: str = "%an|%B") -> str:
    """The branch's ``git log`` once it mentions ``text`` (commits follow replies within milliseconds)."""
    deadline = time.monotonic() + timeout
    while True:
        log = git(repo, "log", f"--format={fmt}", "main", check=False)
        if text in log:
            return log
        assert time.monotonic() < deadline, f"{text!r} never appeared in git log:\n{log}"
        time.sleep(0.05)


@dataclass
class Daemon:
    """A running ``python -m xenstored``."""

    socket: str
    repo: str
    domain_dir: str
    process: subprocess.Popen[bytes]
    log_path: str
    extra: list[str] = field(default_factory=list)

    def env(self, socket: str | None = None) -> dict[str, str]:
        return {**os.environ, "XENSTORED_PATH": socket or self.socket}

    def run(
        self, *argv: str, socket: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a real xenstore client command against the daemon, under ``timeout``."""
        require_tool(argv[0], "xenstore-utils")
        result = subprocess.run(
            ["timeout", CLIENT_TIMEOUT, *argv], env=self.env(socket), capture_output=True, text=True
        )
        assert result.returncode != 124, f"{argv} timed out (EAGAIN loop or a hung daemon)"
        if check:
            assert result.returncode == 0, f"{argv} failed ({result.returncode}): {result.stderr}"
        return result

    def wire(self, socket: str | None = None, timeout: float = 10.0) -> WireClient:
        return WireClient(socket or self.socket, timeout)

    def domain_socket(self, domid: int) -> str:
        path = os.path.join(self.domain_dir, str(domid))
        deadline = time.monotonic() + 10
        while not os.path.exists(path):
            assert time.monotonic() < deadline, f"no socket for dom{domid}"
            time.sleep(0.01)
        return path

    def introduce(self, domid: int) -> str:
        """Introduce a guest domain with a home it owns (as a toolstack sets one up); returns the socket on
        which connections speak as that domain."""
        with self.wire() as dom0:
            assert dom0.call(Op.INTRODUCE, str(domid), "1000", "7").payload == b"OK\0"
            assert dom0.call(Op.MKDIR, f"/local/domain/{domid}").payload == b"OK\0"
            assert dom0.call(Op.SET_PERMS, f"/local/domain/{domid}", f"n{domid}").payload == b"OK\0"
        return self.domain_socket(domid)

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        with open(self.log_path) as handle:
            return handle.read()

    def stop(self) -> int:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


def start_daemon(directory: str, *extra: str, repo: str | None = None) -> Daemon:
    os.makedirs(directory, exist_ok=True)
    sock = os.path.join(directory, "socket")
    repo = repo or os.path.join(directory, "state.git")
    domain_dir = os.path.join(directory, "domains")
    log_path = os.path.join(directory, "daemon.log")
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "xenstored",
                "--socket",
                sock,
                "--repo",
                repo,
                "--domain-socket-dir",
                domain_dir,
                "--log-level",
                "INFO",
                *extra,
            ],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    daemon = Daemon(sock, repo, domain_dir, process, log_path, list(extra))
    deadline = time.monotonic() + 30
    while not os.path.exists(sock):
        if not daemon.alive() or time.monotonic() > deadline:
            daemon.stop()
            raise AssertionError(f"the daemon did not start:\n{daemon.log()}")
        time.sleep(0.02)
    return daemon


def finish(daemon: Daemon) -> None:
    """Stop the daemon and check what every test must leave: a clean exit and a sound repository."""
    assert daemon.alive(), f"the daemon died:\n{daemon.log()}"
    code = daemon.stop()
    assert code == 0, f"the daemon exited with {code}:\n{daemon.log()}"
    assert "Traceback" not in daemon.log(), daemon.log()
    git(daemon.repo, "fsck", "--full", "--strict")


@pytest.fixture
def daemon(tmp_path) -> Iterator[Daemon]:
    """A fresh daemon on a fresh repository."""
    instance = start_daemon(str(tmp_path / "xs"))
    yield instance
    finish(instance)


@pytest.fixture
def durable_daemon(tmp_path) -> Iterator[Daemon]:
    instance = start_daemon(str(tmp_path / "xs"), "--durable")
    yield instance
    finish(instance)


@pytest.fixture(scope="module")
def shared_daemon(tmp_path_factory) -> Iterator[Daemon]:
    """One daemon for a module of tests that each work under their own path."""
    instance = start_daemon(str(tmp_path_factory.mktemp("xs")))
    yield instance
    finish(instance)
