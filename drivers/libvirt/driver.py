"""``test:///default``, ``qemu:///system``, ``xen:///system``: the Driver contract on libvirt."""

from __future__ import annotations

import time
import uuid as uuidlib
from typing import Any
from urllib.parse import urlsplit

from drivers.base import (
    DomainRef,
    Driver,
    check_device_free,
    check_resource,
    check_volume,
    device_id_of,
    existing_device,
    not_found,
    resolve_scope,
)
from drivers.console import ConsoleStream
from drivers.errors import (
    DomainNotFound,
    InvalidArgument,
    InvalidState,
    Unsupported,
)
from drivers.libvirt import accel, binding, guest
from drivers.libvirt.connection import LibvirtConnection
from drivers.libvirt.console import open_console
from drivers.libvirt.runtime import without_runtime
from drivers.libvirt.storage import create_volume
from drivers.libvirt.xml import device_to_xml, spec_to_xml, xml_to_spec
from drivers.models import (
    Capability,
    ConsoleDevice,
    Disk,
    DomainInfo,
    DomainSpec,
    DomainState,
    Nic,
    Resource,
    Scope,
    as_uuid,
)

# virDomainState values, in libvirt's order.
_STATES = (
    DomainState.NOSTATE,
    DomainState.RUNNING,
    DomainState.BLOCKED,
    DomainState.PAUSED,
    DomainState.SHUTDOWN,
    DomainState.SHUTOFF,
    DomainState.CRASHED,
    DomainState.PMSUSPENDED,
)
AFFECT_LIVE = 1
AFFECT_CONFIG = 2
XML_INACTIVE = 2
UNDEFINE_MANAGED_SAVE = 1
UNDEFINE_SNAPSHOTS_METADATA = 2
_DOMAIN_TYPES = {"test": "test", "qemu": "qemu", "xen": "xen", "lxc": "lxc"}
_SHUTDOWN_POLL_SECONDS = 0.1
_SHUTDOWN_RETRY_SECONDS = 5.0


