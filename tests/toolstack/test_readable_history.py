"""Readable history (issue 20): commit subjects say what changed within 72 columns, the uuid and the task are
trailers git reads, ``show``/``diff`` print field-level changes per VM, and a VM's log holds its drift,
reconcile and GitOps changes with their real authors. The CLI runs as a process on a real repository."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.toolstack.conftest import ROOT, push_memory_edit_as_ada
from toolstack.ops import Toolstack

AUTHOR = "Olga Operator <olga@example.org>"


def run(tmp_path, *args, repo="state.git", sim="sim"):
    environment = {
        **os.environ,
        "PYTHONPATH": ROOT,
        "TOOLSTACK_REPO": str(tmp_path / repo),
        "TOOLSTACK_DRIVER": f"sim://{tmp_path}/{sim}",
    }
    done = subprocess.run(
        [sys.executable, "-m", "toolstack.cli", "--author", AUTHOR, *args],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, f"toolstack {' '.join(args)} exited {done.returncode}: {done.stderr}"
    return done.stdout


def git(where, *args, stdin=None):
    return subprocess.run(
        ["git", "-C", str(where), *args], capture_output=True, text=True, check=True, input=stdin
    ).stdout


def trailers(repo, rev="main"):
    message = git(repo, "log", "-1", "--format=%B", rev)
    parsed = git(repo, "interpret-trailers", "--parse", stdin=message).splitlines()
    return [tuple(line.split(": ", 1)) for line in parsed]


def test_operation_subjects_name_the_change_and_trailers_carry_the_uuid_and_task(tmp_path):
    repo = tmp_path / "state.git"
    run(tmp_path, "init", "--name", "pool")
    run(tmp_path, "vm", "create", "web1", "--memory", "1024M", "--vcpus", "2")
    uuid = json.loads(run(tmp_path, "--json", "vm", "show", "web1"))["uuid"]
    assert git(repo, "log", "-1", "--format=%s", "main").strip() == "vm create web1: 1024 MiB, 2 vCPUs"
    run(tmp_path, "vm", "start", "web1")
    assert git(repo, "log", "-1", "--format=%s", "main").strip() == "vm start web1"
    run(tmp_path, "vm", "set", "web1", "--memory", "2048M", "--vcpus", "4")
    subject = git(repo, "log", "-1", "--format=%s", "main").strip()
    assert subject == "vm set web1: memory 1024→2048 MiB, vcpus 2→4"
    found = trailers(repo)
    [task] = [value for key, value in found if key == "Task"]
    assert ("VM", uuid) in found and json.loads(run(tmp_path, "--json", "task", "show", task))["vm"] == uuid
    assert uuid not in subject
    run(tmp_path, "disk", "attach", "web1", "/srv/data.img", "--target", "xvdb", "--id", "data")
    assert git(repo, "log", "-1", "--format=%s", "main").strip() == "disk attach web1: data on xvdb"


def test_a_subject_too_long_is_cut_with_an_ellipsis_and_the_body_has_it_all(tmp_path):
    repo = tmp_path / "state.git"
    name = "a-web-server-with-a-very-long-name-indeed-" + "x" * 12
    run(tmp_path, "init", "--name", "pool")
    run(tmp_path, "vm", "create", name, "--memory", "1024M", "--vcpus", "2")
    run(tmp_path, "vm", "set", name, "--memory", "2048M", "--vcpus", "4")
    subject = git(repo, "log", "-1", "--format=%s", "main").rstrip("\n")
    assert len(subject) <= 72 and subject.endswith("…") and subject.startswith(f"vm set {name}")
    body = git(repo, "log", "-1", "--format=%b", "main")
    assert "- memory: 1024 → 2048 MiB" in body and "- vcpus: 2 → 4" in body


def test_drift_of_200_vms_has_a_short_subject_and_names_every_vm_in_body_and_trailers(tmp_path):
    repo = str(tmp_path / "state.git")
    ts = Toolstack.init(repo, f"sim://{tmp_path}/sim", host="h", author=AUTHOR)
    try:
        uuids = []
        for n in range(200):
            vm = ts.create(f"web{n}", memory="16M")
            ts.start(vm.name)
            uuids.append(vm.uuid)
        for uuid in uuids:
            ts.driver.oob_kill(uuid)
        ts.reconcile()
    finally:
        ts.close()
    drift = git(repo, "log", "-1", "--format=%H", "--grep=^drift:", "main").strip()
    subject = git(repo, "log", "-1", "--format=%s", drift).rstrip("\n")
    assert len(subject) <= 72 and subject.startswith("drift: 200 VMs (web") and subject.endswith("…)")
    assert {value for key, value in trailers(repo, drift) if key == "VM"} == set(uuids)
    assert git(repo, "log", "-1", "--format=%b", drift).count("changed outside the toolstack") == 200
    reconciled = git(repo, "log", "-1", "--format=%s", "main").rstrip("\n")
    assert len(reconciled) <= 72 and reconciled.startswith("reconcile: 200 actions on 200 VMs (start web")


def test_show_and_diff_print_field_changes_per_vm_desired_first_and_the_rest_with_all(tmp_path):
    run(tmp_path, "init", "--name", "pool")
    run(tmp_path, "vm", "create", "web1", "--memory", "1024M", "--vcpus", "2")
    created = git(tmp_path / "state.git", "rev-parse", "main").strip()
    run(tmp_path, "vm", "start", "web1")
    run(tmp_path, "vm", "set", "web1", "--memory", "2048M")
    shown = run(tmp_path, "show", "main")
    assert "web1 (" in shown and "  memory: 1024 → 2048 MiB" in shown
    assert "seen_at" not in shown and "observed on" not in shown  # bookkeeping hidden
    record = json.loads(run(tmp_path, "--json", "show", "main"))
    [vm] = record["vms"]
    assert vm["name"] == "web1" and record["hidden"] > 0
    assert vm["changes"] == [
        {
            "group": "desired",
            "vm": vm["vm"],
            "field": "memory",
            "kind": "changed",
            "before": 1024,
            "after": 2048,
            "unit": "MiB",
            "whole": False,
        }
    ]
    everything = json.loads(run(tmp_path, "--json", "show", "main", "--all"))
    groups = [c["group"] for g in everything["vms"] for c in g["changes"]]
    assert everything["hidden"] == 0 and groups[0] == "desired" and {"observed", "task"} <= set(groups)
    assert "seen_at" in run(tmp_path, "show", "main", "--all")
    diff = json.loads(run(tmp_path, "--json", "diff", created, "main"))
    [vm] = diff["vms"]
    assert [(c["field"], c["before"], c["after"]) for c in vm["changes"]] == [
        ("memory", 1024, 2048),
        ("desired", "stopped", "running"),
    ]
    assert "  desired: stopped → running" in run(tmp_path, "diff", created, "main")


def test_a_vms_log_holds_its_drift_and_reconcile_as_the_readme_git_command_does(tmp_path):
    repo = tmp_path / "state.git"
    run(tmp_path, "init", "--name", "pool")
    run(tmp_path, "vm", "create", "web1", "--memory", "64M")
    run(tmp_path, "vm", "create", "web2", "--memory", "64M")
    run(tmp_path, "vm", "start", "web1")
    uuid = json.loads(run(tmp_path, "--json", "vm", "show", "web1"))["uuid"]
    ts = Toolstack.open(str(repo), f"sim://{tmp_path}/sim", author=AUTHOR)
    try:
        ts.driver.oob_kill(uuid)
    finally:
        ts.close()
    run(tmp_path, "reconcile", "--yes")
    log = [json.loads(line) for line in run(tmp_path, "--json", "log", "web1").splitlines()]
    assert [entry["message"].split(":")[0] for entry in log] == [
        "reconcile",
        "drift",
        "vm start web1",
        "vm create web1",
    ]
    assert all(entry["author"] == AUTHOR for entry in log)
    assert "drift" not in run(tmp_path, "log", "web2")  # only the VMs it names
    # README "Using git on the state": its directory's first-parent log, plus the commits whose VM trailer
    # names it, in main's first-parent order.
    mine = set(git(repo, "rev-list", "--first-parent", "main", "--", f"vms/{uuid[:2]}/{uuid}").split())
    mine |= set(git(repo, "rev-list", "--first-parent", f"--grep=^VM: {uuid}$", "main").split())
    ordered = [c for c in git(repo, "rev-list", "--first-parent", "main").split() if c in mine]
    assert [entry["commit"] for entry in log] == ordered


def test_a_gitops_edit_is_logged_under_whoever_pushed_it(tmp_path):
    run(tmp_path, "init", "--name", "pool")
    run(tmp_path, "vm", "create", "web1", "--memory", "64M")
    run(tmp_path, "vm", "create", "web2", "--memory", "64M")
    uuid = json.loads(run(tmp_path, "--json", "vm", "show", "web1"))["uuid"]
    central = tmp_path / "central.git"
    git(tmp_path, "clone", "-q", "--bare", str(tmp_path / "state.git"), str(central))
    git(tmp_path / "state.git", "remote", "add", "origin", str(central))
    # Ada edits web1 in her clone and pushes; meanwhile the operator changes web2 here.
    work = tmp_path / "ada"
    git(tmp_path, "clone", "-q", "-b", "main", str(central), str(work))
    push_memory_edit_as_ada(work, uuid, 128)
    run(tmp_path, "vm", "set", "web2", "--vcpus", "2")
    run(tmp_path, "pull", "--yes")
    log = [json.loads(line) for line in run(tmp_path, "--json", "log", "web1").splitlines()]
    assert [entry["message"].split(":")[0] for entry in log[:3]] == [
        "reconcile",  # the domain updated to the new memory
        "Merge origin/main into main",
        "vm create web1",
    ]
    merge = log[1]
    assert merge["message"] == "Merge origin/main into main: web1"
    assert merge["edited_by"] == ["Ada Pusher <ada@example.org>"] and merge["author"] == AUTHOR
    [line] = [line for line in run(tmp_path, "log", "web1").splitlines() if "Merge origin" in line]
    assert "Ada Pusher <ada@example.org> (merged by Olga Operator" in line
    assert "web2" not in merge["message"]  # the operator's own change is not Ada's
    merge_id = merge["commit"]
    assert ("Edited-by", f"{uuid} Ada Pusher <ada@example.org>") in trailers(tmp_path / "state.git", merge_id)
