"""``toolstack log``: operations newest first, on one VM or on all, answered from the VM log index.

A log is a query of the index (:mod:`toolstack.log_index`) and of main's name records, so a fresh process
answers it without the toolstack: no models, no drivers, no hypervisor, only the store and SQLite. Whatever
else opening the toolstack would have done first falls back to it, so that the command behaves as every
other: tasks left behind by a killed process (their recovery, reported on stderr), a repository in the
layout of before the shards (moved into them), a repository that is not one or holds no pool, a driver URI
no driver serves (the error), and a VM named by a uuid prefix or by the uuid of a deleted VM.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import click

from toolstack.cli.context import Context, pass_ctx
from toolstack.cli.errors import handled
from toolstack.cli.output import emit_lines, table, when

if TYPE_CHECKING:
    from store import Store, Tree
    from toolstack.log_index import LogEntry

# The schemes of the drivers that come with the toolstack (drivers/registry.py): another URI is left to
# drivers.open, which knows the schemes registered since and says what is wrong with the rest.
KNOWN_SCHEMES = frozenset({"sim", "test", "qemu", "xen", "lxc", "xl"})


@click.command("log")
@click.argument("name", required=False)
@click.option("-n", "--limit", type=int, default=None, help="At most this many entries")
@pass_ctx
@handled
def log_command(c: Context, name: str | None, limit: int | None) -> None:
    """Operations newest first, on one VM or on all.

    A VM's log lists every change to it: operations, edits pushed with git (by their authors), rollbacks,
    and the drift and reconcile commits that name it.
    """
    ops = quick_log(c, name, limit)
    if ops is None:
        ops = c.toolstack().log(name, limit=limit)
    rows = [(op.commit[:10], when(op.time), op.who, op.subject) for op in ops]
    emit_lines([op.to_dict() for op in ops], c.json, table(["commit", "date", "author", "operation"], rows))


def quick_log(c: Context, name: str | None, limit: int | None) -> list[LogEntry] | None:
    """The log, read without opening the toolstack; None when opening it would do more than read (see the
    module's docstring), or ``name`` is not a VM's name or full uuid: then the toolstack answers."""
    uri = c.driver_uri
    if "://" not in uri or urlsplit(uri).scheme.lower().partition("+")[0] not in KNOWN_SCHEMES:
        return None
    from store import Store, StoreError
    from toolstack import layout
    from toolstack.log_index import VMLogIndex

    try:
        Store.check(c.repo, create=False)
        store = Store.open(c.repo, create=False)
    except StoreError:
        return None
    try:
        main = store.branch(layout.MAIN)
        if main.head is None or _claimed(store):
            return None  # no pool; or claims, which opening the toolstack settles first
        main.verify()
        tree = main.tree
        if not _is_pool_record(tree.get(layout.POOL)) or layout.needs_sharding(tree):
            return None
        uuid = None if name is None else _vm_uuid(tree, name)
        if name is not None and uuid is None:
            return None
        index = VMLogIndex(store)
        try:
            return index.log(uuid, limit=limit)
        finally:
            index.close()
    except StoreError:
        return None  # a damaged repository: the toolstack says what is wrong
    finally:
        store.close()


def _claimed(store: Store) -> bool:
    """Whether any VM is claimed: a claim record (a running or interrupted task), or a claim ref."""
    from toolstack import layout

    if store.list_refs(f"refs/heads/{layout.LOCK_PREFIX}/"):
        return True
    try:
        names = os.listdir(os.path.join(store.gitdir or "", layout.CLAIMS_DIRECTORY))
    except (FileNotFoundError, NotADirectoryError):
        return False
    return any(not name.startswith(".") for name in names)


def _is_pool_record(raw: bytes | None) -> bool:
    try:
        record = json.loads(raw) if raw else None
    except ValueError:
        return False
    return isinstance(record, dict) and isinstance(record.get("id"), str)


def _vm_uuid(tree: Tree, name: str) -> str | None:
    """The uuid of the VM called ``name``, or ``name`` itself if it is a VM's uuid, as the inventory resolves
    them (toolstack.inventory.Inventory.resolve); None for anything else."""
    from toolstack import layout

    plain = bool(name) and "/" not in name and name not in {".", ".."} and "\0" not in name
    if not plain:
        return None
    record = tree.get(layout.name_path(name))
    uuid = record.decode("utf-8", "replace").strip() if record else name
    if not layout.is_vm_uuid(uuid) and uuid != name:
        return None  # a name record that holds no uuid: the toolstack's error
    return uuid if tree.kind(layout.vm_dir(uuid)) == "directory" else None
