"""Helpers shared by the pool tests: agents as processes on simulated hosts, the CLI as a process, and
bounded waits."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import drivers
from drivers.models import DomainState
from tests.toolstack.conftest import ROOT

HOSTS = ["h1", "h2", "h3"]


def cli_argv(tmp_path: Path, host: str, *args: str, author: str | None = None) -> list[str]:
    """The `toolstack` command line of host (or operator) ``host``: its repository and its simulator; with
    ``author``, also ``--host HOST --author AUTHOR`` (the host's name in the pool, and who commits)."""
    identity = ["--host", host, "--author", author] if author is not None else []
    return [
        sys.executable,
        "-m",
        "toolstack.cli",
        "--repo",
        str(tmp_path / f"{host}.git"),
        "--driver",
        f"sim://{tmp_path}/{host}.sim",
        *identity,
        *args,
    ]


def cli_env() -> dict[str, str]:
    """The environment a `toolstack` process needs to import this checkout."""
    return {**os.environ, "PYTHONPATH": ROOT}


def start_agent(tmp_path: Path, url: str, host: str, interval: float = 0.3) -> subprocess.Popen[bytes]:
    """`toolstack agent` for ``host`` as a process; its output is appended to ``<tmp_path>/<host>.log``."""
    log = open(tmp_path / f"{host}.log", "ab")  # noqa: SIM115 - the process holds it; closed when it exits
    try:
        return subprocess.Popen(
            cli_argv(tmp_path, host, "agent", "--host", host, "--remote", url, "--interval", str(interval)),
            env=cli_env(),
            stdout=log,
            stderr=log,
        )
    finally:
        log.close()  # the child has its own descriptor


def stop_agents(agents: dict[str, subprocess.Popen[bytes]]) -> None:
    """SIGTERM every agent, then SIGKILL those still running after 10 s."""
    for process in agents.values():
        process.terminate()
    for process in agents.values():
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def running_on(tmp_path: Path, host: str) -> dict[str, DomainState]:
    """{uuid: state} of every domain on ``host``'s simulator."""
    with drivers.open(f"sim://{tmp_path}/{host}.sim") as hv:
        return {str(i.uuid): i.state for i in hv.list()}


def wait_until(predicate: Callable[[], bool], timeout: float, poll: float = 0.5) -> bool:
    """Whether ``predicate`` held within ``timeout`` seconds (checked every ``poll`` seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll)
    return predicate()
