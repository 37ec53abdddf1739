"""The libvirt driver's own parts: domain XML both ways, error mapping, reconnection, events, the binding."""

from __future__ import annotations

import types
import uuid as uuidlib
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt
import pytest
from hypothesis import HealthCheck, given, settings

import drivers
from drivers import (
    DomainExists,
    DomainNotFound,
    DomainSpec,
    DriverError,
    EventKind,
    HypervisorUnavailable,
    InvalidArgument,
    InvalidState,
    Unsupported,
)
from drivers.libvirt import LibvirtDriver, binding
from drivers.libvirt.connection import device_id_from_alias, lifecycle_event
from drivers.libvirt.errors import Code, translate
from drivers.libvirt.xml import NAMESPACE, spec_to_xml, xml_to_spec
from tests.drivers.strategies import domain_specs

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "libvirt"


@pytest.fixture
def test_driver() -> LibvirtDriver:
    driver = LibvirtDriver("test:///default")
    yield driver
    driver.close()


# -- XML --------------------------------------------------------------------------------------------------


@given(domain_specs())
def test_spec_to_xml_and_back_is_the_identity(spec: DomainSpec):
    assert xml_to_spec(spec_to_xml(spec, "test")) == spec


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(domain_specs())
def test_specs_survive_a_trip_through_libvirts_own_parser(test_driver: LibvirtDriver, spec: DomainSpec):
    spec = spec.evolve(name=f"rt-{spec.uuid.hex[:12]}")  # unique: test:///default is shared in-process
    test_driver.define(spec)
    try:
        assert test_driver.get_spec(spec.uuid) == spec
    finally:
        test_driver.undefine(spec.uuid)


def test_xml_is_built_with_namespaced_metadata_and_user_aliases():
    spec = DomainSpec.model_validate(
        {
            "uuid": uuidlib.uuid4(),
            "name": "meta",
            "memory": 256,
            "metadata": {"owner": "a&b <c>"},
            "disks": [{"id": "root", "source": "/r.img", "target": "vda"}],
        }
    )
    root = ET.fromstring(spec_to_xml(spec))
    meta = root.find(f"metadata/{{{NAMESPACE}}}toolstack/{{{NAMESPACE}}}meta")
    assert meta is not None and (meta.get("key"), meta.text) == ("owner", "a&b <c>")
    assert root.find("devices/disk/alias").get("name") == "ua-root"
    assert (root.get("type"), root.findtext("memory"), root.find("memory").get("unit")) == (
        "qemu",
        "262144",
        "KiB",
    )


def test_a_foreign_qemu_domain_parses_with_derived_ids_and_unmodelled_devices_skipped():
    spec = xml_to_spec((FIXTURES / "foreign-qemu-domain.xml").read_text())
    assert (spec.name, spec.memory, spec.max_memory, spec.vcpus) == ("legacy01", 1024, 2048, 2)
    assert [(disk.id, disk.target, disk.format, disk.readonly) for disk in spec.disks] == [
        ("vda", "vda", "qcow2", False)
    ]  # the CD-ROM is not a Disk
    assert [(nic.id, nic.network) for nic in spec.nics] == [
        ("nic-525400a1b2c3", "default")
    ]  # user-mode NIC skipped
    assert spec.boot.device == "hd" and spec.metadata == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<domain", "malformed domain XML"),
        ("<network/>", "expected a <domain>"),
        ("<domain><uuid>6695eb01-f6a4-8304-79aa-97f2502e193f</uuid><memory>1</memory></domain>", "no <name>"),
        ("<domain><name>x</name><uuid>6695eb01-f6a4-8304-79aa-97f2502e193f</uuid></domain>", "no <memory>"),
    ],
)
def test_bad_xml_is_an_invalid_argument_naming_the_problem(text: str, message: str):
    with pytest.raises(InvalidArgument, match=message):
        xml_to_spec(text)


# -- errors -----------------------------------------------------------------------------------------------


def test_the_error_codes_we_name_are_libvirts():
    for code in Code:
        assert getattr(libvirt, f"VIR_ERR_{code.name}") == code.value, code.name


