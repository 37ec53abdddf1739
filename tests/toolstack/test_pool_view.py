"""The pool seen from any host, through the real CLI on the simulator (issue 16, items 7, 8 and 9):

- a VM placed on another host shows that host's last report and its age, not this host's "absent";
  operations on it say they are queued for that host, and ``--wait`` waits for that host's report;
- a migration never runs a VM on two hosts: the destination waits for the source's record of the stop, and
  ``--force`` releases a VM whose source is down;
- memory and vCPUs changed live outside the toolstack are drift: committed, shown, repaired;
- one broken entry is reported for its VM alone.

The agents are real ``toolstack agent`` processes, each with its own simulated hypervisor, that pull from and
push to the operator's state repository (the pool's shared repository here).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import drivers
from drivers.models import DomainState, Scope
from store import Store
from tests.store.git_servers import git_daemon
from tests.toolstack.conftest import ROOT
from tests.toolstack.test_cli import git, run
from toolstack import layout


class Agent:
    """A ``toolstack agent --host NAME`` process on its own clone and simulator, around the pool's shared
    repository (``url``; default: the operator's ``state.git``)."""

    def __init__(self, tmp_path, host: str, url: str | None = None) -> None:
        self.tmp_path = tmp_path
        self.host = host
        self.url = url or str(tmp_path / "state.git")
        self.log = tmp_path / f"{host}.log"
        self.sim = f"sim://{tmp_path}/{host}.sim"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Agent:
        # The agent's own repository is a path of its own: no TOOLSTACK_* variable of the operator's.
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOOLSTACK_")}
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "toolstack.cli",
                    "--repo",
                    str(self.tmp_path / f"{self.host}.git"),
                    "--driver",
                    self.sim,
                    "agent",
                    "--host",
                    self.host,
                    "--remote",
                    self.url,
                    "--interval",
                    "0.3",
                ],
                env={**env, "PYTHONPATH": ROOT},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return self

    def stop(self) -> None:
        """Stop the agent (the host becomes unreachable: its hypervisor keeps running what it runs)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def domains(self) -> dict[str, DomainState]:
        with drivers.open(self.sim) as hypervisor:
            return {str(info.uuid): info.state for info in hypervisor.list()}

    def running(self, uuid: str) -> bool:
        return self.domains().get(uuid) == DomainState.RUNNING


def wait_until(predicate, timeout: float, every=None) -> bool:
    """Poll ``predicate`` until true; ``every`` is checked at each poll too (an invariant)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if every is not None:
            every()
        if predicate():
            return True
        time.sleep(0.3)
    return predicate()


def uuid_of(tmp_path, name: str) -> str:
    return json.loads(run(tmp_path, "--json", "vm", "show", name).stdout)["uuid"]


def listed(tmp_path) -> dict[str, dict]:
    return {r["name"]: r for r in json.loads(run(tmp_path, "--json", "vm", "list").stdout)}


def list_row(tmp_path, name: str) -> str:
    rows = run(tmp_path, "vm", "list").stdout.splitlines()
    return next(row for row in rows if row.split()[0] == name)


def test_a_vm_placed_on_another_host_shows_that_hosts_report_and_operations_on_it_are_queued(tmp_path):
    run(tmp_path, "init", "--name", "pool")
    run(tmp_path, "vm", "create", "web", "--memory", "64M", "--on", "h2")
    uuid = uuid_of(tmp_path, "web")

    # h2 has reported nothing yet: the state is unknown there, not "absent" from this host's hypervisor.
    assert "unknown (h2, no report)" in list_row(tmp_path, "web")
    started = run(tmp_path, "vm", "start", "web")
    assert started.stdout.strip() == "start web: queued for h2 (its agent applies it)"
    assert json.loads(run(tmp_path, "--json", "vm", "start", "web").stdout)["queued"] is True

    agent = Agent(tmp_path, "h2").start()
    try:
        # --wait reads main again (this repository is the one the agent pushes to) until h2 reports it.
        waited = run(tmp_path, "vm", "start", "web", "--wait", "90").stdout.strip()
        assert waited.startswith("start web: running (h2, ") and waited.endswith(" s ago)"), waited
        assert agent.running(uuid)
        row = list_row(tmp_path, "web")
        assert row.split()[4:6] == ["running", "running"] and "(h2, " in row
        record = listed(tmp_path)["web"]
        assert record["host"] == "h2" and record["local"] is False and record["state"] == "running"
        assert record["reported_at"] is not None and 0 <= record["age"] < 120
        shown = run(tmp_path, "vm", "show", "web").stdout
        assert "host:     h2 (its agent runs it)" in shown and "state:    running (h2, " in shown

        # Shutting it down waits for h2 to report it stopped.
        stopped = run(tmp_path, "vm", "shutdown", "web", "--wait", "90").stdout.strip()
        assert stopped.startswith("shutdown web: shutoff (h2, "), stopped
        assert agent.domains()[uuid] == DomainState.SHUTOFF
    finally:
        agent.stop()
    # This host's hypervisor never had the VM.
    with drivers.open(f"sim://{tmp_path}/sim") as here:
        assert here.list() == []


