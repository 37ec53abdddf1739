"""The hypervisor layer: one Driver contract, several hypervisors, one registry.

Open a driver by URI::

    import drivers

    with drivers.open("sim://") as hv:           # in-memory simulator
        hv.define(spec)
        hv.start(spec.uuid)

URIs: ``sim://`` and ``sim:///abs/state-dir`` (simulator), ``test:///default``, ``qemu:///system`` and
``xen:///system`` (libvirt), ``xl://`` or ``xl:///abs/config-dir`` (Xen's xl toolstack). This package knows
nothing of the store.
"""

from __future__ import annotations

from drivers import registry
from drivers.base import DomainRef, Driver, EventCallback, EventHub, Subscription
from drivers.errors import (
    DeviceExists,
    DeviceNotFound,
    DomainExists,
    DomainNotFound,
    DriverError,
    HypervisorUnavailable,
    InvalidArgument,
    InvalidState,
    UnknownDriverURI,
    Unsupported,
)
from drivers.models import (
    DEVICE,
    Boot,
    Capability,
    ConsoleDevice,
    Device,
    Disk,
    DomainEvent,
    DomainInfo,
    DomainSpec,
    DomainState,
    EventKind,
    Nic,
    Scope,
    as_uuid,
    parse_memory,
)
from drivers.registry import DriverFactory, register


def open(uri: str) -> Driver:
    """Open the driver serving ``uri``.

    Raises:
        UnknownDriverURI: No driver is registered for the URI's scheme (the message names the URI).
        HypervisorUnavailable: The hypervisor behind the URI cannot be reached.
    """
    return registry.open_uri(uri)


__all__ = [
    "DEVICE",
    "Boot",
    "Capability",
    "ConsoleDevice",
    "Device",
    "DeviceExists",
    "DeviceNotFound",
    "Disk",
    "DomainEvent",
    "DomainExists",
    "DomainInfo",
    "DomainNotFound",
    "DomainRef",
    "DomainSpec",
    "DomainState",
    "Driver",
    "DriverError",
    "DriverFactory",
    "EventCallback",
    "EventHub",
    "EventKind",
    "HypervisorUnavailable",
    "InvalidArgument",
    "InvalidState",
    "Nic",
    "Scope",
    "Subscription",
    "UnknownDriverURI",
    "Unsupported",
    "as_uuid",
    "open",
    "parse_memory",
    "register",
]
