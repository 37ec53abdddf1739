"""Transactions: forks of the state merged back node by node, with C xenstored's EAGAIN rule."""

from __future__ import annotations

import threading
import time

from pyxs import Client

from store import Store
from tests.conftest import git
from tests.xenstored.conftest import wait_for_log
from tests.xenstored.wire import error_name
from xenstored.protocol import Op


class TestMergeRules:
    def test_a_node_read_in_the_transaction_and_changed_since_gives_eagain(self, daemon):
        with daemon.wire() as a, daemon.wire() as b:
            a.write("/t/x", "1")
            tx = a.start()
            assert a.call(Op.READ, "/t/x", tx_id=tx).payload == b"1"
            b.write("/t/x", "2")
            a.write("/t/y", "from-tx", tx_id=tx)
            assert error_name(a.end(tx)) == "EAGAIN"
            assert a.call(Op.READ, "/t/x").payload == b"2"
            assert error_name(a.call(Op.READ, "/t/y")) == "ENOENT"
        # Each EAGAIN is logged: the boot storm on real Xen (make xen-e2e) counts the lines.
        assert "EAGAIN: TRANSACTION_END from dom0" in daemon.log()

    def test_a_listing_read_in_the_transaction_conflicts_with_a_new_child(self, daemon):
        with daemon.wire() as a, daemon.wire() as b:
            a.write("/t/dir/one", "1")
            tx = a.start()
            a.call(Op.DIRECTORY, "/t/dir", tx_id=tx)
            b.write("/t/dir/two", "2")
            a.write("/t/dir/count", "1", tx_id=tx)
            assert error_name(a.end(tx)) == "EAGAIN"

    def test_writes_to_disjoint_nodes_never_conflict(self, daemon):
        with daemon.wire() as a, daemon.wire() as b:
            a.write("/vm/a/name", "a")
            tx_a, tx_b = a.start(), b.start()
            a.call(Op.READ, "/vm/a/name", tx_id=tx_a)
            a.write("/vm/a/state", "running", tx_id=tx_a)
            b.write("/vm/b/state", "running", tx_id=tx_b)
            b.write("/local/domain/9/name", "b", tx_id=tx_b)
            assert b.end(tx_b).op == Op.TRANSACTION_END
            assert a.end(tx_a).op == Op.TRANSACTION_END
            assert a.call(Op.DIRECTORY, "/vm").payload == b"a\0b\0"
            assert a.call(Op.READ, "/local/domain/9/name").payload == b"b"

    def test_identical_writes_merge(self, daemon):
        with daemon.wire() as a, daemon.wire() as b:
            tx_a, tx_b = a.start(), b.start()
            a.write("/same/node", "v", tx_id=tx_a)
            b.write("/same/node", "v", tx_id=tx_b)
            assert a.end(tx_a).op == Op.TRANSACTION_END
            assert b.end(tx_b).op == Op.TRANSACTION_END
            assert a.call(Op.READ, "/same/node").payload == b"v"

    def test_a_node_only_written_goes_to_the_last_writer(self, daemon):
        with daemon.wire() as a, daemon.wire() as b:
            tx = a.start()
            a.write("/lww", "tx", tx_id=tx)
            b.write("/lww", "outside")
            assert a.end(tx).op == Op.TRANSACTION_END
            assert b.call(Op.READ, "/lww").payload == b"tx"

    def test_the_transaction_sees_its_snapshot_and_its_own_writes(self, daemon):
        with daemon.wire() as a, daemon.wire() as b:
            a.write("/snap", "old")
            tx = a.start()
            b.write("/snap", "new")
            assert a.call(Op.READ, "/snap", tx_id=tx).payload == b"old"
            a.write("/mine", "m", tx_id=tx)
            assert a.call(Op.READ, "/mine", tx_id=tx).payload == b"m"
            assert error_name(b.call(Op.READ, "/mine")) == "ENOENT"
            assert a.end(tx, commit=False).op == Op.TRANSACTION_END
            assert error_name(b.call(Op.READ, "/mine")) == "ENOENT"

    def test_removing_a_subtree_that_changed_since_gives_eagain(self, daemon):
        with daemon.wire() as a, daemon.wire() as b:
            a.write("/gone/x", "1")
            tx = a.start()
            a.call(Op.RM, "/gone", tx_id=tx)
            b.write("/gone/y", "2")
            assert error_name(a.end(tx)) == "EAGAIN"
            assert a.call(Op.DIRECTORY, "/gone").payload == b"x\0y\0"

    def test_a_merged_transaction_is_one_commit_naming_its_author(self, daemon):
        with daemon.wire() as a:
            tx = a.start()
            a.write("/local/domain/3/name", "guest", tx_id=tx)
            a.write("/vm/u1/name", "guest", tx_id=tx)
            a.end(tx)
        message = wait_for_log(daemon.repo, "transaction ")
        assert "dom0|transaction " in message
        assert "write /local/domain/3/name = guest" in message
        assert "write /vm/u1/name = guest" in message


