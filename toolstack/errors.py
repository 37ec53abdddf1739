"""The toolstack's error tree. Every error names the VM and the operation it concerns, where there is one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from store import ConflictEntry

if TYPE_CHECKING:
    from toolstack.plan import Action, Plan


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


class InvalidRecord(InvalidInput):
    """A VM's entry in the state repository does not validate (broken JSON, a wrong type, a missing file).

    Attributes:
        path: The offending path (``vms/<xx>/<uuid>/config``...).
        detail: What is wrong with it, without the path.
    """

    def __init__(self, path: str, detail: str, *, vm: str | None = None, joiner: str = ": ") -> None:
        self.path = path
        self.detail = detail
        super().__init__(f"{path}{joiner}{detail}", vm=vm)


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
    """The hypervisor refused or failed an operation, or the operation's own check failed its task
    (:class:`TaskAborted`); the state repository was left unchanged.

    Attributes:
        task: The failed task's id (its branch is kept as ``failed-tasks/<task>``).
        cause: The driver's error, or the :class:`TaskAborted` that failed the task.
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


class TaskAborted(ToolstackError):
    """A task failed for a reason of the toolstack's own, not the hypervisor's: a check under the VM's claim
    refused it, or the hypervisor did what it was asked and the outcome is still not the one wanted. The
    task runner treats it as it treats a driver's error: the change is undone, the task kept as failed, and
    the caller gets :class:`OperationFailed` with this as its ``cause``.

    Rendered as the driver's errors are (``<operation>: domain <uuid>: <message>``), so that messages and
    task records read as they did when these failures travelled as driver errors.

    Attributes:
        uuid: The VM's uuid.
    """

    def __init__(self, message: str, *, uuid: str, vm: str | None = None, operation: str) -> None:
        self.uuid = uuid
        super().__init__(f"{operation}: domain {uuid}: {message}", vm=vm, operation=operation)


class StaleVersion(TaskAborted):
    """The VM changed after the client's If-Match was checked: the operation re-checks it once it holds the
    VM, and fails before the hypervisor is touched (the API answers 412 with the failed task)."""

    def __init__(self, message: str, *, uuid: str, vm: str | None = None) -> None:
        super().__init__(message, uuid=uuid, vm=vm, operation="if-match")


class GuestIgnoredShutdown(TaskAborted):
    """A shutdown without ``force``: the guest did not power off within the timeout. The VM is left running.

    Attributes:
        timeout: The seconds waited.
    """

    def __init__(self, uuid: str, vm: str, timeout: float) -> None:
        self.timeout = timeout
        super().__init__(
            f"the guest did not power off within {timeout:g}s (use --force to destroy it)",
            uuid=uuid,
            vm=vm,
            operation="shutdown",
        )


class DomainNameTaken(ToolstackError):
    """``reconcile --adopt`` found a domain whose name another VM of main has: it is not adopted (the plan
    reports it as an error, as a failed action).

    Attributes:
        uuid: The domain's uuid.
    """

    def __init__(self, name: str, uuid: str) -> None:
        self.uuid = uuid
        super().__init__(
            f"adopt: domain {uuid}: cannot adopt: the name {name!r} is already used by another VM",
            vm=name,
            operation="adopt",
        )


