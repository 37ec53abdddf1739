"""After a domain exception (Xen's VIRQ_DOM_EXC) the daemon asks the hypervisor about every introduced
domain: dead and dying ones are released, shut-down ones marked, and ``@releaseDomain`` fires once."""

from __future__ import annotations

from xenstored import nodes
from xenstored.admin import AdminRequests
from xenstored.dispatch import Dispatcher
from xenstored.domains import DomainTable
from xenstored.perms import Caller
from xenstored.protocol import OK, Op, Packet
from xenstored.quotas import Quotas
from xenstored.requests import NodeRequests
from xenstored.rings import DomainStatus, reap_domains
from xenstored.session import NoHooks, Outcome
from xenstored.state import State


class Dom0:
    caller = Caller(0)

    def __init__(self) -> None:
        self.transactions: dict = {}
        self.events: list[tuple[str, bytes]] = []

    def send_event(self, path: str, token: bytes) -> None:
        self.events.append((path, token))

    def close(self) -> None:
        pass


def daemon_with(*domids: int) -> tuple[AdminRequests, NoHooks, Dom0]:
    state = State(nodes.EMPTY, Quotas())
    hooks = NoHooks()
    admin = AdminRequests(state, DomainTable(), hooks)
    dispatcher = Dispatcher(NodeRequests(state), admin)
    dom0 = Dom0()
    for domid in domids:
        outcome = dispatcher.handle(dom0, Packet(Op.INTRODUCE, 1, 0, f"{domid}\0{domid}\0{domid}\0".encode()))
        assert outcome == Outcome(OK)
    watch = dispatcher.handle(dom0, Packet(Op.WATCH, 2, 0, b"@releaseDomain\0rel\0"))
    assert isinstance(watch, Outcome) and watch.events == (("@releaseDomain", b"rel"),)
    return admin, hooks, dom0


def test_dead_and_dying_domains_are_released_and_release_domain_fires_once():
    admin, hooks, dom0 = daemon_with(1, 2, 3)
    statuses = {1: DomainStatus(dying=True, shutdown=True), 2: None, 3: DomainStatus(False, False)}
    assert reap_domains(admin, statuses.get) == [1, 2]
    assert sorted(admin.domains.domains) == [0, 3]
    assert ("released", 1) in hooks.calls and ("released", 2) in hooks.calls
    assert dom0.events == [("@releaseDomain", b"rel")]


def test_a_shut_down_domain_is_marked_and_announced_once_and_resume_clears_it():
    admin, _, dom0 = daemon_with(4)
    shut_down = {4: DomainStatus(dying=False, shutdown=True)}
    assert reap_domains(admin, shut_down.get) == []
    assert reap_domains(admin, shut_down.get) == []  # the same shutdown again: nothing new to announce
    assert admin.domains.get(4).shutdown
    assert dom0.events == [("@releaseDomain", b"rel")]
    assert admin.resume(dom0, Packet(Op.RESUME, 3, 0, b"4\0")) == Outcome(OK)
    assert not admin.domains.get(4).shutdown


def test_nothing_changed_fires_nothing_and_dom0_is_never_asked_about():
    admin, _, dom0 = daemon_with(5)
    asked: list[int] = []

    def running(domid: int) -> DomainStatus:
        asked.append(domid)
        return DomainStatus(dying=False, shutdown=False)

    assert reap_domains(admin, running) == []
    assert asked == [5]
    assert dom0.events == []