class TestTransactionsAreBranches:
    def test_a_transaction_lands_as_its_own_commit_merged_into_main(self, daemon):
        with daemon.wire() as a:
            a.write("/before", "0")
            tx = a.start()
            a.write("/vm/u2/name", "web", tx_id=tx)
            a.write("/local/domain/4/name", "web", tx_id=tx)
            a.end(tx)
        wait_for_log(daemon.repo, "merge transaction")
        merge = git(daemon.repo, "log", "-1", "--format=%H %P|%an|%s", "--grep=^merge transaction", "main")
        merge = merge.strip()
        ids, author, subject = merge.split("|")
        _, first, second = ids.split()
        assert author == "dom0"
        assert subject.startswith("merge transaction ")
        # The second parent is the transaction's own commit, forked from the state it started on.
        own = git(daemon.repo, "log", "-1", "--format=%s%n%b", second)
        assert "write /vm/u2/name = web" in own and "write /local/domain/4/name = web" in own
        fork = git(daemon.repo, "rev-parse", f"{second}^").strip()
        assert git(daemon.repo, "show", f"{fork}:before/.value") == "0"
        assert "u2" not in git(daemon.repo, "ls-tree", "--name-only", f"{fork}:vm", check=False).split()
        assert git(daemon.repo, "show", f"{second}:vm/u2/name/.value") == "web"
        assert git(daemon.repo, "merge-base", "--is-ancestor", fork, first, check=False) == ""
        assert git(daemon.repo, "show", "main:local/domain/4/name/.value") == "web"

    def test_concurrent_transactions_merge_as_branches_of_the_same_fork(self, daemon):
        with daemon.wire() as a, daemon.wire() as b:
            tx_a, tx_b = a.start(), b.start()
            a.write("/left/x", "1", tx_id=tx_a)
            b.write("/right/y", "2", tx_id=tx_b)
            a.end(tx_a)
            b.end(tx_b)
        log = wait_for_log(daemon.repo, "merge transaction", fmt="%s")
        assert log.count("merge transaction") == 2
        merges = git(daemon.repo, "rev-list", "--merges", "main").split()
        forks = {git(daemon.repo, "rev-parse", f"{merge}^2^").strip() for merge in merges}
        assert len(forks) == 1  # both forked from one state: two branches, merged one after the other
        assert git(daemon.repo, "show", "main:left/x/.value") == "1"
        assert git(daemon.repo, "show", "main:right/y/.value") == "2"
        assert git(daemon.repo, "fsck", "--full", "--strict").strip() == ""


class TestConcurrency:
    def test_parallel_read_modify_write_on_disjoint_keys_never_gets_eagain(self, daemon):
        eagain = []

        def worker(n: int) -> None:
            with Client(unix_socket_path=daemon.socket) as client:
                path = f"/rmw/{n}".encode()
                client.write(path, b"0")
                for _ in range(30):
                    client.transaction()
                    value = int(client.read(path))
                    client.write(path, str(value + 1).encode())
                    if not client.commit():
                        eagain.append(n)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert eagain == []
        with Client(unix_socket_path=daemon.socket) as client:
            assert [client.read(f"/rmw/{n}".encode()) for n in range(6)] == [b"30"] * 6

    def test_parallel_increments_of_one_counter_lose_no_update(self, daemon):
        with Client(unix_socket_path=daemon.socket) as client:
            client.write(b"/counter", b"0")
        retries = []

        def worker() -> None:
            with Client(unix_socket_path=daemon.socket) as client:
                done = 0
                while done < 25:
                    client.transaction()
                    value = int(client.read(b"/counter"))
                    client.write(b"/counter", str(value + 1).encode())
                    if client.commit():
                        done += 1
                    else:
                        retries.append(1)

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        with Client(unix_socket_path=daemon.socket) as client:
            assert client.read(b"/counter") == b"100"


class TestOtherWriters:
    def test_a_transaction_open_across_another_writers_commit_merges_with_it(self, daemon):
        with daemon.wire() as a:
            a.write("/mine/a", "1")
            a.call(Op.CONTROL, "flush")
            wait_for_log(daemon.repo, "write /mine/a = 1")
            tx = a.start()
            a.write("/mine/t", "in-tx", tx_id=tx)
            store = Store.open(daemon.repo, create=False)
            try:
                with store.branch("main").transaction("external edit", "toolstack") as external:
                    external.set("ext/.value", b"e")
            finally:
                store.close()
            deadline = time.monotonic() + 10
            while a.call(Op.READ, "/ext").payload != b"e":
                assert time.monotonic() < deadline, "the daemon never saw the other writer's commit"
                time.sleep(0.02)
            a.write("/mine/b", "2")
            a.end(tx)
            a.call(Op.CONTROL, "flush")
        wait_for_log(daemon.repo, "merge transaction")
        for path, value in [("ext", "e"), ("mine/t", "in-tx"), ("mine/b", "2"), ("mine/a", "1")]:
            assert git(daemon.repo, "show", f"main:{path}/.value") == value
        merge = git(daemon.repo, "log", "-1", "--format=%H", "--grep=^merge transaction", "main").strip()
        fork = git(daemon.repo, "rev-parse", f"{merge}^2^").strip()
        # The transaction forked before the other writer's commit: its branch starts from there.
        assert "ext" not in git(daemon.repo, "ls-tree", "--name-only", fork).split()
        assert "external edit" in git(daemon.repo, "log", "--format=%s", "main")
        assert git(daemon.repo, "fsck", "--full", "--strict").strip() == ""
