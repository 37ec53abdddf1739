"""libvirtError → the driver error tree.

Codes are libvirt's ``virErrorNumber`` values, spelled out here (and checked against the real module by the
tests) so that mapping does not depend on which module ``binding`` currently holds.
"""

from __future__ import annotations

import enum

from drivers.errors import (
    DomainExists,
    DomainNotFound,
    DriverError,
    HypervisorUnavailable,
    InvalidArgument,
    InvalidState,
    Unsupported,
)


class Code(enum.IntEnum):
    """The virErrorNumber values this driver distinguishes."""

    INTERNAL_ERROR = 1
    NO_SUPPORT = 3
    NO_CONNECT = 5
    INVALID_CONN = 6
    INVALID_DOMAIN = 7
    INVALID_ARG = 8
    OPERATION_FAILED = 9
    NO_NAME = 21
    XML_ERROR = 27
    DOM_EXIST = 28
    XML_DETAIL = 35
    SYSTEM_ERROR = 38
    RPC = 39
    NO_DOMAIN = 42
    AUTH_FAILED = 45
    OPERATION_INVALID = 55
    CONFIG_UNSUPPORTED = 67
    OPERATION_TIMEOUT = 68
    ARGUMENT_UNSUPPORTED = 74
    OPERATION_UNSUPPORTED = 84
    AGENT_UNRESPONSIVE = 86
    DEVICE_MISSING = 99


_BY_CODE: dict[int, type[DriverError]] = {
    Code.NO_DOMAIN: DomainNotFound,
    Code.INVALID_DOMAIN: DomainNotFound,
    Code.DOM_EXIST: DomainExists,
    Code.OPERATION_INVALID: InvalidState,
    Code.NO_SUPPORT: Unsupported,
    Code.CONFIG_UNSUPPORTED: Unsupported,
    Code.ARGUMENT_UNSUPPORTED: Unsupported,
    Code.OPERATION_UNSUPPORTED: Unsupported,
    Code.INVALID_ARG: InvalidArgument,
    Code.XML_ERROR: InvalidArgument,
    Code.XML_DETAIL: InvalidArgument,
    Code.NO_NAME: InvalidArgument,
    Code.NO_CONNECT: HypervisorUnavailable,
    Code.INVALID_CONN: HypervisorUnavailable,
    Code.SYSTEM_ERROR: HypervisorUnavailable,
    Code.RPC: HypervisorUnavailable,
    Code.AUTH_FAILED: HypervisorUnavailable,
}

CONNECTION_LOST = frozenset({Code.NO_CONNECT, Code.INVALID_CONN, Code.SYSTEM_ERROR, Code.RPC})


def translate(error: Exception, *, uuid: object | None = None, operation: str | None = None) -> DriverError:
    """The DriverError for a libvirtError (any exception with ``get_error_code``/``get_error_message``).

    Some codes are refined by their message, because libvirt reuses them: OPERATION_FAILED (9) is also
    "domain 'x' already exists with uuid ...", and INTERNAL_ERROR (1) is also "Domain 'x' is already running".
    """
    code = error.get_error_code() if hasattr(error, "get_error_code") else None  # type: ignore[attr-defined]
    message = (error.get_error_message() if hasattr(error, "get_error_message") else None) or str(error)
    lowered = message.lower()
    cls: type[DriverError] = _BY_CODE.get(code, DriverError) if code is not None else DriverError
    if cls is DriverError:
        if "already exists" in lowered or "already defined" in lowered:
            cls = DomainExists
        elif "already running" in lowered or "is already active" in lowered or "not running" in lowered:
            cls = InvalidState
    result = cls(message, uuid=uuid, operation=operation, detail=f"libvirt error code {code}: {message}")
    result.code = code  # type: ignore[attr-defined]
    return result
