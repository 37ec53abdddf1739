"""The toolstack CLI, run as a real process: output, exit codes, and bad input that writes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.toolstack.conftest import ROOT
from toolstack import layout


def run(tmp_path, *args, check=True, env=None):
    environment = {
        **os.environ,
        "PYTHONPATH": ROOT,
        "TOOLSTACK_REPO": str(tmp_path / "state.git"),
        "TOOLSTACK_DRIVER": f"sim://{tmp_path}/sim",
        **(env or {}),
    }
    result = subprocess.run(
        [sys.executable, "-m", "toolstack.cli", "--author", "Cli Tester <cli@example.org>", *args],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
        timeout=120,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"toolstack {' '.join(args)} exited {result.returncode}: {result.stderr}")
    return result


def git(tmp_path, *args):
    return subprocess.run(
        ["git", "-C", str(tmp_path / "state.git"), *args], capture_output=True, text=True, check=True
    ).stdout


def test_create_start_list_show_and_log(tmp_path):
    run(tmp_path, "init", "--name", "test")
    out = run(
        tmp_path,
        "vm",
        "create",
        "web1",
        "--memory",
        "512M",
        "--vcpus",
        "2",
        "--disk",
        "/srv/w.img",
        "--nic",
        "default",
    ).stdout
    assert out.startswith("created web1 (")
    run(tmp_path, "vm", "start", "web1")
    listing = run(tmp_path, "vm", "list").stdout.splitlines()
    assert listing[0].split() == ["NAME", "UUID", "MEMORY", "VCPUS", "DESIRED", "STATE"]
    assert listing[1].split()[0] == "web1" and listing[1].split()[-2:] == ["running", "running"]
    records = json.loads(run(tmp_path, "--json", "vm", "list").stdout)
    assert records[0]["name"] == "web1" and records[0]["memory"] == 512 and records[0]["state"] == "running"
    shown = run(tmp_path, "vm", "show", "web1").stdout
    assert "disk0: disk /srv/w.img as vda" in shown and "vm start web1" in shown
    log = [json.loads(line) for line in run(tmp_path, "--json", "log", "web1").stdout.splitlines()]
    assert [entry["message"].split(":")[0] for entry in log] == ["vm start web1", "vm create web1"]
    assert log[0]["author"] == "Cli Tester <cli@example.org>"
    # git itself sees the same history.
    assert "vm start web1" in git(tmp_path, "log", "--first-parent", "--format=%s", "main")


def test_show_diff_store_and_task_commands(tmp_path):
    run(tmp_path, "init", "--name", "test")
    run(tmp_path, "vm", "create", "a1", "--memory", "128M")
    first = git(tmp_path, "rev-parse", "main").strip()
    run(tmp_path, "vm", "set", "a1", "--memory", "256M")
    shown = run(tmp_path, "show", "main").stdout
    assert "vm set a1" in shown and "  memory: 128 → 256 MiB" in shown
    assert run(tmp_path, "show").stdout == shown, "as `git show`: the last commit when none is named"
    diff = json.loads(run(tmp_path, "--json", "diff", first, "main").stdout)
    [vm] = diff["vms"]
    assert vm["name"] == "a1" and [(c["field"], c["before"], c["after"]) for c in vm["changes"]] == [
        ("memory", 128, 256)
    ]
    assert run(tmp_path, "store", "ls", "vms").stdout.strip() != ""
    uuid = run(tmp_path, "store", "get", layout.name_path("a1")).stdout.strip()
    assert len(uuid) == 36
    run(tmp_path, "store", "set", "notes/hello", "world", "-m", "a note")
    assert run(tmp_path, "store", "get", "notes/hello").stdout == "world"
    assert "main" in run(tmp_path, "store", "branches").stdout
    tasks = [json.loads(line) for line in run(tmp_path, "--json", "task", "list").stdout.splitlines()]
    assert [t["operation"] for t in tasks] == ["set", "create"]
    assert all(t["status"] == "succeeded" for t in tasks)
    assert "operation: set" in run(tmp_path, "task", "show", tasks[0]["id"]).stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["vm", "create", "x", "--memory", "12XB"], 2, "'12XB' is not a memory size"),
        (["vm", "show", "nope"], 1, "no VM named 'nope'"),
        (["vm", "start", "nope"], 1, "no VM named 'nope'"),
        (["vm", "create", "bad name", "--memory", "1G"], 1, "name"),
        (["--driver", "bogus://", "vm", "create", "x", "--memory", "1G"], 1, "no driver for URI 'bogus://'"),
        (["vm", "frobnicate", "x"], 2, "No such command"),
    ],
)
def test_bad_input_gets_a_one_line_error_and_writes_nothing(tmp_path, args, code, message):
    run(tmp_path, "init", "--name", "test")
    run(tmp_path, "vm", "create", "seed", "--memory", "64M")
    refs = git(tmp_path, "for-each-ref")
    domains = sorted(os.listdir(tmp_path / "sim"))
    result = run(tmp_path, *args, check=False)
    assert result.returncode == code
    assert message in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("error:")]) <= 1
    assert git(tmp_path, "for-each-ref") == refs
    assert sorted(os.listdir(tmp_path / "sim")) == domains


def test_commands_on_a_missing_repository_create_nothing(tmp_path):
    commands = (
        ["vm", "list"],
        ["vm", "start", "x"],
        ["vm", "create", "x", "--memory", "64M"],
        ["log"],
        ["vm", "show", "x"],
        ["reconcile"],
        ["reconcile", "--dry-run"],
        ["pull"],
        ["store", "set", "a", "b"],
    )
    for args in commands:
        result = run(tmp_path, *args, check=False)
        assert result.returncode == 1, args
        assert result.stderr == (
            f"error: no state repository at {tmp_path / 'state.git'}: create one with `toolstack init`, "
            "or clone a pool with `toolstack clone URL`\n"
        ), args
    assert sorted(os.listdir(tmp_path)) == []


def test_a_duplicate_name_and_a_repository_that_is_a_file(tmp_path):
    run(tmp_path, "init", "--name", "test")
    run(tmp_path, "vm", "create", "dup", "--memory", "128M")
    head = git(tmp_path, "rev-parse", "main")
    result = run(tmp_path, "vm", "create", "dup", "--memory", "128M", check=False)
    assert result.returncode == 1 and "already exists" in result.stderr
    assert git(tmp_path, "rev-parse", "main") == head
    (tmp_path / "file").write_text("not a repo")
    result = run(tmp_path, "--repo", str(tmp_path / "file"), "vm", "list", check=False)
    assert result.returncode == 1 and "is a file" in result.stderr
    assert (tmp_path / "file").read_text() == "not a repo"
    assert not (tmp_path / "file.sim").exists()


def test_a_busy_vm_exits_with_the_busy_code(tmp_path):
    run(tmp_path, "init", "--name", "test")
    run(tmp_path, "vm", "create", "busy", "--memory", "128M")
    # Hold the VM from another (live) process: a claim whose task names a running pid.
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        repo, uri = str(tmp_path / "state.git"), f"sim://{tmp_path}/sim"
        script = "\n".join(
            [
                f"import sys; sys.path.insert(0, {ROOT!r})",
                "from toolstack.ops import Toolstack",
                "from toolstack.tasks import Operation, Task",
                f"ts = Toolstack.open({repo!r}, {uri!r}, author='holder')",
                "vm = ts.vm('busy')",
                "task = Task(id='held', operation='start', vm=vm.uuid, vm_name='busy', who='holder',",
                f"            started=0, host=ts.runner.host, pid={holder.pid})",
                "noop = Operation('start', vm.uuid, 'busy', {}, act=lambda: None, compensate=lambda: None)",
                "ts.runner._claim(noop, task)",
            ]
        )
        subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
        result = run(tmp_path, "vm", "start", "busy", check=False)
        assert result.returncode == 4
        assert "busy" in result.stderr and "task held (start)" in result.stderr
    finally:
        holder.kill()
        holder.wait()
    # The holder is gone: the next command recovers its claim and proceeds.
    result = run(tmp_path, "vm", "start", "busy")
    assert "start busy: running" in result.stdout


def test_rollback_and_reconcile_commands(tmp_path):
    run(tmp_path, "init", "--name", "test")
    run(tmp_path, "vm", "create", "r1", "--memory", "64M")
    point = git(tmp_path, "rev-parse", "main").strip()
    run(tmp_path, "vm", "start", "r1")
    plan = run(tmp_path, "rollback", point, "--dry-run").stdout
    assert plan.startswith("would stop r1 (") and "desired stopped" in plan
    assert "running" in run(tmp_path, "vm", "list").stdout  # the dry run changed nothing
    # Stopping a running VM is destructive: without a terminal it takes --yes (test_deletion_guard.py).
    applied = json.loads(run(tmp_path, "--json", "rollback", point, "--yes").stdout)
    assert applied["applied"] and [a["kind"] for a in applied["actions"]] == ["stop"]
    assert run(tmp_path, "vm", "list").stdout.split("\n")[1].split()[-2:] == ["stopped", "shutoff"]
    assert run(tmp_path, "reconcile", "--dry-run").stdout.strip() == "nothing to do"
    assert git(tmp_path, "log", "-1", "--format=%s", "main~1").startswith("rollback all VMs to ")
