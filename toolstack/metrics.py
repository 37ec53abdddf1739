"""The process's metrics in Prometheus's text format (``GET /metrics`` on ``toolstack serve``).

A few counters and histograms, kept in memory by this process: what the API process did since it started.
Written here rather than with ``prometheus_client``: the exposition format is a page of text, and the
server then needs no more dependencies (the tests parse it with ``prometheus_client``'s parser).

The agent (``toolstack agent``) serves no HTTP: it counts its rounds in families of its own (``AGENT``,
named ``toolstack_agent_*`` so that they never clash with the server's) and writes them to a textfile that
``serve`` appends to its ``/metrics`` (:mod:`toolstack.textfiles`). One-shot CLI commands are not counted.
"""

from __future__ import annotations

import bisect
import os
import threading
from collections.abc import Sequence
from pathlib import Path

# Seconds: an operation on the simulator takes milliseconds, one on a real hypervisor up to minutes.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    pairs = [f'{name}="{_escape(value)}"' for name, value in zip(names, values, strict=True)]
    if extra:
        pairs.append(extra)
    return "{" + ",".join(pairs) + "}" if pairs else ""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Counter:
    """A monotonic count per combination of label values."""

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        self.name, self.help, self.labels = name, help_text, tuple(labels)
        self._values: dict[tuple[str, ...], float] = {}
        self._mutex = threading.Lock()
        if not self.labels:
            self._values[()] = 0.0  # an unlabelled counter is shown from the start, at 0

    def inc(self, *values: str, amount: float = 1.0) -> None:
        with self._mutex:
            self._values[values] = self._values.get(values, 0.0) + amount

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        with self._mutex:
            items = sorted(self._values.items())
        lines += [f"{self.name}_total{_labels(self.labels, key)} {value}" for key, value in items]
        return lines


class Histogram:
    """Observed values in cumulative buckets, per combination of label values."""

    def __init__(
        self,
        name: str,
        help_text: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = DURATION_BUCKETS,
    ) -> None:
        self.name, self.help, self.labels, self.buckets = name, help_text, tuple(labels), tuple(buckets)
        self._values: dict[tuple[str, ...], tuple[list[int], float, int]] = {}
        self._mutex = threading.Lock()

    def observe(self, value: float, *values: str) -> None:
        with self._mutex:
            counts, total, count = self._values.get(values) or ([0] * len(self.buckets), 0.0, 0)
            index = bisect.bisect_left(self.buckets, value)
            if index < len(counts):
                counts[index] += 1
            self._values[values] = (counts, total + value, count + 1)

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        with self._mutex:
            items = sorted((key, (list(c), t, n)) for key, (c, t, n) in self._values.items())
        for key, (counts, total, count) in items:
            running = 0
            for bound, in_bucket in zip(self.buckets, counts, strict=True):
                running += in_bucket
                le = 'le="' + str(bound) + '"'
                lines.append(f"{self.name}_bucket{_labels(self.labels, key, le)} {running}")
            infinity = 'le="+Inf"'
            lines.append(f"{self.name}_bucket{_labels(self.labels, key, infinity)} {count}")
            lines.append(f"{self.name}_sum{_labels(self.labels, key)} {total}")
            lines.append(f"{self.name}_count{_labels(self.labels, key)} {count}")
        return lines


OPERATIONS = Counter(
    "toolstack_operations", "Operations run by this process, by kind and outcome", ("operation", "outcome")
)
OPERATION_SECONDS = Histogram(
    "toolstack_operation_duration_seconds", "Time an operation took, claim to merge", ("operation",)
)
COMMITS = Counter("toolstack_commits", "Operations merged into main by this process (one merge commit each)")
MERGE_CONFLICTS = Counter("toolstack_merge_conflicts", "Operations whose outcome did not merge into main")
BUSY_REFUSALS = Counter("toolstack_busy_refusals", "Operations refused: another task held the VM")
DRIFT_FOUND = Counter("toolstack_drift_found", "VMs found drifted from main by a reconcile of this process")
RECONCILE_SECONDS = Histogram("toolstack_reconcile_duration_seconds", "Time a reconcile took")
ALL = (OPERATIONS, OPERATION_SECONDS, COMMITS, MERGE_CONFLICTS, BUSY_REFUSALS, DRIFT_FOUND, RECONCILE_SECONDS)


AGENT_ROUNDS = Counter(
    "toolstack_agent_rounds",
    "Agent rounds (pull, reconcile, push) by outcome: ok, conflict (the pull's merge), remote_error, "
    "driver_error, history_rewritten, unrequested_removal, histories_unrelated",
    ("outcome",),
)
AGENT_ROUND_SECONDS = Histogram("toolstack_agent_round_duration_seconds", "Time an agent round took")
AGENT_RECONCILE_SECONDS = Histogram(
    "toolstack_agent_reconcile_duration_seconds", "Time the reconcile of an agent round took"
)
AGENT_DRIFT_FOUND = Counter("toolstack_agent_drift_found", "VMs the agent's reconciles found drifted")
AGENT = (AGENT_ROUNDS, AGENT_ROUND_SECONDS, AGENT_RECONCILE_SECONDS, AGENT_DRIFT_FOUND)


def exposition(metrics: Sequence[Counter | Histogram] = ALL) -> str:
    """The metrics (the server's by default) in Prometheus's text format (version 0.0.4)."""
    return "\n".join(line for metric in metrics for line in metric.render()) + "\n"


def agent_metrics_file(repo: str) -> str:
    """The agent's default textfile, beside its repository: ``toolstack.git`` -> ``toolstack.agent.prom``."""
    return os.path.splitext(os.path.abspath(repo))[0] + ".agent.prom"


def write_textfile(path: str, text: str) -> None:
    """Replace ``path`` with ``text`` atomically: a reader (``serve``, node_exporter) finds the old content
    or the new, never a part of it. Readable by all: the API's process may run as another user."""
    from drivers.files import atomic_write  # the drivers package loads its models: only when writing

    atomic_write(Path(path), text.encode("utf-8"), durable=False, mode=0o644)
