"""Where the toolstack keeps things in the state repository, and how each path merges.

One file per thing, so that concurrent operations on different VMs (or different devices of one VM) touch
different paths and merge:

    pool                          JSON: the pool's id, name, creation time (written once, by init)
    vms/<xx>/<uuid>/config        JSON: name, memory, vcpus, boot, lifecycle actions, metadata, and
                                  ``extra`` (only when not empty): what the model does not describe,
                                  verbatim, as lists of entries by key (``DomainSpec.extra``); a change to
                                  it and a change to another field merge, as two changes to two keys do
    vms/<xx>/<uuid>/devices/<id>  JSON: one Disk or Nic
    vms/<xx>/<uuid>/desired       running | paused | stopped
    vms/<xx>/<uuid>/host          the pool host the VM is placed on (absent: this host)
    vms/<xx>/<uuid>/migration     JSON: its last move (source, target, at, forced): the target starts it
                                  only once the source's record shows it stopped (toolstack.models.Migration)
                                  <xx> is the uuid's first two characters
    names/<xx>/<name>             the uuid holding the name (two creates of one name conflict here); <xx> is
                                  the first two hex digits of the name's SHA-1
    hosts/<host>/domains/<xx>/<uuid>
                                  JSON: observed state, domid, when it was seen; <xx> is the uuid's first
                                  two characters (recorded by every operation: a small shard is rewritten,
                                  not a directory of every VM). hosts/<host>/domains/<uuid> records of older
                                  repositories are still read.
    hosts/<host>/agent            JSON: that host's agent's standing refusal (a round that would have removed
                                  too many of its VMs: why, the removals, the plan, when); absent when none.
                                  Only that host writes it.
    tasks/<xx>/<id>               JSON: operation, VM, who, status, error, timings; <xx> is the last two
                                  characters of the id (random hex), so that recording a task rewrites a
                                  small shard, not a directory of every task ever run. Repositories made
                                  before the shards keep their tasks/<id> records, which are still read.

Every directory stays small whatever the number of VMs: a commit rewrites a shard of a few entries, not a
directory of every VM (with 1,000 VMs a flat ``vms/`` and ``names/`` made each commit write ~100 KB of trees).
Repositories made before the shards hold ``vms/<uuid>/`` and ``names/<name>``; :func:`shard` moves them,
in one commit when the toolstack opens the repository, and history from before then is still read.
"""

from __future__ import annotations

import hashlib
import re

from store import Schema, Tree
from store.merge import make_lww

VMS = "vms"
NAMES = "names"
HOSTS = "hosts"
TASKS = "tasks"
LOCK_PREFIX = "vm-task"  # refs/heads/vm-task/<uuid>: the running operation on a VM (its task branch)
FAILED_PREFIX = "failed-tasks"  # refs/heads/failed-tasks/<task>: failed tasks, kept for audit
CLAIMS_DIRECTORY = "toolstack/claims"  # <gitdir>/toolstack/claims/<uuid>: running tasks' claim records
MAIN = "main"
UUID_PATTERN = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"  # canonical, lower case
_UUID_RE = re.compile(UUID_PATTERN)
POOL = "pool"  # JSON: the pool's id, name and creation time (toolstack.pool)


def vm_dir(uuid: str) -> str:
    return f"{VMS}/{uuid[:2]}/{uuid}"


def config_path(uuid: str) -> str:
    return f"{vm_dir(uuid)}/config"


def devices_dir(uuid: str) -> str:
    return f"{vm_dir(uuid)}/devices"


def device_path(uuid: str, device_id: str) -> str:
    return f"{vm_dir(uuid)}/devices/{device_id}"


def desired_path(uuid: str) -> str:
    return f"{vm_dir(uuid)}/desired"


def host_path(uuid: str) -> str:
    return f"{vm_dir(uuid)}/host"


def migration_path(uuid: str) -> str:
    return f"{vm_dir(uuid)}/migration"


def autostart_path(uuid: str) -> str:
    """``true`` when the VM is to be started when its host boots (a toolstack setting, not libvirt's)."""
    return f"{vm_dir(uuid)}/autostart"


def name_shard(name: str) -> str:
    """The shard of a name: names share no prefix worth splitting on ("web1", "web2"...), their hashes do."""
    return hashlib.sha1(name.encode("utf-8", "surrogateescape")).hexdigest()[:2]


def name_path(name: str) -> str:
    return f"{NAMES}/{name_shard(name)}/{name}"


def is_shard(entry: str) -> bool:
    """Whether an entry of ``vms/`` is a shard (two characters) rather than a VM of the flat layout (its
    36-character uuid)."""
    return len(entry) == 2


