"""Unsafe git maintenance is detected, never built upon; `toolstack fsck` checks git's objects and our own
invariants (claims, task records, unique names, shards) and writes nothing."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.toolstack.test_cli import git, run
from toolstack import layout


def repository_files(repo: Path) -> dict[str, int]:
    """Every file of a repository with its modification time: whatever a command writes changes this."""
    return {str(p.relative_to(repo)): p.stat().st_mtime_ns for p in repo.rglob("*") if p.is_file()}


def pack_holding(repo: Path, object_id: str) -> Path:
    for index in (repo / "objects" / "pack").glob("*.idx"):
        listing = subprocess.run(
            ["git", "show-index"], stdin=index.open("rb"), capture_output=True, text=True, check=True
        ).stdout
        if object_id in listing:
            return index
    raise AssertionError(f"no pack holds {object_id}")


@pytest.fixture
def pool(tmp_path):
    run(tmp_path, "init", "--name", "test")
    run(tmp_path, "vm", "create", "a", "--memory", "64M")
    run(tmp_path, "vm", "create", "b", "--memory", "64M", "--start")
    return tmp_path


def test_a_missing_head_commit_stops_every_command_with_a_clear_error_and_nothing_written(pool):
    repo = pool / "state.git"
    head = git(pool, "rev-parse", "main").strip()
    index = pack_holding(repo, head)
    # What `git repack -ad` or `git gc --prune=now` racing a writer leaves: main names a commit that is gone.
    index.unlink()
    index.with_suffix(".pack").unlink()
    before = repository_files(repo)
    for command in (("vm", "list"), ("vm", "start", "a"), ("vm", "create", "c", "--memory", "64M")):
        result = run(pool, *command, check=False)
        assert result.returncode == 1, command
        assert f"the commit {head} of main's head is missing" in result.stderr
        assert "git gc --prune=now" in result.stderr  # names the likely cause
        assert "toolstack fsck" in result.stderr and "fsck --full" in result.stderr  # how to see it
        assert "git clone --bare" in result.stderr and "refs/archive" in result.stderr  # how to recover
    assert repository_files(repo) == before


def test_a_missing_head_tree_is_detected_too(pool):
    repo = pool / "state.git"
    missing_tree = "1" * 40
    commit = subprocess.run(
        ["git", "--git-dir", str(repo), "hash-object", "-t", "commit", "--literally", "-w", "--stdin"],
        input=f"tree {missing_tree}\nauthor x <x> 0 +0000\ncommitter x <x> 0 +0000\n\nbroken\n",
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    git(pool, "update-ref", "refs/heads/main", commit)
    result = run(pool, "vm", "list", check=False)
    assert result.returncode == 1
    assert f"the tree {missing_tree} of main's head is missing" in result.stderr


def test_fsck_of_a_healthy_repository_says_ok_and_writes_nothing(pool):
    before = repository_files(pool / "state.git")
    result = run(pool, "fsck")
    assert (
        result.stdout.splitlines()[-1]
        == "ok: 0 errors, 0 warnings (2 vms, 2 names, 2 tasks, 0 claims checked)"
    )
    report = json.loads(run(pool, "--json", "fsck").stdout)
    assert report == {"ok": True, "counts": {"vms": 2, "names": 2, "tasks": 2, "claims": 0}, "findings": []}
    assert repository_files(pool / "state.git") == before


def test_fsck_reports_git_damage(pool):
    head = git(pool, "rev-parse", "main").strip()
    index = pack_holding(pool / "state.git", head)
    index.unlink()
    index.with_suffix(".pack").unlink()
    result = run(pool, "fsck", check=False)
    assert result.returncode == 1
    assert f"error: [git] git fsck: error: refs/heads/main: invalid sha1 pointer {head}" in result.stdout
    assert "error: [head]" in result.stdout


def uuid_of(pool: Path, name: str) -> str:
    return json.loads(run(pool, "--json", "vm", "show", name).stdout)["uuid"]


def test_fsck_reports_each_broken_invariant_by_path(pool):
    a, b = uuid_of(pool, "a"), uuid_of(pool, "b")
    config_b = run(pool, "store", "get", layout.config_path(b)).stdout
    # A second VM that claims a's name, in the wrong shard; a name pointing nowhere; a broken task record;
    # a VM whose config is not JSON; a claim on a VM that names no task.
    impostor = "0" * 8 + b[8:]
    run(pool, "store", "set", f"vms/ff/{impostor}/config", config_b.replace('"b"', '"a"'))
    run(pool, "store", "set", layout.name_path("ghost"), "f" * 8 + b[8:])
    run(pool, "store", "set", layout.task_path("20260101T000000-deadbeef"), "{not json")
    run(pool, "store", "set", layout.config_path(a), "{broken")
    git(pool, "update-ref", f"refs/heads/{layout.LOCK_PREFIX}/{b}", "main")
    result = run(pool, "fsck", "--no-git", check=False)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert f"error: [vms] VM {impostor} is in shard ff, not 00" in lines
    assert any(
        line.startswith(f"error: [vms] VM {a} does not validate: {layout.config_path(a)}") for line in lines
    )
    assert f"error: [names] name 'ghost' points at '{'f' * 8 + b[8:]}', which is not a VM" in lines
    assert any(line.startswith("error: [tasks] task record does not parse") for line in lines)
    claim = f"refs/heads/{layout.LOCK_PREFIX}/{b}"
    assert f"warning: [claims] claim {claim} records no task (the next command drops it)" in lines
    assert lines[-1].startswith("damaged: 4 errors, 1 warnings")
    report = json.loads(run(pool, "--json", "fsck", "--no-git", check=False).stdout)
    paths = {finding["path"] for finding in report["findings"]}
    assert {f"vms/ff/{impostor}", f"vms/{a[:2]}/{a}", layout.name_path("ghost")} <= paths


def test_fsck_finds_names_that_are_not_unique(pool):
    a, b = uuid_of(pool, "a"), uuid_of(pool, "b")
    config_b = run(pool, "store", "get", layout.config_path(b)).stdout
    run(pool, "store", "set", layout.config_path(b), config_b.replace('"b"', '"a"'))
    lines = run(pool, "fsck", "--no-git", check=False).stdout.splitlines()
    assert f"error: [names] name 'a' is not unique: VMs {', '.join(sorted([a, b]))}" in lines
    assert f"error: [names] name 'b' points at VM {b}, whose config names it 'a'" in lines


def test_fsck_of_a_missing_repository_creates_nothing(tmp_path):
    result = run(tmp_path, "fsck", check=False)
    assert result.returncode == 1
    assert "state.git" in result.stderr
    assert not os.path.exists(tmp_path / "state.git")
