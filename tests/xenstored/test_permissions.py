"""Permissions and quotas, proven with connections speaking as different domains (their sockets appear
once dom0 introduces the domain)."""

from __future__ import annotations

import pytest

from tests.xenstored.wire import error_name
from xenstored.protocol import Op


@pytest.fixture
def guests(daemon):
    """dom3 and dom5, introduced, each with a home it owns (as a toolstack sets up)."""
    with daemon.wire(daemon.introduce(3)) as dom3, daemon.wire(daemon.introduce(5)) as dom5:
        yield dom3, dom5


class TestDomains:
    def test_a_domain_reads_and_writes_its_own_home_relatively(self, guests):
        dom3, _ = guests
        assert dom3.write("data/key", "secret").payload == b"OK\0"
        assert dom3.call(Op.READ, "/local/domain/3/data/key").payload == b"secret"
        assert dom3.call(Op.GET_PERMS, "data/key").payload == b"n3\0"

    def test_one_domain_cannot_read_or_write_another_domains_nodes(self, guests):
        dom3, dom5 = guests
        dom3.write("data/key", "secret")
        assert error_name(dom5.call(Op.READ, "/local/domain/3/data/key")) == "EACCES"
        assert error_name(dom5.call(Op.DIRECTORY, "/local/domain/3")) == "EACCES"
        assert error_name(dom5.write("/local/domain/3/data/key", "stolen")) == "EACCES"
        assert error_name(dom5.write("/local/domain/3/new", "x")) == "EACCES"
        assert error_name(dom5.call(Op.RM, "/local/domain/3/data")) == "EACCES"
        assert dom3.call(Op.READ, "data/key").payload == b"secret"

    def test_guests_cannot_read_or_change_the_special_nodes_but_still_watch_them(self, guests, daemon):
        # /@introduceDomain and /@releaseDomain are n0 (dom0's, no access for others), as oxenstored
        # reports them: a guest gets EACCES, while its special watches fire as before.
        dom3, _ = guests
        for name in ("@introduceDomain", "/@releaseDomain"):
            assert error_name(dom3.call(Op.READ, name)) == "EACCES"
            assert error_name(dom3.write(name, "x")) == "EACCES"
            assert error_name(dom3.call(Op.RM, name)) == "EACCES"
            assert error_name(dom3.call(Op.SET_PERMS, name, "b3")) == "EACCES"
        assert dom3.call(Op.WATCH, "@introduceDomain", "intro").payload == b"OK\0"
        assert dom3.event().payload == b"@introduceDomain\0intro\0"
        daemon.introduce(7)
        assert dom3.event().payload == b"@introduceDomain\0intro\0"
        with daemon.wire() as dom0:
            assert dom0.call(Op.READ, "@introduceDomain").payload == b""

    def test_granting_read_lets_the_other_domain_read_but_not_write(self, guests):
        dom3, dom5 = guests
        dom3.write("shared", "hello")
        dom3.call(Op.SET_PERMS, "shared", "n3", "r5")
        assert dom5.call(Op.READ, "/local/domain/3/shared").payload == b"hello"
        assert error_name(dom5.write("/local/domain/3/shared", "x")) == "EACCES"

    def test_an_unprivileged_domain_cannot_give_its_node_away_or_run_admin_requests(self, guests):
        dom3, _ = guests
        dom3.write("mine", "1")
        assert error_name(dom3.call(Op.SET_PERMS, "mine", "b5")) == "EPERM"
        assert error_name(dom3.call(Op.INTRODUCE, "9", "1", "1")) == "EACCES"
        assert error_name(dom3.call(Op.CONTROL, "check")) == "EACCES"

    def test_watch_events_only_tell_a_domain_about_nodes_it_may_read(self, daemon, guests):
        dom3, dom5 = guests
        dom5.call(Op.WATCH, "/local/domain", "all")
        dom5.event()
        dom3.write("private", "p")
        dom5.write("own", "o")
        assert dom5.event().payload == b"/local/domain/5/own\0all\0"
        dom5.call(Op.READ, "own")
        assert dom5.events == []

    def test_set_target_gives_a_device_model_its_targets_access(self, daemon, guests):
        dom3, dom5 = guests
        dom3.write("for-dm", "x")
        with daemon.wire() as dom0:
            assert dom0.call(Op.SET_TARGET, "5", "3").payload == b"OK\0"
        assert dom5.call(Op.READ, "/local/domain/3/for-dm").payload == b"x"

    def test_release_closes_the_domains_connections(self, daemon, guests):
        dom3, _ = guests
        with daemon.wire() as dom0:
            dom0.call(Op.RELEASE, "3")
            assert dom0.call(Op.IS_DOMAIN_INTRODUCED, "3").payload == b"F\0"
        with pytest.raises((ConnectionError, OSError)):
            dom3.call(Op.READ, "data")


class TestQuotas:
    def test_value_size(self, guests):
        dom3, _ = guests
        assert dom3.write("big", b"x" * 2048).payload == b"OK\0"
        assert error_name(dom3.write("big", b"x" * 2049)) == "ENOSPC"

    def test_transactions_per_connection(self, guests):
        dom3, _ = guests
        for _ in range(10):
            dom3.start()
        assert error_name(dom3.call(Op.TRANSACTION_START, "")) == "ENOSPC"

    def test_watches_per_domain(self, guests):
        dom3, _ = guests
        for n in range(128):
            assert dom3.call(Op.WATCH, f"w{n}", "t").payload == b"OK\0"
        assert error_name(dom3.call(Op.WATCH, "w-too-many", "t")) == "E2BIG"

    def test_nodes_per_domain(self, daemon, guests):
        dom3, _ = guests
        with daemon.wire() as dom0:
            assert dom0.call(Op.CONTROL, "quota", "nodes", "20").payload == b"OK\0"
        created = 0
        while True:
            reply = dom3.write(f"n{created}", "v")
            if reply.op == Op.ERROR:
                assert error_name(reply) == "ENOSPC"
                break
            created += 1
            assert created < 100, "the node quota was never enforced"
        assert created == 20 - 1  # the domain owns its home, /local/domain/3, too
        dom3.call(Op.RM, "n0")
        assert dom3.write("again", "v").payload == b"OK\0"

    def test_dom0_is_not_bound_by_the_quotas(self, daemon):
        with daemon.wire() as dom0:
            assert dom0.write("/big", b"x" * 4000).payload == b"OK\0"
            for _ in range(12):
                dom0.start()