def is_vm_uuid(text: str) -> bool:
    """Whether ``text`` is a VM uuid in its canonical form (what a name record must hold)."""
    return _UUID_RE.fullmatch(text) is not None


def vm_uuids(tree: Tree) -> list[str]:
    """Every VM in ``tree``, sharded or (in repositories made before the shards) flat."""
    vms = tree.subtree(VMS)
    uuids: list[str] = []
    for entry in vms.list():
        if is_shard(entry):
            uuids.extend(vms.list(entry))
        else:
            uuids.append(entry)
    return sorted(uuids)


def name_records(tree: Tree) -> list[tuple[str, str]]:
    """Every (name, path) of ``names/`` in ``tree``, sharded or (before the shards) flat."""
    names = tree.subtree(NAMES)
    records: list[tuple[str, str]] = []
    for entry in names.list():
        if names.kind(entry) == "directory":
            records.extend((name, f"{NAMES}/{entry}/{name}") for name in names.list(entry))
        else:
            records.append((entry, f"{NAMES}/{entry}"))
    return records


def needs_sharding(tree: Tree) -> bool:
    """Whether ``tree`` holds VMs or names in the flat layout of repositories made before the shards."""
    names = tree.subtree(NAMES)
    return any(not is_shard(entry) for entry in tree.list(VMS)) or any(
        names.kind(entry) != "directory" for entry in names.list()
    )


def shard(tree: Tree) -> Tree:
    """``tree`` with each flat ``vms/<uuid>`` and ``names/<name>`` moved to its shard (contents unchanged)."""
    vms = tree.subtree(VMS)
    for entry in vms.list():
        if is_shard(entry):
            continue
        flat = vms.subtree(entry)
        tree = tree.remove(f"{VMS}/{entry}")
        if tree.kind(vm_dir(entry)) is None:
            tree = tree.graft(vm_dir(entry), flat)
        else:
            # The VM is in its shard already and a writer of the old layout (a host not yet upgraded, or
            # an edit following old docs) wrote files of it at the flat path: those files are the newer.
            for path, value in flat.walk():
                tree = tree.set(f"{vm_dir(entry)}/{path}", value)
    names = tree.subtree(NAMES)
    for entry in names.list():
        value = names.get(entry)  # None for a shard (a directory)
        if value is not None:
            tree = tree.remove(f"{NAMES}/{entry}").set(name_path(entry), value)
    return tree


def split_vm_path(path: str) -> tuple[str, list[str]] | None:
    """(uuid, the segments below its directory) for a path under ``vms/`` (either layout), else None."""
    parts = path.split("/")
    if parts[0] != VMS or len(parts) < 3:
        return None
    if is_shard(parts[1]):
        return (parts[2], parts[3:]) if len(parts) >= 4 else None
    return parts[1], parts[2:]


def _vm_dir_id(vms: Tree, uuid: str) -> bytes | None:
    return vms.id_at(f"{uuid[:2]}/{uuid}") or vms.id_at(uuid)


def changed_vm_uuids(old_vms: Tree, new_vms: Tree) -> set[str]:
    """The VMs whose directory differs between two ``vms/`` trees (either layout), comparing ids only: the
    shards that differ, then the VMs within them."""
    changed: set[str] = set()
    for entry in new_vms.changed_names(old_vms):
        if is_shard(entry):
            changed |= new_vms.subtree(entry).changed_names(old_vms.subtree(entry))
        else:
            changed.add(entry)
    # A VM that only moved into its shard (the commit that sharded a repository) has not changed.
    return {uuid for uuid in changed if _vm_dir_id(old_vms, uuid) != _vm_dir_id(new_vms, uuid)}


def observed_path(host: str, uuid: str) -> str:
    return f"{HOSTS}/{host}/domains/{uuid[:2]}/{uuid}"


def agent_path(host: str) -> str:
    """Where a host's agent records a round it refused (only that host writes it)."""
    return f"{HOSTS}/{host}/agent"


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
            (f"{VMS}/*/*/config", "json_object"),
            (f"{VMS}/*/*/devices/*", "json_object"),
            (f"{VMS}/*/config", "json_object"),  # repositories made before the shards
            (f"{VMS}/*/devices/*", "json_object"),
            (f"{HOSTS}/*/domains/*/*", make_lww("seen_at")),
            (f"{HOSTS}/*/domains/*", make_lww("seen_at")),  # records made before the shards
            (f"{TASKS}/*/*", "json_object"),
            (f"{TASKS}/*", "json_object"),  # records made before the shards
            # names/*/*, vms/*/*/desired and vms/*/*/host keep the default: the same change merges, different
            # changes conflict (that is what makes names unique).
        ]
    )
