"""Durable mode, restarts, and the repository as plain git sees it."""

from __future__ import annotations

import os
import signal
import threading

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

    def test_every_reply_survives_a_kill_right_after_it(self, tmp_path):
        # Clients write at once, so the journal writes group commits, and each VM gets the same leaves
        # (values and owner): the encoder reuses their ids across batches. The daemon is SIGKILLed as soon
        # as the last reply is in: every change acknowledged must be in git, with every object it names.
        daemon = start_daemon(str(tmp_path / "xs"), "--durable")
        acknowledged: list[tuple[str, str]] = []
        lock = threading.Lock()

        def client(index: int) -> None:
            with daemon.wire() as dom0:
                for step in range(6):
                    for path, value in (
                        (f"/vm/{index}/memory/target", "1048576"),
                        (f"/vm/{index}/state", str(step)),
                        (f"/vm/{index}/step{step}", "1"),
                    ):
                        assert dom0.write(path, value).payload == b"OK\0"
                        with lock:
                            acknowledged.append((path, value))

        threads = [threading.Thread(target=client, args=(index,)) for index in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        daemon.process.send_signal(signal.SIGKILL)
        daemon.process.wait(timeout=30)
        assert len(acknowledged) == 8 * 6 * 3
        latest = dict(acknowledged)  # each client's own writes are acknowledged in order
        for path, value in latest.items():
            assert git(daemon.repo, "show", f"main:{path.lstrip('/')}/.value") == value
        assert git(daemon.repo, "fsck", "--full", "--strict").strip() == ""


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
