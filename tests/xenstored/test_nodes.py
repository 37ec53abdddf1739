"""The in-memory node tree: the same git trees as the generic store writes, and a lawful three-way merge."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from store import Tree
from store.backend import MemoryBackend
from xenstored import nodes
from xenstored.nodes import EMPTY, GitEncoder, Node, Writer
from xenstored.perms import Caller, Permissions

NAMES = st.sampled_from(["a", "b", "c", "vm", "-x", "x-y", "x"])
KEYS = st.lists(NAMES, min_size=1, max_size=4).map(tuple)
VALUES = st.binary(max_size=6)
PERMS = st.sampled_from([["n0"], ["b3", "r0"], ["r5"], ["w2", "n0", "b7"]])
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("write"), KEYS, VALUES),
        st.tuples(st.just("mkdir"), KEYS, st.none()),
        st.tuples(st.just("rm"), KEYS, st.none()),
        st.tuples(st.just("perms"), KEYS, PERMS),
    ),
    max_size=12,
)


def step(
    tree: Node, op: str, key: tuple[str, ...], arg: object, caller: Caller, writer: Writer | None = None
) -> nodes.Mutation:
    if op == "write":
        return nodes.write(tree, key, arg, caller, writer)  # type: ignore[arg-type]
    if op == "mkdir":
        return nodes.mkdir(tree, key, caller, writer)
    if op == "rm":
        return nodes.remove(tree, key, writer)
    if nodes.exists(tree, key):
        return nodes.set_permissions(tree, key, Permissions.parse(arg), writer)  # type: ignore[arg-type]
    return nodes.Mutation(tree)


def run(tree: Node, operations: list[tuple[str, tuple[str, ...], object]], caller: Caller) -> Node:
    for op, key, arg in operations:
        tree = step(tree, op, key, arg, caller).tree
    return tree


def blobs(tree: Node) -> dict[tuple[str, ...], bytes]:
    return {change.key: change.new for change in nodes.leaves(tree, ())}  # type: ignore[misc]


def git_id(tree: Node) -> bytes:
    return GitEncoder().tree_id(tree) if not tree.is_empty() else Tree.empty(MemoryBackend()).oid


def same_via_store(tree: Node) -> bytes:
    """The id the generic store gives a tree holding the same blobs."""
    store_tree = Tree.empty(MemoryBackend())
    for key, value in blobs(tree).items():
        store_tree = store_tree.set("/".join(key), value)
    return store_tree.oid


class TestWritersChangeTheirOwnNodesInPlace:
    @settings(max_examples=200, deadline=None)
    @given(OPERATIONS, OPERATIONS)
    def test_the_same_trees_and_changes_as_copying_and_shared_trees_stay_as_they_were(self, start, ops):
        # A transaction's writer changes in place only what it built: the tree it forked from, and every
        # tree anyone took before, keep their blobs.
        base = run(EMPTY, start, Caller(0))
        base_blobs = blobs(base)
        writer = Writer()
        copied, in_place = base, base
        for op, key, arg in ops:
            expected = step(copied, op, key, arg, Caller(0))
            got = step(in_place, op, key, arg, Caller(0), writer)
            assert got.changes == expected.changes
            copied, in_place = expected.tree, got.tree
            assert blobs(in_place) == blobs(copied)
        assert blobs(base) == base_blobs
        assert git_id(in_place) == git_id(copied) == same_via_store(in_place)

    @settings(max_examples=100, deadline=None)
    @given(OPERATIONS, OPERATIONS)
    def test_a_tree_taken_from_a_writer_is_left_alone_by_another(self, first, second):
        # Once a transaction ends, its nodes are shared: the next transaction copies them.
        ended = Writer()
        tree = EMPTY
        for op, key, arg in first:
            tree = step(tree, op, key, arg, Caller(0), ended).tree
        snapshot = blobs(tree)
        later = tree
        for op, key, arg in second:
            later = step(later, op, key, arg, Caller(0), Writer()).tree
        assert blobs(tree) == snapshot


class TestGitEncoding:
    @settings(max_examples=150, deadline=None)
    @given(OPERATIONS)
    def test_a_node_tree_encodes_to_the_tree_the_store_would_write(self, operations):
        tree = run(EMPTY, operations, Caller(0))
        assert git_id(tree) == same_via_store(tree)

    @settings(max_examples=150, deadline=None)
    @given(OPERATIONS, OPERATIONS)
    def test_encoding_each_version_splices_to_the_same_ids(self, first, second):
        # Each version is encoded by splicing the entries of the last encoded version of the same node.
        encoder = GitEncoder()
        tree = EMPTY
        for operation in [*first, *second]:
            tree = run(tree, [operation], Caller(0))
            if not tree.is_empty():
                encoder.tree_id(tree)
        assert git_id(tree) == same_via_store(tree)

    @settings(max_examples=150, deadline=None)
    @given(OPERATIONS, OPERATIONS, st.integers(min_value=1, max_value=4))
    def test_versions_not_encoded_in_between_still_splice_to_the_same_ids(self, first, second, every):
        # A version made from one never encoded splices from the last encoded one, with the children that
        # either touched.
        tree = run(EMPTY, first, Caller(0))
        if not tree.is_empty():
            GitEncoder().tree_id(tree)
        for index, operation in enumerate(second):
            tree = run(tree, [operation], Caller(0))
            if index % every == 0 and not tree.is_empty():
                GitEncoder().tree_id(tree)
        assert git_id(tree) == same_via_store(tree)

    @settings(max_examples=150, deadline=None)
    @given(OPERATIONS, OPERATIONS, st.randoms(use_true_random=False))
    def test_versions_encoded_in_any_order_splice_to_the_same_ids(self, first, second, random):
        # As in the journal: requests keep making versions from ones it has not encoded yet, and it encodes
        # an older version after newer ones were made from it. Each splices from the nearest encoded one.
        tree = run(EMPTY, first, Caller(0))
        if not tree.is_empty():
            GitEncoder().tree_id(tree)
        versions = []
        for operation in second:
            tree = run(tree, [operation], Caller(0))
            versions.append(tree)
        random.shuffle(versions)
        encoder = GitEncoder()
        for version in versions:
            oid = git_id(version) if version.is_empty() else encoder.tree_id(version)
            assert oid == same_via_store(version)

    @settings(max_examples=150, deadline=None)
    @given(OPERATIONS, OPERATIONS)
    def test_a_transaction_tree_changed_in_place_splices_to_the_same_ids(self, start, ops):
        base = run(EMPTY, start, Caller(0))
        if not base.is_empty():
            GitEncoder().tree_id(base)
        writer = Writer()
        tree = base
        for op, key, arg in ops:
            tree = step(tree, op, key, arg, Caller(0), writer).tree
        assert git_id(tree) == same_via_store(tree)

    @settings(max_examples=100, deadline=None)
    @given(OPERATIONS)
    def test_loading_what_was_written_gives_back_the_same_nodes(self, operations):
        tree = run(nodes.write(EMPTY, (), b"", Caller(0)).tree, operations, Caller(0))
        backend = MemoryBackend()
        encoder = GitEncoder()
        oid = encoder.tree_id(tree)
        backend.write_objects(encoder.take())
        loaded = nodes.load(backend, oid)
        assert blobs(loaded) == blobs(tree)
        assert GitEncoder().tree_id(Node(loaded.value, loaded.perms, dict(loaded.children))) == oid

    def test_entries_outside_the_encoding_are_kept(self):
        backend = MemoryBackend()
        store_tree = (
            Tree.empty(backend).set("a/.value", b"1").set("a/README", b"notes").set(".gitattributes", b"x")
        )
        backend.write_objects(store_tree.new_objects())
        loaded = nodes.load(backend, store_tree.oid)
        assert nodes.children(loaded, ()) == ["a"]
        changed = nodes.write(loaded, ("a",), b"2", Caller(0)).tree
        assert same_via_store(changed) != git_id(changed)  # the extra blobs are not node blobs...
        expected = Tree.empty(MemoryBackend()).set("a/.value", b"2").set("a/README", b"notes")
        assert git_id(changed) == expected.set(".gitattributes", b"x").oid  # ...but they are written back


class TestMerge:
    @settings(max_examples=150, deadline=None)
    @given(OPERATIONS, OPERATIONS)
    def test_a_side_left_unchanged_takes_the_other(self, first, second):
        base = run(EMPTY, first, Caller(0))
        theirs = run(base, second, Caller(0))
        assert git_id(nodes.merge(base, base, theirs).tree) == git_id(theirs)
        assert git_id(nodes.merge(base, theirs, base).tree) == git_id(theirs)

    @settings(max_examples=150, deadline=None)
    @given(OPERATIONS, OPERATIONS, OPERATIONS)
    def test_changes_under_disjoint_roots_commute(self, start, left, right):
        base = run(EMPTY, start, Caller(0))
        ours = run(base, [(op, ("left", *key), arg) for op, key, arg in left], Caller(0))
        theirs = run(base, [(op, ("right", *key), arg) for op, key, arg in right], Caller(0))
        one_way = nodes.merge(base, ours, theirs).tree
        other_way = nodes.merge(base, theirs, ours).tree
        assert git_id(one_way) == git_id(other_way)
        assert blobs(nodes.lookup(one_way, ("left",)) or EMPTY) == blobs(
            nodes.lookup(ours, ("left",)) or EMPTY
        )

    @settings(max_examples=150, deadline=None)
    @given(OPERATIONS, OPERATIONS, OPERATIONS)
    def test_the_reported_changes_turn_ours_into_the_merge(self, start, left, right):
        base = run(EMPTY, start, Caller(0))
        ours = run(base, left, Caller(0))
        theirs = run(base, right, Caller(0))
        encoder = GitEncoder()  # encoded first, so that the merge's result is encoded by splicing
        for tree in (base, ours, theirs):
            if not tree.is_empty():
                encoder.tree_id(tree)
        merged = nodes.merge(base, ours, theirs)
        assert blobs(nodes.apply(ours, merged.changes).tree) == blobs(merged.tree)
        assert git_id(merged.tree) == same_via_store(merged.tree)

    def test_a_value_changed_on_both_sides_goes_to_the_transaction(self):
        base = nodes.write(EMPTY, ("a",), b"0", Caller(0)).tree
        ours = nodes.write(base, ("a",), b"ours", Caller(0)).tree
        theirs = nodes.write(base, ("a",), b"theirs", Caller(0)).tree
        assert nodes.value(nodes.merge(base, ours, theirs).tree, ("a",)) == b"theirs"
