"""The daemon's error tree.

A :class:`RequestError` becomes an ERROR reply carrying its ``errno`` name; a :class:`ProtocolError` means the
byte stream itself cannot be trusted any more, and the connection is closed. Every error carries structured
fields, so that logs and tests never parse messages.
"""

from __future__ import annotations

from typing import ClassVar


class XenstoredError(Exception):
    """Base class of every error raised by the xenstored layer."""


class ProtocolError(XenstoredError):
    """The framing of a connection is broken (oversized or truncated packet): the connection is closed.

    Attributes:
        reason: What was wrong with the bytes received.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class RequestError(XenstoredError):
    """A request that gets an ERROR reply; the connection stays open.

    Attributes:
        errno: The errno name sent on the wire (``"ENOENT"``).
        detail: A human explanation, for logs.
        path: The node path the request was about, if any.
    """

    errno: ClassVar[str] = "EINVAL"

    def __init__(self, detail: str, path: str | None = None) -> None:
        self.detail = detail
        self.path = path
        super().__init__(f"{self.errno}: {detail}" + (f" ({path})" if path else ""))


class InvalidRequest(RequestError):
    """Malformed arguments: bad path, missing NUL, unparsable number or permission."""

    errno = "EINVAL"


class NoSuchNode(RequestError):
    """The node (or transaction, watch, domain) named does not exist."""

    errno = "ENOENT"


class AccessDenied(RequestError):
    """The caller's domain lacks the permission the operation needs."""

    errno = "EACCES"


class NotPermitted(RequestError):
    """The operation is never allowed to this caller (an unprivileged domain changing an owner)."""

    errno = "EPERM"


class AlreadyExists(RequestError):
    """A watch with this path and token is already registered."""

    errno = "EEXIST"


class QuotaExceeded(RequestError):
    """A per-domain or per-connection quota would be exceeded."""

    errno = "ENOSPC"


class TooBig(RequestError):
    """A reply would not fit in one packet (DIRECTORY: use DIRECTORY_PART), or too many watches."""

    errno = "E2BIG"


class TransactionConflict(RequestError):
    """A node read in the transaction changed before it ended: the client retries it."""

    errno = "EAGAIN"


class Busy(RequestError):
    """The request is not allowed in the connection's current state (a transaction inside a transaction)."""

    errno = "EBUSY"


class Unsupported(RequestError):
    """An unknown or unsupported message type."""

    errno = "ENOSYS"


class StorageFailure(RequestError):
    """The repository refused a change (its layout is not the node encoding, or a disk error)."""

    errno = "EIO"


class ReadOnly(RequestError):
    """The journal cannot commit: changes are refused until it can, rather than acknowledged and lost."""

    errno = "EROFS"


class NotSaved(RequestError):
    """A change was made but its commit failed (durable mode): it may yet be saved, or lost at a restart."""

    errno = "EIO"


class InternalError(RequestError):
    """A bug in a handler: logged, answered with EIO, and the daemon carries on."""

    errno = "EIO"
