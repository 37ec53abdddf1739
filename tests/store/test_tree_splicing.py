"""A tree derived from a stored one is encoded by editing the stored bytes: replaced, inserted and removed
entries alike. Whatever the edits, the bytes (and so the id) are exactly those of a full encoding, and of
dulwich's own tree serialisation."""

from __future__ import annotations

from dulwich.objects import Tree as DulwichTree
from hypothesis import given, settings
from hypothesis import strategies as st

from store import Store, Tree
from store.objects import BLOB, TREE, encode_tree, locate_entry, object_id

# Names with spaces, digits and "-"/"." sort around the "/" that directories sort with; ids made of digits,
# spaces and NULs can repeat an entry's " <name>\0" pattern inside them.
names = st.text(alphabet="ab 0-./", min_size=1, max_size=4).filter(
    lambda n: n not in {".", ".."} and "/" not in n
)
hard_ids = st.one_of(
    st.binary(min_size=20, max_size=20),
    st.lists(st.sampled_from(b"\x0010064 ab"), min_size=20, max_size=20).map(bytes),
)
# An entry: a value (False) or a directory (True), with its id.
entries = st.dictionaries(names, st.tuples(st.booleans(), hard_ids), max_size=24)


def _stored(backend, children: dict[str, tuple[bool, bytes]]) -> Tree:
    """A tree as read back from the repository (raw bytes only, nothing in memory)."""
    raw = encode_tree([(n.encode(), d, sha.hex().encode()) for n, (d, sha) in children.items()])
    oid = object_id(TREE, raw)
    backend.write_objects([(oid, TREE, raw)])
    return Tree.of(backend, oid)


def _dulwich_bytes(tree: Tree) -> bytes:
    theirs = DulwichTree()
    for name, child in tree._entries().items():
        is_dir, oid = child if isinstance(child, tuple) else (isinstance(child, Tree), child.oid)
        theirs.add(name.encode(), 0o40000 if is_dir else 0o100644, oid)
    return theirs.as_raw_string()


def _full(tree: Tree) -> Tree:
    """The same entries, encoded from nothing."""
    return Tree(tree._backend, None, dict(tree._entries()))


def _edit(tree: Tree, name: str, action: str, value: bytes) -> Tree:
    # Whatever was at ``name`` goes first (the stored directories' ids are made up: they cannot be read).
    if action == "remove" or tree.kind(name) is not None:
        tree = tree.remove(name)
    if action == "dir":
        return tree.set(f"{name}/x", value)
    if action == "set":
        return tree.set(name, value)
    return tree


edits = st.lists(
    st.tuples(names, st.sampled_from(["set", "remove", "dir"]), st.binary(max_size=4)), max_size=8
)


@settings(max_examples=400, deadline=None)
@given(entries, edits)
def test_property_spliced_bytes_equal_a_full_encoding_and_duliwchs(children, changes):
    backend = Store.memory().backend
    tree = _stored(backend, children)
    for name, action, value in changes:
        tree = _edit(tree, name, action, value)
    full = _full(tree)
    assert tree.oid == full.oid
    assert tree._raw_bytes() == full._raw_bytes() == _dulwich_bytes(tree)
    assert object_id(TREE, tree._raw_bytes()) == tree.oid


@settings(max_examples=200, deadline=None)
@given(entries, st.lists(edits, max_size=5))
def test_property_successive_splices_hand_on_the_sorted_keys(children, rounds):
    # Each round is hashed before the next starts, as commits are: every splice starts from the last one.
    backend = Store.memory().backend
    tree = _stored(backend, children)
    for changes in rounds:
        for name, action, value in changes:
            tree = _edit(tree, name, action, value)
        full = _full(tree)
        assert tree.oid == full.oid
        assert tree._sorted_keys() == full._sorted_keys()
        backend.write_objects(tree.new_objects())
        tree.mark_stored()


def test_an_insertion_into_a_big_directory_is_spliced_not_reencoded():
    backend = Store.memory().backend
    tree = _stored(
        backend,
        {
            f"task-{i:05d}": (False, bytes.fromhex(object_id(BLOB, b"%d" % i).decode()))
            for i in range(0, 4000, 2)
        },
    )
    added = tree.set("task-01001", b"new")
    assert added._origin is not None  # derived from the stored tree: its bytes will be spliced
    full = _full(added)
    assert added.oid == full.oid and added._raw == full._raw
    assert added.list() == sorted([*tree.list(), "task-01001"])
    # The spliced tree's keys were handed on: a second insertion needs no parse of the first one's bytes.
    assert added._keys is not None and len(added._keys) == 2001


@settings(max_examples=300, deadline=None)
@given(entries)
def test_property_locating_an_entry_agrees_with_a_walk_over_every_entry(children):
    raw = encode_tree([(n.encode(), d, sha.hex().encode()) for n, (d, sha) in children.items()])
    position = 0
    walked = {}
    while position < len(raw):
        nul = raw.index(b"\0", position)
        name = raw[raw.index(b" ", position) + 1 : nul]
        walked[name] = (position, nul + 21)
        position = nul + 21
    for name, (is_dir, _) in children.items():
        assert locate_entry(raw, name.encode(), is_dir) == walked[name.encode()]


@settings(max_examples=200, deadline=None)
@given(entries, edits)
def test_property_changed_names_are_exactly_the_entries_with_another_id(children, changes):
    backend = Store.memory().backend
    before = _stored(backend, children)
    after = before
    for name, action, value in changes:
        after = _edit(after, name, action, value)

    def ident(tree: Tree, name: str):
        child = tree._entries().get(name)
        if child is None or isinstance(child, tuple):
            return child
        return (isinstance(child, Tree), child.oid)

    every = set(before._entries()) | set(after._entries())
    expected = {name for name in every if ident(before, name) != ident(after, name)}
    assert after.changed_names(before) == expected == before.changed_names(after)
