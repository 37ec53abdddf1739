"""The Driver contract, checked statement by statement against every driver.

Runs on the simulator (memory and directory) and on libvirt's ``test:///default`` in ``make test``, and on
``qemu:///system`` with real guests in ``make e2e``. Where hypervisors legitimately differ (live hotplug on
the test driver), the test reads ``capabilities()`` and checks the promised behaviour on both sides.
"""

from __future__ import annotations

import uuid as uuidlib

import pytest

from drivers import (
    Capability,
    DeviceExists,
    DeviceNotFound,
    DomainExists,
    DomainInfo,
    DomainNotFound,
    DomainState,
    Driver,
    DriverError,
    EventKind,
    InvalidArgument,
    InvalidState,
    Scope,
    Unsupported,
)
from tests.drivers.conftest import EventRecorder, SpecFactory, is_qemu, wait_until

pytestmark = pytest.mark.usefixtures("make_spec")


def running(hv: Driver, make_spec: SpecFactory, **overrides: object) -> uuidlib.UUID:
    spec = make_spec(**overrides)
    hv.define(spec)
    hv.start(spec.uuid)
    return spec.uuid


def shutdown_timeout(hv: Driver) -> float:
    return 60.0 if is_qemu(hv) else 5.0


# -- define / undefine ------------------------------------------------------------------------------------


def test_define_creates_a_shut_off_domain_whose_spec_reads_back_equal(driver: Driver, make_spec: SpecFactory):
    spec = make_spec(disks=[make_spec.disk("root", "vda")], nics=[make_spec.nic("eth0")])
    driver.define(spec)
    info = driver.info(spec.uuid)
    assert (info.state, info.domid, info.name, info.persistent) == (
        DomainState.SHUTOFF,
        None,
        spec.name,
        True,
    )
    assert driver.get_spec(spec.uuid) == spec


def test_define_of_an_existing_uuid_replaces_its_persistent_config(driver: Driver, make_spec: SpecFactory):
    spec = make_spec()
    driver.define(spec)
    updated = spec.evolve(memory=200, metadata={"suite": "contract", "version": "2"})
    driver.define(updated)
    assert driver.get_spec(spec.uuid) == updated
    assert driver.info(spec.uuid).memory == 200


def test_define_while_running_leaves_the_live_config_until_restart(driver: Driver, make_spec: SpecFactory):
    spec = make_spec()
    driver.define(spec)
    driver.start(spec.uuid)
    driver.define(spec.evolve(vcpus=2))
    assert driver.get_spec(spec.uuid, live=True).vcpus == 1
    assert driver.get_spec(spec.uuid).vcpus == 2
    driver.destroy(spec.uuid)
    driver.start(spec.uuid)
    assert driver.get_spec(spec.uuid, live=True).vcpus == 2


def test_define_refuses_a_name_held_by_another_domain(driver: Driver, make_spec: SpecFactory):
    first = make_spec()
    driver.define(first)
    intruder = make_spec(name=first.name)
    with pytest.raises(DomainExists) as caught:
        driver.define(intruder)
    assert caught.value.uuid == str(intruder.uuid) and caught.value.operation == "define"
    assert driver.get_spec(first.uuid) == first


def test_define_refuses_to_rename_a_domain(driver: Driver, make_spec: SpecFactory):
    spec = make_spec()
    driver.define(spec)
    with pytest.raises(DomainExists):
        driver.define(spec.evolve(name=spec.name + "-renamed"))
    assert driver.info(spec.uuid).name == spec.name


def test_undefine_removes_the_domain_and_is_idempotent(driver: Driver, make_spec: SpecFactory):
    spec = make_spec()
    driver.define(spec)
    driver.undefine(spec.uuid)
    with pytest.raises(DomainNotFound):
        driver.info(spec.uuid)
    driver.undefine(spec.uuid)  # absent: succeeds
    assert spec.uuid not in {info.uuid for info in driver.list()}


