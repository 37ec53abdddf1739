"""``toolstack console NAME``: attach to a VM's serial console, as ``virsh console`` does.

The guest's output goes to stdout as it comes; what is typed goes to the guest. On a terminal, stdin is put
in raw mode (every key, Ctrl-C included, goes to the guest) and Ctrl-] detaches; the VM keeps running.
Without a terminal (a pipe, a script) stdin is sent as it is, and the command ends when the console does
(the VM stops), on Ctrl-] in the input, or after ``--timeout``.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import threading
import time
from collections.abc import Iterator

import click

from toolstack.cli.context import Context, pass_ctx
from toolstack.cli.errors import handled

_POLL_SECONDS = 0.1


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """Put the terminal ``fd`` in raw mode for the block, and restore it however the block ends."""
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@click.command("console")
@click.argument("name")
@click.option("--force", is_flag=True, help="Take the console over from another session holding it")
@click.option("--timeout", type=click.FloatRange(0), default=None, help="Detach after SECONDS (for scripts)")
@pass_ctx
@handled
def console_command(c: Context, name: str, force: bool, timeout: float | None) -> None:
    """Attach to a VM's serial console (Ctrl-] detaches; the VM keeps running)."""
    from drivers.console import ESCAPE

    ts = c.toolstack()
    found = ts.vm(name)
    stream = ts.driver.console(found.uuid, force=force)
    stdin = sys.stdin.fileno()
    interactive = os.isatty(stdin)
    click.echo(f"Connected to {found.name} ({found.uuid}); escape character is ^] (Ctrl + ])", err=True)
    ended = threading.Event()

    def show() -> None:
        out = sys.stdout.buffer
        while True:
            data = stream.read(timeout=_POLL_SECONDS)
            if data == b"":
                break
            if data:
                out.write(data)
                out.flush()
        ended.set()

    reader = threading.Thread(target=show, name="console-output", daemon=True)
    deadline = None if timeout is None else time.monotonic() + timeout
    with stream, raw_terminal(stdin) if interactive else contextlib.nullcontext():
        reader.start()
        input_open = True
        while not ended.is_set() and (deadline is None or time.monotonic() < deadline):
            if not input_open:
                ended.wait(_POLL_SECONDS)
                continue
            ready, _, _ = select.select([stdin], [], [], _POLL_SECONDS)
            if not ready:
                continue
            data = os.read(stdin, 1024)
            if not data:
                input_open = False  # a script's input ended: keep showing output
                continue
            keys, escape, _ = data.partition(ESCAPE)
            if keys:
                stream.write(keys)
            if escape:
                break
        closed = ended.is_set()  # before leaving the block, whose close() ends the stream too
    reader.join(timeout=1)
    click.echo("\r\nDisconnected" + (": the console closed" if closed else ""), err=True)
