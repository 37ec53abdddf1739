"""Fault injection for the simulator: make chosen calls fail, in this process or from another one.

Two mechanisms:

- ``fail_nth(op, n)``: the n-th next call of ``op`` on this driver object fails (once); ``fail_always(op)``
  fails every call until ``clear(op)``.
- Marker files: while ``<state-dir>/fail-<op>`` exists, every call of ``op`` by any process using that
  directory fails. The file may hold ``ErrorClass: message`` (e.g. ``InvalidState: disk busy``) to choose the
  error; empty means HypervisorUnavailable. A leading ``after`` (``after InvalidState: lost reply``) makes the
  call take effect first, then fail. This lets a test break a CLI running in another process.

Faults fire ``before`` the operation takes effect (nothing changes), or ``after`` it (the change happened but
the caller sees an error: the ambiguous failure a reconciler must survive).
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from drivers import errors
from drivers.errors import DriverError, HypervisorUnavailable, InvalidArgument

OPERATIONS = frozenset(
    {
        "define",
        "undefine",
        "start",
        "shutdown",
        "reboot",
        "destroy",
        "pause",
        "resume",
        "attach_device",
        "detach_device",
        "set_vcpus",
        "set_memory",
        "info",
        "list",
        "get_spec",
    }
)

Phase = Literal["before", "after"]
ErrorSpec = DriverError | type[DriverError] | None


@dataclass
class _Rule:
    remaining_skips: int  # calls to let through before failing
    error: ErrorSpec
    phase: Phase
    repeat: bool


class FaultPlan:
    """The faults armed on one simulator driver.

    Attributes:
        calls: How many times each operation was called on this driver (failed calls included).
    """

    def __init__(self, marker_dir: Path | None) -> None:
        self._marker_dir = marker_dir
        self._rules: dict[str, list[_Rule]] = collections.defaultdict(list)
        self._lock = threading.Lock()
        self.calls: collections.Counter[str] = collections.Counter()

    def fail_nth(
        self, operation: str, n: int = 1, error: ErrorSpec = None, *, phase: Phase = "before"
    ) -> None:
        """Make the n-th next call of ``operation`` fail once.

        Args:
            operation: A Driver method name, e.g. ``"start"``.
            n: 1 means the very next call.
            error: The error to raise: an instance, a DriverError subclass (instantiated with uuid and
                operation), or None for HypervisorUnavailable.
            phase: ``"before"`` the effect (nothing changes) or ``"after"`` it (the change is made).
        """
        self._validate(operation, phase)
        if n < 1:
            raise InvalidArgument(f"fail_nth: n must be >= 1, got {n}")
        with self._lock:
            self._rules[operation].append(_Rule(n - 1, error, phase, repeat=False))

    def fail_always(self, operation: str, error: ErrorSpec = None, *, phase: Phase = "before") -> None:
        """Make every call of ``operation`` fail until ``clear``."""
        self._validate(operation, phase)
        with self._lock:
            self._rules[operation].append(_Rule(0, error, phase, repeat=True))

    def clear(self, operation: str | None = None) -> None:
        """Disarm the in-process faults of one operation, or all of them (marker files are left alone)."""
        with self._lock:
            if operation is None:
                self._rules.clear()
            else:
                self._rules.pop(operation, None)

    def marker_path(self, operation: str) -> Path:
        """The marker file that makes ``operation`` fail while it exists."""
        self._validate(operation, "before")
        if self._marker_dir is None:
            raise InvalidArgument(
                "fault markers need a state directory: open the simulator as sim:///abs/dir"
            )
        return self._marker_dir / f"fail-{operation}"

    def set_marker(self, operation: str, error: str = "") -> Path:
        """Create the marker for ``operation``; ``error`` is ``"ClassName"`` or ``"ClassName: message"``."""
        path = self.marker_path(operation)
        if error:
            _error_class(error.partition(":")[0].strip())
        path.write_text(error)
        return path

    def clear_marker(self, operation: str) -> None:
        """Remove the marker for ``operation`` if present."""
        self.marker_path(operation).unlink(missing_ok=True)

    def before(self, operation: str, uuid: object | None) -> None:
        """Called by the driver on entry of ``operation``; raises if a fault is armed for this call."""
        self.calls[operation] += 1
        self._fire(operation, uuid, "before")
        if self._marker_dir is not None:
            self._check_marker(operation, uuid, "before")

    def after(self, operation: str, uuid: object | None) -> None:
        """Called by the driver once ``operation`` took effect; raises if an after-fault is armed."""
        self._fire(operation, uuid, "after")
        if self._marker_dir is not None:
            self._check_marker(operation, uuid, "after")

    def _fire(self, operation: str, uuid: object | None, phase: Phase) -> None:
        if not self._rules:
            return
        with self._lock:
            rules = self._rules.get(operation)
            if not rules:
                return
            fired: _Rule | None = None
            for rule in rules:
                if rule.phase != phase:
                    continue
                if rule.remaining_skips > 0:
                    rule.remaining_skips -= 1
                    continue
                fired = rule
                break
            if fired is None:
                return
            if not fired.repeat:
                rules.remove(fired)
        raise _make_error(
            fired.error, operation, uuid, f"injected fault: {operation} failed ({phase} effect)"
        )

    def _check_marker(self, operation: str, uuid: object | None, phase: Phase) -> None:
        try:
            # A plain path string: this runs twice per call of every operation, a plan makes tens of
            # thousands of them, and pathlib's joins cost more than the failed open itself.
            with open(f"{self._marker_dir}/fail-{operation}", encoding="utf-8") as marker:
                content = marker.read()
        except FileNotFoundError:
            return
        content = content.strip()
        marked: Phase = "before"
        if content == "after" or content.startswith("after "):
            marked, content = "after", content.removeprefix("after").strip()
        if marked != phase:
            return
        name, _, message = content.partition(":")
        cls = _error_class(name.strip()) if name.strip() else HypervisorUnavailable
        raise cls(
            message.strip() or f"injected fault: marker fail-{operation} is set",
            uuid=uuid,
            operation=operation,
        )

    @staticmethod
    def _validate(operation: str, phase: str) -> None:
        if operation not in OPERATIONS:
            raise InvalidArgument(f"unknown operation {operation!r}; expected one of {sorted(OPERATIONS)}")
        if phase not in ("before", "after"):
            raise InvalidArgument(f"phase must be 'before' or 'after', got {phase!r}")


def _error_class(name: str) -> type[DriverError]:
    cls = getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, DriverError)):
        raise InvalidArgument(
            f"unknown error class {name!r} in fault marker; use a drivers.errors class name"
        )
    return cls


def _make_error(error: ErrorSpec, operation: str, uuid: object | None, message: str) -> DriverError:
    if isinstance(error, DriverError):
        return error
    cls = error if error is not None else HypervisorUnavailable
    return cls(message, uuid=uuid, operation=operation)
