"""ctypes bindings to the parts of Xen's stable libraries a xenstored needs (Debian 12: libxenevtchn1,
libxengnttab1, libxenforeignmemory1, libxenmisc4.17 for libxenctrl).

Only the calls used are declared, with the prototypes of Xen 4.17's public headers. Every failure raises
:class:`XenError` with the call's name and errno.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
from collections.abc import Callable
from typing import NamedTuple

from xenstored.errors import XenstoredError

VIRQ_DOM_EXC = 3  # xen/include/public/xen.h: a domain shut down or died
GNTTAB_RESERVED_XENSTORE = 1  # xen/include/public/grant_table.h
XEN_DOMINF_DYING = 1 << 0  # xen/include/public/domctl.h, xen_domctl_getdomaininfo.flags
XEN_DOMINF_SHUTDOWN = 1 << 2
# xen_domctl_getdomaininfo is 112 bytes in 4.17; room for one, whatever the minor layout, is plenty here:
# only its first fields (domain, flags) are read.
DOMAININFO_ROOM = 1024


class XenError(XenstoredError):
    """A call into Xen's libraries failed.

    Attributes:
        call: The library function.
        errno: Its errno.
    """

    def __init__(self, call: str, errno: int) -> None:
        self.call = call
        self.errno = errno
        super().__init__(f"{call}: {os.strerror(errno)} (errno {errno})")


def _library(name: str, soname: str) -> ctypes.CDLL:
    try:
        return ctypes.CDLL(soname, use_errno=True)
    except OSError:
        found = ctypes.util.find_library(name)
        if found is None:
            raise XenError(f"loading {soname}", 2) from None
        return ctypes.CDLL(found, use_errno=True)


def _declare(lib: ctypes.CDLL, name: str, restype: object, *argtypes: object) -> None:
    func = getattr(lib, name)
    func.restype = restype
    func.argtypes = list(argtypes)


def _check(call: str, result: int) -> int:
    if result < 0:
        raise XenError(call, ctypes.get_errno())
    return result


_P = ctypes.c_void_p
_U32 = ctypes.c_uint32
_INT = ctypes.c_int


class EventChannels:
    """One libxenevtchn handle: bind, notify, and which port fired (through one file descriptor)."""

    def __init__(self) -> None:
        lib = self._lib = _library("xenevtchn", "libxenevtchn.so.1")
        _declare(lib, "xenevtchn_open", _P, _P, ctypes.c_uint)
        _declare(lib, "xenevtchn_close", _INT, _P)
        _declare(lib, "xenevtchn_fd", _INT, _P)
        _declare(lib, "xenevtchn_notify", _INT, _P, _U32)
        _declare(lib, "xenevtchn_bind_interdomain", _INT, _P, _U32, _U32)
        _declare(lib, "xenevtchn_bind_virq", _INT, _P, ctypes.c_uint)
        _declare(lib, "xenevtchn_unbind", _INT, _P, _U32)
        _declare(lib, "xenevtchn_pending", _INT, _P)
        _declare(lib, "xenevtchn_unmask", _INT, _P, _U32)
        self._handle = lib.xenevtchn_open(None, 0)
        if not self._handle:
            raise XenError("xenevtchn_open", ctypes.get_errno())

    def fileno(self) -> int:
        return _check("xenevtchn_fd", self._lib.xenevtchn_fd(self._handle))

    def bind_interdomain(self, domid: int, remote_port: int) -> int:
        """The local port bound to ``remote_port`` of ``domid``."""
        local = self._lib.xenevtchn_bind_interdomain(self._handle, domid, remote_port)
        return _check("xenevtchn_bind_interdomain", local)

    def bind_virq(self, virq: int) -> int:
        return _check("xenevtchn_bind_virq", self._lib.xenevtchn_bind_virq(self._handle, virq))

    def notify(self, port: int) -> None:
        _check("xenevtchn_notify", self._lib.xenevtchn_notify(self._handle, port))

    def unbind(self, port: int) -> None:
        _check("xenevtchn_unbind", self._lib.xenevtchn_unbind(self._handle, port))

    def pending(self) -> int | None:
        """The port that fired (it stays masked until :meth:`unmask`), None if none did."""
        port = self._lib.xenevtchn_pending(self._handle)
        if port < 0:
            errno = ctypes.get_errno()
            if errno == 11:  # EAGAIN: nothing pending
                return None
            raise XenError("xenevtchn_pending", errno)
        return port

    def unmask(self, port: int) -> None:
        _check("xenevtchn_unmask", self._lib.xenevtchn_unmask(self._handle, port))

    def close(self) -> None:
        if self._handle:
            self._lib.xenevtchn_close(self._handle)
            self._handle = None


class MappedPage(NamedTuple):
    """A foreign page mapped into this process, and how to unmap it."""

    view: memoryview
    unmap: Callable[[], object]


def _page_view(address: int) -> memoryview:
    return memoryview((ctypes.c_char * mmap.PAGESIZE).from_address(address)).cast("B")


class GrantTable:
    """libxengnttab: map a page a domain granted (needs ``/dev/xen/gntdev``)."""

    def __init__(self) -> None:
        lib = self._lib = _library("xengnttab", "libxengnttab.so.1")
        _declare(lib, "xengnttab_open", _P, _P, ctypes.c_uint)
        _declare(lib, "xengnttab_close", _INT, _P)
        _declare(lib, "xengnttab_map_grant_ref", _P, _P, _U32, _U32, _INT)
        _declare(lib, "xengnttab_unmap", _INT, _P, _P, _U32)
        self._handle = lib.xengnttab_open(None, 0)
        if not self._handle:
            raise XenError("xengnttab_open", ctypes.get_errno())

    def map(self, domid: int, ref: int) -> MappedPage:
        address = self._lib.xengnttab_map_grant_ref(
            self._handle, domid, ref, mmap.PROT_READ | mmap.PROT_WRITE
        )
        if not address:
            raise XenError("xengnttab_map_grant_ref", ctypes.get_errno())
        return MappedPage(_page_view(address), lambda: self._lib.xengnttab_unmap(self._handle, address, 1))

    def close(self) -> None:
        if self._handle:
            self._lib.xengnttab_close(self._handle)
            self._handle = None


class ForeignMemory:
    """libxenforeignmemory: map a domain's page by its frame number (needs ``/dev/xen/privcmd``)."""

    def __init__(self) -> None:
        lib = self._lib = _library("xenforeignmemory", "libxenforeignmemory.so.1")
        _declare(lib, "xenforeignmemory_open", _P, _P, ctypes.c_uint)
        _declare(lib, "xenforeignmemory_close", _INT, _P)
        _declare(
            lib,
            "xenforeignmemory_map",
            _P,
            _P,
            _U32,
            _INT,
            ctypes.c_size_t,
            ctypes.POINTER(ctypes.c_ulong),
            ctypes.POINTER(_INT),
        )
        _declare(lib, "xenforeignmemory_unmap", _INT, _P, _P, ctypes.c_size_t)
        self._handle = lib.xenforeignmemory_open(None, 0)
        if not self._handle:
            raise XenError("xenforeignmemory_open", ctypes.get_errno())

    def map(self, domid: int, frame: int) -> MappedPage:
        frames = (ctypes.c_ulong * 1)(frame)
        errors = (_INT * 1)(0)
        address = self._lib.xenforeignmemory_map(
            self._handle, domid, mmap.PROT_READ | mmap.PROT_WRITE, 1, frames, errors
        )
        if not address:
            raise XenError("xenforeignmemory_map", ctypes.get_errno())
        if errors[0]:
            self._lib.xenforeignmemory_unmap(self._handle, address, 1)
            raise XenError("xenforeignmemory_map (frame)", -errors[0])
        return MappedPage(
            _page_view(address), lambda: self._lib.xenforeignmemory_unmap(self._handle, address, 1)
        )

    def close(self) -> None:
        if self._handle:
            self._lib.xenforeignmemory_close(self._handle)
            self._handle = None


