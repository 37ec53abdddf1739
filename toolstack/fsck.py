"""``toolstack fsck``: git's own object check, then the toolstack's invariants on main.

Read-only: it opens the store without recovering claims or creating anything, and needs no hypervisor.
What it checks beyond ``git fsck --full``:

- main's head commit and its tree exist (what every command checks first), and main holds the pool record;
- every VM directory sits in its shard (``vms/<uuid[:2]>/<uuid>``), is named by a uuid, and validates;
- names are unique: every ``names/<xx>/<name>`` is in its shard, names an existing VM whose config carries
  that name, every VM has its name record, and no two VMs share a name;
- task records parse, sit in their shard and match their file name; main holds only finished tasks;
- claims (``refs/heads/vm-task/<uuid>``) name a uuid, and their head commit holds the claiming task's record;
  a claim left behind is reported (the next command recovers it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from typing import Literal

from pydantic import ValidationError

from store import CorruptObject, Store, Tree, UnknownCommit
from toolstack import layout
from toolstack.claims import Claims, claim_records
from toolstack.errors import ToolstackError
from toolstack.models import Task, TaskStatus, read_vm
from toolstack.pool import read_pool

Severity = Literal["error", "warning"]
GIT_FSCK_TIMEOUT = 600.0
# Statuses a task may have on main: the runner merges a task only once it is done.
FINISHED_ON_MAIN = frozenset({TaskStatus.SUCCEEDED, TaskStatus.ROLLED_BACK})


@dataclass(frozen=True)
class Finding:
    """One problem found.

    Attributes:
        severity: ``"error"`` (the repository breaks an invariant) or ``"warning"`` (worth a look).
        check: Which check found it: git, head, pool, vms, names, tasks or claims.
        message: What is wrong, naming the object.
        path: The path on main or the ref concerned, where there is one.
    """

    severity: Severity
    check: str
    message: str
    path: str | None = None


@dataclass
class FsckReport:
    """What :func:`fsck` found, and how much it looked at."""

    findings: list[Finding] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """No errors (warnings allowed)."""
        return not any(f.severity == "error" for f in self.findings)

    def add(self, severity: Severity, check: str, message: str, path: str | None = None) -> None:
        self.findings.append(Finding(severity, check, message, path))

    def to_dict(self) -> dict[str, object]:
        return {"ok": self.ok, "counts": self.counts, "findings": [asdict(f) for f in self.findings]}


def fsck(store: Store, *, run_git: bool = True) -> FsckReport:
    """Check a state repository: git's objects (``git fsck --full``), then the toolstack's invariants.

    Args:
        store: The state repository (not written to).
        run_git: Run ``git fsck --full`` too (needs the git CLI and a repository on disk).
    """
    report = FsckReport()
    if run_git:
        _git_fsck(store, report)
    main = store.branch(layout.MAIN)
    try:
        head = main.verify()
    except CorruptObject as err:
        report.add("error", "head", str(err), f"refs/heads/{layout.MAIN}")
        return report
    if head is None:
        report.add("warning", "head", "main has no commit: the repository is empty")
        return report
    tree = main.tree
    try:
        if read_pool(tree) is None:
            report.add("error", "pool", "main has no pool record: run `toolstack init` once", layout.POOL)
    except ToolstackError as err:
        report.add("error", "pool", str(err), layout.POOL)
    uuids, config_names = _check_vms(tree, report)
    _check_names(tree, uuids, config_names, report)
    _check_tasks(tree, report)
    _check_claims(store, report)
    return report


def _git_fsck(store: Store, report: FsckReport) -> None:
    gitdir = store.gitdir
    if gitdir is None:
        return
    git = shutil.which("git")
    if git is None:
        report.add("warning", "git", "git is not installed: git's object check was skipped")
        return
    try:
        result = subprocess.run(
            [git, "--git-dir", gitdir, "fsck", "--full", "--strict", "--no-dangling", "--no-progress"],
            capture_output=True,
            text=True,
            timeout=GIT_FSCK_TIMEOUT,
            env={**os.environ, "LC_ALL": "C"},
        )
    except subprocess.TimeoutExpired:
        report.add("error", "git", f"git fsck did not finish in {GIT_FSCK_TIMEOUT:.0f} s")
        return
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    for line in lines:
        report.add("error" if result.returncode else "warning", "git", f"git fsck: {line}")
    if result.returncode and not lines:
        report.add("error", "git", f"git fsck exited {result.returncode}")


def _check_vms(tree: Tree, report: FsckReport) -> tuple[set[str], dict[str, str]]:
    """Shards and contents of ``vms/``; returns every VM's uuid, and each valid VM's name by uuid."""
    names: dict[str, str] = {}
    seen: set[str] = set()
    vms = tree.subtree(layout.VMS)
    count = 0
    for entry in vms.list():
        if not layout.is_shard(entry):
            report.add(
                "warning",
                "vms",
                f"{entry} is in the flat layout of older releases (the next command moves it to its shard)",
                f"{layout.VMS}/{entry}",
            )
            uuids = [entry]
        elif vms.kind(entry) != "directory":
            report.add(
                "error", "vms", f"{layout.VMS}/{entry} is a file, not a shard", f"{layout.VMS}/{entry}"
            )
            continue
        else:
            uuids = vms.list(entry)
        for uuid in uuids:
            count += 1
            seen.add(uuid)
            path = f"{layout.VMS}/{entry}/{uuid}" if layout.is_shard(entry) else f"{layout.VMS}/{uuid}"
            if not layout.is_vm_uuid(uuid):
                report.add("error", "vms", f"{uuid!r} is not a VM uuid", path)
                continue
            if layout.is_shard(entry) and entry != uuid[:2]:
                report.add("error", "vms", f"VM {uuid} is in shard {entry}, not {uuid[:2]}", path)
                continue
            try:
                names[uuid] = read_vm(tree, uuid).name
            except ToolstackError as err:
                report.add("error", "vms", f"VM {uuid} does not validate: {err}", path)
    report.counts["vms"] = count
    return seen, names


def _check_names(tree: Tree, uuids: set[str], config_names: dict[str, str], report: FsckReport) -> None:
    records = layout.name_records(tree)
    report.counts["names"] = len(records)
    holders: dict[str, str] = {}
    for name, path in records:
        if path != layout.name_path(name):
            report.add(
                "warning", "names", f"name {name!r} is not in its shard ({layout.name_path(name)})", path
            )
        uuid = (tree.get(path) or b"").decode(errors="replace").strip()
        if uuid not in uuids:
            report.add("error", "names", f"name {name!r} points at {uuid!r}, which is not a VM", path)
            continue
        if uuid not in config_names:
            continue  # the VM does not validate: reported with the VMs
        if config_names[uuid] != name:
            report.add(
                "error",
                "names",
                f"name {name!r} points at VM {uuid}, whose config names it {config_names[uuid]!r}",
                path,
            )
        holders[name] = uuid
    by_name: dict[str, list[str]] = {}
    for uuid, name in config_names.items():
        by_name.setdefault(name, []).append(uuid)
    for name, uuids in sorted(by_name.items()):
        if len(uuids) > 1:
            report.add("error", "names", f"name {name!r} is not unique: VMs {', '.join(sorted(uuids))}")
        for uuid in uuids:
            if holders.get(name) != uuid and len(uuids) == 1:
                report.add(
                    "error", "names", f"VM {uuid} ({name!r}) has no name record", layout.name_path(name)
                )


def _check_tasks(tree: Tree, report: FsckReport) -> None:
    top = tree.subtree(layout.TASKS)
    count = 0
    for entry in top.list():
        records = (
            [(f"{layout.TASKS}/{entry}/{name}", name, entry) for name in top.list(entry)]
            if top.kind(entry) == "directory"
            else [(f"{layout.TASKS}/{entry}", entry, None)]
        )
        for path, task_id, shard in records:
            count += 1
            if shard is not None and shard != task_id[-2:]:
                report.add("error", "tasks", f"task {task_id} is in shard {shard}, not {task_id[-2:]}", path)
            try:
                task = Task.model_validate_json(tree.get(path) or b"")
            except ValidationError as err:
                report.add("error", "tasks", f"task record does not parse: {err.errors()[0]['msg']}", path)
                continue
            if task.id != task_id:
                report.add("error", "tasks", f"task record names id {task.id!r}, not its file name", path)
            if task.status not in FINISHED_ON_MAIN:
                report.add("warning", "tasks", f"task {task_id} is {task.status.value} on main", path)
    report.counts["tasks"] = count


def _check_claims(store: Store, report: FsckReport) -> None:
    claims = Claims(store).held()
    report.counts["claims"] = len(claims)
    for uuid, head in sorted(claims.items()):
        ref = f"refs/heads/{Claims.name(uuid)}"
        if not layout.is_vm_uuid(uuid):
            report.add("error", "claims", f"claim {ref} does not name a VM uuid", ref)
            continue
        try:
            recorded = Claims(store).records.read(uuid)
            if recorded is not None:
                tasks = [recorded.task]
            else:
                records = claim_records(store.branch(layout.MAIN).tree, store.tree_at(head))
                tasks = [Task.model_validate_json(raw) for _, raw in records]
        except (UnknownCommit, CorruptObject) as err:
            report.add("error", "claims", f"claim {ref}: {err}", ref)
            continue
        except ValidationError as err:
            report.add("error", "claims", f"claim {ref}: a task record does not parse: {err}", ref)
            continue
        mine = [task for task in tasks if task.vm == uuid]
        if not mine:
            report.add("warning", "claims", f"claim {ref} records no task (the next command drops it)", ref)
            continue
        task = max(mine, key=lambda t: t.id)
        report.add(
            "warning",
            "claims",
            f"VM {task.vm_name} ({uuid}) is claimed by task {task.id} ({task.operation}, "
            f"{task.status.value}) of pid {task.pid} on {task.host}: if that process is gone, the next "
            "command on that host recovers it",
            ref,
        )
