"""`toolstack gc --compact`: the packs rolled up into one compressed pack, the history and state unchanged."""

from __future__ import annotations

import json
import os

from tests.toolstack.test_cli import git, run


def pack_bytes(pack_dir) -> int:  # type: ignore[no-untyped-def]
    return sum(os.path.getsize(pack_dir / n) for n in os.listdir(pack_dir) if n.endswith((".pack", ".idx")))


def test_gc_compact_keeps_every_commit_and_value_and_leaves_one_pack_git_verifies(tmp_path):
    run(tmp_path, "init", "--name", "test")
    for n in range(4):
        run(tmp_path, "vm", "create", f"web{n}", "--memory", "64M")
        run(tmp_path, "vm", "start", f"web{n}")
        run(tmp_path, "vm", "set", f"web{n}", "--vcpus", "2")
    before = {
        "log": run(tmp_path, "--json", "log", "web2").stdout,
        "list": run(tmp_path, "--json", "vm", "list").stdout,
        "commits": git(tmp_path, "rev-list", "--all"),
        "tree": git(tmp_path, "ls-tree", "-r", "main"),
    }
    pack_dir = tmp_path / "state.git" / "objects" / "pack"
    size_before = pack_bytes(pack_dir)
    out = run(tmp_path, "--json", "gc", "--compact").stdout
    assert json.loads(out) == {"compacted": True}
    assert len([p for p in os.listdir(pack_dir) if p.endswith(".pack")]) == 1
    # zlib, and versions of a tree as deltas of one another: 24 KB of 49 KB here
    assert pack_bytes(pack_dir) < 0.7 * size_before
    git(tmp_path, "fsck", "--full")
    after = {
        "log": run(tmp_path, "--json", "log", "web2").stdout,
        "list": run(tmp_path, "--json", "vm", "list").stdout,
        "commits": git(tmp_path, "rev-list", "--all"),
        "tree": git(tmp_path, "ls-tree", "-r", "main"),
    }
    assert after == before
    assert run(tmp_path, "gc", "--compact").stdout.strip() in ("compacted the packs", "nothing to compact")


def test_gc_needs_either_a_squash_point_or_compact(tmp_path):
    run(tmp_path, "init", "--name", "test")
    for args in ((), ("--compact", "--before", "2020-01-01"), ("--compact", "--prune-archives")):
        result = run(tmp_path, "gc", *args, check=False)
        assert result.returncode == 2 and "--compact" in result.stderr