def map_kernel_page(path: str) -> MappedPage:
    """Map the page a kernel file offers (``/proc/xen/xsd_kva``: dom0's own xenstore ring). Python's mmap
    refuses it: the file claims a size of 0, and mmap checks lengths against it."""
    libc = ctypes.CDLL(None, use_errno=True)
    _declare(libc, "mmap", _P, _P, ctypes.c_size_t, _INT, _INT, _INT, ctypes.c_long)
    _declare(libc, "munmap", _INT, _P, ctypes.c_size_t)
    fd = os.open(path, os.O_RDWR)
    try:
        address = libc.mmap(None, mmap.PAGESIZE, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd, 0)
    finally:
        os.close(fd)
    if address is None or address == ctypes.c_void_p(-1).value:
        raise XenError(f"mmap {path}", ctypes.get_errno())
    return MappedPage(_page_view(address), lambda: libc.munmap(address, mmap.PAGESIZE))


class DomainInfo(NamedTuple):
    domid: int
    dying: bool
    shutdown: bool


class Control:
    """libxenctrl, for domain information only."""

    def __init__(self) -> None:
        lib = self._lib = _library("xenctrl", "libxenctrl.so.4.17")
        _declare(lib, "xc_interface_open", _P, _P, _P, ctypes.c_uint)
        _declare(lib, "xc_interface_close", _INT, _P)
        _declare(lib, "xc_domain_getinfolist", _INT, _P, _U32, ctypes.c_uint, _P)
        self._handle = lib.xc_interface_open(None, None, 0)
        if not self._handle:
            raise XenError("xc_interface_open", ctypes.get_errno())
        self._buffer = ctypes.create_string_buffer(DOMAININFO_ROOM)

    def domain(self, domid: int) -> DomainInfo | None:
        """The domain's state, None if Xen no longer knows it."""
        count = self._lib.xc_domain_getinfolist(self._handle, domid, 1, self._buffer)
        if count < 0:
            raise XenError("xc_domain_getinfolist", ctypes.get_errno())
        if count == 0:
            return None
        found = int.from_bytes(self._buffer.raw[0:2], "little")
        flags = int.from_bytes(self._buffer.raw[4:8], "little")
        if found != domid:  # the first domain at or after domid: domid itself is gone
            return None
        return DomainInfo(found, bool(flags & XEN_DOMINF_DYING), bool(flags & XEN_DOMINF_SHUTDOWN))

    def close(self) -> None:
        if self._handle:
            self._lib.xc_interface_close(self._handle)
            self._handle = None
