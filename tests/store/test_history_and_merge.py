"""History (log, diff, per-key history, revert) and branch merges, criss-cross included."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from store import JSON, Conflict, HistoryLost, Tree


def commit(branch, changes, message="change", author="tester"):
    with branch.transaction(message=message, author=author) as tx:
        for path, value in changes.items():
            if value is None:
                tx.remove(path)
            else:
                tx.set(path, value)
    return tx.commit_id


def test_log_lists_commits_newest_first_with_the_paths_each_changed(store):
    main = store.branch("main")
    c1 = commit(main, {"vms/a/config": b"1", "vms/b/config": b"1"}, "create a and b")
    c2 = commit(main, {"vms/a/config": b"2"}, "edit a")
    c3 = commit(main, {"vms/b/config": None}, "delete b")
    log = main.log()
    assert [e.id for e in log] == [c3, c2, c1]
    assert [e.paths for e in log] == [["vms/b/config"], ["vms/a/config"], ["vms/a/config", "vms/b/config"]]
    assert log[1].message == "edit a\n"
    assert main.log(limit=2)[-1].id == c2
    assert [e.id for e in main.log(path="vms/b")] == [c3, c1]
    assert [e.id for e in main.log(path="vms/a/config")] == [c2, c1]


def test_history_of_one_key_with_its_values(store):
    main = store.branch("main")
    c1 = commit(main, {"k": b"1"})
    commit(main, {"other": b"x"})
    c3 = commit(main, {"k": b"2"})
    c4 = commit(main, {"k": None})
    history = main.history("k")
    assert [(h.id, h.value) for h in history] == [(c4, None), (c3, b"2"), (c1, b"1")]


def test_history_follows_merges_that_brought_a_change(store):
    main = store.branch("main")
    commit(main, {"k": b"0", "j": b"0"})
    side_tx = main.transaction(message="side")
    side_tx.set("k", b"side")
    commit(main, {"j": b"main"})
    side_tx.commit()
    # The key was changed by the transaction's own commit, which the merge brought in.
    assert next(h.id for h in main.history("k")) == side_tx.own_commit


def test_diff_between_commits(store):
    main = store.branch("main")
    c1 = commit(main, {"a": b"1", "b": b"1"})
    c2 = commit(main, {"a": b"2", "b": None, "c": b"3"})
    diff = store.diff(c1, c2)
    assert [(c.path, c.old, c.new) for c in diff.changed] == [("a", b"1", b"2")]
    assert [(c.path, c.old) for c in diff.removed] == [("b", b"1")]
    assert [(c.path, c.new) for c in diff.added] == [("c", b"3")]


def test_revert_to_is_a_forward_commit_whole_or_by_path(store):
    main = store.branch("main")
    c1 = commit(main, {"vms/a/config": b"1", "vms/b/config": b"1"})
    c2 = commit(main, {"vms/a/config": b"2", "vms/b/config": b"2", "vms/c/config": b"2"})
    only_a = main.revert_to(c1, paths=["vms/a"], message="roll a back")
    assert store.graph.parents(only_a) == (c2,)
    assert main.get("vms/a/config") == b"1" and main.get("vms/b/config") == b"2"
    whole = main.revert_to(c1)
    assert main.tree == store.tree_at(c1)
    assert [e.id for e in main.log()][:3] == [whole, only_a, c2]  # history is never rewritten


def test_merging_branches_at_their_common_ancestor(store):
    store.schema.add("vms/*/config", "json_object")
    main = store.branch("main")
    commit(main, {"vms/a/config": JSON.encode({"memory": 1, "vcpus": 1})})
    store.fork("feature", "main")
    feature = store.branch("feature")
    commit(feature, {"vms/a/config": JSON.encode({"memory": 2, "vcpus": 1})})
    main_before = commit(main, {"vms/a/config": JSON.encode({"memory": 1, "vcpus": 2})})
    merged = store.merge("feature", into="main", author="merger")
    assert store.graph.parents(merged) == (main_before, feature.head)
    assert store.graph.info(merged).author.startswith("merger <")
    assert main.get("vms/a/config", codec=JSON) == {"memory": 2, "vcpus": 2}
    # Merging again is a no-op; merging main into feature fast-forwards it.
    assert store.merge("feature", into="main") == merged
    assert store.merge("main", into="feature") == merged


def test_merge_conflicts_are_reported_whole_and_nothing_moves(store):
    main = store.branch("main")
    commit(main, {"a": b"0", "b": b"0"})
    store.fork("other", "main")
    commit(store.branch("other"), {"a": b"theirs", "b": b"theirs"})
    commit(main, {"a": b"ours", "b": b"ours"})
    head = main.head
    with pytest.raises(Conflict) as err:
        store.merge("other", into="main")
    assert sorted((c.path, c.ours, c.theirs) for c in err.value.conflicts) == [
        ("a", b"ours", b"theirs"),
        ("b", b"ours", b"theirs"),
    ]
    assert main.head == head


def test_criss_cross_merge_uses_a_virtual_base_of_both_common_ancestors(store):
    store.schema.add("n", "counter")
    main = store.branch("main")
    commit(main, {"n": b"0", "x": b"0", "y": b"0"})
    store.fork("b", "main")
    b = store.branch("b")
    commit(main, {"x": b"main"})
    commit(b, {"y": b"b"})
    a1 = main.head
    b1 = b.head
    # Criss-cross: each side merges the other's first commit.
    store.merge(b1, into="main")
    store.merge(a1, into="b")
    assert len(store.graph.merge_bases(main.head, b.head)) == 2
    commit(main, {"n": b"5"})
    commit(b, {"n": b"7"})
    store.merge("b", into="main")
    assert main.get("x") == b"main" and main.get("y") == b"b"
    assert JSON.decode(main.get("n")) == 12


def test_changes_since_a_commit_are_yielded_oldest_first(store):
    main = store.branch("main")
    c1 = commit(main, {"a": b"1"})
    c2 = commit(main, {"a": b"2", "dir/b": b"1"})
    c3 = commit(main, {"dir/b": None})
    events = [tuple(e) for e in main.changes(since=c1)]
    assert events == [(c2, "a", b"1", b"2"), (c2, "dir/b", None, b"1"), (c3, "dir/b", b"1", None)]
    assert [e.path for e in main.changes(since=c1, prefix="dir")] == ["dir/b", "dir/b"]
    assert [e.commit for e in main.changes()] == [c1, c2, c2, c3]
    assert list(main.changes(since=c3)) == []


def test_changes_since_a_commit_that_is_gone_raise_history_lost(store):
    main = store.branch("main")
    commit(main, {"a": b"1"})
    store.fork("elsewhere", "main")
    foreign = commit(store.branch("elsewhere"), {"z": b"1"})
    with pytest.raises(HistoryLost):
        list(main.changes(since=foreign))
    with pytest.raises(HistoryLost):
        list(main.changes(since="f" * 40))


def test_squash_keeps_content_and_recent_log_and_archives_the_old_history(disk_store, run_git):
    from store.squash import prune_archives, squash

    main = disk_store.branch("main")
    commits = [commit(main, {f"k{i}": str(i).encode()}, f"change {i}") for i in range(6)]
    tree_before = main.tree
    result = squash(disk_store, commits[2])
    assert main.tree == tree_before
    assert result.rewritten == 3
    log = main.log()
    assert [e.message for e in log] == ["change 5\n", "change 4\n", "change 3\n", log[-1].message]
    assert log[-1].message.startswith("Squashed history up to")
    assert disk_store.graph.parents(result.root) == ()
    assert disk_store.backend.read_ref(result.archive) == commits[-1]
    with pytest.raises(HistoryLost):
        list(main.changes(since=commits[1]))
    assert [c.path for c in main.changes(since=log[1].id)] == ["k5"]
    run_git(disk_store.gitdir, "fsck", "--full")
    assert prune_archives(disk_store) == [result.archive]
    run_git(disk_store.gitdir, "fsck", "--full")
    assert run_git(disk_store.gitdir, "cat-file", "-t", commits[0], check=False) == ""


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(min_value=0, max_value=10_000), min_size=0, max_size=3), max_size=90))
def test_is_ancestor_agrees_with_reachability_in_any_commit_graph(parent_picks):
    """Random graphs of long first-parent chains, merges and roots, all in one second (git's whole-second
    times make the painting walk visit side branches): is_ancestor is exactly reachability."""
    from store import Store

    store = Store.memory()
    tree = Tree.empty(store.backend)
    commits: list[str] = []
    for i, picks in enumerate(parent_picks):
        parents = list(dict.fromkeys(commits[p % len(commits)] for p in picks)) if commits else []
        if picks and commits and i % 3:
            parents = [commits[-1], *[p for p in parents if p != commits[-1]]]  # mostly chains
        commits.append(store.write_commit(tree.set("n", str(i).encode()), parents, f"c{i}", "t"))
    reachable: dict[str, set[str]] = {}
    for commit_id in commits:
        below = {commit_id}
        for parent in store.graph.parents(commit_id):
            below |= reachable[parent]
        reachable[commit_id] = below
    for a in commits:
        for b in commits[-12:]:
            assert store.graph.is_ancestor(a, b) == (a in reachable[b])


def test_a_merge_of_unrelated_histories_is_refused_and_nothing_deleted_comes_back():
    # Merged against the empty tree, a file one side deleted and the other still holds would come back: the
    # way an acknowledged VM delete was undone after two hosts squashed their histories differently.
    from store import Store, UnrelatedHistories

    store = Store.memory()
    main = store.branch("main")
    with main.transaction("both") as tx:
        tx.set("vms/a/config", b"a")
        tx.set("vms/b/config", b"b")
    with main.transaction("delete b") as tx:
        tx.remove("vms/b/config")
    head = main.head
    other = store.branch("rewritten")  # the same content as before the delete, on a history of its own
    with other.transaction("squashed") as tx:
        tx.set("vms/a/config", b"a")
        tx.set("vms/b/config", b"b")
    with pytest.raises(UnrelatedHistories, match="refusing to merge unrelated histories"):
        store.merge("rewritten", into="main")
    assert main.head == head and main.tree.get("vms/b/config") is None
