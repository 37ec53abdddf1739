"""Where the toolstack keeps things in the state repository, and how each path merges.

One file per thing, so that concurrent operations on different VMs (or different devices of one VM) touch
different paths and merge:

    vms/<uuid>/config             JSON: name, memory, vcpus, boot, lifecycle actions, metadata
    vms/<uuid>/devices/<id>       JSON: one Disk or Nic
    vms/<uuid>/desired            running | paused | stopped
    names/<name>                  the uuid holding the name (two creates of one name conflict here)
    hosts/<host>/domains/<xx>/<uuid>
                                  JSON: observed state, domid, when it was seen; <xx> is the uuid's first
                                  two characters (recorded by every operation: a small shard is rewritten,
                                  not a directory of every VM). hosts/<host>/domains/<uuid> records of older
                                  repositories are still read.
    tasks/<xx>/<id>               JSON: operation, VM, who, status, error, timings; <xx> is the last two
                                  characters of the id (random hex), so that recording a task rewrites a
                                  small shard, not a directory of every task ever run. Repositories made
                                  before the shards keep their tasks/<id> records, which are still read.
"""

from __future__ import annotations

from store import Schema, Tree
from store.merge import make_lww

VMS = "vms"
NAMES = "names"
HOSTS = "hosts"
TASKS = "tasks"
LOCK_PREFIX = "vm-task"  # refs/heads/vm-task/<uuid>: the running operation on a VM (its task branch)
FAILED_PREFIX = "failed-tasks"  # refs/heads/failed-tasks/<task>: failed tasks, kept for audit
MAIN = "main"


def vm_dir(uuid: str) -> str:
    return f"{VMS}/{uuid}"


def config_path(uuid: str) -> str:
    return f"{VMS}/{uuid}/config"


def devices_dir(uuid: str) -> str:
    return f"{VMS}/{uuid}/devices"


def device_path(uuid: str, device_id: str) -> str:
    return f"{VMS}/{uuid}/devices/{device_id}"


def desired_path(uuid: str) -> str:
    return f"{VMS}/{uuid}/desired"


def host_path(uuid: str) -> str:
    return f"{VMS}/{uuid}/host"


def name_path(name: str) -> str:
    return f"{NAMES}/{name}"


def observed_path(host: str, uuid: str) -> str:
    return f"{HOSTS}/{host}/domains/{uuid[:2]}/{uuid}"


def legacy_observed_path(host: str, uuid: str) -> str:
    """Where repositories made before the shards recorded observed state."""
    return f"{HOSTS}/{host}/domains/{uuid}"


def read_observed(tree: Tree, host: str, uuid: str) -> bytes | None:
    """The observed state of a VM on a host recorded in ``tree``, in either layout."""
    raw = tree.get(observed_path(host, uuid))
    return raw if raw is not None else tree.get(legacy_observed_path(host, uuid))


def with_observed(tree: Tree, host: str, uuid: str, record: bytes | None) -> Tree:
    """``tree`` with a VM's observed state at its sharded path (removed if None; never at the old path)."""
    tree = tree.remove(legacy_observed_path(host, uuid))
    return (
        tree.remove(observed_path(host, uuid))
        if record is None
        else tree.set(observed_path(host, uuid), record)
    )


def sharded_names(tree: Tree, path: str) -> list[str]:
    """The record names under ``path``, whether sharded (``<path>/<xx>/<name>``) or flat (``<path>/<name>``,
    as repositories made before the shards keep them)."""
    top = tree.subtree(path)
    names = []
    for name in top.list():
        if top.kind(name) == "directory":
            names.extend(top.list(name))
        else:
            names.append(name)
    return names


def observed_uuids(tree: Tree, host: str) -> list[str]:
    """The VMs whose observed state on ``host`` is recorded in ``tree``, in either layout."""
    return sharded_names(tree, f"{HOSTS}/{host}/domains")


def task_path(task_id: str) -> str:
    """Where a task is recorded (ids end in random hex digits: the last two spread tasks over 256 shards)."""
    return f"{TASKS}/{task_id[-2:]}/{task_id}"


def legacy_task_path(task_id: str) -> str:
    """Where repositories made before the shards recorded a task."""
    return f"{TASKS}/{task_id}"


def read_task_record(tree: Tree, task_id: str) -> bytes | None:
    """A task's record in ``tree``, in either layout."""
    raw = tree.get(task_path(task_id))
    return raw if raw is not None else tree.get(legacy_task_path(task_id))


def with_task_record(tree: Tree, task_id: str, record: bytes) -> Tree:
    """``tree`` with a task's record at its sharded path (and none left at the old flat one)."""
    return tree.remove(legacy_task_path(task_id)).set(task_path(task_id), record)


def task_ids(tree: Tree) -> list[str]:
    """Every task id recorded in ``tree``, in either layout."""
    return sharded_names(tree, TASKS)


def is_task_path(path: str) -> bool:
    """Whether ``path`` is a task record (either layout); its last segment is then the task id."""
    parts = path.split("/")
    return parts[0] == TASKS and len(parts) in (2, 3)


def schema() -> Schema:
    """Merge rules for the toolstack's paths."""
    return Schema(
        [
            (f"{VMS}/*/config", "json_object"),
            (f"{VMS}/*/devices/*", "json_object"),
            (f"{HOSTS}/*/domains/*/*", make_lww("seen_at")),
            (f"{HOSTS}/*/domains/*", make_lww("seen_at")),  # records made before the shards
            (f"{TASKS}/*/*", "json_object"),
            (f"{TASKS}/*", "json_object"),  # records made before the shards
            # names/*, vms/*/desired and vms/*/host keep the default: the same change merges, different
            # changes conflict (that is what makes names unique).
        ]
    )
