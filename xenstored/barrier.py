"""A full memory barrier (Xen's ``xen_mb()``), callable from Python.

A ring's two sides each store an index and then load the other side's (the store-buffer pattern): the
daemon stores its request consumer index and loads the guest's producer index, while the guest stores its
producer index and loads the consumer index to decide whether to kick. x86 may let a load pass an earlier
store to another address, so without a barrier between the two both sides can read stale values: the guest
then does not kick, and the daemon does not see the bytes. Nothing in Python's standard library emits a
barrier, so this module maps two instructions (the fence and a return) into an executable page and calls
them through ctypes, as C xenstored's ``xen_mb()`` does inline. The page is written, then made read-only and
executable: never both writable and executable.
"""

from __future__ import annotations

import ctypes
import mmap
import platform
import threading
from collections.abc import Callable

# The fence, then a return, for each machine a Xen dom0 runs on.
_FENCES = {
    "x86_64": b"\x0f\xae\xf0\xc3",  # mfence; ret
    "amd64": b"\x0f\xae\xf0\xc3",
    "aarch64": bytes.fromhex("bf3b03d5c0035fd6"),  # dmb ish; ret (little-endian words)
    "arm64": bytes.fromhex("bf3b03d5c0035fd6"),
}


def _native_fence(code: bytes) -> Callable[[], None] | None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,
    ]
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
    address = libc.mmap(None, mmap.PAGESIZE, mmap.PROT_READ | mmap.PROT_WRITE, flags, -1, 0)
    if address is None or address == ctypes.c_void_p(-1).value:
        return None
    ctypes.memmove(address, code, len(code))
    if libc.mprotect(address, mmap.PAGESIZE, mmap.PROT_READ | mmap.PROT_EXEC) != 0:
        return None  # a hardened kernel may refuse executable anonymous pages
    return ctypes.CFUNCTYPE(None)(address)


def _lock_fence() -> Callable[[], None]:
    # Taking a lock is a read-modify-write on its word: on x86 a locked instruction, itself a full barrier.
    # Elsewhere it is weaker than a fence, so this is only the fallback.
    lock = threading.Lock()

    def fence() -> None:
        with lock:
            pass

    return fence


def _make() -> tuple[Callable[[], None], str]:
    code = _FENCES.get(platform.machine().lower())
    if code is not None:
        native = _native_fence(code)
        if native is not None:
            return native, "native"
    return _lock_fence(), "lock"


full_barrier, BARRIER_KIND = _make()
"""Order every load and store before the call with every one after it."""
