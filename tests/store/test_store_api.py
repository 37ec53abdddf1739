"""Opening repositories, branches, revisions and snapshots."""

from __future__ import annotations

import pytest

from store import BranchExists, NotARepository, Store, UnknownBranch, UnknownCommit


def commit(branch, path, value, message="change"):
    with branch.transaction(message=message, author="tester") as tx:
        tx.set(path, value)
    return tx.commit_id


def test_open_creates_a_bare_repository_that_reopens(tmp_path, run_git):
    path = tmp_path / "state"
    with Store.open(path) as s:
        commit(s.branch(), "a", b"1")
    assert run_git(path, "rev-parse", "--is-bare-repository").strip() == "true"
    with Store.open(path, create=False) as s:
        assert s.branch().get("a") == b"1"
        assert s.default_branch == "main"


def test_open_accepts_a_repository_made_by_git_init(tmp_path, run_git):
    run_git(tmp_path, "init", "-q", "-b", "master", "work")
    with Store.open(tmp_path / "work") as s:
        assert s.default_branch == "master"
        commit(s.branch(), "x", b"y")
    assert run_git(tmp_path / "work", "show", "master:x") == "y"


def test_open_refuses_a_file_and_a_foreign_directory_and_writes_nothing(tmp_path):
    file = tmp_path / "file"
    file.write_text("hello")
    with pytest.raises(NotARepository, match="is a file"):
        Store.open(file)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(NotARepository, match="not a git repository"):
        Store.open(foreign)
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    with pytest.raises(NotARepository, match="create=False"):
        Store.open(tmp_path / "missing", create=False)
    assert not (tmp_path / "missing").exists()


def test_open_with_a_work_tree(tmp_path, run_git):
    with Store.open(tmp_path / "wt", bare=False) as s:
        commit(s.branch(), "a", b"1")
    assert run_git(tmp_path / "wt", "rev-parse", "--is-bare-repository").strip() == "false"
    assert run_git(tmp_path / "wt", "show", "main:a") == "1"


def test_branches_fork_and_delete(store):
    main = store.branch("main")
    first = commit(main, "a", b"1")
    second = commit(main, "a", b"2")
    assert main.head == second
    fork = store.fork("experiment", first)
    assert fork.get("a") == b"1"
    assert store.fork("copy", "main").head == second
    assert store.branches() == ["copy", "experiment", "main"]
    with pytest.raises(BranchExists):
        store.fork("copy", "main")
    store.delete_branch("copy")
    assert store.branches() == ["experiment", "main"]
    with pytest.raises(UnknownBranch):
        store.delete_branch("copy")


def test_a_missing_branch_reads_as_empty_and_is_created_by_its_first_transaction(store):
    branch = store.branch("fresh")
    assert branch.head is None
    assert branch.get("a") is None and branch.list() == []
    commit(branch, "a", b"1")
    assert "fresh" in store.branches()


def test_invalid_branch_names_are_refused(store):
    for bad in ["", "a..b", "a b", "x.lock", "a~1", "a:b", "/a"]:
        with pytest.raises(ValueError, match="invalid branch name"):
            store.branch(bad)


def test_at_gives_a_read_only_view_of_any_commit(store):
    main = store.branch("main")
    first = commit(main, "a", b"1", message="first")
    commit(main, "a", b"2")
    snapshot = store.at(first)
    assert snapshot.get("a") == b"1"
    assert snapshot.info.message == "first\n"
    assert snapshot.info.author.startswith("tester <")
    assert not hasattr(snapshot, "transaction")


def test_revisions_resolve_like_git(store):
    main = store.branch("main")
    first = commit(main, "a", b"1")
    second = commit(main, "a", b"2")
    assert store.resolve("main") == second
    assert store.resolve("main~1") == first
    assert store.resolve("main^") == first
    assert store.resolve(second[:10]) == second
    assert store.resolve("refs/heads/main") == second
    with pytest.raises(UnknownCommit):
        store.resolve("main~5")
    with pytest.raises(UnknownCommit):
        store.resolve("0" * 40)
    with pytest.raises(UnknownCommit):
        store.resolve("nonexistent-branch")


def test_write_commit_then_fork_publishes_a_prepared_commit_atomically(store):
    main = store.branch("main")
    base = commit(main, "a", b"1")
    tree = main.tree.set("lock/owner", b"me")
    prepared = store.write_commit(tree, [base], "claim", author="tester")
    assert store.branch("claim").head is None  # nothing published yet
    store.fork("claim", prepared)
    assert store.branch("claim").get("lock/owner") == b"me"
    assert store.graph.parents(prepared) == (base,)
    with pytest.raises(BranchExists):
        store.fork("claim", prepared)


def test_revisions_cannot_reach_outside_the_repository(store):
    commit(store.branch("main"), "a", b"1")
    for hostile in [
        "../../../../etc/hostname",
        "refs/../../config",
        "x" * 300,
        "a\0b",
        "HEAD/../../../config",
    ]:
        with pytest.raises(UnknownCommit):
            store.resolve(hostile)


def test_test_and_set_moves_a_branch_or_ref_only_from_the_value_expected(store):
    first = commit(store.branch("main"), "a", b"1")
    second = commit(store.branch("main"), "a", b"2")
    assert not store.test_and_set("main", first, first)  # main is at second
    assert store.test_and_set("main", second, first)
    assert store.branch("main").head == first
    assert store.test_and_set("refs/remotes/origin/main", None, second)  # a full ref name
    assert store.branch("refs/remotes/origin/main").head == second
    assert store.test_and_set("refs/remotes/origin/main", second, None)  # None deletes
    assert store.branch("refs/remotes/origin/main").head is None
    with pytest.raises(ValueError):
        store.test_and_set("../escape", None, first)


def test_list_refs_lists_one_directory_of_refs(store):
    head = commit(store.branch("main"), "a", b"1")
    store.fork("vm-task/1", "main")
    store.fork("vm-task/2", "main")
    store.fork("vm-taskforce", "main")
    expected = {"refs/heads/vm-task/1": head, "refs/heads/vm-task/2": head}
    assert store.list_refs("refs/heads/vm-task/") == expected
    assert store.list_refs("refs/heads/vm-task") == expected  # a directory, not a string prefix
    assert set(store.list_refs()) == {"refs/heads/main", "refs/heads/vm-taskforce", *expected}
    with pytest.raises(ValueError):
        store.list_refs("heads/")
