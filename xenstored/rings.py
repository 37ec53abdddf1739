"""Introduced domains served over shared rings: where a domain's page and event channel come from (a
:class:`RingProvider`), one ring connection per domain, and the release of domains that died.

Two providers: :class:`FileRings` (a file as the page, two FIFOs as the event channel: the ring protocol
without Xen, for tests and tools) and :class:`xenstored.xenrings.XenRings` (grant table or foreign memory,
and Xen's event channels).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mmap
import os
from collections.abc import Callable
from typing import NamedTuple, Protocol

from xenstored.admin import AdminRequests
from xenstored.connection import Connection
from xenstored.errors import RequestError
from xenstored.paths import RELEASE_DOMAIN
from xenstored.ring import PAGE_SIZE, Ring
from xenstored.ringtransport import Doorbell, PipeDoorbell, RingTransport

log = logging.getLogger(__name__)


class RingUnavailable(RequestError):
    """INTRODUCE named a ring page or event channel the daemon cannot map or bind."""

    errno = "EIO"


class Attached(NamedTuple):
    """A domain's mapped page and bound event channel, and how to unmap the page."""

    ring: Ring
    doorbell: Doorbell
    release: Callable[[], None]


class RingProvider(Protocol):
    """Where domains' ring pages and event channels come from."""

    def attach(self, domid: int, mfn: int, port: int) -> Attached:
        """Map domain ``domid``'s page and bind its event channel.

        Raises:
            RingUnavailable: Either cannot be done.
        """

    def close(self) -> None:
        """Release what the provider itself holds."""


class FileRings:
    """Rings without Xen: domain N's page is the file ``<dir>/N/page`` (at least a page long), and its event
    channel two FIFOs, ``<dir>/N/kick`` (the domain kicks the daemon) and ``<dir>/N/notify`` (the daemon
    kicks the domain). Whoever plays the domain creates the three before INTRODUCE.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, directory: str) -> None:
        self._loop = loop
        self.directory = directory

    def attach(self, domid: int, mfn: int, port: int) -> Attached:
        base = os.path.join(self.directory, str(domid))
        try:
            with open(os.path.join(base, "page"), "r+b") as handle:
                page = mmap.mmap(handle.fileno(), PAGE_SIZE)
            # O_RDWR: opening a FIFO this way never blocks waiting for the other end (Linux).
            incoming = os.open(os.path.join(base, "kick"), os.O_RDWR | os.O_NONBLOCK)
            outgoing = os.open(os.path.join(base, "notify"), os.O_RDWR | os.O_NONBLOCK)
        except (OSError, ValueError) as err:
            raise RingUnavailable(f"dom{domid}'s ring in {base}: {err}") from err
        view = memoryview(page)
        ring = Ring(view)

        def release() -> None:
            ring.close()
            view.release()
            page.close()

        return Attached(ring, PipeDoorbell(self._loop, incoming, outgoing), release)

    def close(self) -> None:
        pass


class DomainRings:
    """One ring connection per introduced domain.

    Args:
        loop: The daemon's event loop.
        provider: Maps pages and binds event channels.
        connect: Makes the connection speaking as a domain.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        provider: RingProvider,
        connect: Callable[[int], Connection],
    ) -> None:
        self._loop = loop
        self.provider = provider
        self._connect = connect
        self.transports: dict[int, RingTransport] = {}

    def open(self, domid: int, mfn: int, port: int) -> None:
        """Serve domain ``domid`` on its ring.

        Raises:
            RingUnavailable: Its page cannot be mapped or its event channel bound.
        """
        self.close(domid)
        attached = self.provider.attach(domid, mfn, port)

        def release() -> None:
            attached.release()
            if self.transports.get(domid) is transport:
                del self.transports[domid]

        transport = RingTransport(
            self._loop, attached.ring, attached.doorbell, self._connect(domid), release, f"dom{domid}"
        )
        self.transports[domid] = transport
        log.info("dom%d: serving its ring (frame %#x, event channel %d)", domid, mfn, port)

    def describe(self) -> list[str]:
        """One line per domain's ring (:meth:`RingTransport.describe`)."""
        return [self.transports[domid].describe() for domid in sorted(self.transports)]

    def close(self, domid: int) -> None:
        transport = self.transports.pop(domid, None)
        if transport is not None:
            transport.abort()

    def close_all(self) -> None:
        for domid in list(self.transports):
            self.close(domid)
        with contextlib.suppress(Exception):
            self.provider.close()


class DomainStatus(NamedTuple):
    """What the hypervisor says of a domain."""

    dying: bool
    shutdown: bool


def reap_domains(admin: AdminRequests, status: Callable[[int], DomainStatus | None]) -> list[int]:
    """After a domain exception (VIRQ_DOM_EXC): release the introduced domains that are gone or dying, mark
    those shut down, and fire ``@releaseDomain`` once if anything changed (as C xenstored does: the
    toolstack's watch then reads the domain's info and cleans up).

    Args:
        admin: The daemon's domain handlers (their table, hooks and state).
        status: A domain's status, None if the hypervisor no longer knows it.

    Returns:
        The domains released.
    """
    released = []
    changed = False
    with admin.state.lock:
        for domid, domain in list(admin.domains.domains.items()):
            if domid == 0:
                continue
            info = status(domid)
            if info is None or info.dying:
                admin.domains.release(domid)
                admin.hooks.domain_released(domid)
                released.append(domid)
                changed = True
            elif info.shutdown and not domain.shutdown:
                domain.shutdown = True
                changed = True
        if changed:
            admin.state.watches.fire_special(RELEASE_DOMAIN)
    return released
