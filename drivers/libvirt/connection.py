"""One libvirt connection that survives its daemon: reconnect on loss, events re-registered each time."""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid as uuidlib
from collections.abc import Callable
from typing import Any, TypeVar

from drivers.errors import HypervisorUnavailable
from drivers.libvirt import binding
from drivers.libvirt.errors import CONNECTION_LOST, translate
from drivers.models import DomainEvent, EventKind

log = logging.getLogger(__name__)
T = TypeVar("T")

# virDomainEventType → our kind; details after libvirt's virDomainEvent*DetailType enums.
_LIFECYCLE: dict[int, tuple[EventKind, tuple[str, ...]]] = {
    0: (EventKind.DEFINED, ("added", "updated", "renamed", "from-snapshot")),
    1: (EventKind.UNDEFINED, ("removed", "renamed")),
    2: (EventKind.STARTED, ("booted", "migrated", "restored", "from-snapshot", "wakeup")),
    3: (
        EventKind.SUSPENDED,
        ("paused", "migrated", "ioerror", "watchdog", "restored", "from-snapshot", "api-error", "postcopy"),
    ),
    4: (EventKind.RESUMED, ("unpaused", "migrated", "from-snapshot", "postcopy")),
    5: (
        EventKind.STOPPED,
        ("shutdown", "destroyed", "crashed", "migrated", "saved", "failed", "from-snapshot"),
    ),
    6: (EventKind.SHUTDOWN, ("finished", "guest", "host")),
    7: (EventKind.SUSPENDED, ("pmsuspended-memory", "pmsuspended-disk")),
    8: (EventKind.CRASHED, ("panicked", "crashloaded")),
}
EVENT_ID_LIFECYCLE = 0
EVENT_ID_REBOOT = 1
EVENT_ID_DEVICE_REMOVED = 15
EVENT_ID_DEVICE_ADDED = 19
USER_ALIAS_PREFIX = "ua-"


def lifecycle_event(uuid: uuidlib.UUID, name: str, event: int, detail: int) -> DomainEvent | None:
    """Map one libvirt lifecycle callback onto a DomainEvent (None for types we do not model)."""
    mapped = _LIFECYCLE.get(event)
    if mapped is None:
        return None
    kind, details = mapped
    return DomainEvent(
        uuid=uuid, name=name, kind=kind, detail=details[detail] if detail < len(details) else ""
    )


def device_id_from_alias(alias: str) -> str:
    """Our device id from a libvirt device alias (``ua-<id>``); other aliases pass through unchanged."""
    return alias[len(USER_ALIAS_PREFIX) :] if alias.startswith(USER_ALIAS_PREFIX) else alias