def test_undefine_of_an_active_domain_is_invalid_state(driver: Driver, make_spec: SpecFactory):
    uuid = running(driver, make_spec)
    with pytest.raises(InvalidState) as caught:
        driver.undefine(uuid)
    assert (caught.value.uuid, caught.value.operation) == (str(uuid), "undefine")
    assert driver.info(uuid).persistent


# -- start / stop -----------------------------------------------------------------------------------------


def test_start_runs_the_domain_with_a_domid(driver: Driver, make_spec: SpecFactory):
    uuid = running(driver, make_spec)
    info = driver.info(uuid)
    assert info.state == DomainState.RUNNING
    assert info.domid is not None and info.domid > 0


def test_start_of_an_active_domain_is_invalid_state(driver: Driver, make_spec: SpecFactory):
    uuid = running(driver, make_spec)
    with pytest.raises(InvalidState):
        driver.start(uuid)
    driver.pause(uuid)
    with pytest.raises(InvalidState):
        driver.start(uuid)


def test_operations_on_an_absent_domain_raise_domain_not_found_with_uuid_and_operation(driver: Driver):
    ghost = uuidlib.uuid4()
    calls = {
        "start": lambda: driver.start(ghost),
        "shutdown": lambda: driver.shutdown(ghost, 0),
        "reboot": lambda: driver.reboot(ghost),
        "pause": lambda: driver.pause(ghost),
        "resume": lambda: driver.resume(ghost),
        "info": lambda: driver.info(ghost),
        "get_spec": lambda: driver.get_spec(ghost),
        "set_vcpus": lambda: driver.set_vcpus(ghost, 1),
        "set_memory": lambda: driver.set_memory(ghost, 64),
        "detach_device": lambda: driver.detach_device(ghost, "root"),
    }
    for operation, call in calls.items():
        with pytest.raises(DomainNotFound) as caught:
            call()
        assert caught.value.uuid == str(ghost), operation
        assert caught.value.operation == operation


def test_destroy_stops_a_running_or_paused_domain(
    driver: Driver, make_spec: SpecFactory, recorder: EventRecorder
):
    driver.events(recorder)
    uuid = running(driver, make_spec)
    driver.destroy(uuid)
    assert driver.info(uuid).state == DomainState.SHUTOFF
    assert driver.info(uuid).domid is None
    recorder.wait_kinds(uuid, EventKind.STARTED, EventKind.STOPPED)
    driver.start(uuid)
    driver.pause(uuid)
    driver.destroy(uuid)
    assert driver.info(uuid).state == DomainState.SHUTOFF


def test_destroy_of_an_absent_or_stopped_domain_succeeds(driver: Driver, make_spec: SpecFactory):
    spec = make_spec()
    driver.destroy(spec.uuid)  # absent
    driver.define(spec)
    driver.destroy(spec.uuid)  # defined, never started
    assert driver.info(spec.uuid).state == DomainState.SHUTOFF


def test_shutdown_powers_the_guest_off(driver: Driver, make_spec: SpecFactory):
    uuid = running(driver, make_spec)
    if is_qemu(driver):
        wait_until(lambda: False, timeout=4)  # let the guest boot far enough to handle ACPI
    assert driver.shutdown(uuid, timeout=shutdown_timeout(driver)) is True
    assert driver.info(uuid).state == DomainState.SHUTOFF


def test_shutdown_of_a_stopped_domain_succeeds_at_once(driver: Driver, make_spec: SpecFactory):
    spec = make_spec()
    driver.define(spec)
    assert driver.shutdown(spec.uuid, timeout=0) is True


def test_reboot_keeps_the_domain_running(driver: Driver, make_spec: SpecFactory):
    uuid = running(driver, make_spec)
    driver.reboot(uuid)
    assert wait_until(lambda: driver.info(uuid).state == DomainState.RUNNING, timeout=10)


def test_reboot_of_a_stopped_domain_is_invalid_state(driver: Driver, make_spec: SpecFactory):
    spec = make_spec()
    driver.define(spec)
    with pytest.raises(InvalidState):
        driver.reboot(spec.uuid)


