"""Request and response bodies of the HTTP API.

Responses reuse the toolstack's own models (``DomainSpec``, ``Observed``, ``Task``, ``Desired``); requests
validate each field with the rules of ``drivers.models.DomainSpec`` itself, so that a bad value is refused
with a 422 naming the field, before any operation starts, and with the same message the CLI gives (the
fields and their rules are in :mod:`toolstack.api.schemas_fields`).
"""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

from drivers.models import Boot, ConsoleDevice, Disk, DomainSpec, LifecycleAction, Nic
from toolstack.api.revisions import Revision
from toolstack.api.schemas_fields import (
    ACCEL_DOC,
    AUTOSTART_DOC,
    CPU_DOC,
    GRAPHICS_DOC,
    NIC_PROBE,
    Accel,
    BridgeName,
    CpuModel,
    DeviceId,
    DiskIn,
    DiskRef,
    DiskSource,
    DiskTarget,
    DomainName,
    Graphics,
    MacAddress,
    Memory,
    Metadata,
    NetworkName,
    NicRef,
    PowerAction,
    Request,
    Vcpus,
    VolumeIn,
    validate_model_field,
    validate_spec_field,
)
from toolstack.api.schemas_pending import PendingOut
from toolstack.models import Desired, Observed, Task
from toolstack.volumes import VolumeRequest


# -- VMs ---------------------------------------------------------------------------------------------------
class BrokenEntry(BaseModel):
    """Why a VM's entry in the state repository does not validate."""

    path: str = Field(description="The offending file, e.g. vms/<xx>/<uuid>/config.")
    message: str = Field(description="What is wrong with it.")


class VMOut(BaseModel):
    """A VM: its desired configuration and state in main, and its state: live for a VM this host runs, as
    its host last reported it for a VM placed on another host."""

    uuid: str
    name: str = Field(description="Its name ('' for a broken entry that names none).")
    desired: Desired | None = Field(description="The desired run state (null for a broken entry).")
    state: str = Field(
        description="This host's hypervisor's run state now ('absent' if it has no such domain) for a VM "
        "this host runs; for a VM placed on another host, the state that host last reported ('unknown' if "
        "none); 'broken' for an entry that does not validate."
    )
    domid: int | None = None
    spec: DomainSpec | None = Field(description="The desired configuration (null for a broken entry).")
    observed: Observed | None = Field(None, description="What this host last recorded in the repository.")
    host: str = Field(description="The host that runs it: its placement, or this host if it has none.")
    local: bool = Field(description="Whether this host runs it (then state is live).")
    reported_at: float | None = Field(
        None, description="When its host reported the state (seconds since the epoch); null if live."
    )
    age: float | None = Field(None, description="Seconds since that report; null if live.")
    migrating_from: str | None = Field(
        None, description="A migration's source host that has not reported the VM stopped yet."
    )
    drift: list[str] = Field(
        default_factory=list, description="How the running domain's memory or vCPUs differ from the desired."
    )
    pending: list[PendingOut] = Field(default_factory=list, description="What waits for its next boot.")
    broken: bool = Field(False, description="Its entry does not validate: see error.")
    error: BrokenEntry | None = None
    autostart: bool = Field(False, description=AUTOSTART_DOC)
    accel: Accel | None = Field(
        None,
        description="The accelerator it gets: its spec's, where it forces one, else the one this host's "
        "driver chooses for it; null where none is chosen (the simulator, libvirt's test driver, Xen) or, "
        "unforced, for a VM placed on another host.",
    )
    accel_reason: str = Field("", description="Why: 'forced for this VM', or the driver's reason.")
    consoles: list[ConsoleDevice] | None = Field(
        None,
        description="Its consoles, serial first: as this host's hypervisor has them (a running VM's VNC port "
        "included), or as its spec asks for them. Null in the list of VMs (which does not ask the hypervisor "
        "about each VM) and for a broken entry.",
    )


