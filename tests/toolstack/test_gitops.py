"""GitOps: an operator edits a clone with plain git and pushes; the toolstack merges, checks, reconciles."""

from __future__ import annotations

import json
import subprocess

import pytest

from store import Store
from tests.store.git_servers import git_daemon
from toolstack import layout
from toolstack.ops import Toolstack
from toolstack.sync import pull

IDENTITY = ["-c", "user.name=Operator", "-c", "user.email=op@example.org"]


def git(path, *args):
    return subprocess.run(
        ["git", "-C", str(path), *IDENTITY, *args], check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def served(tmp_path):
    """A central repository on a real git daemon, a host toolstack cloned from it, an operator's clone."""
    base = tmp_path / "server"
    base.mkdir()
    with git_daemon(str(base)) as daemon:
        url = f"{daemon}/central.git"
        with Toolstack.init(str(tmp_path / "host.git"), f"sim://{tmp_path}/sim", author="host") as ts:
            vm = ts.create("web", memory="256M")
            ts.start("web")
            Store.open(base / "central.git").close()
            ts.store.remote("origin", url).push("main")
            work = tmp_path / "operator"
            subprocess.run(["git", "clone", "-q", url, str(work)], check=True)
            yield ts, vm, work


def test_a_valid_edit_pushed_with_plain_git_is_merged_and_reconciled(served):
    ts, vm, work = served
    config_file = work / layout.config_path(vm.uuid)
    config = json.loads(config_file.read_text())
    config["memory"] = 512
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    git(work, "commit", "-qam", "more memory for web")
    git(work, "push", "-q", "origin", "main")
    result = pull(ts, push=True)
    assert result.changed == [vm.uuid] and result.rejected == {}
    assert ts.vm("web").spec.memory == 512
    assert ts.driver.get_spec(vm.uuid).memory == 512  # reconciled into the hypervisor
    assert [a.kind for a in result.plan.actions] == ["update"]
    assert result.pushed
    git(work, "pull", "-q", "--ff-only")  # the operator's clone receives the host's merge


def test_an_invalid_edit_is_reverted_by_a_commit_that_names_the_error(served):
    ts, vm, work = served
    config_file = work / layout.config_path(vm.uuid)
    config = json.loads(config_file.read_text())
    config["memory"] = -5
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    git(work, "commit", "-qam", "oops")
    git(work, "push", "-q", "origin", "main")
    result = pull(ts, push=True)
    assert list(result.rejected) == [vm.uuid]
    assert "memory" in result.rejected[vm.uuid]
    assert ts.vm("web").spec.memory == 256  # not applied
    assert ts.driver.get_spec(vm.uuid).memory == 256
    subject = ts.store.graph.info(ts.main.head).message
    assert subject.startswith("gitops: reverted an invalid edit from origin") and "memory" in subject
    # Nothing is lost: the operator's commit is in main's history, and the revert reaches the operator.
    git(work, "pull", "-q", "--ff-only")
    log = git(work, "log", "--format=%s", "main")
    assert "oops" in log and "gitops: reverted" in log
    assert json.loads(config_file.read_text())["memory"] == 256


def test_an_edit_in_the_layout_of_before_the_shards_is_moved_into_them_and_applied(served):
    """A host not yet upgraded (or an operator following old docs) writes vms/<uuid>/config: the pull
    moves it into the VM's shard, over the older file there, and reconciles it."""
    ts, vm, work = served
    config = json.loads((work / layout.config_path(vm.uuid)).read_text())
    config["memory"] = 384
    flat = work / "vms" / vm.uuid / "config"
    flat.parent.mkdir(parents=True)
    flat.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    git(work, "add", "-A")
    git(work, "commit", "-qm", "more memory, the old way")
    git(work, "push", "-q", "origin", "main")
    result = pull(ts, push=True)
    assert result.changed == [vm.uuid] and result.rejected == {}
    assert not layout.needs_sharding(ts.main.tree)
    assert ts.main.tree.kind(f"vms/{vm.uuid}") is None
    assert ts.vm("web").spec.memory == 384 and ts.vm("web").desired.value == "running"
    assert ts.driver.get_spec(vm.uuid).memory == 384
