"""The fields of the HTTP API's request bodies, and the rules that check them.

Each field is validated with the rules of ``drivers.models.DomainSpec`` (or ``Disk``, ``Nic``) itself, so
that a bad value is refused with a 422 naming the field, before any operation starts, and with the same
message the CLI gives; the OpenAPI schema states the same rules, from the drivers' own patterns.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    Tag,
    ValidationError,
    WithJsonSchema,
)

from drivers.fields import CPU_MODEL_RE
from drivers.models import (  # the patterns are the drivers' own, so that the schema cannot drift from them
    BRIDGE_RE,
    DEVICE_ID_RE,
    DISK_SOURCE_RE,
    MAC_INPUT_RE,
    MAX_MEMORY_MIB,
    MAX_VCPUS,
    NETWORK_RE,
    TARGET_RE,
    Disk,
    DomainSpec,
    Nic,
    parse_memory,
)
from toolstack.volumes import VolumeRequest, default_format

_PROBE_UUID = uuidlib.UUID(int=0)


def validate_model_field(model: type[BaseModel], field: str, value: Any, **others: Any) -> Any:
    """Validate one field with the rules of ``model`` itself (other fields filled with valid ``others``).

    Returns the parsed value.

    Raises:
        ValueError: the value is refused; the message is the model's.
    """
    try:
        parsed = model.model_validate({**others, field: value})
    except ValidationError as err:
        messages = [
            str(e["msg"]).removeprefix("Value error, ")
            for e in err.errors()
            if e["loc"][:1] in ((field,), ())
        ]
        raise ValueError("; ".join(messages) or f"invalid {field}") from None
    return getattr(parsed, field)


def validate_spec_field(field: str, value: Any) -> Any:
    """Validate one ``DomainSpec`` field with DomainSpec's own validators."""
    return validate_model_field(DomainSpec, field, value, uuid=_PROBE_UUID, name="probe", memory=1)


# The OpenAPI schema declares what the validators enforce, from the drivers' own patterns, so that a client
# generating requests from the spec (schemathesis does) never sends one that the validators refuse.
def _spec_rule(field: str) -> BeforeValidator:
    """Validate with DomainSpec's own rule first: its message names the problem better than a pattern's."""
    return BeforeValidator(lambda value: validate_spec_field(field, value))


def _device_rule(model: type[BaseModel], field: str, **probe: Any) -> BeforeValidator:
    return BeforeValidator(lambda value: validate_model_field(model, field, value, **probe))


_DISK_PROBE = {"id": "probe", "source": "/probe", "target": "vda"}
NIC_PROBE: dict[str, Any] = {"id": "probe", "mac": "52:54:00:00:00:01", "network": "probe"}
# A name: DomainSpec's pattern, and not all digits (xl would read it as a domain id), without a lookahead.
_NAME_SCHEMA = {"pattern": r"^(?:[0-9]*[A-Za-z]|[0-9]+[._-])[A-Za-z0-9._-]*$", "maxLength": 64}
# Memory as text, within MAX_MEMORY_MIB: up to 7 digits of MiB, 4 of GiB, or 1-16 TiB.
_MEMORY_TEXT = (
    r"^[ \t]*(?:[1-9][0-9]{0,6}[ \t]*(?:[mM](?:[iI]?[bB])?)?|[1-9][0-9]{0,3}[ \t]*[gG](?:[iI]?[bB])?"
    r"|(?:[1-9]|1[0-6])[ \t]*[tT](?:[iI]?[bB])?)[ \t]*$"
)
# Constraints first, validators after: pydantic then puts the constraints in the schema (and checks them
# after the validators, which run first).
DomainName = Annotated[str, Field(json_schema_extra=_NAME_SCHEMA), _spec_rule("name")]
Memory = Annotated[
    Annotated[int, Field(gt=0, le=MAX_MEMORY_MIB)] | Annotated[str, Field(pattern=_MEMORY_TEXT)],
    _spec_rule("memory"),
]
Vcpus = Annotated[int, Field(ge=1, le=MAX_VCPUS), _spec_rule("vcpus")]
DiskSource = Annotated[
    str, Field(pattern=DISK_SOURCE_RE.pattern), _device_rule(Disk, "source", **_DISK_PROBE)
]
DiskTarget = Annotated[str, Field(pattern=TARGET_RE.pattern), _device_rule(Disk, "target", **_DISK_PROBE)]
CpuModel = Annotated[str, Field(pattern=CPU_MODEL_RE.pattern), _spec_rule("cpu")]
Accel = Literal["kvm", "tcg"]
Graphics = Literal["vnc"]
CPU_DOC = "The guest CPU: `host` (passed through) or a model such as `qemu64`"
ACCEL_DOC = "`kvm` or `tcg` (QEMU's emulation) forced for this VM"
GRAPHICS_DOC = "`vnc`: a VNC console listening on 127.0.0.1 (every VM has a serial console)"
AUTOSTART_DOC = "Start it when its host boots (a toolstack setting, applied by a boot-time reconcile)."
# on_poweroff and on_reboot: coredump actions are for crashes only.
PowerAction = Annotated[Literal["destroy", "restart", "preserve", "rename-restart"], _spec_rule("on_reboot")]
DeviceId = Annotated[str, Field(pattern=DEVICE_ID_RE.pattern)]
NetworkName = Annotated[str, Field(pattern=NETWORK_RE.pattern)]
NicNetwork = Annotated[NetworkName, _device_rule(Nic, "network", **NIC_PROBE)]
BridgeName = Annotated[str, Field(pattern=BRIDGE_RE.pattern)]
# Unicast only: the first octet's lowest bit is clear (an even second hex digit).
MacAddress = Annotated[str, Field(pattern=MAC_INPUT_RE.pattern)]
# Metadata: DomainSpec refuses empty keys and control characters but tab and newline, in keys and values.
# Stated whole: pydantic would put a key pattern in patternProperties, which leaves other keys unconstrained.
_METADATA_TEXT = r"^[^\x00-\x08\x0b-\x1f]*$"
Metadata = Annotated[
    dict[str, str],
    WithJsonSchema(
        {
            "type": "object",
            "propertyNames": {"minLength": 1, "pattern": _METADATA_TEXT},
            "additionalProperties": {"type": "string", "pattern": _METADATA_TEXT},
        }
    ),
]


