"""bench/scale_bench.py, issue 18's proof, at a few VMs: its 10,000-VM stage measures every command on a
private copy of the cached state, which it never changes, and a check that fails makes the run exit 1 once
the table and the notes are printed."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
sys.path.insert(0, str(BENCH))

import scale_harness  # noqa: E402
import scale_states  # noqa: E402

from drivers.sim.store import DirectoryStore  # noqa: E402

VMS = 4


def build_state(cache: Path) -> Path:
    """The 10,000-VM stage's state with VMS VMs, in ``cache`` where scale_bench.py looks for it."""

    def build(where: str) -> None:
        deadline = time.monotonic() + 120
        scale_states.build_pool_of_vms(f"{where}/pool.git", f"{where}/pool.sim", VMS, 18, deadline)

    key = f"vms-{VMS}-v{scale_states.FORMAT}-seed18"
    where, _ = scale_states.cached(str(cache), key, build, lambda _: None)
    return Path(where)


def snapshot(where: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under ``where``: its inode, modification time and content digest."""
    files = {}
    for parent, _, names in os.walk(where):
        for name in names:
            path = Path(parent, name)
            st = path.lstat()
            files[str(path.relative_to(where))] = (
                st.st_ino,
                st.st_mtime_ns,
                hashlib.sha256(path.read_bytes()).hexdigest(),
            )
    return files


def run_bench(cache: Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, str(BENCH / "scale_bench.py"), "--only", "vms", "--vms", str(VMS)]
    argv += ["--repeat", "1", "--quick", "--cache", str(cache)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(argv, capture_output=True, text=True, timeout=900, env=env)


def test_the_vms_stage_measures_every_command_on_a_copy_and_leaves_the_cached_state_as_it_was(tmp_path):
    state = build_state(tmp_path)
    before = snapshot(state)

    done = run_bench(tmp_path)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    for measure in (
        f"vm list, {VMS} VMs, first run after the parse caches are deleted",
        f"reconcile, nothing to do, {VMS} VMs, first run after the parse caches are deleted",
        f"vm show vm-00002, {VMS} VMs, peak RSS",
        f"log vm-00002, {VMS} VMs, peak RSS",
        f"events, {VMS} VMs, peak RSS",
        f"show main, {VMS} VMs, peak RSS",
        f"agent --once, nothing to do, {VMS} VMs, peak RSS",
        f"serve (GET /vms twice, GET /vms/NAME x20), {VMS} VMs, peak RSS",
        f"gc --before main, {VMS} VMs, peak RSS",
        f"gc --compact, {VMS} VMs, peak RSS",
    ):
        row = next((line for line in table if line.startswith(f"| {measure} |")), None)
        assert row is not None, f"no row {measure!r} in:\n" + "\n".join(table)
        assert "n/a" not in row.split(" | ")[1], row  # measured
    assert "FAILED CHECK" not in done.stdout
    assert snapshot(state) == before
    assert os.listdir(tmp_path) == [state.name]  # the scratch copies are gone


def test_a_reconcile_with_something_to_do_fails_the_run_after_the_table_and_notes(tmp_path):
    state = build_state(tmp_path)
    host = DirectoryStore(state / "pool.sim", durable=False)
    try:
        with host.transaction() as tx:
            gone = tx.all()[0]
            tx.delete(gone.uuid)  # main still wants it: reconcile would define it again
    finally:
        host.close()
    before = snapshot(state)

    done = run_bench(tmp_path)

    assert done.returncode == 1
    assert f"| vm list, {VMS} VMs, cold |" in done.stdout  # everything was printed first
    lines = done.stdout.splitlines()
    said = f"reconcile (first run, parse caches deleted) had something to do at {VMS} VMs"
    assert any(line.startswith(f"- FAILED CHECK: {said}") for line in lines), lines[-20:]
    summary = next(i for i, line in enumerate(lines) if line.endswith("check(s) failed:"))
    assert summary > lines.index("| measure | ours | baseline | ratio | target | met |")  # after the table
    assert any(line.startswith(f"- {said}") for line in lines[summary:])  # and named again, last
    assert snapshot(state) == before  # the copy's reconcile defined it, not the cached state's


def test_a_private_copy_shares_only_the_files_that_are_replaced_never_written_through(tmp_path):
    state = build_state(tmp_path)
    (state / "pool.git" / "gitstore" / "vm-log.sqlite").write_bytes(b"index")
    (state / "pool.sim" / "events.jsonl").write_text("{}\n")
    before = snapshot(state)

    copy = Path(scale_harness.private_copy(str(state), str(tmp_path / "copy")))

    shared = {rel for rel, (inode, _, _) in snapshot(copy).items() if before.get(rel, (None,))[0] == inode}
    assert any(rel.startswith("pool.git/objects/") for rel in shared)  # gigabytes stay hard links
    assert all(
        rel == "built.json" or rel.split("/", 1)[1].startswith(scale_harness.WRITTEN_BY_RENAME)
        for rel in shared
    ), shared
    for rel in (
        "pool.git/gitstore/vm-log.sqlite",
        "pool.sim/events.jsonl",
        "pool.git/config",
        "pool.sim/lock",
    ):
        with open(copy / rel, "ab") as file:  # as SQLite and the simulator's event log write
            file.write(b"written through")
    assert snapshot(state) == before