def test_pause_and_resume_are_idempotent(driver: Driver, make_spec: SpecFactory):
    uuid = running(driver, make_spec)
    driver.pause(uuid)
    driver.pause(uuid)
    assert driver.info(uuid).state == DomainState.PAUSED
    driver.resume(uuid)
    driver.resume(uuid)
    assert driver.info(uuid).state == DomainState.RUNNING


def test_pause_and_resume_of_a_stopped_domain_are_invalid_state(driver: Driver, make_spec: SpecFactory):
    spec = make_spec()
    driver.define(spec)
    for operation in (driver.pause, driver.resume):
        with pytest.raises(InvalidState):
            operation(spec.uuid)


# -- devices ----------------------------------------------------------------------------------------------


def test_persistent_attach_and_detach_change_the_next_boot_config(driver: Driver, make_spec: SpecFactory):
    spec = make_spec(disks=[make_spec.disk("root", "vda")])
    driver.define(spec)
    data = make_spec.disk("data", "vdb")
    nic = make_spec.nic("eth0")
    driver.attach_device(spec.uuid, data)  # scope None on a stopped domain: persistent only
    driver.attach_device(spec.uuid, nic, Scope.PERSISTENT)
    assert driver.get_spec(spec.uuid) == spec.with_device(data).with_device(nic)
    driver.detach_device(spec.uuid, "data")
    driver.detach_device(spec.uuid, nic, Scope.PERSISTENT)
    assert driver.get_spec(spec.uuid) == spec


def test_persistent_attach_to_a_running_domain_waits_for_the_next_boot(
    driver: Driver, make_spec: SpecFactory
):
    uuid = running(driver, make_spec)
    driver.attach_device(uuid, make_spec.disk("later", "vdc"), Scope.PERSISTENT)
    assert driver.get_spec(uuid, live=True).device("later") is None
    driver.destroy(uuid)
    driver.start(uuid)
    assert driver.get_spec(uuid, live=True).device("later") is not None


def test_attach_refuses_a_device_clashing_by_id_target_or_mac(driver: Driver, make_spec: SpecFactory):
    nic = make_spec.nic("eth0")
    spec = make_spec(disks=[make_spec.disk("root", "vda")], nics=[nic])
    driver.define(spec)
    clashes = [
        make_spec.disk("root", "vdz"),
        make_spec.disk("other", "vda"),
        nic.model_copy(update={"id": "eth9"}),
    ]
    for device in clashes:
        with pytest.raises(DeviceExists) as caught:
            driver.attach_device(spec.uuid, device, Scope.PERSISTENT)
        assert caught.value.uuid == str(spec.uuid)
    assert driver.get_spec(spec.uuid) == spec


def test_detach_of_an_unknown_device_is_device_not_found(driver: Driver, make_spec: SpecFactory):
    spec = make_spec()
    driver.define(spec)
    with pytest.raises(DeviceNotFound) as caught:
        driver.detach_device(spec.uuid, "nope", Scope.PERSISTENT)
    assert caught.value.device_id == "nope"


def test_live_scope_on_a_stopped_domain_is_invalid_state(driver: Driver, make_spec: SpecFactory):
    spec = make_spec()
    driver.define(spec)
    with pytest.raises(InvalidState):
        driver.attach_device(spec.uuid, make_spec.disk("data", "vdb"), Scope.LIVE)
    with pytest.raises(InvalidState):
        driver.set_memory(spec.uuid, 64, Scope.LIVE)
    assert driver.get_spec(spec.uuid) == spec


