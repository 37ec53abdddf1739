"""The toolstack's logs: plain lines for a person, or one JSON object per line for a log pipeline.

Every record carries the context it was logged in: the user a request or a command acts for, the task
running and its VM. Code that knows them binds them for a block (:func:`bound`); the formatters read them
from context variables, so a record logged deep in a driver still says which task and user it belongs to.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import json
import logging
import sys
from collections.abc import Iterator
from typing import IO, Any

FORMATS = ("text", "json")
# The fields a record carries from its context, in the order the text format shows them.
CONTEXT_FIELDS = ("user", "task", "vm")
_context: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("toolstack_log_context", default={})  # noqa: B039
# The attributes every LogRecord has: anything else a caller passed in `extra` is a field of its own.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


@contextlib.contextmanager
def bound(**fields: str | None) -> Iterator[None]:
    """Attach ``fields`` (``user``, ``task``, ``vm``, or any other) to every record logged in this block, in
    this thread or task and the ones it starts with a copied context."""
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def context() -> dict[str, str]:
    """The fields bound here now."""
    return dict(_context.get())


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, the bound
    context (``user``, ``task``, ``vm``...), the fields passed as ``extra``, and ``exception`` if any."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **_context.get(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``LEVEL logger: message [user=... task=... vm=...]``: the bound context after the message."""

    def format(self, record: logging.LogRecord) -> str:
        bound_here = _context.get()
        fields = " ".join(f"{key}={bound_here[key]}" for key in CONTEXT_FIELDS if key in bound_here)
        text = f"{record.levelname.lower()} {record.name}: {record.getMessage()}"
        if fields:
            text += f" [{fields}]"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def formatter(log_format: str) -> logging.Formatter:
    """The formatter of ``log_format`` ("text" or "json").

    Raises:
        ValueError: An unknown format.
    """
    if log_format not in FORMATS:
        raise ValueError(f"unknown log format {log_format!r}: expected one of {', '.join(FORMATS)}")
    return JsonFormatter() if log_format == "json" else TextFormatter()


def level_for(verbose: int, quiet: int) -> int:
    """The level ``-v``/``-q`` ask for: warnings by default, ``-v`` info, ``-vv`` debug, ``-q`` errors only,
    ``-qq`` critical only."""
    steps = [logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO, logging.DEBUG]
    return steps[max(0, min(len(steps) - 1, 2 + verbose - quiet))]


def configure(level: int, log_format: str = "text", stream: IO[str] | None = None) -> logging.Handler:
    """Send the root logger's records at ``level`` and above to ``stream`` (stderr) in ``log_format``,
    replacing the handler an earlier call installed."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_toolstack", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(log_format))
    handler._toolstack = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    return handler
