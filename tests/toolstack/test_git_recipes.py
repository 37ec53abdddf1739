"""The README's git recipes work on a real state repository."""

from __future__ import annotations

import subprocess

from toolstack import layout

BISECT_SCRIPT = """#!/bin/sh
name=web1; shard=$(printf %s "$name" | sha1sum | cut -c1-2)
uuid=$(git show "HEAD:names/$shard/$name") || exit 125
mem=$(git show "HEAD:vms/$(echo "$uuid" | cut -c1-2)/$uuid/config" \\
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["memory"])')
[ "$mem" -le 1024 ]
"""


def test_git_bisect_run_finds_the_operation_that_broke_a_vm(sim_ts, tmp_path):
    sim_ts.create("web1", memory="512M")
    good = sim_ts.main.head
    sim_ts.set_resources("web1", vcpus=2)
    sim_ts.runner.author = "Bob <bob@example.org>"
    sim_ts.set_resources("web1", memory="2G")
    bad = sim_ts.main.head
    sim_ts.runner.author = "Alice <alice@example.org>"
    sim_ts.set_resources("web1", vcpus=3)
    script = tmp_path / "vm-ok.sh"
    script.write_text(BISECT_SCRIPT)
    script.chmod(0o755)
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", sim_ts.store.gitdir, str(clone)], check=True)
    subprocess.run(
        ["git", "-C", str(clone), "bisect", "start", "--first-parent", "main", good],
        check=True,
        capture_output=True,
    )
    out = subprocess.run(
        ["git", "-C", str(clone), "bisect", "run", str(script)], check=True, capture_output=True, text=True
    ).stdout
    assert f"{bad} is the first bad commit" in out
    assert "Author: Bob <bob@example.org>" in out


def test_git_log_of_one_vm_path(sim_ts):
    vm = sim_ts.create("solo", memory="64M")
    sim_ts.start("solo")
    out = subprocess.run(
        [
            "git",
            "-C",
            sim_ts.store.gitdir,
            "log",
            "--first-parent",
            "--format=%s",
            "main",
            "--",
            layout.vm_dir(vm.uuid),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    assert out == ["vm start solo", "vm create solo: 64 MiB, 1 vCPU"]
