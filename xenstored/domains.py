"""Domains known to the daemon: introduced, released, and the targets of device-model domains."""

from __future__ import annotations

from dataclasses import dataclass, field

from xenstored.errors import InvalidRequest, NoSuchNode

DOMID_FIRST_RESERVED = 0x7FF0


@dataclass
class Domain:
    """An introduced domain.

    Attributes:
        domid: Its id.
        mfn: The ring's frame (recorded only: there are no shared rings here).
        port: The event channel (recorded only).
        target: The domain it serves as a device model for (SET_TARGET), if any.
    """

    domid: int
    mfn: int = 0
    port: int = 0
    target: int | None = None
    shutdown: bool = False


@dataclass
class DomainTable:
    """Every introduced domain; dom0 always is."""

    domains: dict[int, Domain] = field(default_factory=lambda: {0: Domain(0)})

    def introduce(self, domid: int, mfn: int, port: int) -> bool:
        """Record a domain; returns False if it was already introduced.

        Raises:
            InvalidRequest: The id is dom0's or reserved.
        """
        if domid == 0 or domid >= DOMID_FIRST_RESERVED:
            raise InvalidRequest(f"domain id {domid} cannot be introduced")
        if domid in self.domains:
            return False
        self.domains[domid] = Domain(domid, mfn, port)
        return True

    def get(self, domid: int) -> Domain:
        """Raises NoSuchNode if the domain is not introduced."""
        domain = self.domains.get(domid)
        if domain is None:
            raise NoSuchNode(f"domain {domid} is not introduced")
        return domain

    def release(self, domid: int) -> Domain:
        if domid == 0:
            raise InvalidRequest("dom0 cannot be released")
        domain = self.get(domid)
        del self.domains[domid]
        for other in self.domains.values():
            if other.target == domid:
                other.target = None
        return domain

    def __contains__(self, domid: int) -> bool:
        return domid in self.domains
