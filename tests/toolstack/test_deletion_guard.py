"""The deletion guard and bad entries that stay local, through the real CLI on the simulator.

- A plan that would stop or undefine domains (``reconcile``, ``rollback``, the reconcile of ``pull``) is shown
  first: on a terminal it is asked about; without one it is refused with exit code 8 and printed, unless
  ``--yes``. A plan that only defines or starts needs no confirmation, and neither does an explicit
  ``vm delete NAME``.
- An agent removes what main deleted, but refuses a round that would remove more than a share of the VMs
  placed on its host (default: more than half, and more than one): it records why in ``hosts/<host>/agent``
  and applies the rest of the round. ``--max-removal-share`` sets the share.
- A VM entry that does not validate (a broken config, device or desired file, however it got there) is
  reported for that VM alone: its domain stays defined and running through reconcile, pull and agent rounds.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import time

import pytest

import drivers
from store import Store
from tests.toolstack.conftest import ROOT
from tests.toolstack.pool_helpers import cli_argv
from toolstack import layout

REFUSED = 8
QUESTION = "Apply the plan?"


def command(tmp_path, host, *args):
    """The argv of `toolstack` on host ``host``'s repository and simulator."""
    return cli_argv(tmp_path, host, *args, author="Operator <op@example.org>")


ENV = {**os.environ, "PYTHONPATH": ROOT}


def cli(tmp_path, host, *args):
    """`toolstack` as a process without a terminal (stdin is /dev/null, output is captured)."""
    return subprocess.run(
        command(tmp_path, host, *args),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=ENV,
        timeout=120,
    )


def ok(result):
    assert result.returncode == 0, f"exit {result.returncode}: {result.stdout}\n{result.stderr}"
    return result.stdout


def on_terminal(tmp_path, host, *args, answer):
    """`toolstack` on a pseudo-terminal (stdin, stdout and stderr): answers ``answer`` to the question.

    Returns (exit code, everything the terminal showed, whether the question was asked)."""
    master, slave = os.openpty()
    process = subprocess.Popen(
        command(tmp_path, host, *args), stdin=slave, stdout=slave, stderr=slave, env=ENV, close_fds=True
    )
    os.close(slave)
    shown, asked = b"", False
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the process closed the terminal
                    break
                if not chunk:
                    break
                shown += chunk
                if not asked and QUESTION.encode() in shown:
                    os.write(master, f"{answer}\n".encode())
                    asked = True
            elif process.poll() is not None:
                break
        else:
            process.kill()
            raise AssertionError(f"toolstack {' '.join(args)} did not finish: {shown.decode()}")
        return process.wait(timeout=30), shown.decode(errors="replace").replace("\r\n", "\n"), asked
    finally:
        os.close(master)


def domains(tmp_path, host):
    """{name: state} of the domains on a host's simulator."""
    with drivers.open(f"sim://{tmp_path}/{host}.sim") as hv:
        return {info.name: info.state.value for info in hv.list()}


def head(tmp_path, host):
    with Store.open(tmp_path / f"{host}.git") as store:
        return store.branch("main").head


def uuid_of(tmp_path, host, name):
    return json.loads(ok(cli(tmp_path, host, "--json", "vm", "show", name)))["uuid"]


@pytest.fixture
def two_running(tmp_path):
    """Host h1 with VMs web and db, both running; returns the commit from before db was created."""
    ok(cli(tmp_path, "h1", "init", "--name", "guard"))
    ok(cli(tmp_path, "h1", "vm", "create", "web", "--memory", "64M", "--start"))
    before_db = head(tmp_path, "h1")
    ok(cli(tmp_path, "h1", "vm", "create", "db", "--memory", "64M", "--start"))
    return before_db


