"""Xen's own clients against the daemon: xenstore-utils (libxenstore), pyxs and test-xenstore."""

from __future__ import annotations

import subprocess

import pytest
from pyxs import Client
from pyxs._internal import Op
from pyxs.exceptions import PyXSError

from tests.conftest import git
from tests.xenstored.conftest import CLIENT_TIMEOUT, require_tool, wait_for_log

TEST_XENSTORE = "/usr/lib/xen-4.17/bin/test-xenstore"
TESTS = [
    "read 1",
    "read 2000",
    "write 1",
    "write 2000",
    "dir",
    "rm node",
    "rm dir",
    "ta empty",
    "ta empty x",
    "ta rmw",
    "ta rmw x",
    "ta err",
]


class TestXenstoreUtils:
    def test_write_then_read_one_and_several_paths(self, shared_daemon):
        shared_daemon.run("xenstore-write", "/utils/a", "hello", "/utils/b/c", "42")
        out = shared_daemon.run("xenstore-read", "/utils/a", "/utils/b/c").stdout
        assert out.splitlines() == ["hello", "42"]

    def test_read_of_a_missing_node_fails(self, shared_daemon):
        result = shared_daemon.run("xenstore-read", "/utils/missing", check=False)
        assert result.returncode == 1
        assert "couldn't read path" in result.stderr

    def test_exists_and_list(self, shared_daemon):
        shared_daemon.run("xenstore-write", "/utils/list/x", "1", "/utils/list/y", "2")
        assert shared_daemon.run("xenstore-exists", "/utils/list/x", check=False).returncode == 0
        assert shared_daemon.run("xenstore-exists", "/utils/list/zz", check=False).returncode == 1
        assert shared_daemon.run("xenstore-list", "/utils/list").stdout.split() == ["x", "y"]

    def test_ls_shows_values_children_and_permissions(self, shared_daemon):
        shared_daemon.run("xenstore-write", "/utils/ls/k", "v")
        shared_daemon.run("xenstore-chmod", "/utils/ls/k", "b3", "r0")
        out = shared_daemon.run("xenstore-ls", "-p", "/utils/ls").stdout
        assert out.startswith('k = "v"')
        assert out.rstrip().endswith("(b3,r0)")

    def test_rm_with_t_removes_emptied_parents(self, shared_daemon):
        shared_daemon.run("xenstore-write", "/utils/rm/deep/er/node", "x", "/utils/rm/keep", "k")
        shared_daemon.run("xenstore-rm", "-t", "/utils/rm/deep/er/node")
        assert shared_daemon.run("xenstore-list", "/utils/rm").stdout.split() == ["keep"]
        shared_daemon.run("xenstore-rm", "/utils/rm")
        assert shared_daemon.run("xenstore-exists", "/utils/rm", check=False).returncode == 1

    def test_relative_paths_resolve_under_the_domain_home(self, shared_daemon):
        shared_daemon.run("xenstore-write", "relative/node", "r")
        assert shared_daemon.run("xenstore-read", "/local/domain/0/relative/node").stdout.strip() == "r"

    def test_watch_prints_the_initial_event_then_changes(self, shared_daemon):
        shared_daemon.run("xenstore-write", "/utils/watched", "0")
        watcher = subprocess.Popen(
            [
                "timeout",
                CLIENT_TIMEOUT,
                require_tool("xenstore-watch", "xenstore-utils"),
                "-n",
                "3",
                "/utils/watched",
            ],
            env=shared_daemon.env(),
            stdout=subprocess.PIPE,
            text=True,
        )
        assert watcher.stdout is not None
        assert watcher.stdout.readline().strip() == "/utils/watched"  # fires once on registration
        shared_daemon.run("xenstore-write", "/utils/watched/child", "1")
        shared_daemon.run("xenstore-write", "/utils/watched", "2")
        rest = watcher.communicate(timeout=30)[0].split()
        assert watcher.returncode == 0
        assert rest == ["/utils/watched/child", "/utils/watched"]


