"""The pool chaos test (issue 16): three agents on three simulated hosts and two operators around a real
`git daemon`, doing random operations (create, start, shutdown, set, migrate, delete, valid and invalid GitOps
edits, gc with a forced push) while agents and operator commands are SIGKILLed and the daemon goes down.

After the faults stop and the pool settles:

- every acknowledged VM (its create exited 0 and a later push of that operator carried it) is on main, and
  every acknowledged delete stayed deleted: VMs lost must be 0;
- every VM on main validates: invalid edits were reverted, never applied;
- no VM was ever seen active on two hosts at once;
- every host converges to main: placement, run state and memory;
- `git fsck --full` is clean on the server, every host's and operator's clone and the GitOps work trees;
- the domains of another pool and the one defined by hand were never touched;
- no command hung.

Seeds come from ``CHAOS_SEEDS`` (comma-separated; two short ones by default, for `make test`) and the length
of the operations phase from ``CHAOS_DURATION`` (seconds); `make chaos` runs many, longer. The figures of each
seed are printed and written to ``figures.json`` beside the run's ``journal.jsonl`` (the sequence of events).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict

import pytest

from tests.toolstack.chaos import run_chaos

SEEDS = [int(seed) for seed in os.environ.get("CHAOS_SEEDS", "1,2").split(",") if seed.strip()]
DURATION = float(os.environ.get("CHAOS_DURATION", "12"))


@pytest.mark.parametrize("seed", SEEDS)
def test_a_pool_under_chaos_loses_nothing_never_doubles_a_vm_and_converges(tmp_path, seed, capsys):
    outcome = run_chaos(tmp_path, seed, DURATION)
    figures = outcome.figures
    with capsys.disabled():
        print(
            f"\nchaos seed {seed}: {figures.operations} operations, {figures.faults} faults injected "
            f"{figures.faults_by_kind}, {figures.invalid_edits_tried} invalid edits tried "
            f"({figures.invalid_edits_pushed} pushed), {figures.vms_acknowledged} VMs acknowledged, "
            f"VMs lost: {figures.vms_lost}; two-host sightings: {figures.two_host_sightings}; "
            f"agents resynced by hand: {figures.agents_resynced_by_hand}; {figures.seconds}s; "
            f"journal: {outcome.directory / 'journal.jsonl'}"
        )
    details = json.dumps(asdict(figures))
    assert outcome.lost == [], f"acknowledged VMs missing from main: {outcome.lost}; {details}"
    assert outcome.undeleted == [], f"acknowledged deletes undone: {outcome.undeleted}"
    assert outcome.invalid_on_main == {}, f"invalid VMs on main: {outcome.invalid_on_main}"
    assert outcome.two_hosts == [], f"VMs active on two hosts at once: {outcome.two_hosts}"
    assert outcome.unconverged == [], f"hosts differ from main: {outcome.unconverged}"
    assert outcome.fsck == {}, f"git fsck --full failed: {outcome.fsck}"
    assert outcome.foreign_touched == [], f"foreign domains touched: {outcome.foreign_touched}"
    assert outcome.hung == [], f"hung commands: {outcome.hung}"
