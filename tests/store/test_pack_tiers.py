"""The roll-up policy: packs are compacted in tiers, so each object is copied about once per tier."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from store.rollup import ROLL_UP_FANOUT, pack_tier, tier_to_roll_up

# Pack tiers are the disk backend's.
pytestmark = pytest.mark.native


def test_tiers_are_powers_of_the_fanout():
    f = ROLL_UP_FANOUT
    assert [pack_tier(n) for n in (1, f - 1, f, f * f - 1, f * f, f**3 - 1, f**3)] == [0, 0, 1, 1, 2, 2, 3]


def test_nothing_is_rolled_up_until_a_tier_fills():
    small, big = ROLL_UP_FANOUT + 4, ROLL_UP_FANOUT**3  # tiers 1 and 3
    packs = [(f"p{i}", small) for i in range(ROLL_UP_FANOUT - 1)] + [("big", big)]
    assert tier_to_roll_up(packs) == []
    packs.append(("one-more", small + 1))
    assert sorted(tier_to_roll_up(packs)) == sorted(name for name, count in packs if count != big)


def test_a_full_tier_takes_every_smaller_pack_with_it():
    f = ROLL_UP_FANOUT
    packs = [(f"t1-{i}", f + 1) for i in range(f)] + [("t0", 3), ("t2", f * f + 1), ("t3", f**3 + 1)]
    assert sorted(tier_to_roll_up(packs)) == sorted([f"t1-{i}" for i in range(ROLL_UP_FANOUT)] + ["t0"])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=300), min_size=1, max_size=400))
def test_a_stream_of_packs_stays_compact_and_copies_each_object_once_per_tier(sizes):
    # Each pack written is a list of (object, copies so far); a roll-up concatenates its victims.
    packs: dict[str, list[int]] = {}
    for number, size in enumerate(sizes):
        packs[f"w{number}"] = [0] * size
        while victims := tier_to_roll_up([(name, len(objects)) for name, objects in packs.items()]):
            rolled_tier = max(pack_tier(len(packs[name])) for name in victims)
            union = [copies + 1 for name in victims for copies in packs.pop(name)]
            assert pack_tier(len(union)) > rolled_tier  # the union climbs: the loop ends
            packs[f"r{number}-{len(packs)}"] = union
        tiers = [pack_tier(len(objects)) for objects in packs.values()]
        assert all(tiers.count(tier) < ROLL_UP_FANOUT for tier in set(tiers))
    total = sum(len(objects) for objects in packs.values())
    assert total == sum(sizes)  # nothing lost, nothing duplicated
    most_copies = max(copies for objects in packs.values() for copies in objects)
    assert most_copies <= pack_tier(total) + 1
