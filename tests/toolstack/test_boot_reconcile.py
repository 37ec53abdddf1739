"""The boot-time reconcile (issue 20): ``toolstack reconcile --boot`` after a host reboot starts only this
host's VMs that have autostart (and pauses those desired paused), records the others that were wanted
running as stopped, all in one commit whose subject says so, and leaves alone the domains that run already.

The CLI runs as a process on the simulator; a host reboot is every domain stopped behind the toolstack's
back.
"""

from __future__ import annotations

import json

import drivers
from tests.toolstack.test_cli import git, run


def reboot_host(tmp_path) -> None:
    with drivers.open(f"sim://{tmp_path}/sim") as hv:
        for info in hv.list():
            if info.state.is_active:
                hv.oob_kill(info.uuid)


def states(tmp_path) -> dict[str, tuple[str, str]]:
    listed = json.loads(run(tmp_path, "vm", "list", "--json").stdout)
    return {vm["name"]: (vm["desired"], vm["state"]) for vm in listed}


def subjects(tmp_path) -> list[str]:
    return git(tmp_path, "log", "--format=%s", "main").splitlines()


def a_host_with_four_vms(tmp_path) -> None:
    run(tmp_path, "init")
    run(tmp_path, "vm", "create", "web", "--memory", "128M", "--autostart", "--start")
    run(tmp_path, "vm", "create", "db", "--memory", "128M", "--autostart", "--start")
    run(tmp_path, "vm", "pause", "db")
    run(tmp_path, "vm", "create", "scratch", "--memory", "128M", "--start")
    run(tmp_path, "vm", "create", "spare", "--memory", "128M", "--autostart")  # desired stopped


def test_boot_starts_the_autostart_vms_and_records_the_others_stopped_in_one_commit(tmp_path):
    a_host_with_four_vms(tmp_path)
    reboot_host(tmp_path)
    # A plain reconcile would start every VM wanted running, autostart or not.
    plan = json.loads(run(tmp_path, "reconcile", "--dry-run", "--json").stdout)
    assert {a["name"] for a in plan["actions"] if a["kind"] == "start"} == {"web", "db", "scratch"}
    before = subjects(tmp_path)
    out = run(tmp_path, "reconcile", "--boot").stdout
    assert "autostart: web" in out and "autostart: db" in out
    assert "recorded stopped: scratch (no autostart)" in out
    assert states(tmp_path) == {
        "web": ("running", "running"),
        "db": ("paused", "paused"),
        "scratch": ("stopped", "shutoff"),
        "spare": ("stopped", "shutoff"),
    }
    new = subjects(tmp_path)[: len(subjects(tmp_path)) - len(before)]
    host = _host(tmp_path)
    assert new == [f"boot on {host}: started 2 (autostart), recorded 1 stopped (no autostart)"]
    body = git(tmp_path, "log", "-1", "--format=%b", "main")
    assert "started (autostart): db, web" in body and "recorded stopped (no autostart): scratch" in body
    # A plain reconcile afterwards agrees: scratch stays stopped.
    assert "nothing to do" in run(tmp_path, "reconcile").stdout
    assert states(tmp_path)["scratch"] == ("stopped", "shutoff")


def test_boot_leaves_running_domains_alone_and_a_second_run_does_nothing(tmp_path):
    a_host_with_four_vms(tmp_path)
    with drivers.open(f"sim://{tmp_path}/sim") as hv:
        web = next(info for info in hv.list() if info.name == "web")
        hv.oob_kill(web.uuid)  # only web went down: the others still run
    out = run(tmp_path, "reconcile", "--boot").stdout
    assert "autostart: web" in out
    assert "left: db (already running" in out and "left: scratch (already running" in out
    assert states(tmp_path)["scratch"] == ("running", "running")
    head = git(tmp_path, "rev-parse", "main")
    again = run(tmp_path, "reconcile", "--boot").stdout
    assert "recorded stopped" not in again and "autostart:" not in again
    assert git(tmp_path, "rev-parse", "main") == head  # nothing to record: no commit


def test_boot_dry_run_changes_nothing(tmp_path):
    a_host_with_four_vms(tmp_path)
    reboot_host(tmp_path)
    head = git(tmp_path, "rev-parse", "main")
    out = run(tmp_path, "reconcile", "--boot", "--dry-run").stdout
    assert "would start web" in out and "would record stopped: scratch (no autostart)" in out
    assert git(tmp_path, "rev-parse", "main") == head
    assert states(tmp_path)["web"] == ("running", "shutoff")


def test_boot_with_adopt_is_refused_by_name(tmp_path):
    run(tmp_path, "init")
    refused = run(tmp_path, "reconcile", "--boot", "--adopt", check=False)
    assert refused.returncode == 2 and "--boot and --adopt" in refused.stderr


def _host(tmp_path) -> str:
    return json.loads(run(tmp_path, "vm", "list", "--json").stdout)[0]["host"]