# -- reconcile and rollback --------------------------------------------------------------------------------
def test_reconcile_stopping_a_running_vm_is_refused_without_a_terminal_printed_and_exits_8(
    tmp_path, two_running
):
    uuid = uuid_of(tmp_path, "h1", "web")
    ok(cli(tmp_path, "h1", "store", "set", layout.desired_path(uuid), "stopped"))
    before = head(tmp_path, "h1")

    refused = cli(tmp_path, "h1", "reconcile")

    assert refused.returncode == REFUSED
    assert refused.stdout.startswith(f"would stop web ({uuid[:8]}): running, desired stopped")
    assert refused.stderr.startswith("error: refusing to reconcile without confirmation: it would stop web")
    assert "--yes" in refused.stderr
    assert domains(tmp_path, "h1") == {"web": "running", "db": "running"}
    assert head(tmp_path, "h1") == before  # not even drift or observed state was committed
    as_json = cli(tmp_path, "h1", "--json", "reconcile")
    assert as_json.returncode == REFUSED
    record = json.loads(as_json.stdout)
    assert record["refused"] is True and record["applied"] is False
    assert [(a["kind"], a["name"]) for a in record["actions"]] == [("stop", "web")]

    applied = ok(cli(tmp_path, "h1", "reconcile", "--yes"))

    assert applied.startswith("stop web")
    assert domains(tmp_path, "h1") == {"web": "shutoff", "db": "running"}


def test_a_plan_that_only_starts_needs_no_confirmation_nor_does_an_explicit_vm_delete(tmp_path, two_running):
    uuid = uuid_of(tmp_path, "h1", "web")
    ok(cli(tmp_path, "h1", "vm", "destroy", "web"))  # explicit single-VM requests are never asked about
    ok(cli(tmp_path, "h1", "store", "set", layout.desired_path(uuid), "running"))

    assert ok(cli(tmp_path, "h1", "reconcile")).startswith("start web")

    ok(cli(tmp_path, "h1", "vm", "delete", "db"))
    assert domains(tmp_path, "h1") == {"web": "running"}


def test_rollback_to_before_a_vm_existed_is_refused_without_yes_and_writes_nothing(tmp_path, two_running):
    before = head(tmp_path, "h1")

    refused = cli(tmp_path, "h1", "rollback", two_running)

    assert refused.returncode == REFUSED
    assert refused.stdout.splitlines()[:2] == [
        f"would stop db ({uuid_of(tmp_path, 'h1', 'db')[:8]}): not in the desired state",
        f"would undefine db ({uuid_of(tmp_path, 'h1', 'db')[:8]}): not in the desired state",
    ]
    assert "refusing to roll back without confirmation: it would stop db" in refused.stderr
    assert head(tmp_path, "h1") == before  # no rollback commit
    assert domains(tmp_path, "h1") == {"web": "running", "db": "running"}

    ok(cli(tmp_path, "h1", "rollback", two_running, "--yes"))

    assert domains(tmp_path, "h1") == {"web": "running"}
    assert [vm["name"] for vm in json.loads(ok(cli(tmp_path, "h1", "--json", "vm", "list")))] == ["web"]


def test_on_a_terminal_the_plan_is_shown_then_asked_and_only_yes_applies_it(tmp_path, two_running):
    before = head(tmp_path, "h1")

    code, shown, asked = on_terminal(tmp_path, "h1", "rollback", two_running, answer="n")

    assert asked and code == REFUSED
    assert shown.index("would undefine db") < shown.index(QUESTION)
    assert "refusing to roll back as answered at the prompt" in shown
    assert head(tmp_path, "h1") == before
    assert domains(tmp_path, "h1") == {"web": "running", "db": "running"}

    code, shown, asked = on_terminal(tmp_path, "h1", "rollback", two_running, answer="y")

    assert asked and code == 0, shown
    assert "undefine db" in shown.split(QUESTION, 1)[1]
    assert domains(tmp_path, "h1") == {"web": "running"}