def test_real_libvirt_errors_map_onto_the_tree_with_uuid_and_operation():
    conn = libvirt.open("test:///default")
    try:
        cases = [
            (lambda: conn.lookupByUUIDString(str(uuidlib.uuid4())), DomainNotFound),
            (lambda: conn.defineXML("<domain"), InvalidArgument),
            (lambda: conn.lookupByName("test").create(), InvalidState),  # the stock domain already runs
            (lambda: conn.lookupByName("test").attachDeviceFlags("<disk/>", 1), Unsupported),
            (
                lambda: conn.defineXML(conn.lookupByName("test").XMLDesc(0).replace("<uuid>", "<uuid>0")),
                DriverError,
            ),
        ]
        for call, expected in cases:
            with pytest.raises(libvirt.libvirtError) as caught:
                call()
            error = translate(caught.value, uuid="u-1", operation="op")
            assert isinstance(error, expected), (caught.value.get_error_code(), str(caught.value))
            assert (error.uuid, error.operation) == ("u-1", "op")
            assert error.detail.startswith("libvirt error code")
    finally:
        conn.close()


def test_a_duplicate_name_from_libvirt_is_domain_exists(test_driver: LibvirtDriver):
    stock = xml_to_spec(test_driver.connection.raw.lookupByName("test").XMLDesc(2))
    with pytest.raises(DomainExists):
        test_driver.define(stock.evolve(uuid=uuidlib.uuid4()))


# -- connection, events, binding --------------------------------------------------------------------------


def test_a_connection_closed_behind_our_back_is_reopened(test_driver: LibvirtDriver):
    spec = DomainSpec(uuid=uuidlib.uuid4(), name=f"rc-{uuidlib.uuid4().hex[:8]}", memory=64)
    keeper = libvirt.open("test:///default")  # keeps the shared test hypervisor (and our domain) alive
    try:
        test_driver.define(spec)
        test_driver.connection.raw.close()  # the daemon "goes away"
        assert test_driver.info(spec.uuid).name == spec.name
        assert test_driver.connection.reconnects == 1
        test_driver.undefine(spec.uuid)
    finally:
        keeper.close()


def test_lifecycle_codes_map_to_event_kinds_with_details():
    ref = uuidlib.uuid4()
    stopped = lifecycle_event(
        ref, "x", libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_DESTROYED
    )
    assert (stopped.kind, stopped.detail) == (EventKind.STOPPED, "destroyed")
    crashed = lifecycle_event(ref, "x", libvirt.VIR_DOMAIN_EVENT_CRASHED, 0)
    assert crashed.kind == EventKind.CRASHED
    assert lifecycle_event(ref, "x", 99, 0) is None
    assert device_id_from_alias("ua-data") == "data"
    assert device_id_from_alias("virtio-disk1") == "virtio-disk1"


class FakeLibvirt(types.SimpleNamespace):
    """Stands in for the libvirt module: records call order, fails every open like a dead daemon."""

    class libvirtError(Exception):
        def get_error_code(self) -> int:
            return Code.SYSTEM_ERROR

        def get_error_message(self) -> str:
            return "Failed to connect socket to '/run/libvirt/libvirt-sock': No such file or directory"

    def __init__(self) -> None:
        super().__init__(calls=[])

    def registerErrorHandler(self, handler: object, context: object) -> None:
        self.calls.append("registerErrorHandler")

    def virEventRegisterDefaultImpl(self) -> None:
        self.calls.append("virEventRegisterDefaultImpl")

    def virEventRunDefaultImpl(self) -> None:
        import time

        time.sleep(3600)

    def open(self, uri: str) -> None:
        self.calls.append(f"open {uri}")
        raise self.libvirtError("no daemon")


def test_the_binding_registers_the_event_loop_before_any_open_and_maps_a_dead_daemon(monkeypatch):
    fake = FakeLibvirt()
    monkeypatch.setattr(binding, "libvirt", fake)
    with pytest.raises(HypervisorUnavailable, match="cannot connect to qemu:///system") as caught:
        LibvirtDriver("qemu:///system")
    assert fake.calls == ["registerErrorHandler", "virEventRegisterDefaultImpl", "open qemu:///system"]
    assert "libvirt-sock" in caught.value.message


def test_without_libvirt_python_libvirt_uris_are_unavailable_but_the_simulator_works(monkeypatch):
    monkeypatch.setattr(binding, "libvirt", None)
    with pytest.raises(HypervisorUnavailable, match="libvirt-python is missing"):
        drivers.open("test:///default")
    with drivers.open("sim://") as hv:
        assert hv.list() == []


def test_xen_through_libvirt_without_a_xen_host_is_unavailable():
    with pytest.raises(HypervisorUnavailable, match="xen:///system"):
        drivers.open("xen:///system")
