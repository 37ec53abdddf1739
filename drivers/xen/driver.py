"""``xl://`` and ``xl:///abs/config-dir``: the Driver contract on Xen's xl toolstack."""

from __future__ import annotations

import logging
import threading
import time
import uuid as uuidlib
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from drivers.base import (
    DomainRef,
    Driver,
    check_device_free,
    check_resource,
    device_id_of,
    existing_device,
    not_found,
    resolve_scope,
)
from drivers.console import ConsoleStream
from drivers.errors import (
    DomainExists,
    DomainNotFound,
    InvalidArgument,
    InvalidState,
    Unsupported,
)
from drivers.files import atomic_write
from drivers.models import (
    Capability,
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
from drivers.xen import config as xlcfg
from drivers.xen.errors import translate
from drivers.xen.listing import XlDomain, live_spec, parse_list_long, parse_list_table
from drivers.xen.runner import CommandRunner, CompletedCommand, SubprocessRunner

DEFAULT_CONFIG_DIR = Path("/etc/xen")
log = logging.getLogger(__name__)


def _is_script_path(path: str) -> bool:
    # It is written into a comma-separated diskspec of key=value pairs, before target=.
    return (
        path.startswith("/") and not any(char in path for char in ",=") and not any(c.isspace() for c in path)
    )


class XlDriver(Driver):
    """A Driver over the ``xl`` command, run through an injected CommandRunner.

    Persistent configs are xl.cfg files in ``config_dir`` (one per domain, named ``<name>.cfg``); running
    domains are what ``xl list -l`` reports. xl has no event stream: events are reported for operations made
    through this object only (``Capability.EVENTS`` is not offered).

    Args:
        config_dir: Directory of the xl.cfg files.
        runner: Runs xl; defaults to subprocess.
        xl: The xl executable.
        uri: The URI this driver was opened with.
        poll_interval: Seconds between state polls while waiting for a shutdown.
        block_script: The hotplug script xl runs for this host's disks (xl-disk-configuration(5)
            ``script=``), an absolute path; None leaves Xen's ``/etc/xen/scripts/block``. A property of the
            host, not of a VM: the URI's ``?block-script=/path`` sets it.
    """

    def __init__(
        self,
        config_dir: Path = DEFAULT_CONFIG_DIR,
        runner: CommandRunner | None = None,
        xl: str = "xl",
        uri: str = "xl://",
        poll_interval: float = 0.5,
        block_script: str | None = None,
    ) -> None:
        if block_script is not None and not _is_script_path(block_script):
            raise InvalidArgument(
                f"block script {block_script!r}: an absolute path without ',', '=' or whitespace is needed"
            )
        self.uri = uri
        self.block_script = block_script
        self.config_dir = config_dir
        self.runner: CommandRunner = runner or SubprocessRunner()
        self.xl = xl
        self.poll_interval = poll_interval
        self._lock = threading.RLock()
        self._closed = False

    @classmethod
    def from_uri(cls, uri: str, runner: CommandRunner | None = None) -> XlDriver:
        """``xl://`` uses /etc/xen; ``xl:///abs/dir`` keeps the xl.cfg files in that directory.

        The query may name the disks' hotplug script: ``xl:///abs/dir?block-script=/abs/script``.
        """
        parts = urlsplit(uri)
        if parts.netloc:
            raise InvalidArgument(f"xl URI {uri!r} has a host part; use xl:// or xl:///absolute/config/dir")
        options = parse_qs(parts.query, keep_blank_values=True, separator="&")
        unknown = sorted(set(options) - {"block-script"})
        if unknown or any(len(values) != 1 for values in options.values()):
            raise InvalidArgument(f"xl URI {uri!r}: the only option is block-script=/path, given once")
        config_dir = Path(parts.path) if parts.path not in ("", "/") else DEFAULT_CONFIG_DIR
        block_script = options["block-script"][0] if options else None
        return cls(config_dir=config_dir, runner=runner, uri=uri, block_script=block_script)

    # -- configuration -------------------------------------------------------------------------------------

    def define(self, spec: DomainSpec) -> None:
        xlcfg.check_supported(spec, spec.uuid)
        xlcfg.check_extra(spec)
        with self._lock:
            configs = self._configs()
            for _path, other in configs.values():
                if other.name == spec.name and other.uuid != spec.uuid:
                    raise DomainExists(
                        f"domain name {spec.name!r} is used by {other.uuid}",
                        uuid=spec.uuid,
                        operation="define",
                    )
            old = configs.get(spec.uuid)
            if old is not None and old[1].name != spec.name:
                raise DomainExists(
                    f"domain {old[1].name!r} already exists with this uuid; renaming is not supported",
                    uuid=spec.uuid,
                    operation="define",
                )
            for running in self._running().values():
                if running.name == spec.name and running.uuid != spec.uuid:
                    raise DomainExists(
                        f"a running domain is named {spec.name!r}", uuid=spec.uuid, operation="define"
                    )
            self.config_dir.mkdir(parents=True, exist_ok=True)
            atomic_write(self._path(spec.name), self._render(spec).encode())
        self._event(spec.uuid, spec.name, EventKind.DEFINED, "added" if old is None else "updated")

    def undefine(self, uuid: DomainRef) -> None:
        ref = as_uuid(uuid)
        with self._lock:
            if ref in self._running():
                raise InvalidState(
                    "domain is active: stop it before undefining", uuid=ref, operation="undefine"
                )
            found = self._configs().get(ref)
            if found is None:
                return
            found[0].unlink(missing_ok=True)
        self._event(ref, found[1].name, EventKind.UNDEFINED, "removed")

    # -- lifecycle -----------------------------------------------------------------------------------------

    def start(self, uuid: DomainRef) -> None:
        ref = as_uuid(uuid)
        if ref in self._running():
            raise InvalidState("domain is already running", uuid=ref, operation="start")
        path, spec = self._config(ref, "start")
        self._xl("start", ref, "create", str(path))
        self._event(ref, spec.name, EventKind.STARTED, "booted")

    def shutdown(self, uuid: DomainRef, timeout: float = 60.0) -> bool:
        ref = as_uuid(uuid)
        domain = self._running().get(ref)
        if domain is None:
            self._config(ref, "shutdown")  # DomainNotFound if we do not know it at all
            return True
        result = self._run("shutdown", domain.name)
        if not result.ok:
            error = translate(result, uuid=ref, operation="shutdown")
            if isinstance(error, DomainNotFound):
                return True  # it went away between the listing and the request
            raise error
        deadline = time.monotonic() + timeout
        while ref in self._running(states=False):
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(self.poll_interval, max(0.0, deadline - time.monotonic())))
        self._event(ref, domain.name, EventKind.STOPPED, "shutdown")
        return True

    def reboot(self, uuid: DomainRef) -> None:
        domain = self._require_state("reboot", uuid, {DomainState.RUNNING})
        self._xl("reboot", domain.uuid, "reboot", domain.name)
        self._event(domain.uuid, domain.name, EventKind.REBOOTED)

    def destroy(self, uuid: DomainRef) -> None:
        ref = as_uuid(uuid)
        domain = self._running(states=False).get(ref)
        if domain is None:
            return
        result = self._run("destroy", domain.name)
        if not result.ok:
            error = translate(result, uuid=ref, operation="destroy")
            if isinstance(error, DomainNotFound):
                return
            raise error
        self._event(ref, domain.name, EventKind.STOPPED, "destroyed")

    def pause(self, uuid: DomainRef) -> None:
        domain, state = self._active("pause", uuid)
        if state != DomainState.PAUSED:
            self._xl("pause", domain.uuid, "pause", domain.name)
            self._event(domain.uuid, domain.name, EventKind.SUSPENDED, "paused")

    def resume(self, uuid: DomainRef) -> None:
        domain, state = self._active("resume", uuid)
        if state == DomainState.PAUSED:
            self._xl("resume", domain.uuid, "unpause", domain.name)
            self._event(domain.uuid, domain.name, EventKind.RESUMED, "unpaused")

    # -- devices and resources -----------------------------------------------------------------------------

    def attach_device(self, uuid: DomainRef, device: object, scope: Scope | None = None) -> None:
        ref = as_uuid(uuid)
        if not isinstance(device, Disk | Nic):
            raise InvalidArgument(f"attach_device needs a Disk or a Nic, got {type(device).__name__}")
        xlcfg.check_supported(device, ref)
        domain, resolved = self._scoped(ref, scope, "attach_device")
        if Scope.PERSISTENT in resolved:
            path, persistent = self._config(ref, "attach_device")
            check_device_free(persistent, device, ref)
        if domain is not None and Scope.LIVE in resolved:
            check_device_free(live_spec(domain, self._persistent_or_none(ref)), device, ref)
            if isinstance(device, Disk):
                self._block_attach(ref, domain.name, device)
            else:
                self._xl(
                    "attach_device", ref, "network-attach", domain.name, *xlcfg.vif_spec(device).split(",")
                )
            self._event(ref, domain.name, EventKind.DEVICE_ADDED, device.id)
        if Scope.PERSISTENT in resolved:
            atomic_write(path, self._render(persistent.with_device(device)).encode())

    def _block_attach(self, ref: uuidlib.UUID, name: str, disk: Disk) -> None:
        """``xl block-attach``; when it fails, ``xl block-detach`` what it left behind.

        Real xl 4.17 leaves a failed attach half made (its backend node stays in xenstore and ``xl list -l``
        lists the disk), so that the next attach of that target failed with "already in use".
        """
        result = self._run("block-attach", name, xlcfg.disk_spec(disk, self.block_script))
        if not result.ok:
            self._run("block-detach", name, disk.target)  # best effort: its own failure changes nothing
            raise translate(result, uuid=ref, operation="attach_device")

    def detach_device(self, uuid: DomainRef, device: object, scope: Scope | None = None) -> None:
        ref = as_uuid(uuid)
        device_id = device_id_of(device)
        domain, resolved = self._scoped(ref, scope, "detach_device")
        if Scope.PERSISTENT in resolved:
            path, persistent = self._config(ref, "detach_device")
            existing_device(persistent, device_id, ref, "persistent")
        if domain is not None and Scope.LIVE in resolved:
            live = existing_device(live_spec(domain, self._persistent_or_none(ref)), device_id, ref, "live")
            if isinstance(live, Disk):
                self._xl("detach_device", ref, "block-detach", domain.name, live.target)
            else:
                self._xl("detach_device", ref, "network-detach", domain.name, live.mac)
            self._event(ref, domain.name, EventKind.DEVICE_REMOVED, device_id)
        if Scope.PERSISTENT in resolved:
            atomic_write(path, self._render(persistent.without_device(device_id)).encode())

    def set_vcpus(self, uuid: DomainRef, count: int, scope: Scope | None = None) -> None:
        self._set_resource("vcpus", as_uuid(uuid), count, scope, lambda name: ["vcpu-set", name, str(count)])

    def set_memory(self, uuid: DomainRef, mib: int, scope: Scope | None = None) -> None:
        self._set_resource("memory", as_uuid(uuid), mib, scope, lambda name: ["mem-set", name, f"{mib}m"])

    # -- queries -------------------------------------------------------------------------------------------

    def info(self, uuid: DomainRef) -> DomainInfo:
        ref = as_uuid(uuid)
        for info in self.list():
            if info.uuid == ref:
                return info
        raise not_found(ref, "info")

    def list(self) -> list[DomainInfo]:
        running = self._running()
        configs = self._configs()
        infos = []
        for ref, domain in running.items():
            infos.append(
                DomainInfo(
                    uuid=ref,
                    name=domain.name,
                    state=self._states[domain.domid],
                    domid=domain.domid,
                    memory=max(1, domain.memory),
                    vcpus=domain.vcpus,
                    persistent=ref in configs,
                )
            )
        for ref, (_path, spec) in configs.items():
            if ref not in running:
                infos.append(
                    DomainInfo(
                        uuid=ref,
                        name=spec.name,
                        state=DomainState.SHUTOFF,
                        domid=None,
                        memory=spec.memory,
                        vcpus=spec.vcpus,
                    )
                )
        return infos

    def get_spec(self, uuid: DomainRef, live: bool = False) -> DomainSpec:
        ref = as_uuid(uuid)
        if not live:
            return self._config(ref, "get_spec")[1]
        domain = self._running(states=False).get(ref)
        if domain is None:
            self._config(ref, "get_spec")
            raise InvalidState("domain is not active", uuid=ref, operation="get_spec")
        return live_spec(domain, self._persistent_or_none(ref))

    def console(self, uuid: DomainRef, force: bool = False) -> ConsoleStream:
        """Not through this driver: ``xl console`` (xenconsole) needs a terminal of its own, which the
        injected runner, made for commands whose output is read when they exit, cannot give it. The error
        names the command to run on the host instead."""
        ref = as_uuid(uuid)
        raise Unsupported(
            f"{self.uri} (the xl driver) cannot attach consoles: run `xl console <domain>` on the Xen host",
            uuid=ref,
            operation="console",
        )

    def capabilities(self) -> frozenset[str]:
        return frozenset(
            {
                Capability.LIVE_ATTACH,
                Capability.LIVE_VCPUS,
                Capability.LIVE_MEMORY,
                Capability.PERSISTENT_STATE,
                Capability.GUEST_SHUTDOWN,
            }
        )

    def close(self) -> None:
        self._closed = True
        self._hub.clear()

    # -- helpers -------------------------------------------------------------------------------------------

    def _run(self, *args: str) -> CompletedCommand:
        if self._closed:
            raise InvalidState("the driver is closed", operation=args[0])
        result = self.runner([self.xl, *args])
        if not result.ok:
            # An error keeps only xl's last line in its message: libxl's reasons come before it.
            log.info("%s exited %d: %s", " ".join(result.argv), result.returncode, result.stderr.strip())
        return result

    def _xl(self, operation: str, ref: uuidlib.UUID | None, *args: str) -> CompletedCommand:
        result = self._run(*args)
        if not result.ok:
            raise translate(result, uuid=ref, operation=operation)
        return result

    def _running(self, states: bool = True) -> dict[uuidlib.UUID, XlDomain]:
        """Running guests by uuid (Domain-0 excluded); with ``states``, also refresh ``self._states``."""
        domains = parse_list_long(self._xl("list", None, "list", "-l").stdout)
        if states:
            self._states = parse_list_table(self._xl("list", None, "list").stdout)
        return {domain.uuid: domain for domain in domains if domain.domid != 0}

    def _configs(self) -> dict[uuidlib.UUID, tuple[Path, DomainSpec]]:
        configs: dict[uuidlib.UUID, tuple[Path, DomainSpec]] = {}
        if not self.config_dir.is_dir():
            return configs
        for path in sorted(self.config_dir.glob("*.cfg")):
            spec = xlcfg.read_spec(path)
            if spec is not None:
                configs[spec.uuid] = (path, spec)
        return configs

    def _config(self, ref: uuidlib.UUID, operation: str) -> tuple[Path, DomainSpec]:
        found = self._configs().get(ref)
        if found is None:
            if ref in self._running(states=False):
                raise InvalidState(
                    "domain is transient: it has no xl.cfg here", uuid=ref, operation=operation
                )
            raise not_found(ref, operation)
        return found

    def _persistent_or_none(self, ref: uuidlib.UUID) -> DomainSpec | None:
        found = self._configs().get(ref)
        return found[1] if found else None

    def _render(self, spec: DomainSpec) -> str:
        return xlcfg.render(spec, self.block_script)

    def _path(self, name: str) -> Path:
        return self.config_dir / f"{name}.cfg"

    def _active(self, operation: str, uuid: DomainRef) -> tuple[XlDomain, DomainState]:
        ref = as_uuid(uuid)
        domain = self._running().get(ref)
        if domain is None:
            self._config(ref, operation)
            raise InvalidState("domain is not running", uuid=ref, operation=operation)
        return domain, self._states[domain.domid]

    def _require_state(self, operation: str, uuid: DomainRef, allowed: set[DomainState]) -> XlDomain:
        domain, state = self._active(operation, uuid)
        if state not in allowed:
            raise InvalidState(f"domain is {state}", uuid=domain.uuid, operation=operation)
        return domain

    def _scoped(
        self, ref: uuidlib.UUID, scope: Scope | None, operation: str
    ) -> tuple[XlDomain | None, Scope]:
        domain = self._running(states=False).get(ref)
        if domain is None:
            self._config(ref, operation)
        return domain, resolve_scope(scope, domain is not None, uuid=ref, operation=operation)

    def _set_resource(
        self, resource: Resource, ref: uuidlib.UUID, value: int, scope: Scope | None, argv: object
    ) -> None:
        operation = f"set_{resource}"
        domain, resolved = self._scoped(ref, scope, operation)
        persistent = self._persistent_or_none(ref)
        specs = []
        if Scope.PERSISTENT in resolved:
            path, persistent_spec = self._config(ref, operation)
            specs.append(persistent_spec)
        if domain is not None and Scope.LIVE in resolved:
            specs.append(live_spec(domain, persistent))
        for spec in specs:
            check_resource(spec, resource, value, ref)
        if domain is not None and Scope.LIVE in resolved:
            self._xl(operation, ref, *argv(domain.name))  # type: ignore[operator]
            kind = EventKind.VCPUS_CHANGED if resource == "vcpus" else EventKind.MEMORY_CHANGED
            self._event(ref, domain.name, kind, str(value))
        if Scope.PERSISTENT in resolved:
            atomic_write(path, self._render(persistent_spec.evolve(**{resource: value})).encode())

    def _event(self, ref: uuidlib.UUID, name: str, kind: EventKind, detail: str = "") -> None:
        self._emit(DomainEvent(uuid=ref, name=name, kind=kind, detail=detail))