def test_wait_gives_up_with_the_hosts_last_report_when_its_agent_is_down(tmp_path):
    run(tmp_path, "init", "--name", "pool")
    run(tmp_path, "vm", "create", "web", "--memory", "64M", "--on", "h9")
    result = run(tmp_path, "vm", "start", "web", "--wait", "1", check=False)
    assert result.returncode == 1
    assert (
        "queued for h9, but after" in result.stderr and "reports it unknown (h9, no report)" in result.stderr
    )
    assert "toolstack agent --host h9" in result.stderr


def test_migration_stops_and_records_on_the_source_before_the_destination_starts(tmp_path):
    # The pool's shared repository on a git daemon; the operator pushes to it and pulls the hosts' reports.
    base = tmp_path / "server"
    base.mkdir()
    Store.open(base / "pool.git").close()
    with git_daemon(str(base)) as daemon:
        url = f"{daemon}/pool.git"
        run(tmp_path, "init", "--name", "pool")
        run(tmp_path, "push", "--url", url)
        run(tmp_path, "vm", "create", "web", "--memory", "64M", "--on", "h1")
        uuid = uuid_of(tmp_path, "web")
        h1, h2 = Agent(tmp_path, "h1", url).start(), Agent(tmp_path, "h2", url)

        def pooled() -> dict[str, dict]:
            run(tmp_path, "pull")
            return listed(tmp_path)

        try:
            # --wait pushes the operation and pulls the reports until h1 reports it running.
            waited = run(tmp_path, "vm", "start", "web", "--wait", "90").stdout
            assert waited.startswith("start web: running (h1, ") and h1.running(uuid)

            # h1 becomes unreachable, its VM still running: h2 must not start a second copy.
            h1.stop()
            h2.start()
            moved = run(tmp_path, "vm", "migrate", "web", "--to", "h2").stdout.strip()
            assert (
                moved
                == "migrate web: queued: h1's agent stops it, then h2's starts it (if h1 is down: --force)"
            )
            run(tmp_path, "push")
            assert wait_until(lambda: "waiting: web: migrating from h1" in h2.log.read_text(), 60), (
                h2.log.read_text()
            )
            time.sleep(1.5)  # a few more of h2's rounds
            assert not h2.running(uuid) and h1.running(uuid)
            assert "unknown (h2, no report), migrating from h1" in list_row(tmp_path, "web")
            assert pooled()["web"]["migrating_from"] == "h1"

            # h1 comes back: it stops the VM and records that; only then does h2 start it. Never both.
            def never_twice() -> None:
                assert not (h1.running(uuid) and h2.running(uuid)), "web runs on h1 and h2 at once"

            h1.start()
            assert wait_until(lambda: h2.running(uuid), 90, every=never_twice), h2.log.read_text()
            assert uuid not in h1.domains()
            assert wait_until(lambda: pooled()["web"]["state"] == "running", 60)
            assert (
                listed(tmp_path)["web"]["host"] == "h2" and listed(tmp_path)["web"]["migrating_from"] is None
            )
            # Main shows the order: in the commit where h2 first recorded the VM, h1's record of it was gone.
            h2_record = layout.observed_path("h2", uuid)
            first = git(tmp_path, "log", "--format=%H", "--reverse", "main", "--", h2_record).split()[0]
            assert uuid not in git(tmp_path, "ls-tree", "-r", "--name-only", first, "hosts/h1")

            # h2 goes down with the VM running; moving it back to h1 waits for h2, until the operator, who
            # knows h2 is down, forces it.
            h2.stop()
            run(tmp_path, "vm", "migrate", "web", "--to", "h1")
            run(tmp_path, "push")
            assert wait_until(lambda: "migrating from h2" in h1.log.read_text(), 60), h1.log.read_text()
            assert not h1.running(uuid)
            forced = run(tmp_path, "vm", "migrate", "web", "--to", "h1", "--force").stdout.strip()
            assert forced == "migrate web: queued for h1, which starts it without waiting for h2"
            run(tmp_path, "push")
            assert wait_until(lambda: h1.running(uuid), 90), h1.log.read_text()
        finally:
            h1.stop()
            h2.stop()