class TestTestXenstore:
    def test_every_conformance_test_passes(self, shared_daemon):
        require_tool("test-xenstore", "xen-utils-4.17")
        result = subprocess.run(
            ["timeout", "120", TEST_XENSTORE, "-i", "3"],
            env=shared_daemon.env(),
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        lines = {line.split(":")[0].strip(): line for line in result.stdout.splitlines() if ":" in line}
        for name in TESTS:
            assert name in lines and "failed" not in lines[name], result.stdout
        assert "Exhaustive transaction retries" not in result.stdout


class TestPyxs:
    @pytest.fixture
    def client(self, shared_daemon):
        with Client(unix_socket_path=shared_daemon.socket) as client:
            yield client

    def test_read_write_list_exists_delete(self, client):
        client.write(b"/pyxs/node", b"value")
        client.mkdir(b"/pyxs/empty")
        assert client.read(b"/pyxs/node") == b"value"
        assert client.read(b"/pyxs/empty") == b""
        assert sorted(client.list(b"/pyxs")) == [b"empty", b"node"]
        assert client.exists(b"/pyxs/node")
        client.delete(b"/pyxs/node")
        assert not client.exists(b"/pyxs/node")
        with pytest.raises(PyXSError) as err:
            client.read(b"/pyxs/node")
        assert err.value.args[0] == 2  # ENOENT

    def test_permissions_round_trip(self, client):
        client.write(b"/pyxs/perm", b"p")
        assert client.get_perms(b"/pyxs/perm") == [b"n0"]
        client.set_perms(b"/pyxs/perm", [b"b5", b"r7", b"w9"])
        assert client.get_perms(b"/pyxs/perm") == [b"b5", b"r7", b"w9"]

    def test_domain_requests(self, client):
        assert client.get_domain_path(7) == b"/local/domain/7"
        assert client.is_domain_introduced(0)
        assert not client.is_domain_introduced(42)
        client.introduce_domain(42, 1234, 5)
        assert client.is_domain_introduced(42)
        # pyxs refuses RESUME and RELEASE client-side unless it runs as the superuser of a real dom0: send the
        # same packets through its generic path.
        client.ack(Op.RESUME, b"42\0")
        client.ack(Op.RELEASE, b"42\0")
        assert not client.is_domain_introduced(42)

    def test_transaction_commits_and_rolls_back(self, client):
        client.transaction()
        client.write(b"/pyxs/tx/a", b"1")
        assert client.commit()
        assert client.read(b"/pyxs/tx/a") == b"1"
        client.transaction()
        client.write(b"/pyxs/tx/a", b"2")
        client.rollback()
        assert client.read(b"/pyxs/tx/a") == b"1"

    def test_monitor_receives_events_with_the_token(self, client, shared_daemon):
        with Client(unix_socket_path=shared_daemon.socket) as other:
            monitor = client.monitor()
            monitor.watch(b"/pyxs/mon", b"my-token")
            events = monitor.wait()
            assert next(events) == (b"/pyxs/mon", b"my-token")
            other.write(b"/pyxs/mon/x", b"1")
            assert next(events) == (b"/pyxs/mon/x", b"my-token")
            monitor.unwatch(b"/pyxs/mon", b"my-token")


class TestHistory:
    def test_commits_say_who_and_what(self, daemon):
        daemon.run("xenstore-write", "/local/domain/3/device/vif/0/state", "4")
        log = wait_for_log(daemon.repo, "write /local/domain/3/device/vif/0/state = 4", fmt="%an|%s")
        assert "dom0|write /local/domain/3/device/vif/0/state = 4" in log.splitlines()
        assert git(daemon.repo, "show", "main:local/domain/3/device/vif/0/state/.value") == "4"
        assert git(daemon.repo, "show", "main:local/domain/3/device/vif/0/state/.perms") == "n0\n"