class DiskIn(Disk):
    """A disk given whole in a request: the drivers' ``Disk``, with ``readonly`` a strict JSON boolean like
    every other flag the API receives (``0`` or ``"yes"`` is refused, not read as a boolean)."""

    readonly: StrictBool = False


def _form(kind: str) -> Callable[[Any], str]:
    return lambda value: "text" if isinstance(value, str) else kind


# A disk or NIC given by a path or network name, or as a whole object: errors then name the object's field
# (body.nics.0.nic.mac) rather than every member of the union. A path is turned into a disk, a network name
# into a NIC, with the drivers' rules: the schema states them for both forms.
def _volume_size(value: Any) -> Any:
    """A size as MiB, from MiB or text such as '20G' (what ``vm create --disk PATH,size=20G`` takes)."""
    if isinstance(value, str):
        return parse_memory(value)  # its ValueError names the text
    return value


# Sizes as text, as memory is given (1 MiB to 16 TiB): the same pattern.
VolumeSize = Annotated[
    Annotated[int, Field(ge=1, le=MAX_MEMORY_MIB)] | Annotated[str, Field(pattern=_MEMORY_TEXT)],
    BeforeValidator(_volume_size),
]


class VolumeIn(BaseModel):
    """A disk image by path, created with ``size`` through the hypervisor's storage when it is missing (an
    existing one is used as it is), as ``vm create --disk PATH,size=20G,format=qcow2`` does."""

    model_config = ConfigDict(extra="forbid")

    path: DiskSource = Field(description="Absolute path of the image on the host.")
    size: VolumeSize = Field(description="MiB, or text such as '20G': its size if it is created.")
    format: Literal["raw", "qcow2"] | None = Field(
        None, description="raw or qcow2 (default: qcow2 for a *.qcow2 path, else raw)."
    )

    def request(self) -> VolumeRequest:
        return VolumeRequest(self.path, self.size, self.format or default_format(self.path))  # type: ignore[arg-type]


def _disk_form(value: Any) -> str:
    if isinstance(value, str):
        return "text"
    return (
        "volume" if isinstance(value, VolumeIn) or (isinstance(value, dict) and "path" in value) else "disk"
    )


DiskRef = Annotated[
    Annotated[DiskSource, Tag("text")] | Annotated[DiskIn, Tag("disk")] | Annotated[VolumeIn, Tag("volume")],
    Discriminator(_disk_form),
]
NicRef = Annotated[
    Annotated[NicNetwork, Tag("text")] | Annotated[Nic, Tag("nic")], Discriminator(_form("nic"))
]


class Request(BaseModel):
    """A request body: unknown fields are refused (a typo must not be silently ignored). Flags are
    ``StrictBool``: JSON's true and false only, so that ``0`` or ``"no"`` is refused rather than read as a
    boolean the client may not have meant."""

    model_config = ConfigDict(extra="forbid")