class OperationConflict(ToolstackError):
    """An operation's change could not be merged into main: a concurrent change touched the same paths (the
    store's :class:`store.Conflict`, told as the operation that met it). Nothing was recorded.

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


@dataclass(frozen=True)
class Rejection:
    """One VM whose pulled edit did not validate, and what the pull did about it.

    Attributes:
        uuid: The VM.
        name: Its name (from the version restored, else the invalid one; "" if unreadable).
        error: Why it does not validate (names the path and the field).
        path: The offending path.
        commit: The incoming commit that last touched that path (or the VM), None if none did.
        author: That commit's author.
        restored_from: The newest commit where the VM validated, whose version was restored; None when the
            VM never validated anywhere in history and was left out.
    """

    uuid: str
    name: str
    error: str
    path: str
    commit: str | None
    author: str | None
    restored_from: str | None

    def describe(self) -> str:
        who = f" in commit {self.commit[:12]} by {self.author}" if self.commit else ""
        outcome = (
            f"restored as of {self.restored_from[:12]}"
            if self.restored_from
            else "never valid anywhere in history: left out"
        )
        return f"{self.name or self.uuid} ({self.uuid}): {self.path}{who}: {self.error}; {outcome}"

    def to_dict(self) -> dict[str, object]:
        return {
            "uuid": self.uuid,
            "name": self.name,
            "error": self.error,
            "path": self.path,
            "commit": self.commit,
            "author": self.author,
            "restored_from": self.restored_from,
        }


class RejectedEdits(ToolstackError):
    """A pull merged edits that do not validate; each was reverted to its VM's last valid version from
    history (or, for a VM that never validated, left out), and the pull says so with exit code 5.

    Attributes:
        remote: The remote pulled from.
        rejections: One :class:`Rejection` per VM (commit, author, path, error, what was restored).
    """

    exit_code = 5

    def __init__(self, remote: str, rejections: list[Rejection]) -> None:
        self.remote = remote
        self.rejections = rejections
        super().__init__(
            f"rejected {len(rejections)} invalid edit(s) from {remote}: "
            + "; ".join(r.describe() for r in rejections),
            operation="pull",
        )


class HistoryRewritten(ToolstackError):
    """Main here and the remote's main are histories of one pool that share no commit: one was rewritten, by
    ``toolstack gc`` (a squash) on the remote, or by a gc here whose forced push never landed. Nothing was
    merged, main and the hypervisor are as they were; ``toolstack pull --resync`` takes the remote's main.
    Exit code 6.

    Attributes:
        remote: The remote.
        incoming: The remote's main.
        root: The squash's root commit (None: the history was rewritten, but not by gc).
        squashed_at: When the squash ran (UTC), as its root commit says.
        command: The command that resynchronises this host.
        here: The squash rewrote main here, not the remote's main.
    """

    exit_code = 6

    def __init__(
        self, remote: str, incoming: str, root: str | None, squashed_at: str, command: str, here: bool = False
    ) -> None:
        self.remote = remote
        self.incoming = incoming
        self.root = root
        self.squashed_at = squashed_at
        self.command = command
        self.here = here
        when = squashed_at or "an unknown time"
        if root is None:
            what = (
                f"{remote}/main ({incoming[:12]}) and main here are histories of this pool that share no "
                "commit (one was rewritten, not by gc)"
            )
        elif here:
            what = (
                f"main here was rewritten by gc at {when} (on the new root {root[:12]}) but that never "
                f"reached {remote}, whose main ({incoming[:12]}) went on without it: they share no history"
            )
        else:
            what = (
                f"the pool's history was rewritten by gc at {when} ({remote}/main is now {incoming[:12]}, "
                f"on the new root {root[:12]}), so it shares no history with main here"
            )
        super().__init__(
            f"{what} and nothing was merged. Resynchronise with `{command}`: it keeps main's local-only "
            f"commits under refs/resync/, reports them, then resets main to {remote}/main and reconciles",
            operation="pull",
        )


class HistoriesUnrelated(ToolstackError):
    """The remote's main shares no commit with main here and is not this pool's rewritten history: another
    pool's, or one of two histories without pool records. Nothing was merged. Exit code 3, as a conflict.

    Attributes:
        remote: The remote.
        incoming: The remote's main.
        why: Why it is not taken for this pool's history.
        fix: What to do about it (named in the message).
    """

    exit_code = 3

    def __init__(self, remote: str, incoming: str, why: str, fix: str) -> None:
        self.remote = remote
        self.incoming = incoming
        self.why = why
        self.fix = fix
        super().__init__(
            f"refusing to merge unrelated histories: {remote}/main ({incoming[:12]}) shares no commit with "
            f"main here; {why}. Nothing changed: {fix}",
            operation="pull",
        )


class UnrequestedRemoval(ToolstackError):
    """A push would delete VMs from the remote that no operation deleted here; nothing was pushed.
    Exit code 7.

    Attributes:
        remote: The remote.
        removals: {uuid: (name, commit that dropped it or None, why it does not count as a deletion)}.
        remote_head: The remote's main, which still holds them.
    """

    exit_code = 7

    def __init__(
        self, remote: str, removals: dict[str, tuple[str, str | None, str]], remote_head: str
    ) -> None:
        self.remote = remote
        self.removals = removals
        self.remote_head = remote_head
        names = ", ".join(f"{name or '?'} ({uuid})" for uuid, (name, _, _) in removals.items())
        why = "; ".join(
            f"{name or uuid}: {reason}" + (f" (commit {commit[:12]})" if commit else "")
            for uuid, (name, commit, reason) in removals.items()
        )
        first = next(iter(removals.values()))[0] or next(iter(removals))
        super().__init__(
            f"refusing to push main to {remote}: it would delete {names} from the pool, but no operation "
            f"deleted them here ({why}). Restore each from {remote}'s main "
            f"(`toolstack rollback {remote_head[:12]} --vm {first}`) and push again; to delete one, "
            "restore it and run `toolstack vm delete NAME`",
            operation="push",
        )


class DestructivePlanRefused(ToolstackError):
    """A plan would stop or undefine domains and nobody confirmed it: nothing of it was applied. Exit code 8.

    ``reconcile``, ``rollback`` and ``pull`` show such a plan first and ask on a terminal; without one they
    need ``--yes`` (the API: ``"confirm": true``). A rollback refused so wrote no commit; a pull refused so
    has merged main (desired state only) but left the hypervisor as it was and pushed nothing.

    Attributes:
        plan: The whole plan that was refused.
        actions: Its destructive actions (each ``stop`` of a running domain and each ``undefine``).
        declined: True when the operator answered no at the prompt, False when there was nobody to ask.
        note: What the operation had already done when it was refused (a pull's merge), or "".
        rejections: The invalid edits a refused pull reverted anyway (they would exit 5 on their own).
    """

    exit_code = 8

    def __init__(
        self,
        plan: Plan,
        operation: str,
        *,
        declined: bool = False,
        note: str = "",
        rejections: list[Rejection] | None = None,
    ) -> None:
        self.plan = plan
        self.actions: list[Action] = plan.destructive
        self.declined = declined
        self.note = note
        self.rejections = list(rejections or [])
        steps = ", ".join(f"{a.kind} {a.name} ({a.uuid[:8]})" for a in self.actions)
        why = "as answered at the prompt" if declined else "without confirmation"
        super().__init__(
            f"refusing to {operation} {why}: it would {steps}"
            + (f"; {note}" if note else "")
            + '. Review the plan (--dry-run), then confirm it with --yes (the API: "confirm": true)',
            operation=operation,
        )
