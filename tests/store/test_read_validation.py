"""Transactions validate what they read (Strategy.TEST_AND_SET, the default): no silent lost updates.

A transaction that read a path another commit changed since its snapshot fails with ReadConflict instead of
merging writes computed from a stale value; ``Branch.atomically`` runs the function again on a fresh
snapshot. Validation is per path read, so transactions on disjoint paths still merge.
"""

from __future__ import annotations

import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from store import JSON, Conflict, ReadConflict, Schema, Store, Strategy, TooManyRetries
from tests.store._worker import in_threads


def _seed(branch, **values: bytes) -> None:
    with branch.transaction(message="seed") as tx:
        for path, value in values.items():
            tx.set(path.replace("__", "/"), value)


def test_two_increments_from_one_snapshot_do_not_both_succeed(store):
    main = store.branch("main")
    _seed(main, x=b"0")
    first = main.transaction(message="x+1 (first)")
    second = main.transaction(message="x+1 (second)")
    for tx in (first, second):
        tx.set("x", str(int(tx.get("x")) + 1).encode())
    first.commit()
    with pytest.raises(ReadConflict) as caught:
        second.commit()
    # The conflict is structured: the path, what the transaction read, what is there now, what it wrote.
    [entry] = caught.value.conflicts
    assert (entry.path, entry.base, entry.ours, entry.theirs) == ("x", b"0", b"1", b"1")
    assert caught.value.branch == "main" and caught.value.attempts == 1
    assert isinstance(caught.value, Conflict)  # callers that handle Conflict handle it too
    assert main.get("x") == b"1"


def test_transactions_that_read_and_write_disjoint_paths_still_merge(store):
    main = store.branch("main")
    _seed(main, vms__a__config=b"1", vms__b__config=b"1")
    on_a = main.transaction(message="a")
    on_b = main.transaction(message="b")
    on_a.set("vms/a/config", on_a.get("vms/a/config") + b"+a")
    on_b.set("vms/b/config", on_b.get("vms/b/config") + b"+b")
    on_a.commit()
    on_b.commit()
    assert main.get("vms/a/config") == b"1+a" and main.get("vms/b/config") == b"1+b"


def test_a_listing_read_depends_on_the_names_not_on_their_contents(store):
    main = store.branch("main")
    _seed(main, vms__a__config=b"1")
    tx = main.transaction(message="count the VMs")
    tx.set("summary", str(len(tx.list("vms"))).encode())
    with main.transaction(message="edit a") as other:
        other.set("vms/a/config", b"2")  # a change inside the listing: the names are the same
    tx.commit()
    assert main.get("summary") == b"1"

    tx = main.transaction(message="count the VMs again")
    tx.set("summary", f"{len(tx.list('vms'))} VMs".encode())
    with main.transaction(message="add b") as other:
        other.set("vms/b/config", b"1")  # a new name: the listing read is stale
    with pytest.raises(ReadConflict) as caught:
        tx.commit()
    assert [c.path for c in caught.value.conflicts] == ["vms"]
    assert main.get("summary") == b"1"


def test_a_walk_or_subtree_read_depends_on_everything_under_it(store):
    main = store.branch("main")
    _seed(main, vms__a__config=b"1", other=b"1")
    for read in (lambda tx: list(tx.walk("vms")), lambda tx: tx.subtree("vms")):
        tx = main.transaction(message="copy vms")
        read(tx)
        tx.set("copy", b"x")
        with main.transaction(message="unrelated") as other:
            other.set("other", other.get("other") + b"+")  # outside what was read: fine
        with main.transaction(message="inside") as other:
            other.set("vms/a/config", other.get("vms/a/config") + b"+")
        with pytest.raises(ReadConflict):
            tx.commit()


def test_an_exists_read_depends_on_what_kind_of_entry_is_there(store):
    main = store.branch("main")
    _seed(main, vms__a__config=b"1")
    tx = main.transaction(message="create b unless it exists")
    if not tx.exists("vms/b"):
        tx.set("vms/b/config", b"mine")
    with main.transaction(message="edit a") as other:
        other.set("vms/a/config", b"2")  # a is still a directory: fine
    tx.commit()
    tx = main.transaction(message="create c unless it exists")
    if not tx.exists("vms/c"):
        tx.set("vms/c/owner", b"mine")
    with main.transaction(message="someone else creates c") as other:
        other.set("vms/c/config", b"theirs")
    with pytest.raises(ReadConflict):
        tx.commit()


def test_a_value_whose_merge_rule_is_a_counter_is_not_a_read_conflict(store):
    store.schema = Schema([("count/*", "counter")])
    main = store.branch("main")
    _seed(main, count__n=b"0")
    first = main.transaction(message="n+1")
    second = main.transaction(message="n+1")
    for tx in (first, second):
        tx.set("count/n", tx.get("count/n", codec=JSON) + 1, codec=JSON)
    first.commit()
    second.commit()  # the counter merge adds both deltas: nothing is lost
    assert main.get("count/n", codec=JSON) == 2


def test_merge_strategy_does_not_validate_reads_and_set_strategy_lets_the_transaction_win(store):
    main = store.branch("main")
    _seed(main, x=b"0")
    merge = main.transaction(message="x+1", strategy=Strategy.MERGE)
    merge.set("x", str(int(merge.get("x")) + 1).encode())
    assert merge.reads == []
    with main.transaction(message="x=1") as other:
        other.set("x", b"1")
    merge.commit()  # the same change on both sides: merged, as documented for MERGE
    assert main.get("x") == b"1"

    blind = main.transaction(message="x=mine", strategy=Strategy.SET)
    blind.set("x", b"mine")
    with main.transaction(message="x=theirs") as other:
        other.set("x", b"theirs")
    blind.commit()  # under the default rule this would conflict; SET: the transaction's value wins
    assert main.get("x") == b"mine"


