"""ETags: the commit id where an object last changed, and If-Match checks against it.

A VM's version is the newest commit on main's first-parent history that changed ``vms/<xx>/<uuid>/`` (its
configuration, devices or desired state), read from the toolstack's VM log index. The observed state
(``hosts/...``) is a fact about the hypervisor, not part of the VM's version: a reconcile that only records
what it saw does not invalidate a client's ETag. The collections' version is main's head.
"""

from __future__ import annotations

from toolstack.api.errors import PreconditionFailed
from toolstack.errors import StaleVersion
from toolstack.ops import Toolstack


def vm_version(ts: Toolstack, uuid: str) -> str:
    """The commit where VM ``uuid`` last changed (main's head if the index has nothing on it)."""
    return ts.last_change(uuid) or ts.main.head or ""


def main_version(ts: Toolstack) -> str:
    return ts.main.head or ""


# RFC 9110: If-Match = "*" / #entity-tag, entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE; bare commit ids are
# taken as well, for hand-written clients. The list grammar would let an empty value through as an empty
# list, which matches nothing (412); it is refused instead (400): it only ever comes from a client whose
# ETag variable was empty, and a 412 would send that client to re-read and retry with the same empty value.
_TAG = r'(?:W/)?"[\x21\x23-\x7e]*"|[\x21\x23-\x2b\x2d-\x7e]+'
IF_MATCH_PATTERN = rf"^[ \t]*(?:\*|(?:{_TAG})(?:[ \t]*,[ \t]*(?:{_TAG}))*)[ \t]*$"


def etag(version: str) -> str:
    """The header value for a version: a strong ETag."""
    return f'"{version}"'


def if_match_accepts(if_match: str, version: str) -> bool:
    """Whether an If-Match header value accepts ``version`` (RFC 9110: strong comparison; ``*`` is any).

    Bare commit ids are accepted as well as quoted ones, for hand-written clients.
    """
    for candidate in (part.strip() for part in if_match.split(",")):
        if candidate == "*":
            return True
        if candidate.startswith("W/"):
            continue  # a weak tag never matches strongly
        if candidate.strip('"') == version:
            return True
    return False


def require_version(if_match: str | None, version: str, what: str) -> None:
    """Raise PreconditionFailed if an If-Match header is given and does not accept ``version``."""
    if if_match is not None and not if_match_accepts(if_match, version):
        raise PreconditionFailed(
            f"{what} has changed: If-Match {if_match} does not match its current version {etag(version)}"
        )


class VMVersionGuard:
    """Checks, under the VM's claim, that the VM is still at the version the client's If-Match accepted.

    The API checks If-Match before it submits an operation; another writer could change the VM between that
    check and the operation's claim. The operation calls the guard once it holds the claim (no other task can
    then change the VM) and before it calls the hypervisor, which closes that window: a stale write then fails
    as a task (kept on ``failed-tasks/``) and the client gets 412.
    """

    def __init__(self, ts: Toolstack, uuid: str, if_match: str, name: str) -> None:
        self.ts = ts
        self.uuid = uuid
        self.if_match = if_match
        self.name = name

    def check_before(self) -> None:
        """The check before submitting (412 without a task)."""
        require_version(self.if_match, vm_version(self.ts, self.uuid), f"VM {self.name}")

    def __call__(self) -> None:
        """The check under the claim (the operation's task fails with StaleVersion: 412 with a task)."""
        version = vm_version(self.ts, self.uuid)
        if not if_match_accepts(self.if_match, version):
            raise StaleVersion(
                f"VM {self.name} changed before the operation started: If-Match {self.if_match} does not "
                f"match its current version {etag(version)}",
                uuid=self.uuid,
                vm=self.name,
            )
