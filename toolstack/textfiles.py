"""Other processes' metrics, read from Prometheus textfiles and appended to ``serve``'s ``/metrics``.

The daemons that serve no HTTP (``toolstack xenstored``, ``toolstack agent``) write their counters to a file,
replaced atomically (node_exporter's "textfile collector" habit). ``serve`` reads the files it is given
(``--metrics-textfile``, ``[serve] metrics_textfiles``; a directory stands for every ``*.prom`` in it) at each
scrape and appends those it can check. A file that is missing, unreadable, not in the text format, or
that declares a metric already exposed is left out, and said so: a comment with the reason and
``toolstack_textfile_up{file} 0``. A scrape never fails for a file.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Sequence

# A textfile larger than this is refused rather than read into every scrape.
MAX_BYTES = 4 * 1024 * 1024

_SAMPLE = re.compile(
    r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})?'
    r"[ \t]+(?P<value>\S+)(?:[ \t]+-?\d+)?[ \t]*$"
)
_TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}
# The samples a family of each type may show besides its own name.
_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created")}
_SUFFIXES["summary"] = ("_sum", "_count", "_created")


class TextfileError(ValueError):
    """A textfile that cannot be appended: why, for the comment that says so."""


def expand(paths: Iterable[str]) -> list[str]:
    """The files the configured ``paths`` name: a directory stands for its ``*.prom`` files, sorted."""
    files: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            files += sorted(os.path.join(path, n) for n in os.listdir(path) if n.endswith(".prom"))
        else:
            files.append(path)
    return files


def declared(text: str) -> set[str]:
    """The metric families a text declares (its ``# TYPE`` lines)."""
    types = (line.split() for line in text.splitlines() if line.startswith("# TYPE "))
    return {parts[2] for parts in types if len(parts) > 3}


def check(text: str, taken: set[str]) -> set[str]:
    """Check that ``text`` is in Prometheus's text format and declares none of the families in ``taken``.

    Returns:
        The families it declares.

    Raises:
        TextfileError: A line is not in the format, or a family is declared twice.
    """
    families: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or (line.startswith("#") and not line.startswith("# TYPE ")):
            continue
        if line.startswith("# TYPE "):
            parts = line.split()
            if len(parts) != 4 or parts[3] not in _TYPES:
                raise TextfileError(f"line {number}: a TYPE line must name a metric and a type")
            name = parts[2]
            if name in taken or name in families:
                raise TextfileError(f"line {number}: metric {name} is exposed already")
            families[name] = parts[3]
            continue
        match = _SAMPLE.match(line)
        if match is None:
            raise TextfileError(f"line {number}: not a sample line")
        try:
            float(match["value"])
        except ValueError:
            raise TextfileError(f"line {number}: {match['value']!r} is not a number") from None
        name = match["name"]
        if _family(name, families) in taken:
            raise TextfileError(f"line {number}: metric {name} is exposed already")
    return set(families)


def _family(sample: str, families: dict[str, str]) -> str:
    for family, kind in families.items():
        if sample == family or sample in (family + suffix for suffix in _SUFFIXES.get(kind, ())):
            return family
    return sample


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def exposition(paths: Sequence[str], own: str, optional: Sequence[str] = ()) -> str:
    """What the textfiles named by ``paths`` add to ``own`` (this process's exposition): each file that
    checks, then ``toolstack_textfile_up`` and ``toolstack_textfile_mtime_seconds`` per file. The
    ``optional`` files are read as well when they exist; a missing one is not mentioned."""
    paths = [*paths, *(path for path in optional if os.path.exists(path) and path not in paths)]
    if not paths:
        return ""
    taken = declared(own) | {"toolstack_textfile_up", "toolstack_textfile_mtime_seconds"}
    body: list[str] = []
    up: list[str] = []
    mtimes: list[str] = []
    for path in expand(paths):
        label = f'{{file="{_label(path)}"}}'
        try:
            with open(path, "rb") as handle:
                stat = os.fstat(handle.fileno())
                if stat.st_size > MAX_BYTES:
                    raise TextfileError(f"larger than {MAX_BYTES} bytes")
                text = handle.read(MAX_BYTES + 1).decode("utf-8")
            taken |= check(text, taken)
        except (OSError, UnicodeDecodeError, TextfileError) as err:
            reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
            body.append(f"# textfile {path} left out: {reason}".replace("\n", " "))
            up.append(f"toolstack_textfile_up{label} 0")
            continue
        body.append(f"# textfile {path}")
        body += [line for line in text.splitlines() if line.strip()]
        up.append(f"toolstack_textfile_up{label} 1")
        if math.isfinite(stat.st_mtime):
            mtimes.append(f"toolstack_textfile_mtime_seconds{label} {stat.st_mtime:.3f}")
    return (
        "\n".join(
            [
                *body,
                "# HELP toolstack_textfile_up Whether the textfile was appended (0: see its comment)",
                "# TYPE toolstack_textfile_up gauge",
                *up,
                "# HELP toolstack_textfile_mtime_seconds When the textfile was last written (Unix time)",
                "# TYPE toolstack_textfile_mtime_seconds gauge",
                *mtimes,
            ]
        )
        + "\n"
    )
