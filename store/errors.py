"""The store's error tree.

Every error the store raises derives from :class:`StoreError` and carries structured fields (paths, branch,
commit ids) so that callers can report them without parsing messages.
"""

from __future__ import annotations

from dataclasses import dataclass


class StoreError(Exception):
    """Base class of every error raised by the store."""


class InvalidPath(StoreError, ValueError):
    """A path is malformed: empty segments, ".", "..", NUL, or a leading or trailing "/".

    Attributes:
        path: The offending path, as given.
        reason: What is wrong with it.
    """

    def __init__(self, path: object, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"invalid path {path!r}: {reason}")


class NotADirectory(StoreError, ValueError):
    """A write would put a child under a path that holds a value.

    Attributes:
        path: The path of the value that stands in the way.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(f"{path!r} holds a value, not a directory")


class IsADirectory(StoreError, ValueError):
    """A value write targets a path that holds children.

    Attributes:
        path: The directory path.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(f"{path!r} is a directory, not a value")


class NotFound(StoreError, KeyError):
    """A named branch or commit does not exist."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"


class UnknownBranch(NotFound):
    """The named branch does not exist.

    Attributes:
        branch: The branch name.
    """

    def __init__(self, branch: str) -> None:
        self.branch = branch
        super().__init__(f"no branch named {branch!r}")


class BranchExists(StoreError):
    """A branch to be created already exists.

    Attributes:
        branch: The branch name.
    """

    def __init__(self, branch: str) -> None:
        self.branch = branch
        super().__init__(f"branch {branch!r} already exists")


class NotARepository(StoreError):
    """A path cannot be opened as a git repository.

    Attributes:
        path: The path.
        reason: Why not.
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class UnknownCommit(NotFound):
    """A commit id (or other revision) does not name a commit in this store.

    Attributes:
        commit: The revision as given.
    """

    def __init__(self, commit: str, reason: str = "no such commit") -> None:
        self.commit = commit
        super().__init__(f"{commit!r}: {reason}")


class HistoryLost(StoreError):
    """A commit that a reader resumes from is no longer an ancestor of the branch head.

    This happens after history is squashed or a branch is reset; the reader must resynchronise.

    Attributes:
        commit: The commit the reader asked to resume from.
        branch: The branch it was read from.
    """

    def __init__(self, commit: str, branch: str) -> None:
        self.commit = commit
        self.branch = branch
        super().__init__(f"commit {commit} is not in the history of branch {branch!r}: resynchronise")


class UnrelatedHistories(StoreError):
    """A merge of two commits with no common ancestor, refused as git refuses it.

    Merged against the empty tree, whatever one side deleted and the other still holds would come back:
    two histories meet so only after one was rewritten (a squash) or when two repositories were never one.

    Attributes:
        branch: The branch merged into.
        head: Its head.
        source: The commit that was to be merged.
    """

    def __init__(self, branch: str, head: str, source: str) -> None:
        self.branch = branch
        self.head = head
        self.source = source
        super().__init__(
            f"refusing to merge unrelated histories: {source[:12]} has no common ancestor with {branch!r} "
            f"at {head[:12]} (was one of them rewritten by a squash?)"
        )


@dataclass(frozen=True)
class ConflictEntry:
    """One path that could not be merged.

    Attributes:
        path: The path in the tree.
        reason: Why the merge function refused.
        base: The value in the common ancestor (None if absent).
        ours: The value on the branch being merged into (None if absent).
        theirs: The value being merged in (None if absent).
    """

    path: str
    reason: str
    base: bytes | None
    ours: bytes | None
    theirs: bytes | None

    def __iter__(self):  # type: ignore[no-untyped-def]
        # Lets callers unpack an entry as (path, reason, base, ours, theirs).
        return iter((self.path, self.reason, self.base, self.ours, self.theirs))


