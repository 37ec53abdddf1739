"""Paths are validated at the edge; trees are immutable values with structural sharing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from store import InvalidPath, IsADirectory, NotADirectory, Store, Tree
from store.paths import parse


@pytest.mark.parametrize(
    "bad",
    ["", "/a", "a/", "a//b", "a/./b", "a/../b", ".", "..", "a\0b", ("a", ""), ("a", "b/c"), ("a", "..")],
)
def test_malformed_paths_raise_value_error_naming_the_path(bad):
    with pytest.raises(InvalidPath) as err:
        parse(bad)
    assert isinstance(err.value, ValueError)
    assert repr(bad) in str(err.value) or str(bad) in str(err.value)


def test_string_and_tuple_paths_are_equivalent():
    assert parse("vms/x/config") == parse(("vms", "x", "config")) == ("vms", "x", "config")


def test_set_returns_a_new_tree_and_leaves_the_old_one_untouched():
    empty = Tree.empty(Store.memory().backend)
    one = empty.set("a/b", b"1")
    assert empty.get("a/b") is None
    assert one.get("a/b") == b"1"
    assert one.list("a") == ["b"]
    assert one.kind("a") == "directory"
    assert one.kind("a/b") == "value"


def test_untouched_subtrees_are_shared_not_copied():
    tree = Tree.empty(Store.memory().backend).set("left/x", b"1").set("right/y", b"2")
    changed = tree.set("right/z", b"3")
    assert changed.subtree("left") is tree.subtree("left")


def test_remove_prunes_emptied_directories_and_ignores_absent_paths():
    tree = Tree.empty(Store.memory().backend).set("a/b/c", b"1").set("d", b"2")
    assert tree.remove("a/b/c").list() == ["d"]
    assert tree.remove("zzz") is tree
    assert tree.remove("a").list() == ["d"]


def test_a_value_cannot_become_a_directory_by_accident():
    tree = Tree.empty(Store.memory().backend).set("a", b"1").set("dir/x", b"2")
    with pytest.raises(NotADirectory):
        tree.set("a/b", b"2")
    with pytest.raises(IsADirectory):
        tree.set("dir", b"3")


def test_values_must_be_bytes():
    with pytest.raises(TypeError, match="must be bytes"):
        Tree.empty(Store.memory().backend).set("a", "text")  # type: ignore[arg-type]


def test_walk_and_subtree():
    tree = Tree.empty(Store.memory().backend).set("a/b", b"1").set("a/c/d", b"2").set("e", b"3")
    assert list(tree.walk()) == [("a/b", b"1"), ("a/c/d", b"2"), ("e", b"3")]
    assert list(tree.walk("a/c")) == [("a/c/d", b"2")]
    assert tree.subtree("a").list() == ["b", "c"]
    assert tree.subtree("missing").is_empty()


def test_tree_ids_are_git_ids(tmp_path, run_git):
    tree = Tree.empty(Store.memory().backend).set("hello", b"world\n").set("sub/dir", b"")
    run_git(tmp_path, "init", "-q")
    (tmp_path / "hello").write_bytes(b"world\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "dir").write_bytes(b"")
    run_git(tmp_path, "add", "-A")
    assert tree.id == run_git(tmp_path, "write-tree").strip()
    assert Tree.empty(Store.memory().backend).id == "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


def test_a_committed_tree_loads_lazily_and_writes_only_changed_subtrees(disk_store):
    branch = disk_store.branch()
    with branch.transaction(message="seed") as tx:
        for i in range(20):
            tx.set(f"vms/{i:02d}/config", b"x")
    tree = branch.tree
    changed = tree.set("vms/07/config", b"y")
    new = changed.new_objects()
    # One blob and the three trees on its path (root, vms, vms/07): no untouched subtree is rewritten.
    assert len(new) == 4


# -- properties ------------------------------------------------------------------------------------
segment = st.text(alphabet="abcxyz-_.0123", min_size=1, max_size=4).filter(lambda s: s not in {".", ".."})
path_strategy = st.lists(segment, min_size=1, max_size=3).map(tuple)
values = st.binary(max_size=8)
ops = st.lists(st.tuples(st.sampled_from(["set", "remove"]), path_strategy, values), max_size=25)


def _apply(tree: Tree, operations) -> tuple[Tree, dict]:
    model: dict[tuple[str, ...], bytes] = {}
    for op, path, value in operations:
        try:
            if op == "set":
                tree = tree.set(path, value)
                model = {k: v for k, v in model.items() if k[: len(path)] != path}
                model[path] = value
            else:
                tree = tree.remove(path)
                model = {k: v for k, v in model.items() if k[: len(path)] != path}
        except (NotADirectory, IsADirectory):
            continue
    return tree, model


@settings(max_examples=200, deadline=None)
@given(ops)
def test_property_trees_behave_like_a_dict_of_paths(operations):
    tree, model = _apply(Tree.empty(Store.memory().backend), operations)
    assert dict((tuple(p.split("/")), v) for p, v in tree.walk()) == model
    for path, value in model.items():
        assert tree.get(path) == value


@settings(max_examples=200, deadline=None)
@given(ops, ops)
def test_property_applying_diff_a_b_to_a_gives_b(ops_a, ops_b):
    backend = Store.memory().backend
    a, _ = _apply(Tree.empty(backend), ops_a)
    b, _ = _apply(a, ops_b)
    assert a.apply(a.diff(b)) == b
    c, _ = _apply(Tree.empty(backend), ops_b)
    assert a.apply(a.diff(c)) == c
    assert a.diff(a) == []


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.text(alphabet="0123456789abc-", min_size=1, max_size=3),
        st.tuples(
            st.booleans(),
            st.one_of(
                st.binary(min_size=20, max_size=20),
                st.lists(st.sampled_from(b"\x0001234567 "), min_size=20, max_size=20).map(bytes),
            ),
        ),
        max_size=30,
    ),
    st.text(alphabet="0123456789abc-", min_size=1, max_size=3),
)
def test_property_single_entry_lookup_agrees_with_a_full_parse(entries, absent):
    # Ids full of ASCII digits and NULs are the hard case for finding an entry without parsing.
    from store.backend import parse_tree_entries
    from store.history import lookup_entry
    from store.objects import encode_tree

    raw = encode_tree([(n.encode(), is_dir, sha.hex().encode()) for n, (is_dir, sha) in entries.items()])
    parsed = parse_tree_entries(raw)
    for name in entries:
        assert lookup_entry(raw, name.encode()) == parsed[name]
    if absent not in entries:
        assert lookup_entry(raw, absent.encode()) is None


@given(
    st.dictionaries(
        st.text(alphabet="0123456789abc- .\u00e9", min_size=1, max_size=6).filter(
            lambda name: name not in (".", "..")
        ),
        st.tuples(
            st.sampled_from([b"40000", b"100644", b"100755", b"120000"]),
            st.lists(st.sampled_from(b"\x0001234567 "), min_size=20, max_size=20).map(bytes),
        ),
        max_size=30,
    ),
    st.integers(min_value=1, max_value=21),
)
def test_property_tree_parsing_agrees_with_dulwich_and_refuses_a_truncated_tree(entries, cut):
    # Ids full of ASCII digits, spaces and NULs, and names with spaces, are the hard cases.
    from dulwich.objects import parse_tree

    from store.backend import parse_tree_entries

    raw = b"".join(mode + b" " + name.encode() + b"\0" + sha for name, (mode, sha) in sorted(entries.items()))
    expected = {name.decode(): (mode == 0o40000, sha) for name, mode, sha in parse_tree(raw, 20)}
    assert parse_tree_entries(raw) == expected
    if raw:
        with pytest.raises(ValueError):
            parse_tree_entries(raw[:-cut])
