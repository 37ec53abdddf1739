"""Request handlers for domains and the daemon itself: GET_DOMAIN_PATH, INTRODUCE, RELEASE,
IS_DOMAIN_INTRODUCED, RESUME, SET_TARGET and CONTROL. All but GET_DOMAIN_PATH need a privileged caller."""

from __future__ import annotations

import logging
from collections.abc import Callable

from xenstored.domains import DomainTable
from xenstored.errors import AccessDenied, InvalidRequest
from xenstored.paths import INTRODUCE_DOMAIN, RELEASE_DOMAIN, domain_path
from xenstored.perms import DOMID_MAX
from xenstored.protocol import OK, Packet, decimal, string_list, strings
from xenstored.session import DomainHooks, Outcome, Session
from xenstored.state import State

log = logging.getLogger(__name__)

CONTROL_HELP = """check: check the daemon answers
help: this text
print <text>: write text to the daemon's log
quota: show the quotas
quota <name> <value>: change a quota
flush: commit queued changes now
status: the journal's health (journal ok|failing, commits, failures, pending, reason)
rings: each domain's ring: its four indexes, responses held back, whether reading is paused
"""


def _privileged(session: Session, what: str) -> None:
    if not session.caller.privileged:
        raise AccessDenied(f"{what} needs a privileged domain")


def _domid_argument(packet: Packet) -> int:
    """The one argument of a request that names a domain: its domain id."""
    (raw,) = strings(packet.payload, 1)
    return decimal(raw, "domain id", DOMID_MAX)


class AdminRequests:
    """The domain and control requests."""

    def __init__(self, state: State, domains: DomainTable, hooks: DomainHooks) -> None:
        self.state = state
        self.domains = domains
        self.hooks = hooks
        self.flush_now = lambda: None
        self.journal_status: Callable[[], dict[str, str]] = lambda: {"journal": "not running"}
        self.ring_status: Callable[[], list[str]] = list

    def get_domain_path(self, session: Session, packet: Packet) -> Outcome:
        domid = _domid_argument(packet)
        return Outcome(domain_path(domid).encode("ascii") + b"\0")

    def introduce(self, session: Session, packet: Packet) -> Outcome:
        _privileged(session, "INTRODUCE")
        args = string_list(packet.payload)
        if len(args) < 3:
            raise InvalidRequest("INTRODUCE takes a domain id, a frame number and an event channel")
        domid = decimal(args[0], "domain id", DOMID_MAX)
        mfn = decimal(args[1], "frame number", 2**64)
        port = decimal(args[2], "event channel")
        with self.state.lock:
            if self.domains.introduce(domid, mfn, port):
                self.hooks.domain_introduced(domid)
                self.state.watches.fire_special(INTRODUCE_DOMAIN)
        return Outcome(OK)

    def release(self, session: Session, packet: Packet) -> Outcome:
        _privileged(session, "RELEASE")
        domid = _domid_argument(packet)
        with self.state.lock:
            self.domains.release(domid)
            self.hooks.domain_released(domid)
            self.state.watches.fire_special(RELEASE_DOMAIN)
        return Outcome(OK)

    def is_domain_introduced(self, session: Session, packet: Packet) -> Outcome:
        _privileged(session, "IS_DOMAIN_INTRODUCED")
        domid = _domid_argument(packet)
        return Outcome(b"T\0" if domid in self.domains else b"F\0")

    def resume(self, session: Session, packet: Packet) -> Outcome:
        _privileged(session, "RESUME")
        self.domains.get(_domid_argument(packet)).shutdown = False
        return Outcome(OK)

    def set_target(self, session: Session, packet: Packet) -> Outcome:
        _privileged(session, "SET_TARGET")
        raw_domid, raw_target = strings(packet.payload, 2)
        domid = decimal(raw_domid, "domain id", DOMID_MAX)
        target = decimal(raw_target, "target domain id", DOMID_MAX)
        domain = self.domains.get(domid)
        self.domains.get(target)
        domain.target = target
        self.hooks.domain_retargeted(domid, target)
        return Outcome(OK)

    def control(self, session: Session, packet: Packet) -> Outcome:
        _privileged(session, "CONTROL")
        args = [arg.decode("ascii", "replace") for arg in string_list(packet.payload)]
        command, rest = args[0], [a for a in args[1:] if a]
        if command == "check":
            return Outcome(OK)
        if command == "help":
            return Outcome(CONTROL_HELP.encode("ascii") + b"\0")
        if command == "print":
            log.info("control print: %s", " ".join(rest))
            return Outcome(OK)
        if command == "status":
            report = "".join(f"{name} {value}\n" for name, value in self.journal_status().items())
            return Outcome(report.encode("utf-8", "replace") + b"\0")
        if command == "rings":
            report = "".join(f"{line}\n" for line in self.ring_status())
            return Outcome(report.encode("utf-8", "replace") + b"\0")
        if command == "flush":
            self.flush_now()
            return Outcome(OK)
        if command == "quota":
            quotas = self.state.quotas
            if not rest:
                return Outcome(quotas.describe().encode("ascii") + b"\0")
            if len(rest) != 2 or not rest[1].isdigit():
                raise InvalidRequest("usage: quota <name> <value>")
            try:
                quotas.set(rest[0], int(rest[1]))
            except KeyError:
                raise InvalidRequest(f"no quota named {rest[0]!r}") from None
            return Outcome(OK)
        raise InvalidRequest(f"unknown control command {command[:32]!r} (try help)")
