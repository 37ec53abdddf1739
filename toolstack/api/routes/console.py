"""A VM's serial console over a WebSocket: ``/vms/{vm}/console``.

The protocol, after the WebSocket handshake:

1. The client authenticates with the API's token. A browser cannot set headers on a WebSocket, and a URL
   lands in logs, so the token is the first message, a text frame ``{"token": "<token>"}``. A client that
   can set headers may send ``Authorization: Bearer <token>`` with the handshake instead.
2. The server attaches to the console and sends a text frame ``{"type": "attached", "vm": NAME, "uuid":
   UUID}``; then every binary frame it sends is console output. Every frame the client sends (binary, or
   text as UTF-8) is typed on the console.
3. When the domain stops the server closes with 1000 ("the console closed"); when the client leaves, the
   server detaches (the VM runs on). Refusals close with 4000 + the HTTP status the API would answer (4401
   no token, 4403 a wrong one, 4404 no such VM here, 4409 the domain is not running, 4501 the driver cannot
   attach consoles, 4502 the hypervisor failed), 1013 when the server has ``max_consoles`` open, and 1011
   on anything unexpected. None of them touches the server's other connections.

Each connection reads its console on one thread of its own (a console read blocks, and blocking reads in
the shared worker pool would starve every other request), and at most ``ApiSettings.max_consoles``
connections hold a console at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import threading
from typing import Annotated

from fastapi import APIRouter, Query, WebSocket
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocketDisconnect, WebSocketState

from drivers.console import ConsoleStream
from drivers.errors import DomainNotFound, InvalidState, Unsupported
from toolstack.api.deps import ApiState
from toolstack.api.errors import _classify

log = logging.getLogger(__name__)

router = APIRouter(tags=["console"])

CLOSED = 1000  # normal closure: the console ended
UNEXPECTED = 1011
TRY_AGAIN_LATER = 1013
NO_TOKEN = 4401
WRONG_TOKEN = 4403
UNSUPPORTED = 4501

# How often the reader thread looks up from a blocking read to see whether its connection is gone.
_POLL_SECONDS = 0.2
# Chunks of output queued for a slow client before the reader thread waits for it (each read coalesces
# what the console had, so this bounds memory without dropping output).
_QUEUED_CHUNKS = 64
# A close reason is at most 123 bytes (RFC 6455).
_REASON_BYTES = 120


@router.websocket("/vms/{vm}/console")
async def console(
    websocket: WebSocket,
    vm: str,
    force: Annotated[bool, Query(description="Take the console over from another session.")] = False,
) -> None:
    """Stream VM ``vm``'s serial console (by name or uuid), both ways, as the module's docstring says."""
    api: ApiState = websocket.app.state.api
    await websocket.accept()
    try:
        if not await _authenticate(websocket, api):
            return
        if api.consoles >= api.settings.max_consoles:
            await _close(websocket, TRY_AGAIN_LATER, f"{api.settings.max_consoles} consoles are open already")
            return
        api.consoles += 1
        try:
            await _session(websocket, api, vm, force)
        finally:
            api.consoles -= 1
    except WebSocketDisconnect:
        pass  # the client left: nothing to tell it
    except Exception:  # a client's misstep must not take the server, or other consoles, down
        log.exception("console of %s failed", vm)
        await _close(websocket, UNEXPECTED, "the server failed; see its log")


async def _authenticate(websocket: WebSocket, api: ApiState) -> bool:
    """Check the token from the handshake's Authorization header, else from the first message."""
    header = websocket.headers.get("authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        presented = value.strip() if scheme.lower() == "bearer" else None
    else:
        try:
            message = await asyncio.wait_for(websocket.receive(), api.settings.console_auth_timeout)
        except TimeoutError:
            await _close(websocket, NO_TOKEN, 'no token came: send {"token": ...} first')
            return False
        if message["type"] == "websocket.disconnect":
            return False
        presented = _token_in(message.get("text"))
    if presented is None:
        await _close(websocket, NO_TOKEN, 'a bearer token is required: send {"token": ...} first')
        return False
    user = api.directory.resolve(presented).user
    if user is None:
        await _close(websocket, WRONG_TOKEN, "the bearer token is wrong")
        return False
    if user.revoked is not None:
        await _close(websocket, NO_TOKEN, f"the token of user {user.name!r} was revoked")
        return False
    if not user.may_write:  # a console takes keystrokes (and may take the console over): a write
        await _close(websocket, WRONG_TOKEN, f"user {user.name!r} is read-only: it cannot type on a console")
        return False
    return True


def _token_in(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        message = json.loads(text)
    except ValueError:
        return None
    token = message.get("token") if isinstance(message, dict) else None
    return token if isinstance(token, str) else None


async def _session(websocket: WebSocket, api: ApiState, ref: str, force: bool) -> None:
    try:
        found = await run_in_threadpool(api.ts.vm, ref)
        stream = await run_in_threadpool(api.ts.driver.console, found.uuid, force)
    except Exception as err:
        await _close(websocket, *_refusal(err))
        return
    reader = _Reader(stream, asyncio.get_running_loop())
    thread = threading.Thread(target=reader.run, name=f"console-{found.uuid[:8]}", daemon=True)
    thread.start()
    try:
        await websocket.send_json({"type": "attached", "vm": found.name, "uuid": found.uuid})
        output = asyncio.create_task(_send_output(websocket, reader.queue))
        typed = asyncio.create_task(_receive_input(websocket, stream))
        done, pending = await asyncio.wait({output, typed}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            task.result()  # its error, if any, is the session's
        if output in done:
            await _close(websocket, CLOSED, "the console closed")
    finally:
        reader.stop.set()
        await run_in_threadpool(stream.close)


async def _send_output(websocket: WebSocket, queue: asyncio.Queue[bytes]) -> None:
    """Send console output until it ends."""
    while data := await queue.get():
        await websocket.send_bytes(data)


async def _receive_input(websocket: WebSocket, stream: ConsoleStream) -> None:
    """Type what the client sends until it leaves."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        data = message.get("bytes")
        if data is None:
            data = (message.get("text") or "").encode()
        if data:
            await run_in_threadpool(stream.write, data)


class _Reader:
    """Reads one console on its own thread into an asyncio queue; ``b""`` marks the end.

    A full queue (a slow client) makes the thread wait rather than drop output or grow without bound.
    """

    def __init__(self, stream: ConsoleStream, loop: asyncio.AbstractEventLoop) -> None:
        self.stream = stream
        self.loop = loop
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=_QUEUED_CHUNKS)
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                data = self.stream.read(timeout=_POLL_SECONDS)
                if data is None:
                    continue
                if not self._hand_over(data) or data == b"":
                    return
        except Exception:
            log.exception("reading a console failed")
        self._hand_over(b"")

    def _hand_over(self, data: bytes) -> bool:
        """Queue ``data`` for the connection; False once the connection is gone."""
        put = self.queue.put(data)
        try:
            future = asyncio.run_coroutine_threadsafe(put, self.loop)
        except RuntimeError:  # the event loop is closed: the server is stopping
            put.close()
            return False
        while not self.stop.is_set():
            try:
                future.result(timeout=_POLL_SECONDS)
                return True
            except concurrent.futures.TimeoutError:
                continue
        future.cancel()
        return False


def _refusal(err: Exception) -> tuple[int, str]:
    """The close code and reason for an error attaching: 4000 + the status the API gives that error."""
    # The driver's own errors name what a console client needs to know, closer than _classify's 502 does.
    if isinstance(err, Unsupported):
        return UNSUPPORTED, str(err)
    if isinstance(err, DomainNotFound):
        return 4404, f"the domain is not on this host: {err}"
    if isinstance(err, InvalidState):
        return 4409, str(err)
    try:
        status, body = _classify(err)
    except Exception:
        log.exception("attaching a console failed")
        return UNEXPECTED, "the server failed; see its log"
    return 4000 + status, body.message


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    """Close, unless the client already left (then there is no one to tell)."""
    if websocket.client_state is WebSocketState.DISCONNECTED:
        return
    text = reason.encode()[:_REASON_BYTES].decode(errors="ignore")
    with contextlib.suppress(Exception):
        await websocket.close(code, text)
