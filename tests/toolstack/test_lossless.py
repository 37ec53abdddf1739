"""Adopt, update, reconcile and rollback keep what the model does not describe (issue 16, item 5).

A domain defined with virsh holds a serial console, graphics, video, RNG, a CD-ROM, a USB tablet...: after
every toolstack operation, libvirt's own XML for it still holds each of them, unchanged; and the VM's config
in git carries them. Run against libvirt's real ``test:///default`` hypervisor in-process, and against the
xl driver fed recorded ``xl`` output.
"""

from __future__ import annotations

import json
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers import DomainSpec
from drivers.xen import XlDriver
from store import Store
from tests.drivers.test_lossless import XL_SETTINGS, expected_elements, unmodelled_elements, virsh_domain
from tests.drivers.test_xl import RecordedXl
from tests.toolstack.conftest import unique
from toolstack import layout
from toolstack.models import config_document, encode_json, read_vm
from toolstack.ops import Toolstack
from toolstack.ownership import POOL_KEY, VM_KEY
from toolstack.pool import init_pool

AUTHOR = "Tester <tester@example.org>"


@pytest.fixture
def libvirt_ts(tmp_path: Path) -> Iterator[Toolstack]:
    ts = Toolstack.init(str(tmp_path / "state.git"), "test:///default", author=AUTHOR)
    yield ts
    for vm in ts.vms():  # test:///default is shared by the process: leave it as found
        ts.driver.destroy(vm.uuid)
        ts.driver.undefine(vm.uuid)
    ts.close()


def stored_config(ts: Toolstack, uuid: str) -> dict[str, object]:
    return json.loads(ts.main.tree.get(layout.config_path(uuid)))


def test_a_virsh_domain_keeps_its_devices_through_adopt_set_reconcile_and_rollback(libvirt_ts: Toolstack):
    ts = libvirt_ts
    name = unique("virsh")
    ref = uuidlib.uuid4()
    dom = ts.driver.connection.raw.defineXML(virsh_domain(name, ref))
    uuid = str(ref)

    def holds_every_device() -> bool:
        return unmodelled_elements(dom.XMLDesc(2)) == expected_elements()

    assert holds_every_device()
    ts.reconcile(adopt=True)
    vm = ts.vm(name)
    assert holds_every_device()
    assert "libvirt/devices" in stored_config(ts, uuid)["extra"]  # the config in git carries them
    assert not ts.reconcile(dry_run=True)  # adopted as it is: nothing to update
    adopted = ts.main.head

    ts.set_resources(name, memory="512M")
    assert holds_every_device() and ts.driver.get_spec(uuid).memory == 512
    assert ts.vm(name).spec.extra == vm.spec.extra

    ts.reconcile()
    assert holds_every_device() and not ts.reconcile(dry_run=True)

    ts.rollback(adopted)
    assert ts.driver.get_spec(uuid).memory == 1024
    assert holds_every_device() and not ts.reconcile(dry_run=True)


def test_a_domain_removed_behind_our_back_comes_back_with_its_devices(libvirt_ts: Toolstack):
    ts = libvirt_ts
    name = unique("virsh")
    ref = uuidlib.uuid4()
    dom = ts.driver.connection.raw.defineXML(virsh_domain(name, ref))
    ts.reconcile(adopt=True)
    dom.undefine()
    plan = ts.reconcile()
    assert [action.kind for action in plan.actions] == ["define"]
    again = ts.driver.connection.raw.lookupByUUIDString(str(ref))
    assert unmodelled_elements(again.XMLDesc(2)) == expected_elements()


def test_an_xl_domain_keeps_its_unmodelled_settings_through_adopt_set_reconcile_and_rollback(tmp_path: Path):
    runner = RecordedXl()
    runner.host("list-l-dom0-only.json", "list-dom0-only.txt")
    driver = XlDriver(config_dir=tmp_path / "xen", runner=runner, poll_interval=0.01)
    spec = DomainSpec(
        uuid=uuidlib.uuid4(), name="hvm01", memory=512, max_memory=1024, extra={"xl": list(XL_SETTINGS)}
    )
    driver.define(spec)  # defined by another user of the driver: not managed by the toolstack
    cfg = tmp_path / "xen" / "hvm01.cfg"

    def keeps_settings() -> bool:
        lines = cfg.read_text().splitlines()
        return lines[-len(XL_SETTINGS) :] == list(XL_SETTINGS)

    init_pool(str(tmp_path / "state.git"))
    with Toolstack(Store.open(str(tmp_path / "state.git"), create=False), driver, author=AUTHOR) as ts:
        ts.reconcile(adopt=True)
        assert keeps_settings() and stored_config(ts, str(spec.uuid))["extra"] == {"xl": list(XL_SETTINGS)}
        adopted = ts.main.head
        ts.set_resources("hvm01", memory="768M")
        assert keeps_settings() and "memory = 768" in cfg.read_text()
        ts.reconcile()
        assert keeps_settings() and not ts.reconcile(dry_run=True)
        ts.rollback(adopted)
        assert keeps_settings() and "memory = 512" in cfg.read_text()
        assert not ts.reconcile(dry_run=True)
        # Adopted, it carries the pool's ownership tags in the xl config's spec, as every domain it defines.
        metadata = driver.get_spec(spec.uuid).metadata
        assert metadata[POOL_KEY] == ts.pool.id and metadata[VM_KEY] == str(spec.uuid)


def test_a_vm_created_without_extras_has_the_config_file_it_always_had(sim_ts: Toolstack):
    vm = sim_ts.create("plain", memory="128M", vcpus=2)
    raw = sim_ts.main.tree.get(layout.config_path(vm.uuid))
    document = vm.spec.model_dump(mode="json", exclude={"uuid", "disks", "nics", "extra"})
    assert raw == encode_json(document)
    assert sorted(json.loads(raw)) == [
        "boot",
        "max_memory",
        "max_vcpus",
        "memory",
        "metadata",
        "name",
        "on_crash",
        "on_poweroff",
        "on_reboot",
        "vcpus",
    ]


def test_a_concurrent_change_to_the_extras_and_to_memory_merge(sim_ts: Toolstack):
    vm = sim_ts.create("merging", memory="128M")
    path = layout.config_path(vm.uuid)
    gitops = sim_ts.store.fork("gitops", "main")
    # An operator adds a serial console in a clone while the toolstack changes the memory on main.
    edited = config_document(vm.spec.evolve(extra={"libvirt/devices": ['<serial type="pty" />']}))
    with gitops.transaction(message="add a serial console", author=AUTHOR) as tx:
        tx.set(path, encode_json(edited))
    sim_ts.set_resources("merging", memory="256M")
    sim_ts.store.merge("gitops", into="main", message="merge gitops", author=AUTHOR)
    merged = read_vm(sim_ts.main.tree, vm.uuid).spec
    assert merged.memory == 256
    assert merged.extra == {"libvirt/devices": ('<serial type="pty" />',)}
