"""The serial console over a WebSocket (``/vms/{vm}/console``), against a real ``toolstack serve`` on a
simulator VM: the token as the first message (or the handshake's Authorization header), the fake boot log,
keys echoed, a clean close when the domain stops, refusals with their close codes, and a server that stays
up and detaches whatever its clients do. The bound on open consoles is checked in process."""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.toolstack.api.conftest import AUTH, TOKEN, LiveServer, create
from toolstack.api import ApiSettings, create_app
from toolstack.api.routes.health import STATIC_DIR
from toolstack.ops import Toolstack

LOGIN_PROMPT = b"login: "


def ws_url(server: LiveServer, vm: str) -> str:
    return server.url.replace("http://", "ws://") + f"/vms/{vm}/console"


def start_vm(server: LiveServer, name: str) -> dict:
    with server.client() as client:
        response = client.post("/vms", json={"name": name, "memory": "256M", "start": True})
    assert response.status_code == 201, response.text
    return response.json()["vm"]


@contextlib.contextmanager
def attach(server: LiveServer, vm: str) -> Iterator[ClientConnection]:
    """A console connection that sent the token as its first message."""
    with connect(ws_url(server, vm), open_timeout=10) as ws:
        ws.send(json.dumps({"token": server.token}))
        yield ws


def attached(ws: ClientConnection) -> dict:
    """The server's first message once it attached."""
    message = ws.recv(timeout=10)
    assert isinstance(message, str), message
    return json.loads(message)


def read_until(ws: ClientConnection, marker: bytes) -> bytes:
    seen = b""
    while marker not in seen:
        frame = ws.recv(timeout=10)
        assert isinstance(frame, bytes), frame
        seen += frame
    return seen


