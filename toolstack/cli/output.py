"""Rendering for the CLI: aligned tables for people, JSON for scripts.

The JSON convention (``--json``, README "JSON output"): stdout carries the result only, as one JSON
document: an object for one thing (a VM, a plan, a commit), an array for a listing of current state
(``vm list``, ``diff``, ``store ls``, ``store branches``), or JSON Lines, one object per line, for history
that streams (``log``, ``task list``, ``events``). Keys are snake_case and sorted; times are Unix seconds.
Errors go to stderr as ``{"error": {...}}`` (:mod:`toolstack.cli.errors`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from toolstack.models import VM


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Left-aligned columns separated by two spaces, headers in capitals."""
    rows = [["" if cell is None else str(cell) for cell in row] for row in rows]
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"a row of {len(row)} cells under {len(headers)} headers")
    # Column by column (10,000 rows: one pass per column, not a list per row).
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines)


def when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def dumps(obj: Any) -> str:
    """One JSON document on one line, keys sorted."""
    return json.dumps(obj, sort_keys=True, default=str)


def emit(obj: Any, as_json: bool, text: str | None = None) -> None:
    """Print ``obj`` as one JSON document, or ``text`` for people."""
    if as_json:
        click.echo(dumps(obj))
    elif text is not None:
        click.echo(text)


def emit_lines(objects: Iterable[Any], as_json: bool, text: str | None = None) -> None:
    """Print one JSON object per line (for streams of records), or ``text``."""
    if as_json:
        for obj in objects:
            click.echo(dumps(obj))
    elif text is not None:
        click.echo(text)


def vm_record(vm_: VM, state: str | None = None) -> dict[str, Any]:
    """A VM as the commands on one VM give it under ``--json``."""
    return {
        "uuid": vm_.uuid,
        "name": vm_.name,
        "memory": vm_.spec.memory,
        "vcpus": vm_.spec.vcpus,
        "desired": vm_.desired.value,
        "state": state if state is not None else (vm_.observed.state if vm_.observed else None),
        "devices": [d.model_dump(mode="json") for d in vm_.spec.devices],
        "autostart": vm_.autostart,
    }
