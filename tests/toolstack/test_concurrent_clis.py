"""Many CLI processes on one repository: no lost VM, unique names, a clean git repository."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from tests.toolstack.conftest import ROOT
from toolstack.ops import Toolstack

WORKER = textwrap.dedent(
    """
    import subprocess, sys
    repo, driver, worker, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    failures = 0
    # Its own VMs, then one name that another worker also creates: exactly one of the two may win.
    for i in range(count + 1):
        name = f"w{worker}-vm{i}" if i < count else f"shared-{worker // 2}"
        result = subprocess.run(
            [sys.executable, "-m", "toolstack.cli", "--repo", repo, "--driver", driver, "--author",
             f"worker{worker}", "vm", "create", name, "--memory", "32M"],
            capture_output=True, text=True,
        )
        if result.returncode != 0 and "already exists" not in result.stderr:
            print(result.stderr, file=sys.stderr)
            failures += 1
    sys.exit(1 if failures else 0)
    """
)


def test_eight_processes_create_twenty_five_vms_each(tmp_path):
    repo, driver = str(tmp_path / "state.git"), f"sim://{tmp_path}/sim"
    Toolstack.init(repo, driver).close()
    env = {**os.environ, "PYTHONPATH": ROOT}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, repo, driver, str(w), "25"],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(8)
    ]
    for worker in workers:
        _, err = worker.communicate(timeout=600)
        assert worker.returncode == 0, err
    with Toolstack.open(repo, driver) as ts:
        vms = ts.vms()
        names = [vm.name for vm in vms]
        assert len(names) == len(set(names))
        own = {f"w{w}-vm{i}" for w in range(8) for i in range(25)}
        contested = {f"shared-{k}" for k in range(4)}
        assert set(names) == own | contested  # 200 VMs, none lost, and each contested name created once
        assert len(vms) == 204
        assert {str(info.uuid) for info in ts.driver.list()} == {vm.uuid for vm in vms}
        assert ts.store.backend.list_refs("refs/heads/vm-task/") == {}
    subprocess.run(["git", "-C", repo, "fsck", "--full"], check=True, capture_output=True)
