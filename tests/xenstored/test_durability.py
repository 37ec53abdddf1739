"""Durable mode, restarts, and the repository as plain git sees it."""

from __future__ import annotations

import os

from tests.conftest import git
from tests.xenstored.conftest import finish, start_daemon, wait_for_log


class TestDurableMode:
    def test_a_reply_means_the_change_is_committed(self, durable_daemon):
        for n in range(5):
            durable_daemon.run("xenstore-write", f"/durable/n{n}", str(n))
            # No waiting: the reply itself promises the commit.
            assert git(durable_daemon.repo, "show", f"main:durable/n{n}/.value") == str(n)

    def test_a_transaction_reply_means_its_merge_is_committed(self, durable_daemon):
        durable_daemon.run("xenstore-write", "/durable/a", "1", "/durable/b", "2")  # one transaction
        assert git(durable_daemon.repo, "show", "main:durable/b/.value") == "2"
        assert "transaction" in git(durable_daemon.repo, "log", "-1", "--format=%s", "main")


class TestRestart:
    def test_state_survives_a_restart_of_the_daemon(self, tmp_path):
        first = start_daemon(str(tmp_path / "one"))
        first.run("xenstore-write", "/persist/value", "kept")
        first.run("xenstore-chmod", "/persist/value", "b2", "r0")
        finish(first)  # SIGTERM: the journal commits what is queued before exiting
        second = start_daemon(str(tmp_path / "two"), repo=first.repo)
        try:
            assert second.run("xenstore-read", "/persist/value").stdout.strip() == "kept"
            assert "(b2,r0)" in second.run("xenstore-ls", "-p", "/persist").stdout
        finally:
            finish(second)

    def test_the_history_reads_with_plain_git(self, daemon):
        daemon.run("xenstore-write", "/history/x", "1")
        daemon.run("xenstore-rm", "/history/x")
        log = wait_for_log(daemon.repo, "rm /history/x")
        # Requests that arrive together share a commit, which lists each with its author.
        assert "initialise the store layout" in log
        assert "write /history/x = 1" in log
        tree = git(daemon.repo, "ls-tree", "--name-only", "main")
        assert tree.split() == [
            ".perms",
            ".value",
            "@introduceDomain",
            "@releaseDomain",
            "history",
            "local",
            "tool",
        ]
        assert os.path.isdir(daemon.repo)
