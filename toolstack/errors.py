"""The toolstack's error tree. Every error names the VM and the operation it concerns, where there is one."""

from __future__ import annotations

from store import ConflictEntry


class ToolstackError(Exception):
    """Base class of every toolstack error.

    Attributes:
        vm: The VM's name or uuid, if the error concerns one.
        operation: The operation that failed, if any.
    """

    exit_code = 1

    def __init__(self, message: str, *, vm: str | None = None, operation: str | None = None) -> None:
        self.vm = vm
        self.operation = operation
        super().__init__(message)


class InvalidInput(ToolstackError, ValueError):
    """A request is malformed (a bad name, size, device...). Nothing was written."""


class DamagedRepository(ToolstackError):
    """Main's head commit or its tree is missing: git maintenance that prunes objects the toolstack had just
    written (``git gc --prune=now``, ``git repack -ad``, ``git prune``) ran beside it. Nothing was written.

    Attributes:
        repo: The state repository.
        object_id: The missing object.
        kind: ``"commit"`` or ``"tree"``.
    """

    def __init__(self, repo: str, object_id: str, kind: str) -> None:
        self.repo = repo
        self.object_id = object_id
        self.kind = kind
        super().__init__(
            f"the state repository {repo} is damaged: the {kind} {object_id} of main's head is missing, so "
            "nothing was done. Git maintenance that prunes recent objects (git gc --prune=now, "
            "git repack -ad, git prune) probably ran while the toolstack wrote. "
            f"See the damage with `toolstack fsck` or `git -C {repo} fsck --full`; then recover from a peer "
            f"(`git clone --bare URL {repo}` into a fresh place) or point main at an intact commit, e.g. an "
            f"archive kept by toolstack gc (`git -C {repo} for-each-ref refs/archive`, then "
            f"`git -C {repo} update-ref refs/heads/main <commit>`)"
        )


class VMNotFound(ToolstackError, LookupError):
    """No VM has this name or uuid."""

    def __init__(self, ref: str) -> None:
        super().__init__(f"no VM named {ref!r}", vm=ref)


class VMExists(ToolstackError):
    """A VM with this name exists already."""

    def __init__(self, name: str) -> None:
        super().__init__(f"a VM named {name!r} already exists", vm=name)


class OperationInProgress(ToolstackError):
    """The VM is busy with another operation (as xapi's OPERATION_NOT_ALLOWED / other_operation_in_progress).

    Attributes:
        task: The id of the task holding the VM.
        running_operation: What that task is doing.
    """

    exit_code = 4

    def __init__(self, vm: str, operation: str, task: str, running_operation: str) -> None:
        self.task = task
        self.running_operation = running_operation
        super().__init__(
            f"VM {vm} is busy: task {task} ({running_operation}) is in progress; {operation} refused",
            vm=vm,
            operation=operation,
        )


class OperationFailed(ToolstackError):
    """The hypervisor refused or failed an operation; the state repository was left unchanged.

    Attributes:
        task: The failed task's id (its branch is kept as ``failed-tasks/<task>``).
        cause: The driver's error.
        compensation_error: Set if undoing a partial change failed too (reconcile will repair it).
    """

    def __init__(
        self,
        vm: str,
        operation: str,
        task: str,
        cause: BaseException,
        compensation_error: BaseException | None = None,
    ) -> None:
        self.task = task
        self.cause = cause
        self.compensation_error = compensation_error
        message = f"vm {operation} {vm} failed: {cause}"
        if compensation_error is not None:
            message += f" (and undoing it failed: {compensation_error}; run reconcile)"
        super().__init__(message, vm=vm, operation=operation)


class ConflictError(ToolstackError):
    """Concurrent changes could not be merged.

    Attributes:
        conflicts: The store's conflict entries (path, reason, base, ours, theirs).
    """

    exit_code = 3

    def __init__(
        self,
        message: str,
        conflicts: list[ConflictEntry],
        *,
        vm: str | None = None,
        operation: str | None = None,
    ) -> None:
        self.conflicts = conflicts
        detail = "; ".join(f"{c.path}: {c.reason}" for c in conflicts[:5])
        super().__init__(f"{message}: {detail}" if detail else message, vm=vm, operation=operation)
