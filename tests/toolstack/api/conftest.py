"""Fixtures: a real toolstack on a git repository in tmp_path over the simulator, the API app on it (in
process, through TestClient), and a real ``toolstack serve`` process on loopback."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from toolstack.api import ApiSettings, create_app
from toolstack.ops import Toolstack

ROOT = Path(__file__).resolve().parents[3]
TOKEN = "test-token-" + "0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def ts(tmp_path: Path) -> Iterator[Toolstack]:
    toolstack = Toolstack.init(
        str(tmp_path / "state.git"), f"sim://{tmp_path}/sim", author="Alice <alice@example.org>"
    )
    yield toolstack
    toolstack.close()


@pytest.fixture
def app(ts: Toolstack):
    return create_app(ts, TOKEN, ApiSettings(max_body_bytes=16 * 1024, events_poll=0.02))


@pytest.fixture
def client(app) -> Iterator[TestClient]:
    """A client that sends the right token."""
    with TestClient(app, headers=AUTH) as test_client:
        yield test_client


@pytest.fixture
def anon(app) -> Iterator[TestClient]:
    """A client without a token."""
    with TestClient(app) as test_client:
        yield test_client


def create(client: TestClient, name: str, **fields: object) -> dict:
    response = client.post("/vms", json={"name": name, "memory": "256M", **fields})
    assert response.status_code == 201, response.text
    return response.json()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LiveServer:
    """A ``toolstack serve`` process on loopback."""

    url: str
    token: str
    token_file: Path
    log: Path
    repo: Path
    process: subprocess.Popen[bytes]

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.auth, timeout=30, **kwargs)  # type: ignore[arg-type]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(
    tmp_path: Path,
    *extra: str,
    toolstack: Sequence[str] = (sys.executable, "-m", "toolstack.cli"),
    cwd: Path = ROOT,
    env: Mapping[str, str] | None = None,
    driver: str | None = None,
) -> LiveServer:
    """Start ``toolstack serve`` on a free loopback port over a new repository in ``tmp_path``; return once
    ``/health`` answers.

    Args:
        tmp_path: Where the repository, the simulator, the token file and the server's log go.
        extra: More ``serve`` options.
        toolstack: The command that runs the CLI (default: this interpreter, on the checkout's code).
        cwd: The server's working directory.
        env: The server's environment (default: this process's).
        driver: The hypervisor's URI (default: a simulator in ``tmp_path``).
    """
    port = free_port()
    repo = tmp_path / "served.git"
    token_file = tmp_path / "served.api-token"
    log = tmp_path / "server.log"
    command = [
        *toolstack,
        "--repo",
        str(repo),
        "--driver",
        driver or f"sim://{tmp_path}/served.sim",
        "--author",
        "Web Operator <web@example.org>",
        "serve",
        "--port",
        str(port),
        "--token-file",
        str(token_file),
        *extra,
    ]
    init = [*toolstack, "--repo", str(repo), "init", "--name", "served"]
    subprocess.run(init, cwd=cwd, env=env, check=True, timeout=60)
    url, process = launch(command, port, log, cwd=cwd, env=env)
    token = token_file.read_text().strip()
    return LiveServer(url, token, token_file, log, repo, process)


def launch(
    command: Sequence[str],
    port: int,
    log: Path,
    cwd: Path = ROOT,
    env: Mapping[str, str] | None = None,
) -> tuple[str, subprocess.Popen[bytes]]:
    """Run a ``toolstack serve`` command line, its output into ``log``; return its URL and process once
    ``/health`` answers on ``port`` (an AssertionError with the log if it exits or stays silent 30 s)."""
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise AssertionError(f"toolstack serve exited: {log.read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return url, process
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"toolstack serve did not answer: {log.read_text()}")
        time.sleep(0.1)


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    server = start_server(tmp_path)
    yield server
    server.stop()
