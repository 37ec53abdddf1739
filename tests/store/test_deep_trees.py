"""Trees as deep as a client makes them: no operation of the store recurses once per path segment.

Python's stack holds ~1,000 frames; xenstore clients (and ``toolstack store set``) choose their paths, so a
path of thousands of segments must be set, committed, merged, diffed, grafted, read and removed without a
RecursionError, and leave a repository git itself finds sound.
"""

from __future__ import annotations

import tempfile

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from store import Store
from tests.conftest import git

DEEP = 5_000


def spine(depth: int) -> list[str]:
    return [f"d{i}" for i in range(depth)]


def test_a_5000_segment_path_is_set_committed_read_and_removed(store):
    path = "/".join(spine(DEEP))
    main = store.branch()
    with main.transaction(message="deep") as tx:
        tx.set(path, b"bottom")
        tx.set("top", b"shallow")
    first = tx.commit_id
    assert main.get(path) == b"bottom"
    # Read back from the stored objects, not the tree kept in memory since the commit.
    fresh = Store.open(store.gitdir) if store.gitdir else store
    try:
        tree = fresh.at(first).tree
        assert tree.get(path) == b"bottom"
        assert list(tree.walk()) == [(path, b"bottom"), ("top", b"shallow")]
        assert tree.list("/".join(spine(DEEP - 1))) == [f"d{DEEP - 1}"]
    finally:
        if fresh is not store:
            fresh.close()
    with main.transaction(message="deeper") as tx:
        tx.set("/".join(spine(DEEP - 1)) + "/sibling", b"s")
    assert [c.path for c in store.diff(first, main.head).changed] == []
    assert [c.path for c in store.diff(first, main.head).added] == ["/".join(spine(DEEP - 1)) + "/sibling"]
    with main.transaction(message="remove") as tx:
        tx.remove("d0")
    assert main.list() == ["top"]
    assert main.get(path) is None
    assert [c.path for c in store.diff(first, main.head).removed] == [path]
    if store.gitdir:
        git(store.gitdir, "fsck", "--full", "--strict")


# A tree: one spine ``d0/d1/...`` of ``depth`` directories, and values hung from it at chosen depths, each
# under a name of its own (so that no value ever sits where another path needs a directory).
branch_points = st.lists(
    st.tuples(st.floats(0, 1), st.integers(0, 3), st.binary(max_size=8)), min_size=1, max_size=6
)


def hang(depth: int, points: list[tuple[float, int, bytes]], tag: str) -> dict[str, bytes]:
    """Paths (and values) hung from the spine: at ``fraction`` of its depth, a branch ``extra`` deep."""
    rail = spine(depth)
    paths = {}
    for n, (fraction, extra, value) in enumerate(points):
        at = round(fraction * depth)
        paths["/".join([*rail[:at], f"{tag}{n}", *(f"x{i}" for i in range(extra))])] = value
    return paths


@pytest.mark.native  # it reopens the repository on disk and runs git fsck
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    depth=st.integers(1, 3_000),
    base_points=branch_points,
    ours_points=branch_points,
    theirs_points=branch_points,
    removed=st.lists(st.integers(0, 5), max_size=3),
)
@example(
    depth=3_000,
    base_points=[(1.0, 3, b"b")],
    ours_points=[(0.5, 0, b"o")],
    theirs_points=[(1.0, 1, b"t")],
    removed=[0],
)
def test_deep_and_wide_trees_merge_diff_graft_and_fsck(
    depth, base_points, ours_points, theirs_points, removed
):
    base_paths = hang(depth, base_points, "b")
    ours_paths = hang(depth, ours_points, "o")
    theirs_paths = hang(depth, theirs_points, "t")
    gone = sorted({sorted(base_paths)[i % len(base_paths)] for i in removed})
    with tempfile.TemporaryDirectory() as directory, Store.open(f"{directory}/repo") as store:
        main = store.branch()
        with main.transaction(message="base") as tx:
            for path, value in base_paths.items():
                tx.set(path, value)
        base = tx.commit_id
        store.fork("side", "main")
        # Two branches change the deep tree concurrently: ours adds and removes, theirs adds.
        with main.transaction(message="ours") as tx:
            for path, value in ours_paths.items():
                tx.set(path, value)
            for path in gone:
                tx.remove(path)
        with store.branch("side").transaction(message="theirs") as tx:
            for path, value in theirs_paths.items():
                tx.set(path, value)
        merged = store.merge("side", into="main")
        expected = {**{p: v for p, v in base_paths.items() if p not in gone}, **ours_paths, **theirs_paths}
        assert dict(main.tree.walk()) == expected
        assert len(store.graph.parents(merged)) == 2
        for path, value in expected.items():
            assert main.get(path) == value

        difference = store.diff(base, merged)
        assert {c.path: c.new for c in difference.added} == {**ours_paths, **theirs_paths}
        assert {c.path for c in difference.removed} == set(gone)
        assert difference.changed == []

        # Graft the whole spine back to the base's (a revert of one deep directory), then read it back.
        main.revert_to(base, paths=["d0"])
        assert dict(main.tree.walk()) == {
            **{p: v for p, v in expected.items() if not p.startswith("d0/")},
            **{p: v for p, v in base_paths.items() if p.startswith("d0/")},
        }
        with Store.open(f"{directory}/repo") as again:
            assert dict(again.branch().tree.walk()) == dict(main.tree.walk())
        git(store.gitdir, "fsck", "--full", "--strict")
