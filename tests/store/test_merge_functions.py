"""Merge is a property of the content type: each built-in, and the laws they all obey."""

from __future__ import annotations

import json

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from store import Conflicted, Schema, Store, Tree
from store.merge import (
    BUILTINS,
    counter,
    default,
    json_object,
    lww,
    make_lww,
    merge_trees,
    queue,
    set_,
)
from store.merge import log as log_merge


def test_default_takes_the_side_that_changed_and_accepts_identical_changes():
    assert default(b"a", b"b", b"a") == b"b"
    assert default(b"a", b"a", b"c") == b"c"
    assert default(b"a", b"z", b"z") == b"z"
    assert isinstance(default(b"a", b"b", b"c"), Conflicted)
    assert isinstance(default(b"a", None, b"c"), Conflicted)
    assert default(None, b"new", None) == b"new"


def test_json_object_merges_fields_and_reports_each_conflicting_field():
    base = {"name": "web", "memory": 512, "vcpus": 1, "meta": {"a": 1}}
    ours = {**base, "memory": 1024, "meta": {"a": 1, "b": 2}}
    theirs = {**base, "vcpus": 4, "meta": {"a": 1, "c": 3}}
    assert json_object(base, ours, theirs) == {
        "name": "web",
        "memory": 1024,
        "vcpus": 4,
        "meta": {"a": 1, "b": 2, "c": 3},
    }
    clash = json_object(base, {**base, "memory": 1024, "vcpus": 2}, {**base, "memory": 2048, "vcpus": 3})
    assert isinstance(clash, Conflicted)
    assert "memory" in clash.reason and "vcpus" in clash.reason
    assert "1024" in clash.reason and "2048" in clash.reason


def test_json_object_field_removal_merges_with_other_field_changes():
    base = {"a": 1, "b": 2}
    assert json_object(base, {"b": 2}, {"a": 1, "b": 3}) == {"b": 3}


def test_counter_adds_both_deltas():
    assert counter(10, 13, 15) == 18
    assert counter(None, 2, 3) == 5
    # The same increment on both sides is two increments, not one.
    assert counter(0, 1, 1) == 2
    assert isinstance(counter(1, "x", 3), Conflicted)


def test_set_applies_adds_and_removes_from_both_sides():
    assert set_(["a", "b", "c"], ["a", "c", "d"], ["b", "c", "e"]) == ["c", "d", "e"]


def test_lww_takes_the_later_timestamp():
    older = {"timestamp": 1, "v": "old"}
    newer = {"timestamp": 2, "v": "new"}
    assert lww({"timestamp": 0}, newer, older) == newer
    assert lww({"timestamp": 0}, older, newer) == newer
    custom = make_lww("at")
    assert custom({}, {"at": 5, "v": 1}, {"at": 3, "v": 2}) == {"at": 5, "v": 1}


def test_log_keeps_the_union_ordered_by_time():
    base = [{"time": 1, "m": "boot"}]
    ours = [*base, {"time": 3, "m": "ours"}]
    theirs = [*base, {"time": 2, "m": "theirs"}]
    assert log_merge(base, ours, theirs) == [
        {"time": 1, "m": "boot"},
        {"time": 2, "m": "theirs"},
        {"time": 3, "m": "ours"},
    ]


def test_queue_keeps_pushes_from_both_sides_and_applies_each_pop_once():
    base = [1, 2, 3]
    ours = [2, 3, 4]  # popped 1, pushed 4
    theirs = [2, 3, 5]  # popped 1 as well, pushed 5
    assert queue(base, ours, theirs) == [2, 3, 4, 5]
    assert queue(base, [3], [1, 2, 3, 9]) == [3, 9]
    # Popping everything and pushing is a valid queue history too.
    assert queue(base, [9, 9], [1, 2, 3, 4]) == [4, 9, 9]
    # The same push on both sides is two pushes.
    assert queue(base, [1, 2, 3, 7], [1, 2, 3, 7]) == [1, 2, 3, 7, 7]
    assert isinstance(queue(base, {"not": "a list"}, [1]), Conflicted)


def test_schema_routes_paths_to_merge_functions_by_glob():
    schema = Schema([("vms/*/config", "json_object"), ("stats/**", counter)])
    assert schema.rule_for("vms/x/config").merge is json_object
    assert schema.rule_for("stats/a/b/c").merge is counter
    assert schema.rule_for("vms/x/other").merge is default
    with pytest.raises(ValueError, match="unknown merge function"):
        schema.add("x", "nope")