def test_live_attach_works_where_promised_and_is_unsupported_elsewhere(
    driver: Driver, make_spec: SpecFactory, recorder: EventRecorder
):
    driver.events(recorder)
    uuid = running(driver, make_spec)
    persistent_before = driver.get_spec(uuid)
    disk = make_spec.disk("hot", "vdb")
    if Capability.LIVE_ATTACH not in driver.capabilities():
        with pytest.raises(Unsupported) as caught:
            driver.attach_device(uuid, disk)  # scope None on a running domain: live and persistent
        assert (caught.value.uuid, caught.value.operation) == (str(uuid), "attach_device")
        assert driver.get_spec(uuid) == persistent_before  # live is tried first: nothing changed
        return
    if is_qemu(driver):
        wait_until(lambda: False, timeout=4)  # hot-unplug needs a booted guest kernel
    driver.attach_device(uuid, disk)
    assert driver.get_spec(uuid, live=True).device("hot") == disk
    assert driver.get_spec(uuid).device("hot") == disk
    driver.detach_device(uuid, "hot")
    recorder.wait_for(
        uuid, lambda events: any(e.kind == EventKind.DEVICE_REMOVED and e.detail == "hot" for e in events), 30
    )
    assert wait_until(lambda: driver.get_spec(uuid, live=True).device("hot") is None, timeout=10)
    assert driver.get_spec(uuid).device("hot") is None


# -- resources --------------------------------------------------------------------------------------------


def test_set_vcpus_and_memory_persistently(driver: Driver, make_spec: SpecFactory):
    spec = make_spec()
    driver.define(spec)
    driver.set_vcpus(spec.uuid, 2)
    driver.set_memory(spec.uuid, 200)
    assert driver.get_spec(spec.uuid) == spec.evolve(vcpus=2, memory=200)


def test_set_vcpus_and_memory_live(driver: Driver, make_spec: SpecFactory):
    uuid = running(driver, make_spec)
    if is_qemu(driver):
        wait_until(lambda: False, timeout=4)
    driver.set_memory(uuid, 160, Scope.LIVE)
    assert wait_until(lambda: driver.info(uuid).memory == 160, timeout=10)
    driver.set_vcpus(uuid, 2, Scope.LIVE)
    assert wait_until(lambda: driver.info(uuid).vcpus == 2, timeout=10)
    assert driver.get_spec(uuid).vcpus == 1  # live only


def test_resources_beyond_the_maximum_are_invalid_arguments(driver: Driver, make_spec: SpecFactory):
    spec = make_spec()  # max_vcpus 2, max_memory 256
    driver.define(spec)
    for call in (
        lambda: driver.set_vcpus(spec.uuid, 3),
        lambda: driver.set_vcpus(spec.uuid, 0),
        lambda: driver.set_memory(spec.uuid, 257),
        lambda: driver.set_vcpus(spec.uuid, 1.5),  # type: ignore[arg-type]
        lambda: driver.set_memory(spec.uuid, "128"),  # type: ignore[arg-type]
    ):
        with pytest.raises(InvalidArgument) as caught:
            call()
        assert caught.value.uuid == str(spec.uuid)
    assert driver.get_spec(spec.uuid) == spec


def test_a_resource_out_of_range_is_refused_with_the_same_message_everywhere(
    driver: Driver, make_spec: SpecFactory
):
    spec = make_spec()  # max_vcpus 2, max_memory 256
    driver.define(spec)
    with pytest.raises(InvalidArgument, match="vcpus must be between 1 and the maximum 2, got 3") as vcpus:
        driver.set_vcpus(spec.uuid, 3)
    assert vcpus.value.operation == "set_vcpus"
    with pytest.raises(InvalidArgument, match="memory must be between 1 and the maximum 256, got 0") as mem:
        driver.set_memory(spec.uuid, 0)
    assert mem.value.operation == "set_memory"


# -- queries, events, capabilities ------------------------------------------------------------------------


def test_list_reports_defined_and_running_domains(driver: Driver, make_spec: SpecFactory):
    stopped = make_spec()
    driver.define(stopped)
    started = running(driver, make_spec)
    listed = {info.uuid: info for info in driver.list()}
    assert all(isinstance(info, DomainInfo) for info in listed.values())
    assert listed[stopped.uuid].state == DomainState.SHUTOFF
    assert listed[started].state == DomainState.RUNNING


