"""Rendering for the CLI: aligned tables for people, JSON for scripts."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

import click


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Left-aligned columns separated by two spaces, headers in capitals."""
    rows = [["" if cell is None else str(cell) for cell in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines)


def when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def emit(obj: Any, as_json: bool, text: str | None = None) -> None:
    """Print ``obj`` as one JSON document, or ``text`` for people."""
    if as_json:
        click.echo(json.dumps(obj, sort_keys=True, default=str))
    elif text is not None:
        click.echo(text)


def emit_lines(objects: Iterable[Any], as_json: bool, text: str | None = None) -> None:
    """Print one JSON object per line (for streams of records), or ``text``."""
    if as_json:
        for obj in objects:
            click.echo(json.dumps(obj, sort_keys=True, default=str))
    elif text is not None:
        click.echo(text)
