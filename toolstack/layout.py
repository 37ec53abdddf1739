"""Where the toolstack keeps things in the state repository, and how each path merges.

One file per thing, so that concurrent operations on different VMs (or different devices of one VM) touch
different paths and merge:

    vms/<uuid>/config             JSON: name, memory, vcpus, boot, lifecycle actions, metadata
    vms/<uuid>/devices/<id>       JSON: one Disk or Nic
    vms/<uuid>/desired            running | paused | stopped
    names/<name>                  the uuid holding the name (two creates of one name conflict here)
    hosts/<host>/domains/<uuid>   JSON: observed state, domid, when it was seen
    tasks/<id>                    JSON: operation, VM, who, status, error, timings
"""

from __future__ import annotations

from store import Schema
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
    return f"{HOSTS}/{host}/domains/{uuid}"


def task_path(task_id: str) -> str:
    return f"{TASKS}/{task_id}"


def schema() -> Schema:
    """Merge rules for the toolstack's paths."""
    return Schema(
        [
            (f"{VMS}/*/config", "json_object"),
            (f"{VMS}/*/devices/*", "json_object"),
            (f"{HOSTS}/*/domains/*", make_lww("seen_at")),
            (f"{TASKS}/*", "json_object"),
            # names/*, vms/*/desired and vms/*/host keep the default: the same change merges, different
            # changes conflict (that is what makes names unique).
        ]
    )
