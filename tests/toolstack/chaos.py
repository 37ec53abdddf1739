"""The pool chaos harness (issue 16): a real `git daemon` on 127.0.0.1, three agents on three simulated
hosts, two operators driving the CLI on their own clones, GitOps edits in plain git work trees, and faults.

One :func:`run_chaos` is one seed. Every thread's choices come from ``random.Random`` seeded from the seed;
the interleaving of processes is the operating system's, so a seed fixes the script, not the timings. The
chronological journal of what every actor did (``journal.jsonl`` in the run's directory) is the sequence to
read when a check fails.

Actors:

- **operators** ``op1`` and ``op2`` (threads) run `toolstack` processes on their clones: create (placed on a
  host), start, shutdown, set, migrate, delete, `pull --push`, GitOps edits (valid, broken JSON, wrong type)
  committed and pushed with plain git, and `gc --before` + `push --force`. A command that names a command to
  run (exit 6: `toolstack pull --resync`; exit 7: `toolstack rollback ... --vm ...`) is followed by that
  command, as an operator would;
- **faults** (a thread): SIGKILL of an agent (restarted after a pause), `git daemon` outages (killed, then
  restarted on the same port and base path); the operators SIGKILL some of their own commands at random
  moments;
- **the agent keeper** (a thread): an agent cannot leave the "history rewritten" state by itself (it reports
  it every round); when its log says so, the keeper does what the README tells an operator to do: stop it,
  run `toolstack pull --resync` on its repository, start it again. Each time is counted;
- **the sampler** (a thread) reads the three simulators every ~50 ms and records any VM seen active on two
  hosts at once.

The checks the test makes are computed here (:class:`Outcome`); the test asserts them.
"""

from __future__ import annotations

import json
import random
import subprocess
import threading
import time
from dataclasses import asdict
from pathlib import Path

import drivers
from drivers.models import DomainState
from store import Store
from tests.toolstack.chaos_actors import AgentKeeper, Faults, Ledger, Operator, Sampler
from tests.toolstack.chaos_world import (
    COMMAND_TIMEOUT,
    CONVERGE_TIMEOUT,
    MAX_GC_PER_RUN,
    OPERATORS,
    Counters,
    Figures,
    Journal,
    Outcome,
    Pool,
    define_foreign_domains,
    foreign_changes,
)
from tests.toolstack.pool_helpers import HOSTS
from toolstack import layout
from toolstack.errors import InvalidInput
from toolstack.gitops import invalid_vms
from toolstack.models import Desired, read_vm

# -- convergence --------------------------------------------------------------------------------------------
_STATE_OF = {Desired.RUNNING: DomainState.RUNNING, Desired.PAUSED: DomainState.PAUSED}


def differences(pool: Pool, ignore: set[str]) -> list[str]:
    """How the hosts differ from the server's main: placement, run state and memory of every VM."""
    with Store.open(pool.base / "pool.git") as central:
        tree = central.branch("main").tree
        wanted = {}
        for uuid in layout.vm_uuids(tree):
            try:
                wanted[uuid] = read_vm(tree, uuid)
            except InvalidInput as err:
                return [f"{uuid} does not validate on main: {err}"]
    found = []
    for host in HOSTS:
        with drivers.open(f"sim://{pool.dir}/{host}.sim") as hv:
            domains = {str(i.uuid): i for i in hv.list() if str(i.uuid) not in ignore}
            for uuid, vm in wanted.items():
                info = domains.pop(uuid, None)
                if vm.host != host:
                    if info is not None:
                        found.append(f"{vm.name} ({uuid}) is on {host}, placed on {vm.host}")
                    continue
                if info is None:
                    found.append(f"{vm.name} ({uuid}) is placed on {host} but not defined there")
                    continue
                state = _STATE_OF.get(vm.desired, DomainState.SHUTOFF)
                if info.state != state:
                    found.append(f"{vm.name} ({uuid}) on {host} is {info.state}, desired {vm.desired}")
                memory = hv.get_spec(uuid).memory
                if memory != vm.spec.memory:
                    found.append(f"{vm.name} ({uuid}) on {host} has {memory} MiB, main says {vm.spec.memory}")
            found += [f"{info.name} ({uuid}) is on {host} but not on main" for uuid, info in domains.items()]
    return found


def fsck_all(pool: Pool) -> dict[str, str]:
    repos = [pool.base / "pool.git"]
    repos += [pool.dir / f"{name}.git" for name in (*OPERATORS, *HOSTS)]
    repos += [pool.dir / f"{op}-work" for op in OPERATORS if (pool.dir / f"{op}-work").exists()]
    errors = {}
    for repo in repos:
        fsck = subprocess.run(["git", "-C", str(repo), "fsck", "--full"], capture_output=True, text=True)
        if fsck.returncode != 0:
            errors[repo.name] = fsck.stderr.strip()[-2000:]
    return errors