# -- pull -------------------------------------------------------------------------------------------------
def test_a_pull_that_would_remove_a_deleted_vm_merges_but_leaves_the_hypervisor_until_confirmed(tmp_path):
    ok(cli(tmp_path, "op", "init", "--name", "guard"))
    ok(cli(tmp_path, "op", "vm", "create", "web", "--memory", "64M", "--start"))
    origin = str(tmp_path / "op.git")
    ok(cli(tmp_path, "h2", "pull", "--url", origin))  # joins the pool and runs web
    assert domains(tmp_path, "h2") == {"web": "running"}
    ok(cli(tmp_path, "op", "vm", "delete", "web"))

    refused = cli(tmp_path, "h2", "pull")

    assert refused.returncode == REFUSED
    assert "would stop web" in refused.stdout and "would undefine web" in refused.stdout
    assert "main was updated" in refused.stderr and "nothing was pushed" in refused.stderr
    with Store.open(tmp_path / "h2.git") as store:  # the desired state is merged...
        assert store.branch("main").get(layout.name_path("web")) is None
    assert domains(tmp_path, "h2") == {"web": "running"}  # ...the hypervisor is not touched

    assert "undefine web" in ok(cli(tmp_path, "h2", "pull", "--yes"))
    assert domains(tmp_path, "h2") == {}


def test_a_refused_pull_still_names_the_invalid_edits_it_reverted(tmp_path):
    ok(cli(tmp_path, "op", "init", "--name", "guard"))
    ok(cli(tmp_path, "op", "vm", "create", "web", "--memory", "64M", "--start"))
    ok(cli(tmp_path, "op", "vm", "create", "db", "--memory", "64M", "--start"))
    ok(cli(tmp_path, "h2", "pull", "--url", str(tmp_path / "op.git")))
    ok(cli(tmp_path, "op", "vm", "delete", "web"))
    db = uuid_of(tmp_path, "op", "db")
    ok(cli(tmp_path, "op", "store", "set", layout.config_path(db), '{"memory": 64, broken'))

    refused = cli(tmp_path, "h2", "pull")

    # Refused (8) outranks rejected (5): the plan was not applied. The reverted edit is named all the same.
    assert refused.returncode == REFUSED
    assert "would undefine web" in refused.stdout
    assert f"rejected db ({db}): {layout.config_path(db)}" in refused.stdout
    assert "1 invalid edit(s) reverted" in refused.stderr and layout.config_path(db) in refused.stderr
    assert domains(tmp_path, "h2") == {"web": "running", "db": "running"}


# -- the agent's share limit ------------------------------------------------------------------------------
@pytest.fixture
def four_on_h1(tmp_path):
    """An operator's pool with VMs a, b, c, d placed on h1, running there after one agent round."""
    ok(cli(tmp_path, "op", "init", "--name", "guard"))
    for name in "abcd":
        ok(cli(tmp_path, "op", "vm", "create", name, "--memory", "32M", "--on", "h1", "--start"))
    agent_round(tmp_path)
    assert domains(tmp_path, "h1") == dict.fromkeys("abcd", "running")


def agent_round(tmp_path, *options):
    return ok(
        cli(tmp_path, "h1", "agent", "--host", "h1", "--remote", str(tmp_path / "op.git"), "--once", *options)
    )


def agent_record(tmp_path):
    """The agent's refusal record as the operator's repository (the pool's remote) holds it, or None."""
    with Store.open(tmp_path / "op.git") as store:
        raw = store.branch("main").get("hosts/h1/agent")  # the documented path
    return None if raw is None else json.loads(raw)


def test_an_agent_applies_a_round_that_removes_one_of_four_vms(tmp_path, four_on_h1):
    ok(cli(tmp_path, "op", "vm", "delete", "a"))

    agent_round(tmp_path)

    assert domains(tmp_path, "h1") == dict.fromkeys("bcd", "running")
    assert agent_record(tmp_path) is None


