"""Debian's oxenstored, the reference daemon, run without Xen for differential tests and the benchmark.

The work-arounds it needs here (an LD_PRELOAD shim, a private mount namespace for its compiled-in socket
path) live in ``shared/tools/oxenstored/run.sh``, beside the repository (``<repo>/../shared``): a checkout
elsewhere (CI) keeps a copy of ``shared/`` beside it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time

# This file is <checkout>/xenstored/reference.py (one level deeper when it was toolstack/xenstored/).
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_SH = os.path.normpath(os.path.join(REPO_ROOT, "..", "shared", "tools", "oxenstored", "run.sh"))
BINARY = "/usr/lib/xen-4.17/bin/oxenstored"  # package xen-utils-4.17 (scripts/bootstrap.sh installs it)
START_SECONDS = 30.0


def available() -> bool:
    """Whether oxenstored is installed (its runner script is part of the checkout's ``shared/``)."""
    return os.path.exists(BINARY)


class Oxenstored:
    """A running oxenstored; its dom0 socket is :attr:`socket`.

    Args:
        directory: Where it keeps its socket, shims and log (created if missing).

    Raises:
        RuntimeError: It did not start.
    """

    name = "oxenstored"

    def __init__(self, directory: str) -> None:
        if not os.path.exists(RUN_SH):
            raise RuntimeError(f"{RUN_SH} is missing: shared/ must sit beside the repository")
        self.socket = os.path.join(directory, "run", "xenstored", "socket")
        self.process = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", RUN_SH, directory],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_socket(self.socket, self.process)

    def stop(self) -> None:
        self.process.kill()  # it ignores SIGTERM
        self.process.wait(timeout=30)


def wait_for_socket(path: str, process: subprocess.Popen[bytes]) -> None:
    """Wait until a daemon's socket accepts a connection (it exists a moment before it listens): polled
    every 5 ms, so that a benchmark can time a daemon's start."""
    deadline = time.monotonic() + START_SECONDS
    while True:
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"daemon did not start (socket {path})")
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as probe:
            probe.connect(path)
            return
        time.sleep(0.005)