class VMCreate(Request):
    """A new VM. Disks may be image paths or full disk objects, NICs network names or full NIC objects."""

    name: DomainName
    memory: Memory = Field(description="MiB, or text such as '512M' or '2G'.")
    vcpus: Vcpus = 1
    # The rules between fields (a ceiling below its boot value, duplicate device ids, targets or MACs) are
    # beyond JSON Schema: the descriptions state them, and a body that breaks one gets a 422 naming it.
    max_memory: Memory | None = Field(None, description="Ballooning ceiling: at least memory.")
    max_vcpus: Vcpus | None = Field(None, description="vCPU hotplug ceiling: at least vcpus.")
    boot: Boot | None = None
    disks: list[DiskRef] = Field(
        default_factory=list,
        max_length=64,
        description="Image paths, disks, or images to create when missing ({path, size, format}, as vm "
        "create --disk PATH,size=20G,format=qcow2: made through the hypervisor's storage before the VM is "
        "defined, removed again if it is not). Device ids (of disks and NICs) and disk targets must be "
        "unique; a path gets the first id (diskN) and target (vda, vdb...) the disks given whole leave free.",
    )
    nics: list[NicRef] = Field(
        default_factory=list,
        max_length=64,
        description="Network names or NICs. MAC addresses must be unique; a network name gets the first "
        "free id (nicN) and a MAC of the VM's own.",
    )
    on_poweroff: PowerAction | None = None
    on_reboot: PowerAction | None = None
    on_crash: LifecycleAction | None = None
    metadata: Metadata = Field(default_factory=dict)
    cpu: CpuModel | None = Field(None, description=f"{CPU_DOC}; null: the hypervisor's default.")
    accel: Accel | None = Field(None, description=f"{ACCEL_DOC}; null: the driver chooses for the host.")
    graphics: Graphics | None = Field(None, description=f"{GRAPHICS_DOC}; null: none.")
    cdrom: DiskSource | None = Field(
        None,
        description="An ISO image in a read-only IDE CD-ROM drive (cdrom0, hdc); boots from it by default.",
    )
    autostart: StrictBool = Field(False, description=AUTOSTART_DOC)
    start: StrictBool = Field(
        False,
        description="Boot the VM too, in the same task (as xl create does); a VM that fails to boot is gone.",
    )

    @field_validator("metadata")
    @classmethod
    def _metadata_rules(cls, value: dict[str, str]) -> dict[str, str]:
        return validate_spec_field("metadata", value)

    @field_validator("disks")
    @classmethod
    def _plain_disks(cls, value: list[str | Disk | VolumeIn]) -> list[str | Disk | VolumeIn]:
        # The toolstack gets the drivers' own Disk: a DiskIn would compare unequal to the disk read back.
        return [Disk(**disk.model_dump()) if isinstance(disk, DiskIn) else disk for disk in value]

    def disk_args(self) -> tuple[list[str | Disk | VolumeRequest], list[VolumeRequest]]:
        """The disks as the toolstack's ``create`` takes them, and the images to create if missing."""
        disks = [disk.request() if isinstance(disk, VolumeIn) else disk for disk in self.disks]
        return disks, [disk for disk in disks if isinstance(disk, VolumeRequest)]

    def spec_fields(self) -> dict[str, Any]:
        """The optional DomainSpec fields that were given."""
        names = (
            "max_memory",
            "max_vcpus",
            "boot",
            "on_poweroff",
            "on_reboot",
            "on_crash",
            "cpu",
            "accel",
            "graphics",
        )
        fields = {name: getattr(self, name) for name in names if getattr(self, name) is not None}
        if self.metadata:
            fields["metadata"] = self.metadata
        if self.cdrom is not None and self.boot is None:  # as vm create --cdrom: boot the installer
            fields["boot"] = Boot(device="cdrom")
        return fields


class VMUpdate(Request):
    """A change of memory and/or vCPUs (live where the VM allows, persistently always), and of how the VM
    boots and runs (boot, cdrom, cpu, accel, graphics: from its next boot) and autostart. Fields absent stay
    as they are; a null resets cpu, accel and graphics, and removes the CD-ROM drive."""

    # memory, vcpus, boot and autostart: given or absent, never null. At least one field.
    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    memory: Memory = Field(None, description="MiB, or text such as '1G'.")  # type: ignore[assignment]
    vcpus: Vcpus = None  # type: ignore[assignment]
    boot: Boot = Field(None, description="How it boots, whole: a kernel or a boot device.")  # type: ignore[assignment]
    cdrom: DiskSource | None = Field(
        None,
        description="The image in its CD-ROM drive (the drive is added if it has none); null removes it.",
    )
    cpu: CpuModel | None = Field(None, description=f"{CPU_DOC}; null: back to the hypervisor's default.")
    accel: Accel | None = Field(None, description=f"{ACCEL_DOC}; null: the driver chooses again.")
    graphics: Graphics | None = Field(None, description=f"{GRAPHICS_DOC}; null: none.")
    autostart: StrictBool = Field(None, description=AUTOSTART_DOC)  # type: ignore[assignment]

    @model_validator(mode="after")
    def _something(self) -> Self:
        if not self.model_fields_set:
            raise ValueError(
                "give at least one field to change: memory and/or vcpus, boot, cdrom, cpu, accel, graphics, "
                "autostart"
            )
        return self

    def settings(self) -> dict[str, Any]:
        """The fields besides memory and vCPUs that were given (null ones included: they reset)."""
        names = ("boot", "cdrom", "cpu", "accel", "graphics", "autostart")
        return {name: getattr(self, name) for name in names if name in self.model_fields_set}


class ShutdownRequest(Request):
    timeout: float = Field(60.0, ge=0, le=3600, description="Seconds to wait for the guest to power off.")
    force: StrictBool = Field(False, description="Destroy the VM if the guest has not powered off in time.")


class DiskAttach(Request):
    """A disk image to attach."""

    source: DiskSource = Field(description="Absolute path of the image or block device on the host.")
    target: DiskTarget | None = Field(
        None, description="Guest device, e.g. vdb (default: the next free one)."
    )
    id: DeviceId | None = Field(None, description="Device id (default: the next free diskN).")
    readonly: StrictBool = False


