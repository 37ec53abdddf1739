"""Real git servers on 127.0.0.1 for tests: `git daemon` (git://) and `git http-backend` (smart HTTP)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)


class GitDaemon:
    """`git daemon --enable=receive-pack` serving every repository under ``base`` on a fixed port, that a test
    can stop (an outage) and start again on the same port and base path.

    Attributes:
        base: The directory served.
        port: The port on 127.0.0.1, kept across restarts.
        url: git://127.0.0.1:port
    """

    def __init__(self, base: str, port: int | None = None) -> None:
        self.base = base
        self.port = port or free_port()
        self.url = f"git://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None

    def start(self) -> None:
        """Serve; returns once the port accepts connections."""
        assert self._process is None, "already serving"
        self._process = subprocess.Popen(
            [
                "git",
                "daemon",
                "--reuseaddr",
                "--export-all",
                "--enable=receive-pack",
                f"--base-path={self.base}",
                "--listen=127.0.0.1",
                f"--port={self.port}",
                self.base,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # `git daemon` runs git-daemon as a child: kill the whole group, or the daemon outlives the test.
            start_new_session=True,
        )
        _wait_for_port(self.port)

    def stop(self) -> None:
        """SIGKILL the daemon and the connections it is serving, as a crash or a network outage would."""
        if self._process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGKILL)
        self._process.wait()
        self._process = None


@contextmanager
def git_daemon(base: str) -> Iterator[str]:
    """`git daemon --enable=receive-pack` serving every repository under ``base``; yields git://host:port."""
    daemon = GitDaemon(base)
    daemon.start()
    try:
        yield daemon.url
    finally:
        daemon.stop()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def _http_backend_app(base: str):  # type: ignore[no-untyped-def]
    def app(environ, start_response):  # type: ignore[no-untyped-def]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        env = {
            "GIT_PROJECT_ROOT": base,
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": environ["REQUEST_METHOD"],
            "PATH_INFO": environ.get("PATH_INFO", ""),
            "QUERY_STRING": environ.get("QUERY_STRING", ""),
            "CONTENT_TYPE": environ.get("CONTENT_TYPE", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": "tester",  # http-backend allows receive-pack for authenticated users
            "REMOTE_ADDR": "127.0.0.1",
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        }
        if environ.get("HTTP_GIT_PROTOCOL"):
            env["GIT_PROTOCOL"] = environ["HTTP_GIT_PROTOCOL"]
        result = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True, check=False
        )
        head, _, payload = result.stdout.partition(b"\r\n\r\n")
        status = "200 OK"
        headers = []
        for line in head.decode("latin-1").split("\r\n"):
            if not line:
                continue
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = value.strip()
            else:
                headers.append((key.strip(), value.strip()))
        start_response(status, headers)
        return [payload]

    return app


@contextmanager
def git_http_backend(base: str) -> Iterator[str]:
    """Smart HTTP through `git http-backend` serving ``base``; yields http://host:port."""
    port = free_port()
    server = make_server(
        "127.0.0.1", port, _http_backend_app(base), server_class=WSGIServer, handler_class=_QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def ssh_server(workdir: str) -> Iterator[tuple[str, str]]:
    """An OpenSSH server on 127.0.0.1 accepting a fresh key for this user; yields (ssh://user@host:port,
    the GIT_SSH_COMMAND that logs in with that key)."""
    import getpass

    os.makedirs(workdir, exist_ok=True)
    for name in ("hostkey", "userkey"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", os.path.join(workdir, name)], check=True
        )
    authorized = os.path.join(workdir, "authorized_keys")
    with open(os.path.join(workdir, "userkey.pub")) as source, open(authorized, "w") as target:
        target.write(source.read())
    os.chmod(authorized, 0o600)
    port = free_port()
    config = os.path.join(workdir, "sshd_config")
    with open(config, "w") as f:
        f.write(
            f"Port {port}\nListenAddress 127.0.0.1\nHostKey {workdir}/hostkey\n"
            f"AuthorizedKeysFile {authorized}\nPasswordAuthentication no\nPermitRootLogin prohibit-password\n"
            f"StrictModes no\nUsePAM no\nPidFile {workdir}/sshd.pid\n"
        )
    os.makedirs("/run/sshd", exist_ok=True)
    process = subprocess.Popen(
        ["/usr/sbin/sshd", "-D", "-f", config, "-E", os.path.join(workdir, "sshd.log")]
    )
    try:
        _wait_for_port(port)
        command = (
            f"ssh -i {workdir}/userkey -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
            "-o BatchMode=yes -o LogLevel=ERROR"
        )
        yield f"ssh://{getpass.getuser()}@127.0.0.1:{port}", command
    finally:
        process.kill()
        process.wait()