def test_the_reads_a_transaction_recorded_are_visible(store):
    main = store.branch("main")
    _seed(main, a=b"1")
    with main.transaction(message="reads") as tx:
        tx.get("a")
        tx.list()
        tx.exists("b")
        list(tx.walk("c"))
    assert tx.reads == [("/", "listing"), ("a", "value"), ("b", "kind"), ("c", "tree")]


def test_atomically_runs_the_function_again_on_a_fresh_snapshot(store):
    main = store.branch("main")
    _seed(main, x=b"0")
    runs: list[bytes] = []

    def increment(tx) -> int:
        value = int(tx.get("x"))
        runs.append(tx.get("x"))
        if len(runs) == 1:  # another writer commits while the first run is under way
            with main.transaction(message="meanwhile") as other:
                other.set("x", b"10")
        tx.set("x", str(value + 1).encode())
        return value + 1

    assert main.atomically(increment, message="x+1") == 11
    assert runs == [b"0", b"10"] and main.get("x") == b"11"


def test_atomically_gives_up_after_its_retries_with_a_structured_conflict(store):
    main = store.branch("main")
    _seed(main, x=b"0")
    counter = iter(range(1, 1000))

    def always_raced(tx) -> None:
        tx.get("x")
        with main.transaction(message="meanwhile") as other:
            other.set("x", str(next(counter)).encode())
        tx.set("y", b"1")

    with pytest.raises(ReadConflict) as caught:
        main.atomically(always_raced, message="never", retries=2)
    assert caught.value.attempts == 3 and [c.path for c in caught.value.conflicts] == ["x"]
    assert main.get("y") is None


def test_atomically_writes_nothing_when_the_function_raises(store):
    main = store.branch("main")
    _seed(main, x=b"0")
    head = main.head

    def broken(tx) -> None:
        tx.set("x", b"1")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        main.atomically(broken, message="broken")
    assert main.head == head


def _hammer(store: Store, strategy: Strategy, threads: int, increments: int, atomic: bool) -> dict[str, int]:
    """``threads`` threads each increment "n" ``increments`` times; count acknowledgements and conflicts."""
    main = store.branch("main")
    acked = [0] * threads
    conflicts = [0] * threads
    failures: list[BaseException] = []

    def body(tx) -> None:
        tx.set("n", tx.get("n", codec=JSON) + 1, codec=JSON)

    def run(thread: int) -> None:
        try:
            for _ in range(increments):
                try:
                    if atomic:
                        main.atomically(body, message="n+1", strategy=strategy)
                    else:
                        with main.transaction(message="n+1", strategy=strategy) as tx:
                            body(tx)
                    acked[thread] += 1
                except (Conflict, TooManyRetries):
                    conflicts[thread] += 1
        except BaseException as err:
            failures.append(err)

    in_threads(run, threads)
    assert not failures, failures
    total = main.get("n", codec=JSON)
    return {"acked": sum(acked), "conflicts": sum(conflicts), "total": total, "lost": sum(acked) - total}


def _counter_store(rule: str | None) -> Store:
    store = Store.memory(Schema([("n", rule)]) if rule else None)
    with store.branch("main").transaction(message="seed") as tx:
        tx.set("n", 0, codec=JSON)
    return store


@pytest.mark.native  # threads
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    threads=st.integers(min_value=2, max_value=6),
    increments=st.integers(min_value=1, max_value=15),
    atomic=st.booleans(),
)
def test_concurrent_increments_under_test_and_set_are_exact_or_explicit_conflicts(
    threads, increments, atomic
):
    with _counter_store(None) as store:
        figures = _hammer(store, Strategy.TEST_AND_SET, threads, increments, atomic)
    assert figures["lost"] == 0, figures
    assert figures["acked"] + figures["conflicts"] == threads * increments


@pytest.mark.native  # threads
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    threads=st.integers(min_value=2, max_value=6),
    increments=st.integers(min_value=1, max_value=15),
    strategy=st.sampled_from([Strategy.TEST_AND_SET, Strategy.MERGE]),
)
def test_concurrent_increments_of_a_counter_merge_exactly_without_conflicts(threads, increments, strategy):
    with _counter_store("counter") as store:
        figures = _hammer(store, strategy, threads, increments, atomic=False)
    assert figures == {
        "acked": threads * increments,
        "conflicts": 0,
        "total": threads * increments,
        "lost": 0,
    }


def test_concurrent_increments_on_disk_are_exact(tmp_path):
    with Store.open(tmp_path / "repo") as store:
        with store.branch("main").transaction(message="seed") as tx:
            tx.set("n", 0, codec=JSON)
        figures = _hammer(store, Strategy.TEST_AND_SET, threads=8, increments=10, atomic=True)
    assert figures["lost"] == 0 and figures["acked"] + figures["conflicts"] == 80, figures


@pytest.mark.native  # threads
def test_set_strategy_is_last_writer_wins_and_never_conflicts():
    with _counter_store(None) as store:
        main = store.branch("main")
        errors: list[BaseException] = []

        def write(value: int) -> None:
            try:
                with main.transaction(message=f"n={value}", strategy=Strategy.SET) as tx:
                    tx.set("n", value, codec=JSON)
            except BaseException as err:
                errors.append(err)

        pool = [threading.Thread(target=write, args=(v,)) for v in range(1, 9)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        assert errors == [] and main.get("n", codec=JSON) in range(1, 9)
