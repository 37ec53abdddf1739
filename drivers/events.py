"""Domain events: what drivers report when a domain changes (re-exported by ``drivers.models``)."""

from __future__ import annotations

import enum
import time
import uuid as uuidlib
from dataclasses import dataclass, field


class EventKind(enum.StrEnum):
    """Kinds of domain events, after libvirt's lifecycle events plus device events."""

    DEFINED = "defined"
    UNDEFINED = "undefined"
    STARTED = "started"
    SUSPENDED = "suspended"
    RESUMED = "resumed"
    STOPPED = "stopped"
    SHUTDOWN = "shutdown"  # the guest started to shut down; STOPPED follows
    REBOOTED = "rebooted"
    CRASHED = "crashed"
    DEVICE_ADDED = "device-added"
    DEVICE_REMOVED = "device-removed"
    MEMORY_CHANGED = "memory-changed"
    VCPUS_CHANGED = "vcpus-changed"


@dataclass(frozen=True, slots=True)
class DomainEvent:
    """Something happened to a domain. Events are hints: reconcile against ``info`` anyway.

    Attributes:
        uuid: The domain.
        name: Its name when the event fired.
        kind: What happened.
        detail: Hypervisor-specific precision (e.g. ``"destroyed"``, or the device id for device events).
        timestamp: Seconds since the epoch when the driver saw the event.
    """

    uuid: uuidlib.UUID
    name: str
    kind: EventKind
    detail: str = ""
    timestamp: float = field(default_factory=time.time)


__all__ = ["DomainEvent", "EventKind"]
