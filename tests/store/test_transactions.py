"""Transactions: snapshot, function, compare-and-swap, with 3-way merges and bounded retries."""

from __future__ import annotations

import threading

import pytest

from store import JSON, Conflict, Schema, StoreError, Strategy, TooManyRetries


def test_a_transaction_reads_its_snapshot_and_its_own_writes(store):
    branch = store.branch("main")
    with branch.transaction(message="seed", author="alice") as tx:
        tx.set("a", b"1")
    # MERGE: what it read is not validated, so its writes merge with bob's (see test_read_validation.py for
    # the default, which refuses them since bob changed what it read).
    with branch.transaction(message="edit", author="alice", strategy=Strategy.MERGE) as tx:
        assert tx.get("a") == b"1"
        tx.set("b", b"2")
        assert tx.get("b") == b"2"
        assert tx.list() == ["a", "b"]
        # Another writer moves the branch; the snapshot does not move.
        with branch.transaction(message="meanwhile", author="bob") as other:
            other.set("c", b"3")
        assert tx.get("c") is None
    assert branch.get("c") == b"3" and branch.get("b") == b"2"


def test_an_exception_in_the_block_writes_nothing(store):
    branch = store.branch("main")
    with branch.transaction(message="seed") as tx:
        tx.set("a", b"1")
    head = branch.head
    with pytest.raises(RuntimeError), branch.transaction(message="boom") as tx:
        tx.set("a", b"2")
        raise RuntimeError("abort")
    assert branch.head == head
    assert branch.get("a") == b"1"


def test_no_writes_make_no_commit(store):
    branch = store.branch("main")
    with branch.transaction(message="seed") as tx:
        tx.set("a", b"1")
    head = branch.head
    with branch.transaction(message="nothing") as tx:
        tx.get("a")
    with branch.transaction(message="same value") as tx:
        tx.set("a", b"1")
    assert branch.head == head == tx.commit_id


def test_nothing_intervened_means_a_fast_forward(store):
    branch = store.branch("main")
    with branch.transaction(message="one") as tx:
        tx.set("a", b"1")
    first = tx.commit_id
    with branch.transaction(message="two") as tx:
        tx.set("b", b"2")
    assert store.graph.parents(tx.commit_id) == (first,)
    assert tx.commit_id == tx.own_commit


def test_a_moved_branch_gets_a_two_parent_merge_commit(store):
    branch = store.branch("main")
    with branch.transaction(message="seed") as tx:
        tx.set("a", b"0")
    outer = branch.transaction(message="outer")
    outer.set("x", b"1")
    with branch.transaction(message="inner") as inner:
        inner.set("y", b"2")
    outer.commit()
    parents = store.graph.parents(outer.commit_id)
    assert parents == (inner.commit_id, outer.own_commit)
    assert store.graph.parents(outer.own_commit) == (outer.base,)
    assert branch.get("x") == b"1" and branch.get("y") == b"2"
    assert store.graph.info(outer.commit_id).message.startswith("Merge: outer")


def test_a_conflict_lists_every_conflicting_path_and_writes_nothing(store):
    branch = store.branch("main")
    with branch.transaction(message="seed") as tx:
        tx.set("a", b"0")
        tx.set("b", b"0")
    slow = branch.transaction(message="slow")
    slow.set("a", b"slow")
    slow.set("b", b"slow")
    with branch.transaction(message="fast") as fast:
        fast.set("a", b"fast")
        fast.set("b", b"fast")
    head = branch.head
    with pytest.raises(Conflict) as err:
        slow.commit()
    entries = sorted(tuple(c) for c in err.value.conflicts)
    assert entries == [
        ("a", "changed on both sides", b"0", b"fast", b"slow"),
        ("b", "changed on both sides", b"0", b"fast", b"slow"),
    ]
    assert branch.head == head


def test_json_paths_merge_by_field(store):
    store.schema.add("vms/*/config", "json_object")
    branch = store.branch("main")
    with branch.transaction(message="create") as tx:
        tx.set("vms/a/config", {"memory": 512, "vcpus": 1}, codec=JSON)
    one = branch.transaction(message="memory")
    two = branch.transaction(message="vcpus")
    one.set("vms/a/config", {"memory": 1024, "vcpus": 1}, codec=JSON)
    two.set("vms/a/config", {"memory": 512, "vcpus": 4}, codec=JSON)
    one.commit()
    two.commit()
    assert branch.get("vms/a/config", codec=JSON) == {"memory": 1024, "vcpus": 4}


def test_retries_are_bounded(store, mocker):
    branch = store.branch("main")
    with branch.transaction(message="seed") as tx:
        tx.set("a", b"0")
    cas = mocker.patch.object(store.backend, "compare_and_swap", return_value=False)
    with pytest.raises(TooManyRetries) as err, branch.transaction(message="never lands", retries=3) as tx:
        tx.set("a", b"1")
    assert err.value.attempts == 4
    assert cas.call_count == 4


def test_keep_branch_keeps_the_fork_for_git_log_graph(store):
    branch = store.branch("main")
    with branch.transaction(message="seed") as tx:
        tx.set("a", b"0")
    task = branch.transaction(message="task", keep_branch="tasks/1", no_ff=True)
    task.set("b", b"1")
    task.commit()
    assert "tasks/1" in store.branches()
    assert store.branch("tasks/1").head == task.own_commit
    assert store.graph.parents(task.commit_id) == (task.base, task.own_commit)


def test_a_transaction_cannot_be_reused(store):
    branch = store.branch("main")
    with branch.transaction(message="one") as tx:
        tx.set("a", b"1")
    with pytest.raises(StoreError, match="already finished"):
        tx.set("a", b"2")


@pytest.mark.native  # threads
def test_writers_on_disjoint_keys_in_many_threads_never_conflict(store):
    branch = store.branch("main")
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(15):
                with branch.transaction(message=f"w{n} {i}") as tx:
                    tx.set(f"w/{n}/{i}", b"x")
        except BaseException as err:  # collected and asserted below
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(len(branch.list(f"w/{n}")) for n in range(8)) == 120


@pytest.mark.native  # threads
def test_counters_incremented_from_many_threads_lose_nothing(store):
    store.schema.add("count/*", "counter")
    branch = store.branch("main")

    def bump() -> None:
        for _ in range(20):
            with branch.transaction(message="bump") as tx:
                tx.set("count/a", (tx.get("count/a", codec=JSON) or 0) + 1, codec=JSON)

    threads = [threading.Thread(target=bump) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert branch.get("count/a", codec=JSON) == 120


def test_per_transaction_schema_overrides_the_store_schema(store):
    branch = store.branch("main")
    with branch.transaction(message="seed") as tx:
        tx.set("n", b"1")
    a = branch.transaction(message="a", schema=Schema([("n", "counter")]))
    a.set("n", b"2")
    with branch.transaction(message="b") as b:
        b.set("n", b"3")
    a.commit()
    assert branch.get("n", codec=JSON) == 4
