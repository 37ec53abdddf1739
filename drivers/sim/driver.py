"""``sim://`` and ``sim:///abs/dir``: the Driver contract over the simulated host, with faults and drift."""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
import uuid as uuidlib
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from drivers.base import (
    DomainRef,
    Driver,
    EventCallback,
    Subscription,
    check_volume,
    device_id_of,
    resolve_scope,
    spec_consoles,
)
from drivers.console import ConsoleStream, QueuedConsole
from drivers.errors import DomainExists, DomainNotFound, InvalidArgument, InvalidState
from drivers.models import (
    Capability,
    ConsoleDevice,
    Disk,
    DomainEvent,
    DomainInfo,
    DomainSpec,
    DomainState,
    EventKind,
    Nic,
    Resource,
    Scope,
    as_uuid,
)
from drivers.sim.faults import FaultPlan
from drivers.sim.host import SimHost
from drivers.sim.store import DirectoryStore, MemoryStore, SimDomain

_EVENT_POLL_SECONDS = 0.05
VNC_BASE_PORT = 5900  # libvirt's autoport starts there


class SimDriver(Driver):
    """The simulated hypervisor: the embedded default for ``make run`` and for fast tests.

    It follows libvirt's rules (through ``SimHost``), assigns domids, emits events and supports live attach.
    ``sim://`` keeps state in memory for this object only; ``sim:///abs/dir`` keeps it in a directory that
    several processes share (each one sees one host; events cross processes through an event log).

    Attributes:
        faults: Fault injection (see ``drivers.sim.faults.FaultPlan``).
        host: The underlying host with libvirt's raw rules.
    """

    reads_never_wait = True  # domains are read from memory or files, without the write lock

    def __init__(self, uri: str = "sim://", state_dir: Path | None = None, durable: bool = True) -> None:
        self.uri = uri
        self._store: MemoryStore | DirectoryStore = (
            DirectoryStore(state_dir, durable=durable) if state_dir is not None else MemoryStore()
        )
        self.state_dir = state_dir
        self._origin = secrets.token_hex(8)
        self.host = SimHost(self._store, self._deliver, origin=self._origin)
        self.faults = FaultPlan(state_dir)
        self._closed = False
        self._tail_thread: threading.Thread | None = None
        self._tail_stop = threading.Event()

    @classmethod
    def from_uri(cls, uri: str) -> SimDriver:
        """Open ``sim://`` (memory) or ``sim:///abs/dir[?durable=0]`` (directory)."""
        parts = urlsplit(uri)
        if parts.scheme != "sim":
            raise InvalidArgument(f"not a simulator URI: {uri!r}")
        if parts.netloc:
            raise InvalidArgument(
                f"simulator URI {uri!r} has a host part; use sim:///absolute/state/dir or sim://"
            )
        options = parse_qs(parts.query)
        durable = options.get("durable", ["1"])[-1] not in ("0", "false", "no")
        if not parts.path or parts.path == "/":
            return cls(uri)
        return cls(uri, Path(parts.path), durable=durable)

    # -- contract ------------------------------------------------------------------------------------------

    def define(self, spec: DomainSpec) -> None:
        self._enter("define", spec.uuid)
        self.host.define(spec)
        self.faults.after("define", spec.uuid)

    def undefine(self, uuid: DomainRef) -> None:
        ref = self._enter("undefine", uuid)
        try:
            domain = self.host.lookup(ref, "undefine")
        except DomainNotFound:
            return
        if domain.state.is_active:
            raise InvalidState("domain is active: stop it before undefining", uuid=ref, operation="undefine")
        with contextlib.suppress(DomainNotFound):
            self.host.undefine(ref)
        self.faults.after("undefine", ref)

    def start(self, uuid: DomainRef) -> None:
        ref = self._enter("start", uuid)
        self.host.create(ref)
        self.faults.after("start", ref)

    def shutdown(self, uuid: DomainRef, timeout: float = 60.0) -> bool:
        ref = self._enter("shutdown", uuid)
        if not self.host.lookup(ref, "shutdown").state.is_active:
            return True
        # It may stop (or vanish, if transient) between the check and the request.
        with contextlib.suppress(InvalidState, DomainNotFound):
            self.host.request_shutdown(ref)
        self.faults.after("shutdown", ref)
        deadline = time.monotonic() + timeout
        while True:
            if not self._is_active(ref):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    def reboot(self, uuid: DomainRef) -> None:
        ref = self._enter("reboot", uuid)
        self.host.reboot(ref)
        self.faults.after("reboot", ref)

    def destroy(self, uuid: DomainRef) -> None:
        ref = self._enter("destroy", uuid)
        try:
            self.host.destroy(ref)
        except (DomainNotFound, InvalidState):
            return  # absent or already stopped: the contract's idempotent success
        self.faults.after("destroy", ref)

    def pause(self, uuid: DomainRef) -> None:
        self._run_state("pause", uuid, DomainState.PAUSED)

    def resume(self, uuid: DomainRef) -> None:
        self._run_state("resume", uuid, DomainState.RUNNING)

    def attach_device(self, uuid: DomainRef, device: object, scope: Scope | None = None) -> None:
        ref = self._enter("attach_device", uuid)
        if not isinstance(device, Disk | Nic):
            raise InvalidArgument(f"attach_device needs a Disk or a Nic, got {type(device).__name__}")
        live, config = self._scope(ref, scope, "attach_device")
        self.host.attach(ref, device, live=live, config=config)
        self.faults.after("attach_device", ref)

    def detach_device(self, uuid: DomainRef, device: object, scope: Scope | None = None) -> None:
        ref = self._enter("detach_device", uuid)
        device_id = device_id_of(device)
        live, config = self._scope(ref, scope, "detach_device")
        self.host.detach(ref, device_id, live=live, config=config)
        self.faults.after("detach_device", ref)

    def set_vcpus(self, uuid: DomainRef, count: int, scope: Scope | None = None) -> None:
        ref = self._enter("set_vcpus", uuid)
        live, config = self._scope(ref, scope, "set_vcpus")
        self.host.set_resource(ref, "vcpus", count, live=live, config=config)
        self.faults.after("set_vcpus", ref)

    def set_memory(self, uuid: DomainRef, mib: int, scope: Scope | None = None) -> None:
        ref = self._enter("set_memory", uuid)
        live, config = self._scope(ref, scope, "set_memory")
        self.host.set_resource(ref, "memory", mib, live=live, config=config)
        self.faults.after("set_memory", ref)

    def info(self, uuid: DomainRef) -> DomainInfo:
        ref = self._enter("info", uuid)
        result = _info(self.host.lookup(ref, "info"))
        self.faults.after("info", ref)
        return result

    def list(self) -> list[DomainInfo]:
        self._enter("list", None)
        result = [_info(domain) for domain in self.host.all()]
        self.faults.after("list", None)
        return result

    def get_spec(self, uuid: DomainRef, live: bool = False) -> DomainSpec:
        ref = self._enter("get_spec", uuid)
        domain = self.host.lookup(ref, "get_spec")
        spec = domain.live if live else domain.config
        if spec is None:
            what = "not active" if live else "transient (it has no persistent config)"
            raise InvalidState(f"domain is {what}", uuid=ref, operation="get_spec")
        self.faults.after("get_spec", ref)
        return spec

    def live_and_persistent(self, uuid: DomainRef) -> tuple[DomainSpec, DomainSpec]:
        # One lookup, and the shared object when the live spec equals the persistent one (see SimHost).
        ref = self._enter("get_spec", uuid)
        domain = self.host.lookup(ref, "get_spec")
        if domain.live is None or domain.config is None:
            what = "not active" if domain.live is None else "transient (it has no persistent config)"
            raise InvalidState(f"domain is {what}", uuid=ref, operation="get_spec")
        self.faults.after("get_spec", ref)
        return domain.live, domain.config

    def create_volume(self, path: str, size_mib: int, fmt: str = "raw") -> None:
        """A sparse file of the size: the simulator never reads it (a qcow2 one has no qcow2 header)."""
        check_volume(path, size_mib, fmt)
        try:
            with open(path, "xb") as image:
                image.truncate(size_mib << 20)
        except FileExistsError:
            raise DomainExists(f"{path} exists already: not overwritten", operation="create_volume") from None
        except OSError as error:
            raise InvalidArgument(
                f"cannot create {path}: {error.strerror}", operation="create_volume"
            ) from None

    def consoles(self, uuid: DomainRef) -> list[ConsoleDevice]:
        """The spec's consoles; a running domain's VNC server has port 5900 + its domid, as though libvirt's
        autoport had given it one (nothing listens there)."""
        ref = self._enter("consoles", uuid)
        domain = self.host.lookup(ref, "consoles")
        port = None if domain.domid is None else VNC_BASE_PORT + domain.domid
        return spec_consoles(domain.current, port)

    def console(self, uuid: DomainRef, force: bool = False) -> ConsoleStream:
        """The simulated serial console: a fake boot log, then what is typed, echoed back as a tty does.
        It ends when the domain stops."""
        ref = self._enter("console", uuid)
        domain = self.host.lookup(ref, "console")
        if not domain.state.is_active or domain.live is None:
            raise InvalidState(f"domain is {domain.state}, not active", uuid=ref, operation="console")
        subscription: list[Subscription] = []
        stream = QueuedConsole(
            send=lambda data: stream.feed(data.replace(b"\r", b"\r\n")),
            on_close=lambda: [each.close() for each in subscription],
        )

        def on_event(event: DomainEvent) -> None:
            if event.uuid == ref and event.kind in (EventKind.STOPPED, EventKind.UNDEFINED):
                stream.end()

        subscription.append(self.events(on_event))
        stream.feed(_boot_log(domain.live))
        self.faults.after("console", ref)
        return stream

    def events(self, callback: EventCallback) -> Subscription:
        subscription = super().events(callback)
        if isinstance(self._store, DirectoryStore) and self._tail_thread is None:
            self._start_tail()
        return subscription

    def capabilities(self) -> frozenset[str]:
        capabilities = {
            Capability.LIVE_ATTACH,
            Capability.LIVE_VCPUS,
            Capability.LIVE_MEMORY,
            Capability.EVENTS,
        }
        if isinstance(self._store, DirectoryStore):
            capabilities.add(Capability.PERSISTENT_STATE)
        return frozenset(capabilities)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._tail_stop.set()
        if self._tail_thread is not None:
            self._tail_thread.join(timeout=1)
        self._hub.clear()
        if isinstance(self._store, DirectoryStore):
            self._store.close()

    # -- out-of-band changes: what an admin, a crash or another toolstack does behind our back ------------

    def oob_kill(self, uuid: DomainRef, crashed: bool = False) -> None:
        """The running domain stops without us asking (crashed=True leaves it CRASHED, like a guest panic)."""
        self.host.kill(as_uuid(uuid), crashed)

    def oob_set_memory(self, uuid: DomainRef, mib: int) -> None:
        """The memory changes behind our back: the live balloon if active, else the persistent config."""
        self._oob_resource(uuid, "memory", mib)

    def oob_set_vcpus(self, uuid: DomainRef, count: int) -> None:
        """The online vCPU count changes behind our back (live if active, else persistent)."""
        self._oob_resource(uuid, "vcpus", count)

    def oob_create(self, spec: DomainSpec, running: bool = True, persistent: bool = True) -> None:
        """A domain appears that was not created through us (for adoption and "unknown domain" tests)."""
        self.host.adopt(spec, running=running, persistent=persistent)

    def oob_undefine(self, uuid: DomainRef) -> None:
        """Someone removes the persistent config; an active domain keeps running as a transient one."""
        self.host.undefine(as_uuid(uuid))

    def oob_ignore_shutdown(self, uuid: DomainRef, ignore: bool = True) -> None:
        """Make the simulated guest ignore (or obey again) power-off requests."""
        self.host.force(
            as_uuid(uuid), "oob_ignore_shutdown", lambda d: d.model_copy(update={"ignores_shutdown": ignore})
        )

    # -- helpers -------------------------------------------------------------------------------------------

    def _enter(self, operation: str, uuid: DomainRef | None) -> uuidlib.UUID:
        if self._closed:
            raise InvalidState("the driver is closed", operation=operation)
        ref = as_uuid(uuid) if uuid is not None else None
        self.faults.before(operation, ref)
        return ref  # type: ignore[return-value]

    def _is_active(self, ref: uuidlib.UUID) -> bool:
        try:
            return self.host.lookup(ref, "shutdown").state.is_active
        except DomainNotFound:
            return False

    def _scope(self, ref: uuidlib.UUID, scope: Scope | None, operation: str) -> tuple[bool, bool]:
        active = self.host.lookup(ref, operation).state.is_active
        resolved = resolve_scope(scope, active, uuid=ref, operation=operation)
        return Scope.LIVE in resolved, Scope.PERSISTENT in resolved

    def _run_state(self, operation: str, uuid: DomainRef, wanted: DomainState) -> None:
        ref = self._enter(operation, uuid)
        state = self.host.lookup(ref, operation).state
        if state == wanted:
            return
        if not state.is_active:
            raise InvalidState(f"domain is {state}", uuid=ref, operation=operation)
        self.host.set_run_state(ref, wanted, operation)
        self.faults.after(operation, ref)

    def _oob_resource(self, uuid: DomainRef, resource: Resource, value: int) -> None:
        ref = as_uuid(uuid)

        def drifted(spec: DomainSpec) -> DomainSpec:
            # Drift may exceed the configured maximum (someone raised it too): keep the spec valid.
            return spec.evolve(**{resource: value, f"max_{resource}": max(value, spec.maximum(resource))})

        def change(domain: SimDomain) -> SimDomain:
            if domain.live is not None:
                return domain.model_copy(update={"live": drifted(domain.live)})
            assert domain.config is not None
            return domain.model_copy(update={"config": drifted(domain.config)})

        kind = EventKind.MEMORY_CHANGED if resource == "memory" else EventKind.VCPUS_CHANGED
        self.host.force(ref, f"oob_set_{resource}", change, event=(kind, str(value)))

    def _deliver(self, event: DomainEvent) -> None:
        self._hub.emit(event)

    def _start_tail(self) -> None:
        assert isinstance(self._store, DirectoryStore)
        store = self._store
        offset = store.event_log_size()

        def tail() -> None:
            nonlocal offset
            while not self._tail_stop.wait(_EVENT_POLL_SECONDS):
                entries, offset = store.read_events(offset)
                for origin, event in entries:
                    # This object's own events were delivered directly, when they happened.
                    if origin != self._origin:
                        self._hub.emit(event)

        self._tail_thread = threading.Thread(target=tail, name=f"sim-events-{self._origin}", daemon=True)
        self._tail_thread.start()


def _boot_log(spec: DomainSpec) -> bytes:
    """What a booting Linux guest prints on its serial console, for people and tests to recognise."""
    lines = [
        f"[    0.000000] Linux version 6.1.0-sim (simulated console of {spec.name})",
        f"[    0.000000] Command line: {spec.boot.cmdline or ''}",
        f"[    0.010000] Memory: {spec.memory} MiB, {spec.vcpus} vCPU(s)",
        "[    0.420000] Run /init as init process",
        f"{spec.name} login: ",
    ]
    return "\r\n".join(lines).encode()


def _info(domain: SimDomain) -> DomainInfo:
    spec = domain.current
    return DomainInfo(
        uuid=domain.uuid,
        name=spec.name,
        state=domain.state,
        domid=domain.domid,
        memory=spec.memory,
        vcpus=spec.vcpus,
        persistent=domain.config is not None,
    )
