"""What the fields of the domain models accept: the patterns, the limits, and the memory size parser.

The patterns are public: they are matched whole (``fullmatch``: a '$' alone would let a trailing newline
through), and are also declared on the fields (``Field(pattern=...)``, see :func:`schema_pattern`), so that a
JSON schema of these models (the HTTP API's OpenAPI spec) states exactly what validation accepts. Each is
written in the common subset of Python's and ECMAScript's regex syntax, for JSON schema validators and
generators.
"""

from __future__ import annotations

import functools
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

# Safe for libvirt (no '/', no leading '.'), for xl (not all digits: xl would read it as a domid), for file
# names of the simulator and xl.cfg files, and for shells.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# Device ids become libvirt user aliases ("ua-<id>"), which QEMU restricts to this alphabet.
DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,47}$")
TARGET_RE = re.compile(r"^(vd|sd|hd|xvd)[a-z]{1,3}$")
# A MAC as stored: lower case, colons.
MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
# A MAC as accepted: either case, ':' or '-', spaces or tabs around; unicast only (the first octet's lowest
# bit clear: an even second hex digit). Normalised to MAC_RE.
MAC_INPUT_RE = re.compile(r"^[ \t]*[0-9A-Fa-f][02468aceACE]([:-][0-9A-Fa-f]{2}){5}[ \t]*$")
BRIDGE_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,15}$")
NETWORK_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Absolute host paths, without what would break out of a quoted xl.cfg string or a disk spec (commas).
DISK_SOURCE_RE = re.compile(r"^/[^\n\r\x00'\",]*$")
BOOT_PATH_RE = re.compile(r"^/[^\n\r\x00'\"]*$")
CMDLINE_RE = re.compile(r"^[^\n\r\x00\"]*$")
# A CPU model as QEMU and libvirt name them (qemu64, Skylake-Server-v4, EPYC-Rome), or "host".
CPU_MODEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f]")  # control characters but tab and newline
# ASCII digits, spaces and tabs only (\d and \s would also take other scripts' digits, and newlines).
_MEMORY_RE = re.compile(r"^[ \t]*([0-9]+)[ \t]*([A-Za-z]*)[ \t]*$")
_MEMORY_UNITS_TO_MIB = {
    "": 1,
    "m": 1,
    "mb": 1,
    "mib": 1,
    "g": 1024,
    "gb": 1024,
    "gib": 1024,
    "t": 1024 * 1024,
    "tb": 1024 * 1024,
    "tib": 1024 * 1024,
}
MAX_MEMORY_MIB = 16 * 1024 * 1024
MAX_VCPUS = 512


def parse_memory(text: str | int) -> int:
    """Parse a memory size into whole MiB.

    Args:
        text: An int (already MiB) or text such as ``"512"``, ``"512M"``, ``"512MiB"``, ``"2G"``, ``"1T"``.
            A bare number means MiB.

    Returns:
        The size in MiB, always > 0.

    Raises:
        ValueError: The text is not a positive size with a known unit; the message quotes the text.
    """
    if isinstance(text, bool):
        raise ValueError(f"invalid memory size {text!r}: expected MiB or text like '512M' or '2G'")
    if isinstance(text, int):
        mib = text
    else:
        match = _MEMORY_RE.fullmatch(text)
        unit = match.group(2).lower() if match else None
        if match is None or unit not in _MEMORY_UNITS_TO_MIB:
            raise ValueError(
                f"invalid memory size {text!r}: expected a number with an optional unit M, MiB, G, GiB or T"
            )
        mib = int(match.group(1)) * _MEMORY_UNITS_TO_MIB[unit]
    if mib <= 0:
        raise ValueError(f"invalid memory size {text!r}: must be greater than 0 MiB")
    if mib > MAX_MEMORY_MIB:
        raise ValueError(f"invalid memory size {text!r}: larger than {MAX_MEMORY_MIB} MiB")
    return mib


