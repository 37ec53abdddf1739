"""Rings under Xen: dom0's kernel on ``/proc/xen/xsd_kva``, guests through the grant table or foreign memory,
every event channel through one libxenevtchn handle, and VIRQ_DOM_EXC for domains that shut down or die.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from xenstored.ring import Ring
from xenstored.rings import Attached, DomainStatus, RingUnavailable
from xenstored.xenlibs import (
    GNTTAB_RESERVED_XENSTORE,
    VIRQ_DOM_EXC,
    Control,
    EventChannels,
    ForeignMemory,
    GrantTable,
    MappedPage,
    XenError,
    map_kernel_page,
)

log = logging.getLogger(__name__)

XSD_KVA = "/proc/xen/xsd_kva"
XSD_PORT = "/proc/xen/xsd_port"

Reap = Callable[[Callable[[int], DomainStatus | None]], list[int]]


class XenDoorbell:
    """One bound event channel, fired through the shared handle."""

    def __init__(self, rings: XenRings, port: int) -> None:
        self._rings = rings
        self.port = port

    def start(self, kicked: Callable[[], None]) -> None:
        self._rings.handlers[self.port] = kicked

    def notify(self) -> None:
        try:
            self._rings.evtchn.notify(self.port)
        except XenError as err:  # the domain is going: its release will follow
            log.warning("event channel %d: %s", self.port, err)

    def close(self) -> None:
        if self.port < 0:
            return
        self._rings.handlers.pop(self.port, None)
        with contextlib.suppress(XenError):  # a dead domain's channel may be gone already
            self._rings.evtchn.unbind(self.port)
        self.port = -1


class XenRings:
    """The ring provider under Xen (``--xen``).

    Args:
        loop: The daemon's event loop.
        reap: Called after each domain exception with a function giving a domain's status (the daemon
            releases the dead ones: :func:`xenstored.rings.reap_domains`).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, reap: Reap) -> None:
        self._loop = loop
        self._reap = reap
        self.evtchn = EventChannels()
        self.handlers: dict[int, Callable[[], None]] = {}
        self.control = Control()
        self.grants: GrantTable | None = None
        self.foreign: ForeignMemory | None = None
        try:
            self.grants = GrantTable()
        except XenError as err:
            log.warning("no grant table (%s): guests' rings are mapped as foreign memory", err)
        try:
            self.foreign = ForeignMemory()
        except XenError as err:
            log.warning("no foreign memory (%s): guests' rings are mapped through grants only", err)
        self._virq = self.evtchn.bind_virq(VIRQ_DOM_EXC)
        loop.add_reader(self.evtchn.fileno(), self._fired)

    def _fired(self) -> None:
        # One port per readable event: the descriptor is blocking, and the loop calls again while more wait.
        try:
            port = self.evtchn.pending()
        except XenError as err:
            log.error("event channels: %s", err)
            return
        if port is None:
            return
        self.evtchn.unmask(port)  # before handling: a kick that comes meanwhile fires again
        if port == self._virq:
            released = self._reap(self._status)
            if released:
                log.info("released dying domains %s", released)
            return
        handler = self.handlers.get(port)
        if handler is not None:
            handler()

    def _status(self, domid: int) -> DomainStatus | None:
        info = self.control.domain(domid)
        return None if info is None else DomainStatus(info.dying, info.shutdown)

    def attach(self, domid: int, mfn: int, port: int) -> Attached:
        try:
            if domid == 0:
                page = map_kernel_page(XSD_KVA)
                with open(XSD_PORT) as handle:
                    port = int(handle.read().strip())
            else:
                page = self._guest_page(domid, mfn)
        except (OSError, ValueError, XenError) as err:
            raise RingUnavailable(f"dom{domid}'s ring page: {err}") from err
        try:
            local = self.evtchn.bind_interdomain(domid, port)
        except XenError as err:
            page.unmap()
            raise RingUnavailable(f"dom{domid}'s event channel {port}: {err}") from err
        ring = Ring(page.view)

        def release() -> None:
            ring.close()
            page.view.release()
            page.unmap()

        log.info("dom%d: ring mapped, event channel %d bound as local port %d", domid, port, local)
        return Attached(ring, XenDoorbell(self, local), release)

    def _guest_page(self, domid: int, mfn: int) -> MappedPage:
        failures = []
        if self.grants is not None:
            try:
                return self.grants.map(domid, GNTTAB_RESERVED_XENSTORE)
            except XenError as err:
                failures.append(str(err))
        if self.foreign is not None:
            try:
                return self.foreign.map(domid, mfn)
            except XenError as err:
                failures.append(str(err))
        raise XenError("; ".join(failures) or "no way to map a guest's page", 19)

    def close(self) -> None:
        self._loop.remove_reader(self.evtchn.fileno())
        for handle in (self.grants, self.foreign, self.control, self.evtchn):
            if handle is not None:
                handle.close()
