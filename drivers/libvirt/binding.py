"""The only module that imports ``libvirt``.

Everything else reaches libvirt through ``binding.libvirt`` at call time, so one test fixture can swap the
module for a fake (``monkeypatch.setattr(binding, "libvirt", fake)``). This module also does the two things
libvirt needs exactly once per process, before the first connection is opened: register the default event
loop implementation (and run it in a daemon thread), and install an error handler so that libvirt does not
print every error to stderr.
"""

from __future__ import annotations

import logging
import threading
from types import ModuleType

from drivers.errors import HypervisorUnavailable

try:
    import libvirt as _libvirt_module
except ImportError:  # pragma: no cover - exercised where libvirt-python is absent
    _libvirt_module = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

libvirt: ModuleType | None = _libvirt_module

_lock = threading.Lock()
_prepared: set[int] = set()


def module() -> ModuleType:
    """The libvirt module in use, prepared (event loop running, error handler installed).

    Raises:
        HypervisorUnavailable: libvirt-python is not installed.
    """
    current = libvirt
    if current is None:
        raise HypervisorUnavailable(
            "libvirt-python is missing; it builds with libvirt-dev and pkg-config (scripts/bootstrap.sh)"
        )
    if id(current) not in _prepared:
        with _lock:
            if id(current) not in _prepared:
                _prepare(current)
                _prepared.add(id(current))
    return current


def _prepare(lv: ModuleType) -> None:
    lv.registerErrorHandler(_ignore_error, None)
    # Must precede every open(): connections opened before registration never deliver events.
    lv.virEventRegisterDefaultImpl()
    thread = threading.Thread(target=_run_event_loop, args=(lv,), name="libvirt-events", daemon=True)
    thread.start()


def _ignore_error(_context: object, _error: object) -> None:
    """Errors still reach us as libvirtError exceptions; this only stops libvirt printing them."""


def _run_event_loop(lv: ModuleType) -> None:
    while True:
        try:
            lv.virEventRunDefaultImpl()
        except Exception:  # the loop must outlive one failing callback
            log.exception("libvirt event loop iteration failed")
