"""The toolstack's records: VMs as stored (spec + desired state), observed state, and tasks.

Domain configuration reuses the drivers' pydantic models, so that the CLI, the API, GitOps edits and the
hypervisor all validate with the same rules.
"""

from __future__ import annotations

import enum
import json
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from drivers import DomainSpec
from drivers.models import DEVICE, Disk, DomainState, Nic
from store import NotADirectory, Tree
from toolstack import layout
from toolstack.errors import InvalidRecord

MANAGED_KEY = "managed-by"
MANAGED_VALUE = "git-toolstack"


class Desired(enum.StrEnum):
    """What the operator wants a VM to be doing."""

    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"

    @classmethod
    def of_state(cls, state: DomainState) -> Desired:
        if state == DomainState.PAUSED:
            return cls.PAUSED
        return cls.RUNNING if state.is_active else cls.STOPPED

    def matches(self, state: DomainState) -> bool:
        return Desired.of_state(state) == self


class TaskStatus(enum.StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ROLLED_BACK = "rolled-back"


class Record(BaseModel):
    model_config = ConfigDict(extra="ignore")

    def encode(self) -> bytes:
        return (json.dumps(self.model_dump(mode="json"), sort_keys=True, indent=2) + "\n").encode()


class Observed(Record):
    """What one host's hypervisor last reported about a domain."""

    state: str
    domid: int | None = None
    memory: int | None = None
    vcpus: int | None = None
    seen_at: float


class Migration(Record):
    """The last move of a VM between hosts (``vms/<xx>/<uuid>/migration``): the handshake that keeps it from
    running on two hosts at once. The destination starts the VM only once the source's own record
    (``hosts/<source>/domains/...``) shows it stopped or gone, unless ``forced`` by an operator who knows
    the source is down.

    Attributes:
        source: The host it was placed on (the one that must stop it first).
        target: The host it moves to.
        at: When the migration was asked for (seconds since the epoch).
        forced: The operator declared the source down: the destination does not wait for it.
    """

    source: str
    target: str
    at: float
    forced: bool = False


class Task(Record):
    """One operation, as recorded in ``tasks/<xx>/<id>``."""

    id: str
    operation: str
    vm: str
    vm_name: str
    who: str
    status: TaskStatus = TaskStatus.RUNNING
    error: str | None = None
    started: float
    finished: float | None = None
    host: str
    pid: int
    detail: dict[str, Any] = {}

    @property
    def duration(self) -> float | None:
        return None if self.finished is None else self.finished - self.started


class VM(BaseModel):
    """A VM as the state repository describes it."""

    model_config = ConfigDict(frozen=True)

    spec: DomainSpec
    desired: Desired
    observed: Observed | None = None
    host: str | None = None
    migration: Migration | None = None
    # Started when its host boots: applied by the toolstack (a boot-time reconcile), never by libvirt's
    # own autostart, which would start it on a host the pool may have moved it away from.
    autostart: bool = False

    @property
    def uuid(self) -> str:
        return str(self.spec.uuid)

    @property
    def name(self) -> str:
        return self.spec.name


def config_document(spec: DomainSpec) -> dict[str, Any]:
    """The ``vms/<xx>/<uuid>/config`` document: the spec without its uuid (the directory) and devices
    (files).

    The spec's ``extra`` (what the model does not describe, kept verbatim) is in it when not empty; a VM
    without extras gets the very bytes it got before the field existed.
    """
    return spec.model_dump(mode="json", exclude={"uuid", "disks", "nics"})


def encode_json(document: Any) -> bytes:
    return (json.dumps(document, sort_keys=True, indent=2) + "\n").encode()


def vm_files(spec: DomainSpec, desired: Desired) -> dict[str, bytes]:
    """Every file that describes a VM, by path."""
    uuid = str(spec.uuid)
    files = {
        layout.config_path(uuid): encode_json(config_document(spec)),
        layout.desired_path(uuid): f"{desired.value}\n".encode(),
        layout.name_path(spec.name): f"{uuid}\n".encode(),
    }
    for device in spec.devices:
        files[layout.device_path(uuid, device.id)] = encode_json(device.model_dump(mode="json"))
    return files


def _get(directory: Tree | None, name: str) -> bytes | None:
    return None if directory is None else directory.get(name)


def _load_json(directory: Tree | None, name: str, path: str) -> Any:
    raw = _get(directory, name)
    if raw is None:
        raise InvalidRecord(path, "is missing", joiner=" ")
    try:
        return json.loads(raw)
    except ValueError as err:
        raise InvalidRecord(path, f"is not valid JSON: {err}", joiner=" ") from err


def field_errors(err: ValidationError) -> str:
    """A validation error as 'field: message' pairs, naming each offending field."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(value)'}: {e['msg']}" for e in err.errors())


def vm_directory(tree: Tree, uuid: str) -> Tree | None:
    """The directory of VM ``uuid`` in ``tree`` as a tree of its own (None: a value stands there)."""
    try:
        return tree.subtree(layout.vm_dir(uuid))
    except NotADirectory:
        return None


def read_vm(tree: Tree, uuid: str, host: str | None = None) -> VM:
    """Load and validate one VM from a tree (main's, a commit's, or a transaction's).

    Raises:
        InvalidRecord: a file is missing or does not validate; ``path`` names it, the message the field.
    """
    observed = None if host is None else layout.read_observed(tree, host, uuid)
    return parse_vm(vm_directory(tree, uuid), uuid, observed)


def parse_vm(directory: Tree | None, uuid: str, observed_raw: bytes | None = None) -> VM:
    """Validate one VM from its directory (``vms/<xx>/<uuid>``; None when a value stands there: every file
    is then missing) and its observed record, if any.

    Raises:
        InvalidRecord: a file is missing or does not validate; ``path`` names it, the message the field.
    """
    config = _load_json(directory, "config", layout.config_path(uuid))
    devices = []
    for device_id in [] if directory is None else directory.list("devices"):
        path = layout.device_path(uuid, device_id)
        try:
            device = DEVICE.validate_python(_load_json(directory, f"devices/{device_id}", path))
        except ValidationError as err:
            raise InvalidRecord(path, field_errors(err), vm=uuid) from err
        if device.id != device_id:
            raise InvalidRecord(path, f"id {device.id!r} does not match the file name", vm=uuid)
        devices.append(device)
    disks = sorted((d for d in devices if isinstance(d, Disk)), key=lambda d: (len(d.target), d.target))
    nics = sorted((d for d in devices if isinstance(d, Nic)), key=lambda d: d.id)
    if not isinstance(config, dict):
        raise InvalidRecord(layout.config_path(uuid), "expected a JSON object", vm=uuid)
    try:
        spec = DomainSpec.model_validate({**config, "uuid": uuid, "disks": disks, "nics": nics})
    except ValidationError as err:
        raise InvalidRecord(layout.config_path(uuid), field_errors(err), vm=uuid) from err
    desired_raw = (_get(directory, "desired") or b"stopped").decode().strip()
    try:
        desired = Desired(desired_raw)
    except ValueError as err:
        raise InvalidRecord(
            layout.desired_path(uuid), f"{desired_raw!r} is not one of running, paused, stopped", vm=uuid
        ) from err
    observed = None
    if observed_raw is not None:
        try:
            observed = Observed.model_validate_json(observed_raw)
        except ValidationError:
            observed = None  # observed state is advisory; a damaged record is re-read from the hypervisor
    placed = _get(directory, "host")
    migration = None
    if _get(directory, "migration") is not None:
        try:
            migration = Migration.model_validate(
                _load_json(directory, "migration", layout.migration_path(uuid))
            )
        except ValidationError as err:
            raise InvalidRecord(layout.migration_path(uuid), field_errors(err), vm=uuid) from err
    autostart = (_get(directory, "autostart") or b"").strip() == b"true"
    return VM(
        spec=spec,
        desired=desired,
        observed=observed,
        host=placed.decode().strip() if placed else None,
        migration=migration,
        autostart=autostart,
    )


def vm_uuids(tree: Tree) -> list[str]:
    return layout.vm_uuids(tree)


def uuid_for_name(tree: Tree, name: str) -> str | None:
    raw = tree.get(layout.name_path(name)) if _plain_name(name) else None
    return raw.decode().strip() if raw else None


def _plain_name(name: str) -> bool:
    return bool(name) and "/" not in name and name not in {".", ".."} and "\0" not in name


def observed_of(state: DomainState, domid: int | None, memory: int | None, vcpus: int | None) -> Observed:
    return Observed(state=state.value, domid=domid, memory=memory, vcpus=vcpus, seen_at=time.time())


def managed(spec: DomainSpec) -> DomainSpec:
    """The spec as given to the hypervisor: marked as managed by this toolstack."""
    if spec.metadata.get(MANAGED_KEY) == MANAGED_VALUE:
        return spec
    return spec.evolve(metadata={**spec.metadata, MANAGED_KEY: MANAGED_VALUE})
