"""Deep, long and wide paths: whatever shape a client gives the tree, every accepted change is committed.

A path of 600 components is 1,200 characters: under the 3,072-byte limit and, for a guest, inside its
1,000-node quota. Once such a node existed, every later commit used to fail with RecursionError, and every
later change was acknowledged and then lost.
"""

from __future__ import annotations

from tests.conftest import git
from tests.xenstored.conftest import finish, start_daemon, wait_for_log
from tests.xenstored.wire import error_name
from xenstored.protocol import Op

DEEP = 600  # components: the reproducer


def deep(components: int, prefix: str = "", name: str = "e") -> str:
    return prefix + "/" + "/".join([name] * components)


def git_path(path: str) -> str:
    """A node's value blob, as ``git show`` names it."""
    return f"main:{path.lstrip('/')}/.value"


class TestDeepPathsAreCommitted:
    def test_a_write_600_components_deep_does_not_stop_later_commits(self, daemon):
        path = deep(DEEP)
        with daemon.wire() as dom0:
            assert dom0.write(path, "bottom").payload == b"OK\0"
            assert dom0.write("/after", "1").payload == b"OK\0"
        wait_for_log(daemon.repo, "write /after")
        assert git(daemon.repo, "show", "main:after/.value") == "1"
        assert git(daemon.repo, "show", git_path(path)) == "bottom"

    def test_in_durable_mode_the_deep_write_and_the_next_are_answered_once_committed(self, durable_daemon):
        path = deep(DEEP)
        with durable_daemon.wire(timeout=30) as dom0:
            assert dom0.write(path, "bottom").payload == b"OK\0"
            assert git(durable_daemon.repo, "show", git_path(path)) == "bottom"
            assert dom0.write("/after", "1").payload == b"OK\0"
            assert git(durable_daemon.repo, "show", "main:after/.value") == "1"

    def test_the_deepest_path_the_protocol_allows_is_committed(self, durable_daemon):
        # 3,072 bytes: 1,536 components of one letter, the deepest absolute path there is.
        path = deep(1536)
        assert len(path) == 3072
        with durable_daemon.wire(timeout=60) as dom0:
            assert dom0.write(path, "x").payload == b"OK\0"
            assert dom0.call(Op.READ, path).payload == b"x"
        assert git(durable_daemon.repo, "show", git_path(path)) == "x"

    def test_a_guest_can_fill_its_home_with_one_deep_path_and_it_is_committed(self, durable_daemon):
        with durable_daemon.wire(durable_daemon.introduce(7), timeout=30) as dom7:
            relative = deep(DEEP)[1:]
            assert dom7.write(relative, "guest").payload == b"OK\0"
        assert git(durable_daemon.repo, "show", git_path(f"/local/domain/7/{relative}")) == "guest"

    def test_a_transaction_that_writes_deep_merges_and_commits(self, durable_daemon):
        path = deep(DEEP, "/tx")
        with durable_daemon.wire(timeout=30) as dom0:
            tx = dom0.start()
            assert dom0.write(path, "in-tx", tx).payload == b"OK\0"
            assert dom0.write("/tx/side", "1").payload == b"OK\0"  # a concurrent change: a real merge
            assert dom0.end(tx).payload == b"OK\0"
        assert git(durable_daemon.repo, "show", git_path(path)) == "in-tx"
        assert git(durable_daemon.repo, "show", "main:tx/side/.value") == "1"

    def test_removing_a_deep_subtree_is_committed(self, durable_daemon):
        path = deep(DEEP, "/gone")
        with durable_daemon.wire(timeout=30) as dom0:
            dom0.write(path, "x")
            assert dom0.call(Op.RM, "/gone").payload == b"OK\0"
        assert git(durable_daemon.repo, "ls-tree", "main", "gone") == ""

    def test_a_deep_tree_is_loaded_again_after_a_restart(self, tmp_path):
        path = deep(DEEP, "/kept")
        first = start_daemon(str(tmp_path / "one"))
        with first.wire() as dom0:
            dom0.write(path, "still here")
        finish(first)
        second = start_daemon(str(tmp_path / "two"), repo=first.repo)
        try:
            with second.wire() as dom0:
                assert dom0.call(Op.READ, path).payload == b"still here"
                assert dom0.write(path, "changed").payload == b"OK\0"
        finally:
            finish(second)
        assert git(first.repo, "show", git_path(path)) == "changed"


class TestPathMaxQuota:
    """C xenstored's ``path-max`` quota: an unprivileged domain's paths, measured below its home, are at
    most 2,048 bytes (XENSTORE_REL_PATH_MAX); dom0 is held only to the protocol's 3,072."""

    def test_a_guest_path_longer_than_the_quota_below_its_home_is_refused(self, daemon):
        with daemon.wire(daemon.introduce(3)) as dom3:
            at_limit = "a" * 2048
            assert dom3.write(at_limit, "1").payload == b"OK\0"
            too_long = "a/" * 1024 + "b"  # 2,049 bytes
            assert error_name(dom3.write(too_long, "1")) == "EINVAL"
            assert error_name(dom3.write("/local/domain/3/" + too_long, "1")) == "EINVAL"
            assert error_name(dom3.call(Op.WATCH, too_long, "tok")) == "EINVAL"
            assert dom3.call(Op.READ, at_limit).payload == b"1"  # the connection stays usable

    def test_dom0_may_use_the_whole_protocol_limit(self, daemon):
        with daemon.wire() as dom0:
            path = "/" + "a" * 3071
            assert dom0.write(path, "1").payload == b"OK\0"
            assert error_name(dom0.write(path + "b", "1")) == "EINVAL"

    def test_the_quota_can_be_changed_at_run_time(self, daemon):
        with daemon.wire() as dom0:
            assert dom0.call(Op.CONTROL, "quota", "path_max", "100").payload == b"OK\0"
        with daemon.wire(daemon.introduce(4)) as dom4:
            assert dom4.write("a" * 100, "1").payload == b"OK\0"
            assert error_name(dom4.write("a" * 101, "1")) == "EINVAL"