class Conflict(StoreError):
    """A 3-way merge of trees (a transaction's, a merge's, a pull's) left paths unmerged.

    The store's own merge conflict, named after what happened to the content; layers above may wrap it in
    errors of their own that carry the same entries.

    Attributes:
        conflicts: Every conflicting path of the whole tree, not just the first.
        branch: The branch being written, if any.
    """

    def __init__(self, conflicts: list[ConflictEntry], branch: str | None = None) -> None:
        self.conflicts = conflicts
        self.branch = branch
        paths = ", ".join(f"{c.path} ({c.reason})" for c in conflicts[:5])
        more = f" and {len(conflicts) - 5} more" if len(conflicts) > 5 else ""
        where = f" on branch {branch!r}" if branch else ""
        super().__init__(f"merge conflict{where}: {paths}{more}")


class ReadConflict(Conflict):
    """A transaction read paths that a concurrent commit changed: its writes were computed from stale
    values, so they are not merged (they would silently undo that commit).

    Each entry's ``base`` is the value the transaction read, ``ours`` the value on the branch now, and
    ``theirs`` what the transaction wrote there (None for absent, or for a directory).

    Attributes:
        conflicts: Every stale read.
        branch: The branch being written.
        attempts: How many times the transaction was run (1 for a ``with`` block, which cannot be re-run).
    """

    def __init__(self, conflicts: list[ConflictEntry], branch: str | None = None, attempts: int = 1) -> None:
        self.attempts = attempts
        super().__init__(conflicts, branch)
        paths = ", ".join(c.path for c in conflicts[:5])
        more = f" and {len(conflicts) - 5} more" if len(conflicts) > 5 else ""
        where = f" on branch {branch!r}" if branch else ""
        tries = f" (after {attempts} attempts)" if attempts > 1 else ""
        self.args = (f"read conflict{where}{tries}: changed since the transaction read them: {paths}{more}",)


class TooManyRetries(StoreError):
    """A transaction lost the compare-and-swap race more times than allowed.

    Attributes:
        branch: The contended branch.
        attempts: How many times the update was tried.
    """

    def __init__(self, branch: str, attempts: int) -> None:
        self.branch = branch
        self.attempts = attempts
        super().__init__(f"branch {branch!r} kept moving: gave up after {attempts} attempts")


class LockTimeout(StoreError):
    """A lock stayed held by a live owner for longer than the caller would wait.

    Attributes:
        path: The lock file.
    """

    def __init__(self, path: str, waited: float) -> None:
        self.path = path
        self.waited = waited
        super().__init__(f"lock {path} still held after {waited:.1f}s")


class CorruptObject(StoreError):
    """An object in the repository is missing or of the wrong type.

    Attributes:
        object_id: The object's id.
    """

    def __init__(self, object_id: str, reason: str) -> None:
        self.object_id = object_id
        super().__init__(f"object {object_id}: {reason}")


class MissingObject(CorruptObject):
    """An object that a branch needs is not in the repository.

    Attributes:
        object_id: The missing object.
        kind: ``"commit"`` or ``"tree"``.
        branch: The branch whose head needs it.
    """

    def __init__(self, object_id: str, kind: str, branch: str) -> None:
        self.kind = kind
        self.branch = branch
        super().__init__(object_id, f"the {kind} of branch {branch}'s head is missing from the repository")


class RemoteError(StoreError):
    """A remote could not be reached or refused an operation.

    Attributes:
        remote: The remote's name.
        url: Its URL.
    """

    def __init__(self, remote: str, url: str, reason: str) -> None:
        self.remote = remote
        self.url = url
        super().__init__(f"remote {remote!r} ({url}): {reason}")


class NonFastForward(RemoteError):
    """A push would discard commits on the remote (push with force=True to do it anyway), or a pull with
    strategy "ff-only" cannot fast-forward.

    Attributes:
        branch: The branch concerned.
    """

    def __init__(self, remote: str, url: str, branch: str, reason: str) -> None:
        self.branch = branch
        super().__init__(remote, url, reason)
