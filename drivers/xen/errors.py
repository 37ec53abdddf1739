"""xl's failures → the driver error tree. xl reports errors only as text on stderr and exit status 1."""

from __future__ import annotations

import re

from drivers.errors import (
    DeviceNotFound,
    DomainExists,
    DomainNotFound,
    DriverError,
    HypervisorUnavailable,
    InvalidArgument,
)
from drivers.xen.runner import CompletedCommand

# Texts printed by xl/libxl (tools/xl/*.c and tools/libs/light/*.c of Xen 4.17).
_PATTERNS: tuple[tuple[re.Pattern[str], type[DriverError]], ...] = (
    (re.compile(r"is an invalid domain identifier"), DomainNotFound),
    (
        re.compile(r"cannot init xl context|Could not obtain handle on privileged command interface"),
        HypervisorUnavailable,
    ),
    (
        re.compile(r"xencall: error|libxl_ctx_alloc|can't find hypervisor information", re.IGNORECASE),
        HypervisorUnavailable,
    ),
    (re.compile(r"domain with name \".*\" already exists", re.IGNORECASE), DomainExists),
    (re.compile(r"Error: Device \S+ not connected|Unknown device \S+\."), DeviceNotFound),
    (
        re.compile(r"Failed to parse config|Failed to get domain config|config parsing error", re.IGNORECASE),
        InvalidArgument,
    ),
)


def translate(result: CompletedCommand, *, uuid: object | None, operation: str) -> DriverError:
    """The DriverError for a failed xl command, carrying xl's own words as ``detail``."""
    text = result.stderr.strip() or result.stdout.strip() or f"exit status {result.returncode}"
    cls: type[DriverError] = DriverError
    for pattern, candidate in _PATTERNS:
        if pattern.search(text):
            cls = candidate
            break
    last_line = text.splitlines()[-1] if text else text
    message = f"{' '.join(result.argv)} failed: {last_line}"
    return cls(message, uuid=uuid, operation=operation, detail=text)
