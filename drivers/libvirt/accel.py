"""Which accelerator a QEMU domain gets: KVM where the host offers it, TCG (QEMU's emulation) where not.

The probe asks libvirt (``virConnectGetDomainCapabilities`` for the ``kvm`` virtualisation type) and, on a
local URI, whether ``/dev/kvm`` opens for reading and writing, and whether that KVM is the hardware-assisted
kind. All must hold for ``auto`` to choose KVM; ``?accel=kvm`` on the driver URI, or ``DomainSpec.accel``,
still forces it.

"Opens" is not "runs guests at speed". KVM on x86 needs the CPU's VMX or SVM, except for PVM
(``kvm_pvm``, pagetable-based virtualisation), which serves ``/dev/kvm`` on cloud VMs that hide both: it
runs PVM-enabled guest kernels (built with ``CONFIG_PVM_GUEST``) natively, but an ordinary kernel's
supervisor code goes through KVM's instruction emulator. Measured on such a host (QEMU's KVM vCPU
statistics): 0.3-1.2 million emulated instructions a second, so the stock Debian kernel, whose real-mode
setup prints "Probing EDD" within a second, spends about 7 minutes decompressing itself (it looked hung),
then stops with "KVM internal error. Suberror: 1 ... emulation failure" on a ``lock cmpxchg16b``, which the
emulator does not handle, before its console is up; without CX16 in the guest's CPU it prints its first line
after ~5 minutes and stops the same way on an ``xrstor``, and with ``noxsave`` on an ``int3`` (README,
"Drivers", has the runs): only a PVM guest kernel would run. So, on a local host, a CPU without
``vmx``/``svm`` makes ``auto`` choose TCG, and the reason names PVM where it is loaded.
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
HARDWARE_FLAGS = frozenset({"vmx", "svm"})  # Intel VT-x, AMD-V: what hardware-assisted KVM runs on


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


@dataclass(frozen=True)
class HostFacts:
    """What this machine says of its KVM, read from /proc and /sys.

    Attributes:
        cpu_flags: The CPU's flags (``/proc/cpuinfo``); None where they cannot be read (not judged then).
        kvm_modules: The loaded KVM modules (``kvm``, ``kvm_intel``, ``kvm_amd``, ``kvm_pvm``).
    """

    cpu_flags: frozenset[str] | None
    kvm_modules: frozenset[str]


def read_host_facts(proc: str = "/proc", sys: str = "/sys") -> HostFacts:
    """This machine's :class:`HostFacts`."""
    flags: frozenset[str] | None = None
    with contextlib.suppress(OSError), open(os.path.join(proc, "cpuinfo"), encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            key, _, value = line.partition(":")
            if key.strip() == "flags":
                flags = frozenset(value.split())
                break
    try:
        modules = frozenset(
            name for name in os.listdir(os.path.join(sys, "module")) if name.startswith("kvm")
        )
    except OSError:
        modules = frozenset()
    return HostFacts(flags, modules)


def software_kvm(facts: HostFacts) -> str | None:
    """Why this machine's KVM cannot run an ordinary guest at speed, or None where nothing says so."""
    if facts.cpu_flags is None or facts.cpu_flags & HARDWARE_FLAGS:
        return None
    if "kvm_pvm" in facts.kvm_modules:
        return (
            "KVM here is PVM (kvm_pvm: no vmx/svm in the CPU flags), which runs only PVM-enabled guest "
            "kernels at speed and emulates an ordinary kernel instruction by instruction"
        )
    return "the CPU has no vmx/svm flag, so this KVM is not hardware-assisted"


def probe(
    conn: Any,
    local: bool,
    opener: Callable[[str], int] | None = None,
    facts: HostFacts | None = None,
) -> Probe:
    """Probe the host behind ``conn`` for KVM.

    Args:
        conn: The ``virConnect``.
        local: Whether the daemon runs on this machine (no host in the URI): only then are ``/dev/kvm``
            and the CPU checked here.
        opener: ``os.open``-like, for tests.
        facts: This machine's :class:`HostFacts`, for tests (read here when None).
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
        slow = software_kvm(facts or read_host_facts())
        if slow is not None:
            return Probe(False, f"{KVM_DEVICE} opens, but {slow}")
    return Probe(True, "libvirt offers kvm domains" + (f" and {KVM_DEVICE} opens" if local else ""))


def _open_rw(path: str) -> int:
    return os.open(path, os.O_RDWR | os.O_CLOEXEC)