def test_tree_merge_reports_every_conflict_of_the_whole_tree():
    backend = Store.memory().backend
    base = Tree.empty(backend).set("a", b"0").set("b", b"0").set("c", b"0")
    ours = base.set("a", b"1").set("b", b"1").set("c", b"1")
    theirs = base.set("a", b"2").set("b", b"2")
    merged, conflicts = merge_trees(backend, base, ours, theirs)
    assert [(c.path, c.base, c.ours, c.theirs) for c in conflicts] == [
        ("a", b"0", b"1", b"2"),
        ("b", b"0", b"1", b"2"),
    ]
    assert merged.get("c") == b"1"


def test_tree_merge_uses_the_schema_per_path():
    backend = Store.memory().backend
    schema = Schema([("count", "counter")])
    base = Tree.empty(backend).set("count", b"5")
    merged, conflicts = merge_trees(backend, base, base.set("count", b"7"), base.set("count", b"8"), schema)
    assert conflicts == []
    assert json.loads(merged.get("count")) == 10
    both_plus_one, _ = merge_trees(backend, base, base.set("count", b"6"), base.set("count", b"6"), schema)
    assert json.loads(both_plus_one.get("count")) == 7


# -- the laws --------------------------------------------------------------------------------------
json_scalars = st.one_of(st.integers(-5, 5), st.text(alphabet="ab", max_size=2), st.booleans())
objects = st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), json_scalars, max_size=4)
LAW_CASES = {
    "default": st.one_of(st.none(), st.binary(max_size=3)),
    "json_object": objects,
    "counter": st.integers(-100, 100),
    "set": st.lists(st.integers(0, 6), max_size=5, unique=True),
    "lww": st.builds(lambda t, v: {"timestamp": t, "v": v}, st.integers(0, 5), json_scalars),
    "log": st.lists(
        st.builds(lambda t, v: {"time": t, "v": v}, st.integers(0, 5), st.integers(0, 3)), max_size=4
    ),
    "queue": st.lists(st.integers(0, 4), max_size=5),
}


@pytest.mark.parametrize("name", sorted(LAW_CASES))
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_law_identity_merge_b_x_b_is_x_and_merge_b_b_y_is_y(name, data):
    merge = BUILTINS[name]
    b, x = data.draw(LAW_CASES[name]), data.draw(LAW_CASES[name])
    assert merge(b, x, b) == x
    assert merge(b, b, x) == x


def _commutes(merge, b, x, y):
    left, right = merge(b, x, y), merge(b, y, x)
    if isinstance(left, Conflicted):
        assert isinstance(right, Conflicted)
    else:
        assert left == right


@settings(max_examples=200, deadline=None)
@given(objects, st.sampled_from(["a", "b"]), json_scalars, st.sampled_from(["c", "d"]), json_scalars)
def test_law_disjoint_field_changes_commute_in_json_object(base, key_x, val_x, key_y, val_y):
    x = {**base, key_x: val_x}
    y = {**base, key_y: val_y}
    merged = json_object(base, x, y)
    assert merged == json_object(base, y, x)
    assert merged == {**base, key_x: val_x, key_y: val_y}


@settings(max_examples=200, deadline=None)
@given(st.integers(-50, 50), st.integers(-9, 9), st.integers(-9, 9))
def test_law_counter_increments_commute(base, dx, dy):
    _commutes(counter, base, base + dx, base + dy)
    assert counter(base, base + dx, base + dy) == base + dx + dy


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 9), unique=True, max_size=6), st.data())
def test_law_set_changes_commute(base, data):
    x = data.draw(st.lists(st.integers(0, 9), unique=True, max_size=6))
    y = data.draw(st.lists(st.integers(0, 9), unique=True, max_size=6))
    _commutes(set_, base, x, y)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 4), max_size=5), st.data())
def test_law_queue_pops_and_pushes_commute(base, data):
    pops_x = data.draw(st.integers(0, len(base)))
    pops_y = data.draw(st.integers(0, len(base)))
    x = base[pops_x:] + data.draw(st.lists(st.integers(5, 9), max_size=3))
    y = base[pops_y:] + data.draw(st.lists(st.integers(5, 9), max_size=3))
    _commutes(queue, base, x, y)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(["p", "q", "r", "s"]), st.binary(max_size=2), max_size=4), st.data())
def test_law_tree_merges_of_disjoint_paths_commute(base_items, data):
    backend = Store.memory().backend
    base = Tree.empty(backend)
    for key, value in base_items.items():
        base = base.set(f"d/{key}", value)
    x = base.set("left/" + data.draw(st.sampled_from(["1", "2"])), data.draw(st.binary(max_size=2)))
    y = base.set("right/" + data.draw(st.sampled_from(["1", "2"])), data.draw(st.binary(max_size=2)))
    assume(x != y)
    merged_xy, c1 = merge_trees(backend, base, x, y)
    merged_yx, c2 = merge_trees(backend, base, y, x)
    assert c1 == c2 == []
    assert merged_xy == merged_yx
    assert merge_trees(backend, base, x, base)[0] == x
    assert merge_trees(backend, base, base, y)[0] == y