def check_pattern(pattern: re.Pattern[str], value: object, what: str) -> object:
    """``value`` if it matches ``pattern`` whole; not text is returned as is, for the type check to name."""
    if isinstance(value, str) and not pattern.fullmatch(value):
        raise ValueError(f"invalid {what} {value!r}: must match {pattern.pattern}")
    return value


def schema_pattern(regex: re.Pattern[str]) -> Any:
    """The field constraint that puts ``regex`` in the JSON schema. Validators run first (mode "before"),
    so that a refusal carries their message, which names the problem, rather than the bare pattern's."""
    return Field(pattern=regex.pattern)


def pattern_text(regex: re.Pattern[str], what: str) -> Any:
    """The type of a text field matched whole against ``regex``: the pattern is declared for the JSON schema,
    and checked first by a validator whose refusal names ``what`` (pydantic's own would quote the pattern
    alone). What is not text is left to pydantic's type check, which names the type."""
    return Annotated[
        str, schema_pattern(regex), BeforeValidator(functools.partial(check_pattern, regex, what=what))
    ]


# "<family>" or "<family>/<place>": which driver reads the entries and where they go in its configuration.
EXTRA_KEY_RE = re.compile(r"^[a-z][a-z0-9]*(/[a-z][A-Za-z0-9_-]*)?$")
# An entry: text without NUL with something besides blanks. The blanks are spelt out (JSON Schema's \s,
# ECMA-262's, differs from Python's) so that the schema and the check below accept the same texts.
_BLANKS = "\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
EXTRA_ENTRY_RE = re.compile(f"^[^\x00]*[^\x00{_BLANKS}][^\x00]*$")


def check_extra(value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """The shape of an ``extra`` field (a DomainSpec's, a Disk's, a Nic's), in its one canonical form.

    Raises:
        ValueError: a key is not ``<family>`` or ``<family>/<place>``, or an entry is blank or holds NUL.
    """
    for key, entries in value.items():
        if not EXTRA_KEY_RE.fullmatch(key):
            raise ValueError(
                f"extra key {key!r}: expected '<family>' or '<family>/<place>', e.g. 'libvirt/devices'"
            )
        for index, entry in enumerate(entries):
            if not EXTRA_ENTRY_RE.fullmatch(entry):
                raise ValueError(f"extra {key!r} entry {index}: must be non-empty text without NUL")
    # One canonical form: a key without entries says nothing, so {"xl": []} is the same as {}.
    return {key: entries for key, entries in sorted(value.items()) if entries}


# What the JSON schema says of an ``extra`` field: what check_extra accepts.
EXTRA_SCHEMA: dict[str, Any] = {
    "propertyNames": {"pattern": EXTRA_KEY_RE.pattern},
    "additionalProperties": {"type": "array", "items": {"type": "string", "pattern": EXTRA_ENTRY_RE.pattern}},
}

# The ``extra`` field of a DomainSpec, a Disk and a Nic: checked by check_extra, and left out of every
# serialisation when empty, so that models without extras serialise as they did before the field existed.
Extra = Annotated[
    dict[str, tuple[str, ...]],
    AfterValidator(check_extra),
    Field(default_factory=dict, exclude_if=lambda value: not value, json_schema_extra=EXTRA_SCHEMA),
]


class FrozenModel(BaseModel):
    """The base of every domain model: immutable (specs are shared between threads and cached by content),
    and strict about unknown fields (a misspelt field is an error, not silently dropped)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


__all__ = [
    "BOOT_PATH_RE",
    "BRIDGE_RE",
    "CMDLINE_RE",
    "CONTROL_CHARS",
    "CPU_MODEL_RE",
    "DEVICE_ID_RE",
    "DISK_SOURCE_RE",
    "EXTRA_ENTRY_RE",
    "EXTRA_KEY_RE",
    "EXTRA_SCHEMA",
    "MAC_INPUT_RE",
    "MAC_RE",
    "MAX_MEMORY_MIB",
    "MAX_VCPUS",
    "NAME_RE",
    "NETWORK_RE",
    "TARGET_RE",
    "Extra",
    "FrozenModel",
    "check_extra",
    "check_pattern",
    "parse_memory",
    "pattern_text",
    "schema_pattern",
]