class LibvirtConnection:
    """A libvirt connection plus the machinery to keep it usable.

    Args:
        uri: libvirt URI.
        on_event: Receives DomainEvents, on libvirt's event thread.

    Attributes:
        reconnects: How many times the connection was reopened after a loss.
    """

    def __init__(self, uri: str, on_event: Callable[[DomainEvent], None]) -> None:
        self.uri = uri
        self._on_event = on_event
        self._lock = threading.RLock()
        self._conn: Any = None
        self._alive = False
        self._closed = False
        self._callback_ids: list[int] = []
        self.reconnects = 0
        self._open()

    @property
    def raw(self) -> Any:
        """The current ``virConnect`` (for diagnostics and tests; use ``call`` for work)."""
        return self._conn

    def call(self, operation: str, uuid: object | None, work: Callable[[Any], T]) -> T:
        """Run ``work(virConnect)``, translating libvirt errors; reconnect and retry once if the link is lost.

        The retry makes a non-idempotent call ambiguous when the connection died mid-call (it may have been
        applied): callers see the second attempt's result, e.g. InvalidState for a start that did happen.
        """
        lv = binding.module()
        with self._lock:
            if self._closed:
                raise HypervisorUnavailable("connection is closed", uuid=uuid, operation=operation)
            conn = self._conn
        try:
            return work(conn)
        except lv.libvirtError as error:
            if not self._lost(conn, error):
                raise translate(error, uuid=uuid, operation=operation) from None
            log.warning("connection to %s lost during %s; reconnecting", self.uri, operation)
        conn = self._reconnect(conn)
        try:
            return work(conn)
        except lv.libvirtError as error:
            raise translate(error, uuid=uuid, operation=operation) from None

    def close(self) -> None:
        """Deregister callbacks and close. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            conn, self._conn = self._conn, None
        self._release(conn)

    # -- internals -----------------------------------------------------------------------------------------

    def _open(self) -> None:
        lv = binding.module()
        try:
            conn = lv.open(self.uri)
        except lv.libvirtError as error:
            message = error.get_error_message() or str(error)
            raise HypervisorUnavailable(
                f"cannot connect to {self.uri}: {message}", operation="open", detail=str(error)
            ) from None
        if conn is None:
            raise HypervisorUnavailable(f"cannot connect to {self.uri}", operation="open")
        # Remote connections only: keepalive detects a dead daemon within ~20 s, and the close callback tells
        # us at once. Local drivers such as test:/// have no transport to lose and refuse both.
        with contextlib.suppress(lv.libvirtError):
            conn.setKeepAlive(5, 3)
        with contextlib.suppress(lv.libvirtError):
            conn.registerCloseCallback(self._closed_by_libvirt, None)
        self._callback_ids = self._register_events(conn)
        self._conn = conn
        self._alive = True

    def _register_events(self, conn: Any) -> list[int]:
        lv = binding.module()
        handlers = (
            (EVENT_ID_LIFECYCLE, self._lifecycle),
            (EVENT_ID_REBOOT, self._reboot),
            (EVENT_ID_DEVICE_REMOVED, self._device_removed),
            (EVENT_ID_DEVICE_ADDED, self._device_added),
        )
        ids = []
        for event_id, handler in handlers:
            try:
                ids.append(conn.domainEventRegisterAny(None, event_id, handler, None))
            except lv.libvirtError as error:
                log.info("%s does not report event %d: %s", self.uri, event_id, error)
        return ids

    def _release(self, conn: Any) -> None:
        if conn is None:
            return
        lv = binding.module()
        for callback_id in self._callback_ids:
            with contextlib.suppress(lv.libvirtError):
                conn.domainEventDeregisterAny(callback_id)
        self._callback_ids = []
        with contextlib.suppress(lv.libvirtError):
            conn.unregisterCloseCallback()
        with contextlib.suppress(lv.libvirtError):
            conn.close()

    def _lost(self, conn: Any, error: Exception) -> bool:
        if not self._alive or error.get_error_code() in CONNECTION_LOST:  # type: ignore[attr-defined]
            return True
        try:
            return not conn.isAlive()
        except Exception:
            return True

    def _reconnect(self, dead: Any) -> Any:
        with self._lock:
            if self._closed:
                raise HypervisorUnavailable("connection is closed", operation="reconnect")
            if self._conn is dead:  # another thread may have reconnected already
                old_ids, self._callback_ids = self._callback_ids, []
                self._conn = None
                try:
                    self._open()
                finally:
                    self._discard(dead, old_ids)
                self.reconnects += 1
            return self._conn

    @staticmethod
    def _discard(conn: Any, callback_ids: list[int]) -> None:
        for callback_id in callback_ids:
            with contextlib.suppress(Exception):
                conn.domainEventDeregisterAny(callback_id)
        with contextlib.suppress(Exception):
            conn.close()

    def _closed_by_libvirt(self, _conn: Any, reason: int, _opaque: object) -> None:
        log.warning("libvirt closed the connection to %s (reason %d)", self.uri, reason)
        self._alive = False

    def _emit(self, dom: Any, make: Callable[[uuidlib.UUID, str], DomainEvent | None]) -> None:
        try:
            event = make(uuidlib.UUID(dom.UUIDString()), dom.name())
        except Exception:
            log.exception("cannot decode a libvirt event from %s", self.uri)
            return
        if event is not None:
            self._on_event(event)

    def _lifecycle(self, _conn: Any, dom: Any, event: int, detail: int, _opaque: object) -> None:
        self._emit(dom, lambda uuid, name: lifecycle_event(uuid, name, event, detail))

    def _reboot(self, _conn: Any, dom: Any, _opaque: object) -> None:
        self._emit(dom, lambda uuid, name: DomainEvent(uuid=uuid, name=name, kind=EventKind.REBOOTED))

    def _device_removed(self, _conn: Any, dom: Any, alias: str, _opaque: object) -> None:
        self._emit(
            dom,
            lambda uuid, name: DomainEvent(
                uuid=uuid, name=name, kind=EventKind.DEVICE_REMOVED, detail=device_id_from_alias(alias)
            ),
        )

    def _device_added(self, _conn: Any, dom: Any, alias: str, _opaque: object) -> None:
        self._emit(
            dom,
            lambda uuid, name: DomainEvent(
                uuid=uuid, name=name, kind=EventKind.DEVICE_ADDED, detail=device_id_from_alias(alias)
            ),
        )