# -- one seed -----------------------------------------------------------------------------------------------
def run_chaos(directory: Path, seed: int, duration: float) -> Outcome:
    """One chaos run of ``duration`` seconds of operations, then convergence and the checks."""
    began = time.monotonic()
    journal = Journal(directory / "journal.jsonl")
    journal.write("harness", "seed", seed=seed, duration=duration)
    master = random.Random(seed)
    counters = Counters()
    ledger = Ledger()
    pool = Pool(directory, journal)
    threads: list[threading.Thread] = []
    sampler = keeper = None
    try:
        for op in OPERATORS:
            setup = ("init", "--name", "chaos") if op == OPERATORS[0] else ("clone", pool.url)
            assert pool.toolstack(op, *setup).code == 0, f"{op}: {setup[0]} failed"
            if op == OPERATORS[0]:
                assert pool.toolstack(op, "push", "--url", pool.url).code == 0
        foreign = define_foreign_domains(directory)
        for host in HOSTS:
            pool.start_agent(host)
        sampler = Sampler(directory, set(foreign), journal)
        keeper = AgentKeeper(pool, counters)
        deadline = time.monotonic() + duration
        gc_budget = [MAX_GC_PER_RUN]
        operators = [
            Operator(op, pool, ledger, counters, random.Random(master.random()), deadline, gc_budget)
            for op in OPERATORS
        ]
        faults = Faults(pool, counters, random.Random(master.random()), deadline)
        threads = [sampler, keeper, faults, *operators]
        for thread in threads:
            thread.start()
        for thread in (faults, *operators):
            thread.join(duration + 4 * COMMAND_TIMEOUT)
        journal.write("harness", "faults stopped")

        # The end: the server up, every agent running, each operator's last word pushed.
        pool.ensure_daemon()
        pool.ensure_agents()
        for operator in operators:
            for _ in range(3):
                if operator.sync(killable=False):
                    break
        deadline = time.monotonic() + CONVERGE_TIMEOUT
        unconverged = differences(pool, set(foreign))
        while unconverged and time.monotonic() < deadline:
            time.sleep(1)
            unconverged = differences(pool, set(foreign))
        journal.write("harness", "converged" if not unconverged else "not converged", left=unconverged)
        errors = [t.error for t in (keeper, faults, *operators) if getattr(t, "error", None)]
        assert not errors, f"a harness thread failed: {errors!r}"
    finally:
        for watcher in (sampler, keeper):
            if watcher is not None:
                watcher.stop.set()
                if watcher.is_alive():
                    watcher.join(10)
        pool.close()

    on_server = pool.server_uuids()
    with Store.open(pool.base / "pool.git") as central:
        tree = central.branch("main").tree
        invalid = invalid_vms(tree, sorted(layout.vm_uuids(tree)))
    expected = {u: n for u, n in ledger.created.items() if u not in ledger.delete_tried}
    lost = [f"{name} ({uuid})" for uuid, name in sorted(expected.items()) if uuid not in on_server]
    undeleted = [uuid for uuid in sorted(ledger.deleted) if uuid in on_server]
    counts = counters.counts
    figures = Figures(
        seed=seed,
        duration=duration,
        operations=sum(n for key, n in counts.items() if key.startswith("op:")),
        operations_by_kind={k[3:]: n for k, n in sorted(counts.items()) if k.startswith("op:")},
        exits={k[5:]: n for k, n in sorted(counts.items()) if k.startswith("exit:")},
        faults=sum(n for key, n in counts.items() if key.startswith("fault:")) + counts["gc-forced-push"],
        faults_by_kind={
            **{k[6:]: n for k, n in sorted(counts.items()) if k.startswith("fault:")},
            "gc-forced-push": counts["gc-forced-push"],
        },
        invalid_edits_tried=counts["invalid-edit-tried"],
        invalid_edits_pushed=counts["invalid-edit-pushed"],
        valid_edits_pushed=counts["valid-edit-pushed"],
        gc_forced_pushes=counts["gc-forced-push"],
        operator_resyncs=counts["resync"],
        operator_rollbacks_after_exit_7=counts["rollback-after-7"],
        agents_resynced_by_hand=counts["agent-resynced-by-hand"],
        agent_unrequested_removal_reports=counts["agent-unrequested-removal"],
        vms_acknowledged=len(ledger.created),
        deletes_acknowledged=len(ledger.deleted),
        vms_lost=len(lost),
        deletes_undone=len(undeleted),
        two_host_sightings=len(sampler.sightings) if sampler else 0,
        hung_commands=len(pool.hung),
        seconds=round(time.monotonic() - began, 1),
    )
    (directory / "figures.json").write_text(json.dumps(asdict(figures), indent=2) + "\n")
    journal.write("harness", "figures", **asdict(figures))
    journal.close()
    return Outcome(
        figures=figures,
        lost=lost,
        undeleted=undeleted,
        invalid_on_main=invalid,
        two_hosts=sorted(sampler.sightings.values()) if sampler else [],
        unconverged=unconverged,
        fsck=fsck_all(pool),
        foreign_touched=foreign_changes(directory, foreign),
        hung=pool.hung,
        directory=directory,
    )
