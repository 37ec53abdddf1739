"""A domain's serial console over a libvirt stream (``virDomainOpenConsole``), like ``virsh console``."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any

from drivers.console import QueuedConsole
from drivers.errors import InvalidState
from drivers.libvirt import binding

log = logging.getLogger(__name__)

CONSOLE_FORCE = 1  # VIR_DOMAIN_CONSOLE_FORCE: take the console over from another session
_CHUNK = 4096
SEND_RETRY_SECONDS = 0.01  # the wait before sending again when the stream says it would block
SEND_TIMEOUT_SECONDS = 10.0  # how long keystrokes may wait for a stream that keeps saying so


def open_console(conn: Any, dom: Any, force: bool) -> QueuedConsole:
    """Open ``dom``'s first console on a blocking stream, read by a daemon thread.

    Raises:
        InvalidState: another session holds the console and ``force`` is False (libvirt says "Active
            console session exists for this domain").
        libvirtError: anything else, for the caller to translate.
    """
    lv = binding.module()
    stream = conn.newStream(0)
    try:
        dom.openConsole(None, stream, CONSOLE_FORCE if force else 0)
    except lv.libvirtError as error:
        with contextlib.suppress(lv.libvirtError):
            stream.abort()
        message = error.get_error_message() or str(error)
        if "active console session" in message.lower():
            raise InvalidState(
                f"{message}: another session holds it (force takes it over)", operation="console"
            ) from None
        raise
    closing = threading.Event()

    def release() -> None:
        closing.set()
        with contextlib.suppress(Exception):
            stream.abort()

    console = QueuedConsole(send=lambda data: _send_all(stream, data), on_close=release)
    threading.Thread(
        target=_pump, args=(stream, console, closing), name=f"console-{dom.name()}", daemon=True
    ).start()
    return console


def _send_all(stream: Any, data: bytes, timeout: float = SEND_TIMEOUT_SECONDS) -> None:
    """Send all of ``data``, waiting a little each time the stream says it would block (-2).

    A blocking stream does not say so, but a stream that does must not spin a CPU, nor forever.

    Raises:
        InvalidState: the stream accepted nothing for ``timeout`` seconds.
    """
    view = memoryview(data)
    deadline = time.monotonic() + timeout
    while view:
        sent = stream.send(bytes(view))
        if sent < 0:
            if time.monotonic() >= deadline:
                raise InvalidState(
                    f"the console accepted no input for {timeout:g} s ({len(view)} bytes unsent)",
                    operation="console",
                )
            time.sleep(SEND_RETRY_SECONDS)
            continue
        view = view[sent:]
        deadline = time.monotonic() + timeout  # progress: the wait is for the next chunk


def _pump(stream: Any, console: QueuedConsole, closing: threading.Event) -> None:
    """Move guest output into ``console`` until the stream ends (the domain stopped) or is closed."""
    try:
        while not closing.is_set():
            data = stream.recv(_CHUNK)
            if isinstance(data, int):  # -2: no data yet on a non-blocking stream
                continue
            if not data:
                break
            console.feed(data)
    except Exception as error:  # libvirtError when the stream is aborted or the domain goes away
        if not closing.is_set():
            log.info("console stream ended: %s", error)
    finally:
        console.end()