def close_code(ws: ClientConnection) -> tuple[int, str]:
    """Read until the server closes; its close code and reason."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None, "the server closed without a close frame"
    return closed.value.rcvd.code, closed.value.rcvd.reason


def test_the_console_sends_the_boot_log_and_echoes_what_is_typed(live_server):
    vm = start_vm(live_server, "web1")
    with attach(live_server, "web1") as ws:
        assert attached(ws) == {"type": "attached", "vm": "web1", "uuid": vm["uuid"]}
        boot = read_until(ws, LOGIN_PROMPT)
        assert b"Linux version" in boot and b"web1 login: " in boot
        ws.send(b"root\r")
        assert read_until(ws, b"\r\n") == b"root\r\n"
        ws.send("ls\r")  # a text frame is typed too, as UTF-8
        assert read_until(ws, b"\r\n") == b"ls\r\n"
    assert live_server.token not in live_server.log.read_text()


def test_a_client_that_can_set_headers_authenticates_with_the_handshake(live_server):
    start_vm(live_server, "web1")
    with connect(ws_url(live_server, "web1"), additional_headers=live_server.auth, open_timeout=10) as ws:
        assert attached(ws)["type"] == "attached"
        assert LOGIN_PROMPT in read_until(ws, LOGIN_PROMPT)


def test_the_server_closes_the_console_cleanly_when_the_domain_stops(live_server):
    start_vm(live_server, "web1")
    with attach(live_server, "web1") as ws:
        attached(ws)
        read_until(ws, LOGIN_PROMPT)
        with live_server.client() as client:
            assert client.post("/vms/web1/destroy").status_code == 200
        assert close_code(ws) == (1000, "the console closed")


@pytest.mark.parametrize(
    ("first_message", "code"),
    [
        (json.dumps({"token": "wrong-" + "x" * 20}), 4403),
        (json.dumps({"token": 42}), 4401),
        ("not json", 4401),
        (b"\x00binary", 4401),
    ],
)
def test_without_the_right_token_first_nothing_of_the_vm_is_sent(live_server, first_message, code):
    start_vm(live_server, "web1")
    with connect(ws_url(live_server, "web1"), open_timeout=10) as ws:
        ws.send(first_message)
        assert close_code(ws)[0] == code


def test_a_wrong_authorization_header_is_refused(live_server):
    start_vm(live_server, "web1")
    wrong = {"Authorization": "Bearer wrong-" + "x" * 20}
    with connect(ws_url(live_server, "web1"), additional_headers=wrong, open_timeout=10) as ws:
        assert close_code(ws)[0] == 4403


def test_an_unknown_vm_and_a_stopped_one_are_refused_with_their_status(live_server):
    with live_server.client() as client:
        assert client.post("/vms", json={"name": "off", "memory": "256M"}).status_code == 201
    with attach(live_server, "nope") as ws:
        assert close_code(ws) == (4404, "no VM named 'nope'")
    with attach(live_server, "off") as ws:
        code, reason = close_code(ws)
        assert code == 4409 and "not active" in reason


def test_the_server_stays_up_and_detaches_when_clients_leave_abruptly(live_server):
    start_vm(live_server, "web1")
    # A client that vanishes mid-session (its TCP connection reset, no close frame)...
    with attach(live_server, "web1") as ws:
        attached(ws)
        read_until(ws, LOGIN_PROMPT)
        ws.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        ws.socket.close()
    # ...one that closes politely while output is queued, and one that never authenticates.
    with attach(live_server, "web1") as polite:
        polite.recv(timeout=10)
    with connect(ws_url(live_server, "web1"), open_timeout=10):
        pass
    # The console is free again and the server answers.
    with attach(live_server, "web1") as again:
        assert attached(again)["type"] == "attached"
        read_until(again, LOGIN_PROMPT)
        again.send(b"root\r")
        assert read_until(again, b"\r\n") == b"root\r\n"
    with live_server.client() as client:
        assert client.get("/health").status_code == 200
    assert live_server.process.poll() is None


def test_the_xterm_files_are_the_npm_packages_source_md_names():
    vendor = Path(STATIC_DIR) / "vendor" / "xterm"
    note = (vendor / "SOURCE.md").read_text()
    assert "`@xterm/xterm` 6.0.0" in note and "`@xterm/addon-fit` 0.11.0" in note
    for name in ("xterm.mjs", "xterm.css", "addon-fit.mjs", "xterm.mjs.map", "addon-fit.mjs.map"):
        digest = hashlib.sha256((vendor / name).read_bytes()).hexdigest()
        assert f"`{name}` `{digest}`" in " ".join(note.split()), name
    assert "Permission is hereby granted" in (vendor / "LICENSE").read_text()  # MIT


def test_the_xterm_build_comes_with_its_source():
    """The minified modules are committed as npm ships them, with the source maps that carry their
    TypeScript source, and SOURCE.md says how to check them against the npm tarballs."""
    vendor = Path(STATIC_DIR) / "vendor" / "xterm"
    for module, source in (
        ("xterm.mjs", "../src/browser/public/Terminal.ts"),
        ("addon-fit.mjs", "../src/FitAddon.ts"),
    ):
        assert (vendor / module).read_text().rstrip().endswith(f"//# sourceMappingURL={module}.map")
        source_map = json.loads((vendor / f"{module}.map").read_text())
        contents = dict(zip(source_map["sources"], source_map["sourcesContent"], strict=True))
        assert "export class" in contents[source], source
    note = (vendor / "SOURCE.md").read_text()
    assert "npm pack @xterm/xterm@6.0.0 @xterm/addon-fit@0.11.0" in note
    assert "cmp xterm/package/lib/xterm.mjs xterm.mjs" in note


@pytest.fixture
def bounded(ts: Toolstack) -> Iterator[TestClient]:
    app = create_app(ts, TOKEN, ApiSettings(max_consoles=1))
    with TestClient(app, headers=AUTH) as client:
        create(client, "web1", start=True)
        yield client


def console_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("console-")]


def test_open_consoles_are_bounded_and_each_holds_one_reader_thread_until_it_leaves(bounded):
    assert console_threads() == []
    with bounded.websocket_connect("/vms/web1/console") as first:
        assert first.receive_json()["type"] == "attached"
        assert len(console_threads()) == 1
        with bounded.websocket_connect("/vms/web1/console") as second:
            with pytest.raises(WebSocketDisconnect) as refused:
                second.receive_bytes()
            assert refused.value.code == 1013
        first.send_bytes(b"a")
        assert b"a" in first.receive_bytes()
    # The reader thread ends with its connection (it looks up from its read every 0.2 s).
    for thread in console_threads():
        thread.join(timeout=5)
    assert console_threads() == []
    with bounded.websocket_connect("/vms/web1/console") as third:
        assert third.receive_json()["type"] == "attached"