class LibvirtDriver(Driver):
    """A Driver over one libvirt connection.

    QEMU domains are defined with ``type='kvm'`` where the host offers KVM and ``type='qemu'`` (TCG)
    where it does not (``drivers.libvirt.accel``); ``?accel=kvm|tcg`` on the URI, or a spec's ``accel``,
    forces one. Every domain rendered from the model has a serial console. On ``test:///default``
    live device changes are impossible (libvirt's test driver lacks hotplug): they raise Unsupported, while
    persistent device changes work by redefining the domain. ``shutdown`` presses the ACPI power button again
    every few seconds while it waits, since a press during the guest's boot is lost.

    Args:
        uri: A libvirt URI.
    """

    def __init__(self, uri: str) -> None:
        self.uri = uri
        libvirt_uri, self.accel_setting = accel.split_uri(uri)
        parts = urlsplit(libvirt_uri)
        scheme = parts.scheme.partition("+")[0]
        self.domain_type = _DOMAIN_TYPES.get(scheme, "qemu")
        self._is_test_driver = scheme == "test"
        self._local = not parts.netloc
        self._probe: accel.Probe | None = None
        self.connection = LibvirtConnection(libvirt_uri, self._emit)

    # -- configuration -------------------------------------------------------------------------------------

    def define(self, spec: DomainSpec) -> None:
        xml = spec_to_xml(spec, self.domain_type_for(spec))
        self.connection.call("define", spec.uuid, lambda conn: conn.defineXML(xml))

    def undefine(self, uuid: DomainRef) -> None:
        ref = as_uuid(uuid)

        def work(conn: Any) -> None:
            dom = self._lookup_or_none(conn, ref)
            if dom is None:
                return
            if dom.isActive():
                raise InvalidState(
                    "domain is active: stop it before undefining", uuid=ref, operation="undefine"
                )
            if dom.isPersistent():
                dom.undefineFlags(UNDEFINE_MANAGED_SAVE | UNDEFINE_SNAPSHOTS_METADATA)

        self._call("undefine", ref, work, absent_ok=True)

    # -- lifecycle -----------------------------------------------------------------------------------------

    def start(self, uuid: DomainRef) -> None:
        ref = as_uuid(uuid)

        def work(conn: Any) -> None:
            dom = self._lookup(conn, ref, "start")
            if dom.isActive():
                raise InvalidState(f"domain {dom.name()!r} is already running", uuid=ref, operation="start")
            dom.create()

        self._call("start", ref, work)

    def shutdown(self, uuid: DomainRef, timeout: float = 60.0) -> bool:
        ref = as_uuid(uuid)
        lv = binding.module()

        def request(conn: Any) -> bool:
            dom = self._lookup(conn, ref, "shutdown")
            if not dom.isActive():
                return False
            try:
                dom.shutdown()
            except lv.libvirtError as error:
                if dom.isActive():
                    raise
                del error  # it stopped between the check and the request
            return True

        if not self._call("shutdown", ref, request):
            return True
        deadline = time.monotonic() + timeout
        next_request = time.monotonic() + _SHUTDOWN_RETRY_SECONDS
        while self._state(ref, "shutdown").is_active:
            now = time.monotonic()
            if now >= deadline:
                return False
            if now >= next_request:
                # An ACPI press that arrives while the guest is still booting is lost: press again, like Nova.
                next_request = now + _SHUTDOWN_RETRY_SECONDS
                if not self._call("shutdown", ref, request):
                    return True
            time.sleep(min(_SHUTDOWN_POLL_SECONDS, max(0.0, deadline - now)))
        return True

    def reboot(self, uuid: DomainRef) -> None:
        ref = as_uuid(uuid)

        def work(conn: Any) -> None:
            dom = self._lookup(conn, ref, "reboot")
            state = _STATES[dom.state()[0]]
            if state != DomainState.RUNNING:
                raise InvalidState(f"domain is {state}, not running", uuid=ref, operation="reboot")
            dom.reboot(0)

        self._call("reboot", ref, work)

    def destroy(self, uuid: DomainRef) -> None:
        ref = as_uuid(uuid)

        def work(conn: Any) -> None:
            dom = self._lookup_or_none(conn, ref)
            if dom is not None and dom.isActive():
                dom.destroy()

        try:
            self._call("destroy", ref, work, absent_ok=True)
        except InvalidState:
            return  # it stopped between the check and the request: destroy's contract is met

    def pause(self, uuid: DomainRef) -> None:
        self._run_state("pause", as_uuid(uuid), DomainState.PAUSED)

    def resume(self, uuid: DomainRef) -> None:
        self._run_state("resume", as_uuid(uuid), DomainState.RUNNING)

    # -- devices and resources -----------------------------------------------------------------------------

    def attach_device(self, uuid: DomainRef, device: object, scope: Scope | None = None) -> None:
        ref = as_uuid(uuid)
        if not isinstance(device, Disk | Nic):
            raise InvalidArgument(f"attach_device needs a Disk or a Nic, got {type(device).__name__}")
        resolved = self._resolve(ref, scope, "attach_device")
        if Scope.LIVE in resolved:
            check_device_free(self.get_spec(ref, live=True), device, ref)
        if Scope.PERSISTENT in resolved:
            check_device_free(self.get_spec(ref), device, ref)
            updated = self.get_spec(ref).with_device(device)
        if Scope.LIVE in resolved:
            self._hotplug("attach_device", ref, device, attach=True)
        if Scope.PERSISTENT in resolved:
            self.define(updated)

    def detach_device(self, uuid: DomainRef, device: object, scope: Scope | None = None) -> None:
        ref = as_uuid(uuid)
        device_id = device_id_of(device)
        resolved = self._resolve(ref, scope, "detach_device")
        live_device = None
        if Scope.LIVE in resolved:
            live_device = existing_device(self.get_spec(ref, live=True), device_id, ref, "live")
        if Scope.PERSISTENT in resolved:
            persistent = self.get_spec(ref)
            existing_device(persistent, device_id, ref, "persistent")
        if live_device is not None:
            self._hotplug("detach_device", ref, live_device, attach=False)
        if Scope.PERSISTENT in resolved:
            self.define(persistent.without_device(device_id))

    def set_vcpus(self, uuid: DomainRef, count: int, scope: Scope | None = None) -> None:
        ref = as_uuid(uuid)
        self._set_resource("vcpus", ref, count, scope, lambda dom, flags: dom.setVcpusFlags(count, flags))

    def set_memory(self, uuid: DomainRef, mib: int, scope: Scope | None = None) -> None:
        ref = as_uuid(uuid)
        self._set_resource(
            "memory", ref, mib, scope, lambda dom, flags: dom.setMemoryFlags(mib * 1024, flags)
        )

    # -- queries -------------------------------------------------------------------------------------------

    def info(self, uuid: DomainRef) -> DomainInfo:
        ref = as_uuid(uuid)
        return self._call("info", ref, lambda conn: _info(self._lookup(conn, ref, "info")))

    def list(self) -> list[DomainInfo]:
        lv = binding.module()

        def work(conn: Any) -> list[DomainInfo]:
            result = []
            for dom in conn.listAllDomains(0):
                try:
                    result.append(_info(dom))
                except lv.libvirtError:
                    continue  # undefined between the listing and the query
            return result

        return self.connection.call("list", None, work)

    def get_spec(self, uuid: DomainRef, live: bool = False) -> DomainSpec:
        """The domain's spec; the live one without what libvirt added when it started (``runtime``)."""
        if live:
            return self._live(as_uuid(uuid), persistent_too=False)[0]
        ref = as_uuid(uuid)

        def work(conn: Any) -> str:
            dom = self._lookup(conn, ref, "get_spec")
            if not dom.isPersistent():
                raise InvalidState(
                    "domain is transient: it has no persistent config", uuid=ref, operation="get_spec"
                )
            return dom.XMLDesc(XML_INACTIVE)

        return xml_to_spec(self._call("get_spec", ref, work))

    def live_and_persistent(self, uuid: DomainRef) -> tuple[DomainSpec, DomainSpec]:
        live, persistent = self._live(as_uuid(uuid), persistent_too=True)
        assert persistent is not None  # _live refused a transient domain
        return live, persistent

    def console(self, uuid: DomainRef, force: bool = False) -> ConsoleStream:
        ref = as_uuid(uuid)
        if self._is_test_driver:
            raise Unsupported(
                f"{self.uri} (libvirt's test driver) has no consoles: it cannot open a console stream",
                uuid=ref,
                operation="console",
            )

        def work(conn: Any) -> Any:
            dom = self._lookup(conn, ref, "console")
            if not dom.isActive():
                raise InvalidState("domain is not running", uuid=ref, operation="console")
            return open_console(conn, dom, force)

        return self._call("console", ref, work)

    def consoles(self, uuid: DomainRef) -> list[ConsoleDevice]:
        """What the domain's XML has: its live XML while it runs (VNC ports and ptys filled in), else its
        persistent one."""
        return guest.consoles_of(self.dump_xml(uuid))

    def dump_xml(self, uuid: DomainRef, inactive: bool = False) -> str:
        ref = as_uuid(uuid)
        return self._call(
            "dump_xml",
            ref,
            lambda conn: self._lookup(conn, ref, "dump_xml").XMLDesc(XML_INACTIVE if inactive else 0),
        )

    def create_volume(self, path: str, size_mib: int, fmt: str = "raw") -> None:
        check_volume(path, size_mib, fmt)
        if self._is_test_driver:
            raise Unsupported(
                f"{self.uri} (libvirt's test driver) has no storage on disk", operation="create_volume"
            )
        self.connection.call("create_volume", None, lambda conn: create_volume(conn, path, size_mib, fmt))

    def host_info(self) -> dict[str, str]:
        info = super().host_info()
        if self.domain_type == "qemu":
            chosen, reason = self._auto_accel()
            info.update(accel=chosen, accel_setting=self.accel_setting, accel_reason=reason)
        return info

    def domain_type_for(self, spec: DomainSpec) -> str:
        """libvirt's domain type for ``spec`` on this connection: the spec's accelerator if it forces one,
        else this host's (``host_info()["accel"]``); QEMU's only: test and xen domains keep theirs."""
        if self.domain_type != "qemu":
            return self.domain_type
        return guest.DOMAIN_TYPE[spec.accel or self._auto_accel()[0]]

    def _auto_accel(self) -> tuple[str, str]:
        if self.accel_setting != "auto":
            return self.accel_setting, f"forced by the driver URI (accel={self.accel_setting})"
        if self._probe is None:
            self._probe = self.connection.call("probe", None, lambda conn: accel.probe(conn, self._local))
        return ("kvm" if self._probe.kvm else "tcg"), f"auto: {self._probe.reason}"

    def capabilities(self) -> frozenset[str]:
        capabilities = {Capability.EVENTS, Capability.LIVE_VCPUS, Capability.LIVE_MEMORY}
        if not self._is_test_driver:
            capabilities |= {Capability.LIVE_ATTACH, Capability.PERSISTENT_STATE, Capability.GUEST_SHUTDOWN}
        return frozenset(capabilities)

    def close(self) -> None:
        self.connection.close()
        self._hub.clear()

    # -- helpers -------------------------------------------------------------------------------------------

    def _call(self, operation: str, ref: uuidlib.UUID, work: Any, absent_ok: bool = False) -> Any:
        try:
            return self.connection.call(operation, ref, work)
        except DomainNotFound:
            if absent_ok:
                return None
            raise

    @staticmethod
    def _lookup_or_none(conn: Any, ref: uuidlib.UUID) -> Any:
        lv = binding.module()
        try:
            return conn.lookupByUUIDString(str(ref))
        except lv.libvirtError as error:
            if error.get_error_code() == 42:  # VIR_ERR_NO_DOMAIN
                return None
            raise

    def _lookup(self, conn: Any, ref: uuidlib.UUID, operation: str) -> Any:
        dom = self._lookup_or_none(conn, ref)
        if dom is None:
            raise not_found(ref, operation)
        return dom

    def _state(self, ref: uuidlib.UUID, operation: str) -> DomainState:
        try:
            return self._call(
                operation, ref, lambda conn: _STATES[self._lookup(conn, ref, operation).state()[0]]
            )
        except DomainNotFound:
            return DomainState.SHUTOFF  # a transient domain vanishes when it stops

    def _resolve(self, ref: uuidlib.UUID, scope: Scope | None, operation: str) -> Scope:
        active = self._call(operation, ref, lambda conn: bool(self._lookup(conn, ref, operation).isActive()))
        return resolve_scope(scope, active, uuid=ref, operation=operation)

    def _live(self, ref: uuidlib.UUID, persistent_too: bool) -> tuple[DomainSpec, DomainSpec | None]:
        """The live spec, and the persistent one if the domain has it (which it must if ``persistent_too``),
        from one lookup: the persistent XML tells which of the live state libvirt added at start."""

        def work(conn: Any) -> tuple[str, str | None]:
            dom = self._lookup(conn, ref, "get_spec")
            if not dom.isActive():
                raise InvalidState("domain is not active", uuid=ref, operation="get_spec")
            if not dom.isPersistent():
                if persistent_too:
                    raise InvalidState(
                        "domain is transient: it has no persistent config", uuid=ref, operation="get_spec"
                    )
                return dom.XMLDesc(0), None
            return dom.XMLDesc(0), dom.XMLDesc(XML_INACTIVE)

        live, inactive = self._call("get_spec", ref, work)
        persistent = None if inactive is None else xml_to_spec(inactive)
        return xml_to_spec(without_runtime(live, inactive)), persistent

    def _run_state(self, operation: str, ref: uuidlib.UUID, wanted: DomainState) -> None:
        def work(conn: Any) -> None:
            dom = self._lookup(conn, ref, operation)
            state = _STATES[dom.state()[0]]
            if state == wanted:
                return
            if not state.is_active:
                raise InvalidState(f"domain is {state}", uuid=ref, operation=operation)
            if wanted == DomainState.PAUSED:
                dom.suspend()
            else:
                dom.resume()

        self._call(operation, ref, work)

    def _hotplug(self, operation: str, ref: uuidlib.UUID, device: Disk | Nic, attach: bool) -> None:
        if self._is_test_driver:
            raise Unsupported(
                f"{self.uri} cannot change devices of a running domain; use Scope.PERSISTENT",
                uuid=ref,
                operation=operation,
            )
        xml = device_to_xml(device)

        def work(conn: Any) -> None:
            dom = self._lookup(conn, ref, operation)
            if attach:
                dom.attachDeviceFlags(xml, AFFECT_LIVE)
            else:
                dom.detachDeviceFlags(xml, AFFECT_LIVE)

        self._call(operation, ref, work)

    def _set_resource(
        self, resource: Resource, ref: uuidlib.UUID, value: int, scope: Scope | None, apply: Any
    ) -> None:
        operation = f"set_{resource}"
        resolved = self._resolve(ref, scope, operation)
        for wanted, live in ((Scope.LIVE, True), (Scope.PERSISTENT, False)):
            if wanted in resolved:
                check_resource(self.get_spec(ref, live=live), resource, value, ref)
        for wanted, flag in ((Scope.LIVE, AFFECT_LIVE), (Scope.PERSISTENT, AFFECT_CONFIG)):
            if wanted in resolved:
                self._call(
                    operation, ref, lambda conn, flag=flag: apply(self._lookup(conn, ref, operation), flag)
                )


def _info(dom: Any) -> DomainInfo:
    state, _max_kib, memory_kib, vcpus, _cpu_time = dom.info()
    domid = dom.ID()
    return DomainInfo(
        uuid=uuidlib.UUID(dom.UUIDString()),
        name=dom.name(),
        state=_STATES[state] if 0 <= state < len(_STATES) else DomainState.NOSTATE,
        domid=domid if domid >= 0 else None,
        memory=max(1, memory_kib // 1024),
        vcpus=vcpus,
        persistent=bool(dom.isPersistent()),
    )