def test_an_agent_refuses_a_round_that_removes_three_of_four_records_why_and_goes_on_with_the_rest(
    tmp_path, four_on_h1
):
    removed = sorted(uuid_of(tmp_path, "op", name) for name in "abc")
    for name in "abc":
        ok(cli(tmp_path, "op", "vm", "delete", name))
    ok(cli(tmp_path, "op", "vm", "shutdown", "d"))  # the rest of the round: a stop, which is no removal

    said = agent_round(tmp_path)

    assert domains(tmp_path, "h1") == {"a": "running", "b": "running", "c": "running", "d": "shutoff"}
    record = agent_record(tmp_path)  # pushed to the pool with the round
    assert record["removals"] == removed and record["placed"] == 4 and record["max_removal_share"] == 0.5
    assert record["refused"].startswith("would remove 3 of the 4 VMs placed on h1 (a, b, c)")
    assert {a["name"] for a in record["plan"]["withheld"]} == set("abc")
    assert [(a["kind"], a["name"]) for a in record["plan"]["actions"]] == [("stop", "d")]
    assert record["time"] and record["main"]
    assert "refused: would remove 3 of the 4 VMs" in said

    agent_round(tmp_path)  # the refusal stands: recorded once, not once per round

    assert agent_record(tmp_path) == record
    assert domains(tmp_path, "h1") == {"a": "running", "b": "running", "c": "running", "d": "shutoff"}
    log = subprocess.run(
        ["git", "-C", str(tmp_path / "op.git"), "log", "--format=%s", "main"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert sum(subject.startswith("agent h1: refused a round") for subject in log) == 1

    agent_round(tmp_path, "--max-removal-share", "0.75")  # 3 of 4 is within a share of 0.75

    assert domains(tmp_path, "h1") == {"d": "shutoff"}
    assert agent_record(tmp_path) is None


# -- bad entries stay local -------------------------------------------------------------------------------
def broken_config(uuid):
    return layout.config_path(uuid), '{"name": "web", "memory": '


def broken_device(uuid):
    return layout.device_path(uuid, "disk0"), '{"kind": "disk", "source": 42}'


def broken_desired(uuid):
    return layout.desired_path(uuid), "sideways"


@pytest.mark.parametrize("damage", [broken_config, broken_device, broken_desired])
def test_a_broken_vm_entry_is_reported_alone_and_its_domain_stays_through_reconcile(
    tmp_path, two_running, damage
):
    uuid = uuid_of(tmp_path, "h1", "web")
    path, value = damage(uuid)
    ok(cli(tmp_path, "h1", "store", "set", path, value))  # the raw escape hatch allows it

    plan = json.loads(ok(cli(tmp_path, "h1", "--json", "reconcile")))  # nothing destructive: no --yes needed

    assert plan["actions"] == [] and len(plan["invalid"]) == 1
    assert path in plan["invalid"][0] and "left alone" in plan["invalid"][0]
    assert domains(tmp_path, "h1") == {"web": "running", "db": "running"}
    # The other VMs keep working.
    ok(cli(tmp_path, "h1", "vm", "shutdown", "db"))
    ok(cli(tmp_path, "h1", "vm", "create", "new", "--memory", "32M", "--start"))
    assert domains(tmp_path, "h1") == {"web": "running", "db": "shutoff", "new": "running"}
    assert json.loads(ok(cli(tmp_path, "h1", "--json", "reconcile")))["actions"] == []


def test_a_broken_vm_entry_keeps_its_domain_through_agent_rounds_and_pulls(tmp_path, four_on_h1):
    uuid = uuid_of(tmp_path, "h1", "a")
    ok(cli(tmp_path, "h1", "store", "set", layout.config_path(uuid), "not json"))  # on the agent's clone

    agent_round(tmp_path)
    pulled = json.loads(ok(cli(tmp_path, "h1", "--json", "pull")))

    assert domains(tmp_path, "h1") == dict.fromkeys("abcd", "running")
    assert pulled["plan"]["actions"] == [] and uuid in pulled["plan"]["invalid"][0]
    assert agent_record(tmp_path) is None  # nothing was even planned for removal
