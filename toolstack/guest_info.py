"""How a VM runs beyond what its spec says: the accelerator it gets and why, and its consoles.

``vm show`` prints them; ``vm show --json``, ``vm list --json`` and the API's VM record carry them, so that a
script need not parse ``accel: kvm (auto: ...)`` out of the text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from drivers import ConsoleDevice, DriverError
from drivers.base import spec_consoles

if TYPE_CHECKING:
    from drivers import Driver
    from drivers.models import DomainSpec

FORCED = "forced for this VM"


def accel_choice(
    spec: DomainSpec, host_info: Mapping[str, str], local: bool = True
) -> tuple[str | None, str]:
    """The accelerator a VM gets (``kvm``, ``tcg``, or None where none is chosen) and why.

    Args:
        spec: The VM's desired configuration: its ``accel``, where it forces one, wins.
        host_info: This host's driver's ``host_info()``: its ``accel`` and ``accel_reason``, where the
            driver chooses one for the domains it defines (libvirt's QEMU); the simulator, libvirt's test
            driver and Xen choose none.
        local: Whether this host runs the VM: for a VM placed on another host, that host's driver chooses,
            not this one.
    """
    if spec.accel is not None:
        return spec.accel, FORCED
    if not local:
        return None, "its host's driver chooses (the VM is placed on another host)"
    if "accel" in host_info:
        return host_info["accel"], host_info["accel_reason"]
    return None, f"{host_info.get('driver', 'the driver')} ({host_info.get('uri', '?')}) chooses none"


def consoles_of(driver: Driver, uuid: str, spec: DomainSpec, local: bool) -> list[ConsoleDevice]:
    """A VM's consoles: as this host's hypervisor has them (a running domain's VNC port included), or, for a
    VM placed elsewhere or not defined here, as its spec gives them."""
    if local:
        try:
            return driver.consoles(uuid)
        except DriverError:
            pass  # not (yet) defined here: what its spec asks for
    return spec_consoles(spec)
