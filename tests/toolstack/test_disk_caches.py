"""What the toolstack keeps on disk across processes changes no answer, only how fast it comes.

A full read (``vm list``, a plan) keeps each parsed VM in ``gitstore/vm-cache/`` of the git directory, by the
ids of its files, and the simulator keeps each parsed domain in ``cache/`` of its directory, by a digest of
its file: a cold process then parses only what changed since. The cache must follow every change made by
anyone (an operation, a GitOps edit, a domain changed behind the toolstack's back), and a cache file that is
damaged, written by other code, or writable by others must be ignored and rewritten, never believed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import drivers
import drivers.sim.store
import toolstack.vmsource
from drivers.content_cache import ContentCache, code_version
from tests.toolstack.test_plan_caches import CHANGES, answers, change
from toolstack.ops import Toolstack
from toolstack.vmsource import PARSING_MODULES, VMSource

HOST = "h1"
ROOT = Path(__file__).resolve().parents[2]


def new_pool(where: str, running: list[bool]) -> list[str]:
    """A pool of VMs vm0, vm1... (running or not) in ``where``; their names."""
    names = [f"vm{i}" for i in range(len(running))]
    with Toolstack.init(f"{where}/state.git", f"sim://{where}/sim?durable=0", host=HOST, author="t") as ts:
        for name, run in zip(names, running, strict=True):
            ts.create(name, memory="128M", disks=["/srv/a.img"], nics=["default"], start=run)
    return names


def open_pool(where: str) -> Toolstack:
    """A toolstack that has kept nothing in memory: what a fresh process starts from."""
    return Toolstack.open(f"{where}/state.git", f"sim://{where}/sim?durable=0", host=HOST, author="t")


def cache_dirs(where: str) -> list[Path]:
    return [Path(where, "state.git", "gitstore", "vm-cache"), Path(where, "sim", "cache")]


def drop_caches(where: str) -> None:
    for directory in cache_dirs(where):
        shutil.rmtree(directory, ignore_errors=True)


def count_parses(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Count the VMs and domains parsed from here on (every parse goes through these two functions)."""
    counts = {"vms": 0, "domains": 0}
    parse_vm, parse_domain = toolstack.vmsource.parse_vm, drivers.sim.store.parse_domain

    def vm(*args, **kwargs):
        counts["vms"] += 1
        return parse_vm(*args, **kwargs)

    def domain(*args, **kwargs):
        counts["domains"] += 1
        return parse_domain(*args, **kwargs)

    monkeypatch.setattr(toolstack.vmsource, "parse_vm", vm)
    monkeypatch.setattr(drivers.sim.store, "parse_domain", domain)
    return counts


def cold_answers(where: str) -> tuple[dict[str, object], list[tuple[object, ...]]]:
    with open_pool(where) as ts:
        return answers(ts)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    running=st.lists(st.booleans(), min_size=1, max_size=4),
    changes=st.lists(st.tuples(CHANGES | st.just("hand-edit"), st.integers(0, 3)), max_size=6),
)
def test_a_cold_read_with_the_caches_answers_as_one_without_them(
    tmp_path: Path, running: list[bool], changes: list[tuple[str, int]]
):
    where = tempfile.mkdtemp(dir=tmp_path)
    names = new_pool(where, running)
    cold_answers(where)  # a full read: the caches hold the whole pool
    gone: set[str] = set()
    for index, (kind, which) in enumerate(changes):
        name = names[which % len(names)]
        if name in gone:
            continue
        # Made by a toolstack and a driver that share nothing with the readers but the files on disk.
        with open_pool(where) as other, drivers.open(f"sim://{where}/sim?durable=0") as behind:
            if kind == "hand-edit":
                domain = Path(where, "sim", "domains", f"{other.vm(name).uuid}.json")
                if domain.exists():  # rewritten by hand: another vCPU count, in both of its configurations
                    document = json.loads(domain.read_bytes())
                    for spec in ("config", "live"):
                        if document.get(spec):
                            document[spec]["vcpus"] = 3
                    domain.write_text(json.dumps(document))
            else:
                change(other, behind, kind, name, index)
        if kind in ("break", "delete"):
            gone.add(name)
        cold_answers(where)  # a cold read between changes: it takes what is unchanged and rewrites the rest
    with_caches = cold_answers(where)
    drop_caches(where)
    assert cold_answers(where) == with_caches


def test_a_fresh_toolstack_parses_nothing_a_full_read_before_it_kept(tmp_path, monkeypatch):
    where = str(tmp_path)
    new_pool(where, [True, False, True])
    cold_answers(where)
    counts = count_parses(monkeypatch)
    cold_answers(where)
    assert counts == {"vms": 0, "domains": 0}


def test_a_fresh_toolstack_parses_only_the_vm_and_the_domain_that_changed(tmp_path, monkeypatch):
    where = str(tmp_path)
    new_pool(where, [True, True, True])
    cold_answers(where)
    with open_pool(where) as other:
        other.set_resources("vm1", memory=256)  # a new config on main, and the running domain's new spec
    counts = count_parses(monkeypatch)
    _, listed = cold_answers(where)
    assert counts == {"vms": 1, "domains": 1}
    assert [row[6].spec.memory for row in listed] == [128, 256, 128]


