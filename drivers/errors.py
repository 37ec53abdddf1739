"""The one error tree of the hypervisor layer.

Every driver maps its hypervisor's failures onto these classes, so callers never see a ``libvirtError`` or an
``xl`` exit status. Each error carries the domain ``uuid`` and the ``operation`` that failed when they are
known, so that logs and reconciliation code can act on them without parsing messages.
"""

from __future__ import annotations


class DriverError(Exception):
    """Base class of every error raised by a driver.

    Attributes:
        message: Human-readable explanation, without the uuid/operation prefix.
        uuid: The domain concerned, as a canonical string, or None when no domain is involved.
        operation: The driver operation that failed (e.g. ``"start"``), or None.
        detail: Raw text from the hypervisor (libvirt message, xl stderr), kept for diagnosis.
    """

    def __init__(
        self,
        message: str,
        *,
        uuid: object | None = None,
        operation: str | None = None,
        detail: str | None = None,
    ) -> None:
        self.message = message
        self.uuid = str(uuid) if uuid is not None else None
        self.operation = operation
        self.detail = detail
        super().__init__(self._render())

    def _render(self) -> str:
        context = []
        if self.operation:
            context.append(self.operation)
        if self.uuid:
            context.append(f"domain {self.uuid}")
        prefix = f"{': '.join(context)}: " if context else ""
        return f"{prefix}{self.message}"

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only constructor arguments need help to survive pickling (multiprocessing, fault markers).
        return (_rebuild, (type(self), self.message, self.uuid, self.operation, self.detail, self.__dict__))


def _rebuild(
    cls: type[DriverError],
    message: str,
    uuid: str | None,
    operation: str | None,
    detail: str | None,
    state: dict[str, object],
) -> DriverError:
    error = cls.__new__(cls)
    DriverError.__init__(error, message, uuid=uuid, operation=operation, detail=detail)
    error.__dict__.update(state)
    return error


class DomainNotFound(DriverError):
    """The hypervisor knows no domain with this uuid (neither running nor defined)."""


class DomainExists(DriverError):
    """Another domain already holds this name (or this uuid, where a new domain was requested)."""


class InvalidState(DriverError):
    """The domain exists but is not in a state that allows the operation (e.g. start while running)."""


class Unsupported(DriverError):
    """This hypervisor (or this connection) cannot do the operation at all; retrying will not help."""


class HypervisorUnavailable(DriverError):
    """The hypervisor cannot be reached: daemon down, connection lost, tool missing."""


class UnknownDriverURI(HypervisorUnavailable):
    """``drivers.open`` was given a URI whose scheme no driver is registered for."""


class InvalidArgument(DriverError, ValueError):
    """An argument was refused: a bad uuid text, a vCPU count above the maximum, an unknown scope."""


class DeviceNotFound(DriverError):
    """The domain has no device with this id in the configuration the operation addresses."""

    def __init__(self, message: str, *, device_id: str | None = None, **context: object) -> None:
        self.device_id = device_id
        super().__init__(message, **context)  # type: ignore[arg-type]


class DeviceExists(DriverError):
    """The domain already has a device with this id, target dev or MAC address."""

    def __init__(self, message: str, *, device_id: str | None = None, **context: object) -> None:
        self.device_id = device_id
        super().__init__(message, **context)  # type: ignore[arg-type]


__all__ = [
    "DeviceExists",
    "DeviceNotFound",
    "DomainExists",
    "DomainNotFound",
    "DriverError",
    "HypervisorUnavailable",
    "InvalidArgument",
    "InvalidState",
    "UnknownDriverURI",
    "Unsupported",
]