def test_memory_and_vcpus_changed_live_are_drift_committed_shown_and_repaired(tmp_path):
    run(tmp_path, "init", "--name", "pool")
    # Ceilings above the boot values, so that the live values can go back up without a reboot.
    run(
        tmp_path,
        "vm",
        "create",
        "web",
        "--memory",
        "256M",
        "--vcpus",
        "2",
        "--start",
        "--max-memory",
        "1G",
        "--max-vcpus",
        "4",
    )
    uuid = uuid_of(tmp_path, "web")
    with drivers.open(f"sim://{tmp_path}/sim") as hypervisor:  # outside the toolstack
        hypervisor.set_memory(uuid, 128, Scope.LIVE)
        hypervisor.set_vcpus(uuid, 1, Scope.LIVE)

    shown = run(tmp_path, "vm", "show", "web").stdout
    assert "drift:    memory 128 MiB, desired 256 MiB (changed outside the toolstack)" in shown
    assert "drift:    vcpus 1, desired 2 (changed outside the toolstack)" in shown
    assert json.loads(run(tmp_path, "--json", "vm", "show", "web").stdout)["drift"] == [
        "memory 128 MiB, desired 256 MiB",
        "vcpus 1, desired 2",
    ]
    planned = run(tmp_path, "reconcile", "--dry-run").stdout
    assert "set-memory web" in planned and "set-vcpus web" in planned

    run(tmp_path, "reconcile")
    drift_commit = git(tmp_path, "log", "--format=%B", "--grep=^drift:", "main")
    assert f"vm web ({uuid}) memory is 128 MiB, was 256 MiB, desired 256 MiB" in drift_commit
    assert f"vm web ({uuid}) vcpus is 1, was 2, desired 2: changed outside the toolstack" in drift_commit
    with drivers.open(f"sim://{tmp_path}/sim") as hypervisor:
        info = hypervisor.info(uuid)
    assert (info.memory, info.vcpus, info.state) == (256, 2, DomainState.RUNNING)
    # No drift line is left (the history lines below it may name the drift commit itself).
    shown = run(tmp_path, "vm", "show", "web").stdout
    assert not [line for line in shown.splitlines() if line.startswith("drift:")], shown
    assert "nothing to do" in run(tmp_path, "reconcile").stdout.lower()


def test_a_broken_entry_is_reported_for_its_vm_alone(tmp_path):
    run(tmp_path, "init", "--name", "pool")
    run(tmp_path, "vm", "create", "web1", "--memory", "64M", "--start")
    run(tmp_path, "vm", "create", "web2", "--memory", "64M")
    uuid = uuid_of(tmp_path, "web2")
    config = layout.config_path(uuid)
    run(tmp_path, "store", "set", config, "{broken")

    rows = run(tmp_path, "vm", "list").stdout.splitlines()
    web1 = next(row for row in rows if row.startswith("web1 "))
    web2 = next(row for row in rows if row.startswith("web2 "))
    assert web1.split()[-2:] == ["running", "running"]
    assert f"broken: {config} is not valid JSON" in web2
    records = {r["name"]: r for r in json.loads(run(tmp_path, "--json", "vm", "list").stdout)}
    assert records["web1"]["broken"] is False and records["web1"]["state"] == "running"
    assert records["web2"]["broken"] is True and records["web2"]["state"] == "broken"
    assert records["web2"]["error"]["path"] == config
    assert records["web2"]["error"]["message"].startswith("is not valid JSON")

    shown = run(tmp_path, "vm", "show", "web2").stdout
    assert "state:    broken" in shown and f"path:     {config}" in shown
    assert "error:    is not valid JSON: Expecting property name" in shown
    assert "store set " + config in shown  # its history still says how it got there
    # Operations on it name the path and the error; the others still work.
    started = run(tmp_path, "vm", "start", "web2", check=False)
    assert started.returncode == 1 and f"{config} is not valid JSON" in started.stderr
    run(tmp_path, "vm", "shutdown", "web1", "--force")