def test_a_change_to_one_vm_rewrites_only_the_cache_files_of_its_shard(tmp_path):
    where = str(tmp_path)
    names = new_pool(where, [False] * 6)
    cold_answers(where)
    before = {path: path.stat().st_ino for directory in cache_dirs(where) for path in directory.iterdir()}
    with open_pool(where) as other:
        changed = other.vm(names[2]).uuid
        other.set_resources(names[2], memory=256)
    cold_answers(where)
    rewritten = {path.name for path, inode in before.items() if path.stat().st_ino != inode}
    assert rewritten == {changed[:2]}


def shard_of(where: str, uuid: str) -> Path:
    return cache_dirs(where)[0] / uuid[:2]


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],  # torn
        lambda data: data[:-1] + bytes([data[-1] ^ 1]),  # one bit flipped in the body
        lambda data: b"garbage",
        lambda data: b"",
        lambda data: data.replace(b"content cache 1", b"content cache 9", 1),  # another format
    ],
)
def test_a_damaged_cache_file_is_ignored_and_rewritten(tmp_path, monkeypatch, damage):
    where = str(tmp_path)
    new_pool(where, [True])
    truth = cold_answers(where)
    with open_pool(where) as ts:
        shard = shard_of(where, ts.vm("vm0").uuid)
    shard.write_bytes(damage(shard.read_bytes()))
    counts = count_parses(monkeypatch)
    assert cold_answers(where) == truth
    assert counts["vms"] == 1  # parsed again, not taken from the damaged file
    assert cold_answers(where) == truth
    assert counts["vms"] == 1  # and the rewritten file is whole again


def lying_cache(where: str, version: bytes | None) -> Path:
    """Write, under ``version``, a cache file that keeps vm0 under its true ids as a VM of 999 MiB."""
    with open_pool(where) as ts:
        uuid = ts.vm("vm0").uuid
        source = VMSource(ts.main.tree, HOST)
        lie = source.read(uuid).model_copy(update={"spec": ts.vm("vm0").spec.evolve(memory=999)})
        ContentCache(cache_dirs(where)[0], version).sync({uuid: (source.key(uuid), lie)})
    return shard_of(where, uuid)


def memory_listed(where: str) -> list[object]:
    return [row[6].spec.memory for row in cold_answers(where)[1]]


def test_a_cache_file_written_by_other_code_is_ignored(tmp_path):
    where = str(tmp_path)
    new_pool(where, [False])
    lying_cache(where, b"another version of the parsing code")
    assert memory_listed(where) == [128]


def test_a_cache_file_others_could_have_written_is_not_loaded(tmp_path):
    where = str(tmp_path)
    new_pool(where, [False])
    lying_cache(where, code_version(PARSING_MODULES))
    assert memory_listed(where) == [
        999
    ]  # the very file, as this user wrote it, is believed (proof of the lie)
    shard = lying_cache(where, code_version(PARSING_MODULES))
    shard.chmod(0o666)
    assert memory_listed(where) == [128]


def cli(where: str, *args: str) -> str:
    argv = ["--repo", f"{where}/state.git", "--driver", f"sim://{where}/sim?durable=0", "--host", HOST]
    done = subprocess.run(
        [sys.executable, "-m", "toolstack.cli", *argv, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=True,
        timeout=300,
    )
    return done.stdout


def test_deleting_the_caches_changes_no_command_output(tmp_path):
    where = str(tmp_path)
    new_pool(where, [True, False, True])
    drop_caches(where)
    first = (cli(where, "vm", "list"), cli(where, "reconcile", "--dry-run"))
    assert all(directory.is_dir() for directory in cache_dirs(where))  # the full reads wrote them
    with_caches = (cli(where, "vm", "list"), cli(where, "reconcile", "--dry-run"))
    drop_caches(where)
    assert with_caches == first == (cli(where, "vm", "list"), cli(where, "reconcile", "--dry-run"))


def test_changes_made_by_other_processes_are_seen_by_the_next_cold_process(tmp_path):
    where = str(tmp_path)
    new_pool(where, [True, False])
    before = (cli(where, "vm", "list"), cli(where, "reconcile", "--dry-run"))  # the caches hold the pool
    cli(where, "vm", "set", "vm1", "--memory", "256M")  # main changes in another process
    with open_pool(where) as ts:
        domain = Path(where, "sim", "domains", f"{ts.vm('vm0').uuid}.json")
    document = json.loads(domain.read_bytes())  # and the hypervisor's file, by hand (drift to reconcile)
    document["config"]["vcpus"] = document["live"]["vcpus"] = 3
    domain.write_text(json.dumps(document))
    after = (cli(where, "vm", "list"), cli(where, "reconcile", "--dry-run"))
    drop_caches(where)
    assert after == (cli(where, "vm", "list"), cli(where, "reconcile", "--dry-run"))
    assert after[0] != before[0] and after[1] != before[1]


def test_a_temporary_file_left_by_a_writer_that_died_is_removed_by_a_full_read(tmp_path):
    where = str(tmp_path)
    new_pool(where, [False])
    cold_answers(where)
    left = [directory / ".00.died-before-its-rename" for directory in cache_dirs(where)]
    for path in left:
        path.write_bytes(b"half a shard")
        os.utime(path, (0, 0))  # long ago
    recent = cache_dirs(where)[0] / ".01.still-being-written"
    recent.write_bytes(b"a shard being written")
    cold_answers(where)
    assert [path.exists() for path in left] == [False, False]
    assert recent.exists()
