"""The accelerator a VM gets, why, and its consoles, machine-readable (issue 19): the API's VM record and
``vm show --json`` carry ``accel``, ``accel_reason`` and ``consoles``, on the simulator and on libvirt's own
test hypervisor, as ``vm show`` prints them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from tests.toolstack.api.conftest import AUTH, TOKEN
from tests.toolstack.conftest import unique
from toolstack.api import ApiSettings, create_app
from toolstack.cli import main
from toolstack.guest_info import FORCED, accel_choice
from toolstack.ops import Toolstack

SERIAL = {"kind": "serial", "listen": None, "port": None, "path": None}
VNC = {"kind": "vnc", "listen": "127.0.0.1", "port": None, "path": None}


@pytest.fixture(params=["sim", "libvirt-test"])
def ts(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Toolstack]:
    uri = f"sim://{tmp_path}/sim" if request.param == "sim" else "test:///default"
    toolstack = Toolstack.init(str(tmp_path / "state.git"), uri, author="Tester <tester@example.org>")
    yield toolstack
    for vm in toolstack.vms():  # test:///default is shared by the process: leave it as found
        toolstack.driver.destroy(vm.uuid)
        toolstack.driver.undefine(vm.uuid)
    toolstack.close()


@pytest.fixture
def client(ts: Toolstack) -> Iterator[TestClient]:
    with TestClient(create_app(ts, TOKEN, ApiSettings()), headers=AUTH) as test_client:
        yield test_client


def test_the_vm_record_says_which_accelerator_the_vm_gets_and_why(ts: Toolstack, client: TestClient):
    forced, plain = unique("forced"), unique("plain")
    made = client.post("/vms", json={"name": forced, "memory": "64M", "accel": "tcg", "graphics": "vnc"})
    assert made.status_code == 201, made.text
    assert (made.json()["vm"]["accel"], made.json()["vm"]["accel_reason"]) == ("tcg", FORCED)
    assert client.post("/vms", json={"name": plain, "memory": "64M"}).status_code == 201
    # Neither the simulator nor libvirt's test driver chooses an accelerator: null, and the reason says so.
    driver = ts.driver.host_info()["driver"]
    vm = client.get(f"/vms/{plain}").json()
    assert vm["accel"] is None
    assert vm["accel_reason"] == f"{driver} ({ts.driver.uri}) chooses none"
    listed = {v["name"]: (v["accel"], v["accel_reason"]) for v in client.get("/vms").json()}
    assert listed == {forced: ("tcg", FORCED), plain: (None, vm["accel_reason"])}


def test_the_vm_record_lists_its_consoles_but_the_list_does_not_ask_the_hypervisor(client: TestClient):
    desk, plain = unique("desk"), unique("plain")
    made = client.post("/vms", json={"name": desk, "memory": "64M", "graphics": "vnc"})
    assert made.json()["vm"]["consoles"] == [SERIAL, VNC]
    client.post("/vms", json={"name": plain, "memory": "64M"})
    assert client.get(f"/vms/{desk}").json()["consoles"] == [SERIAL, VNC]
    assert client.get(f"/vms/{plain}").json()["consoles"] == [SERIAL]
    assert [v["consoles"] for v in client.get("/vms").json()] == [None, None]


def test_a_running_vm_s_consoles_carry_the_port_the_hypervisor_gave(tmp_path: Path):
    # The simulator gives a running VM's VNC server a port, as QEMU does; libvirt's test driver reports none.
    ts = Toolstack.init(str(tmp_path / "state.git"), f"sim://{tmp_path}/sim", author="Tester <t@example.org>")
    with TestClient(create_app(ts, TOKEN, ApiSettings()), headers=AUTH) as client:
        client.post("/vms", json={"name": "desk", "memory": "64M", "graphics": "vnc", "start": True})
        consoles = client.get("/vms/desk").json()["consoles"]
    ts.close()
    assert consoles[0] == SERIAL and consoles[1]["kind"] == "vnc"
    assert isinstance(consoles[1]["port"], int) and consoles[1]["port"] > 0


def test_vm_show_json_carries_the_accelerator_its_reason_and_the_consoles(ts: Toolstack, tmp_path: Path):
    name, other = unique("shown"), unique("plain")
    ts.create(name, memory=64, accel="kvm", graphics="vnc")
    ts.create(other, memory=64)
    runner = CliRunner()

    def cli(*args: str) -> str:
        options = ["--repo", str(tmp_path / "state.git"), "--driver", ts.driver.uri]
        result = runner.invoke(main, [*options, *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.stdout

    record = json.loads(cli("--json", "vm", "show", name))
    assert (record["accel"], record["accel_reason"]) == ("kvm", FORCED)
    assert record["consoles"] == [SERIAL, VNC]
    plain = json.loads(cli("--json", "vm", "show", other))
    assert plain["accel"] is None
    assert plain["accel_reason"] == f"{ts.driver.host_info()['driver']} ({ts.driver.uri}) chooses none"
    # The text says the same.
    assert f"accel:    none ({plain['accel_reason']})" in cli("vm", "show", other)
    listed = {r["name"]: (r["accel"], r["accel_reason"]) for r in json.loads(cli("--json", "vm", "list"))}
    assert listed == {name: ("kvm", FORCED), other: (None, plain["accel_reason"])}


def test_the_driver_s_choice_and_reason_are_the_record_s_unless_the_vm_forces_one_or_runs_elsewhere():
    from drivers.models import DomainSpec

    # What libvirt's QEMU driver reports (drivers/libvirt/driver.py host_info).
    info = {"driver": "LibvirtDriver", "uri": "qemu:///system", "accel": "kvm", "accel_setting": "auto"}
    info["accel_reason"] = "auto: /dev/kvm opens"
    spec = DomainSpec(uuid="00000000-0000-0000-0000-000000000001", name="g", memory=64)
    assert accel_choice(spec, info, local=True) == ("kvm", "auto: /dev/kvm opens")
    assert accel_choice(spec.model_copy(update={"accel": "tcg"}), info, local=True) == ("tcg", FORCED)
    assert accel_choice(spec, info, local=False)[0] is None  # its own host's driver chooses