def test_get_spec_live_of_a_stopped_domain_is_invalid_state(driver: Driver, make_spec: SpecFactory):
    spec = make_spec()
    driver.define(spec)
    with pytest.raises(InvalidState):
        driver.get_spec(spec.uuid, live=True)
    with pytest.raises(InvalidState):
        driver.live_and_persistent(spec.uuid)


def test_live_and_persistent_read_together_equal_the_two_get_specs(driver: Driver, make_spec: SpecFactory):
    spec = make_spec()
    driver.define(spec)
    driver.start(spec.uuid)
    if is_qemu(driver):  # QEMU runs the ceiling (max_memory) until the guest's balloon driver takes it down
        assert wait_until(lambda: driver.get_spec(spec.uuid, live=True).memory == spec.memory, timeout=60)
    live, persistent = driver.live_and_persistent(spec.uuid)
    assert live == persistent == driver.get_spec(spec.uuid) == driver.get_spec(spec.uuid, live=True)
    driver.define(spec.evolve(vcpus=2))  # waits for the next boot
    live, persistent = driver.live_and_persistent(spec.uuid)
    assert (live, persistent) == (driver.get_spec(spec.uuid, live=True), driver.get_spec(spec.uuid))
    assert (live.vcpus, persistent.vcpus) == (1, 2)
    driver.destroy(spec.uuid)


def test_lifecycle_events_arrive_in_order(driver: Driver, make_spec: SpecFactory, recorder: EventRecorder):
    driver.events(recorder)
    spec = make_spec()
    driver.define(spec)
    driver.start(spec.uuid)
    driver.pause(spec.uuid)
    driver.resume(spec.uuid)
    driver.destroy(spec.uuid)
    driver.undefine(spec.uuid)
    kinds = (
        EventKind.DEFINED,
        EventKind.STARTED,
        EventKind.SUSPENDED,
        EventKind.RESUMED,
        EventKind.STOPPED,
        EventKind.UNDEFINED,
    )
    events = recorder.wait_kinds(spec.uuid, *kinds)
    assert all(event.name == spec.name for event in events)
    stopped = next(event for event in events if event.kind == EventKind.STOPPED)
    assert stopped.detail == "destroyed"


def test_closing_a_subscription_stops_delivery(
    driver: Driver, make_spec: SpecFactory, recorder: EventRecorder
):
    late = EventRecorder()
    subscription = driver.events(late)
    driver.events(recorder)
    subscription.close()
    spec = make_spec()
    driver.define(spec)
    recorder.wait_kinds(spec.uuid, EventKind.DEFINED)
    assert late.of(spec.uuid) == []


def test_consoles_are_the_serial_console_then_graphics_with_a_port_only_while_running(
    driver: Driver, make_spec: SpecFactory
):
    spec = make_spec(graphics="vnc")
    driver.define(spec)
    stopped = driver.consoles(spec.uuid)
    assert [(c.kind, c.listen, c.port) for c in stopped] == [
        ("serial", None, None),
        ("vnc", "127.0.0.1", None),
    ]
    driver.start(spec.uuid)
    serial, vnc = driver.consoles(spec.uuid)
    assert (serial.kind, vnc.kind, vnc.listen) == ("serial", "vnc", "127.0.0.1")
    assert vnc.port is None or vnc.port >= 5900  # libvirt's test driver reports none; QEMU its autoport
    if is_qemu(driver):
        assert vnc.port is not None and serial.path is not None and serial.path.startswith("/dev/pts/")
    with pytest.raises(DomainNotFound):
        driver.consoles(uuidlib.uuid4())


def test_capabilities_are_strings_from_the_known_set(driver: Driver):
    capabilities = driver.capabilities()
    assert isinstance(capabilities, frozenset)
    assert capabilities <= {str(capability) for capability in Capability}
    assert Capability.EVENTS in capabilities


def test_close_is_idempotent_and_later_calls_fail_cleanly(driver: Driver):
    driver.close()
    driver.close()
    with pytest.raises(DriverError):
        driver.list()
