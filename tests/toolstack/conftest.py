"""Fixtures: a toolstack on a real git repository, over the simulator or libvirt's test driver."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from tests.conftest import git
from toolstack import layout
from toolstack.ops import Toolstack

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(params=["sim", "libvirt-test"])
def ts(request, tmp_path):
    """The lifecycle must hold on the simulator and on libvirt's own test hypervisor."""
    uri = f"sim://{tmp_path}/sim" if request.param == "sim" else "test:///default"
    toolstack = Toolstack.init(str(tmp_path / "state.git"), uri, author="Tester <tester@example.org>")
    created: list[str] = []
    toolstack.test_names = created  # type: ignore[attr-defined]
    yield toolstack
    # libvirt's test:///default is shared by the process: leave it as found.
    for vm in toolstack.vms():
        try:
            toolstack.driver.destroy(vm.uuid)
            toolstack.driver.undefine(vm.uuid)
        except Exception:
            pass
    toolstack.close()


@pytest.fixture
def sim_ts(tmp_path):
    toolstack = Toolstack.init(str(tmp_path / "state.git"), f"sim://{tmp_path}/sim", author="tester")
    yield toolstack
    toolstack.close()


def unique(prefix: str = "vm") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def push_memory_edit_as_ada(work: Path, uuid: str, memory: int) -> None:
    """In ``work``, a clone of a pool's main, Ada Pusher sets the VM's memory by hand, commits and pushes it
    to origin: a GitOps edit, authored by whoever pushed it."""
    config = work / layout.config_path(uuid)
    record = json.loads(config.read_text())
    record["memory"] = memory
    config.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    git(
        work,
        "-c",
        "user.name=Ada Pusher",
        "-c",
        "user.email=ada@example.org",
        "commit",
        "-qam",
        "more memory",
    )
    git(work, "push", "-q", "origin", "main")