class NicAttach(Request):
    """A network interface to attach: to a network or to a bridge (exactly one)."""

    model_config = ConfigDict(
        json_schema_extra={"oneOf": [{"required": ["network"]}, {"required": ["bridge"]}]}
    )

    network: NetworkName = None  # type: ignore[assignment]
    bridge: BridgeName = None  # type: ignore[assignment]
    mac: MacAddress = None  # type: ignore[assignment]
    id: DeviceId = None  # type: ignore[assignment]

    @field_validator("network", "bridge", "mac", "id")
    @classmethod
    def _nic_rules(cls, value: str, info: Any) -> str:
        probe = dict(NIC_PROBE, network=None) if info.field_name == "bridge" else NIC_PROBE
        return validate_model_field(Nic, info.field_name, value, **probe)

    @model_validator(mode="after")
    def _one_attachment(self) -> Self:
        if (self.network is None) == (self.bridge is None):
            raise ValueError("give exactly one of 'network' or 'bridge'")
        return self


# -- tasks -------------------------------------------------------------------------------------------------
class OperationResult(BaseModel):
    """An operation's task, and the VM after it (None while it runs, and after a delete)."""

    task: Task
    vm: VMOut | None = None


class TaskPage(BaseModel):
    items: list[Task]
    offset: int
    limit: int
    next_offset: int | None


# -- history -----------------------------------------------------------------------------------------------
class HistoryEntry(BaseModel):
    """One commit on main's first-parent history: one operation. On a GitOps merge, ``author`` merged the
    edits and ``edited_by`` (its ``Edited-by`` trailers, of the VM asked about) made them; else empty.
    ``vms``: the uuids of the VMs it is about, those whose directory it changed and those its ``VM:``
    trailers name (a drift or reconcile commit changes only their observed state)."""

    commit: str
    time: int
    author: str
    message: str
    vms: list[str]
    edited_by: list[str] = []


class HistoryPage(BaseModel):
    items: list[HistoryEntry]
    offset: int
    limit: int
    next_offset: int | None


class PathChange(BaseModel):
    """One path a commit changed; values are shown as text (``binary`` if they are not UTF-8)."""

    path: str
    kind: Literal["added", "removed", "changed"]
    old: str | None
    new: str | None
    diff: str = Field(description="A unified diff of the two values.")
    binary: bool = False


class CommitOut(BaseModel):
    commit: str
    parents: list[str]
    author: str
    time: int
    message: str
    changes: list[PathChange] = Field(description="What the commit changed against its first parent.")


class BranchOut(BaseModel):
    name: str
    head: str | None


# -- plans -------------------------------------------------------------------------------------------------
class ActionOut(BaseModel):
    kind: str = Field(description="define, update, start, stop, pause, resume, undefine, adopt or claim")
    uuid: str
    name: str
    reason: str


class PlanOut(BaseModel):
    """What reconciling does (or would do, in a dry run), and what it found."""

    actions: list[ActionOut]
    drift: list[str]
    unknown: list[str]
    foreign: list[str] = Field(description="Domains of another pool (or not yet claimed): never touched")
    invalid: list[str]
    busy: list[str]
    errors: list[str]
    withheld: list[ActionOut] = Field(
        default_factory=list, description="Actions taken out of the plan (an agent's removal limit)"
    )
    applied: bool
    dry_run: bool


CONFIRM_DESCRIPTION = (
    "Apply a plan that stops or undefines domains (the CLI's --yes). Without it such a plan is refused with "
    "409 confirmation_required and the plan, and nothing is changed."
)


class RollbackRequest(Request):
    commit: Revision = Field(description="Any revision: a commit id, an abbreviation, main~3...")
    vm: str | None = Field(None, min_length=1, max_length=256, description="Roll back only this VM.")
    dry_run: StrictBool = Field(False, description="Compute the plan; change nothing.")
    confirm: StrictBool = Field(False, description=CONFIRM_DESCRIPTION)


class RollbackOut(PlanOut):
    target: str = Field(description="The commit whose VM state is restored.")
    head: str | None = Field(description="main after the rollback (unchanged by a dry run).")


class ReconcileRequest(Request):
    dry_run: StrictBool = False
    adopt: StrictBool = Field(False, description="Import domains the toolstack does not know.")
    confirm: StrictBool = Field(False, description=CONFIRM_DESCRIPTION)


# -- errors ------------------------------------------------------------------------------------------------
class FieldError(BaseModel):
    loc: list[str | int]
    msg: str


class ConflictOut(BaseModel):
    """One path that could not be merged, with its three values as text."""

    path: str
    reason: str
    base: str | None
    ours: str | None
    theirs: str | None


class ErrorOut(BaseModel):
    """Every error response has this shape."""

    error: str = Field(description="A stable code: not_found, busy, conflict, precondition_failed, ...")
    message: str
    fields: list[FieldError] = Field(default_factory=list)
    conflicts: list[ConflictOut] = Field(default_factory=list)
    task: str | None = Field(None, description="The task concerned (the running one, for 'busy').")
    running_operation: str | None = None
    plan: PlanOut | None = Field(
        None, description="The refused plan, for 'confirmation_required' (its destructive actions first)."
    )


class Health(BaseModel):
    status: Literal["ok"]
