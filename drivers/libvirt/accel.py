"""Which accelerator a QEMU domain gets: KVM where the host offers it, TCG (QEMU's emulation) where not.

The probe asks libvirt (``virConnectGetDomainCapabilities`` for the ``kvm`` virtualisation type) and, on a
local URI, whether ``/dev/kvm`` opens for reading and writing. Both must hold for ``auto`` to choose KVM.
A host whose KVM opens but cannot run guests (a nested hypervisor that hides ``vmx``/``svm``: the e2e
kernel hangs after "Probing EDD" on the machines of /work/shared/reference/libvirt.md) passes this probe;
force TCG there with ``?accel=tcg`` on the driver URI, or per VM with ``DomainSpec.accel``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit

from drivers.errors import InvalidArgument

AccelSetting = Literal["auto", "kvm", "tcg"]
KVM_DEVICE = "/dev/kvm"
QUERY_KEY = "accel"


@dataclass(frozen=True)
class Probe:
    """What the host offers.

    Attributes:
        kvm: Whether both checks passed.
        reason: Why KVM was (not) chosen, for people: shown by ``host_info`` and ``vm show``.
    """

    kvm: bool
    reason: str


def split_uri(uri: str) -> tuple[str, AccelSetting]:
    """The libvirt URI without our ``accel=`` query parameter, and that parameter (``auto`` if absent).

    Raises:
        InvalidArgument: ``accel`` is not ``auto``, ``kvm`` or ``tcg``.
    """
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True)
    ours = [value for key, value in query if key == QUERY_KEY]
    if not ours:
        return uri, "auto"
    setting = ours[-1]
    if setting not in ("auto", "kvm", "tcg"):
        raise InvalidArgument(f"{uri}: accel={setting!r}; expected auto, kvm or tcg", operation="open")
    rest = urlencode([(key, value) for key, value in query if key != QUERY_KEY])
    # Cut by hand: urlunsplit would turn "qemu:///system" into "qemu:/system".
    base = uri.partition("?")[0]
    return base + (f"?{rest}" if rest else ""), setting  # type: ignore[return-value]


def probe(conn: Any, local: bool, opener: Callable[[str], int] | None = None) -> Probe:
    """Probe the host behind ``conn`` for KVM.

    Args:
        conn: The ``virConnect``.
        local: Whether the daemon runs on this machine (no host in the URI): only then is ``/dev/kvm``
            checked here.
        opener: ``os.open``-like, for tests.
    """
    try:
        conn.getDomainCapabilities(None, None, None, "kvm", 0)
    except Exception as error:  # libvirtError: "KVM is not supported by '...' on this host"
        message = error.get_error_message() if hasattr(error, "get_error_message") else str(error)
        return Probe(False, f"libvirt offers no kvm domains: {message}")
    if local:
        try:
            fd = (opener or _open_rw)(KVM_DEVICE)
        except OSError as error:
            return Probe(False, f"{KVM_DEVICE} does not open: {error.strerror}")
        with contextlib.suppress(OSError):
            os.close(fd)
    return Probe(True, "libvirt offers kvm domains" + (f" and {KVM_DEVICE} opens" if local else ""))


def _open_rw(path: str) -> int:
    return os.open(path, os.O_RDWR | os.O_CLOEXEC)
