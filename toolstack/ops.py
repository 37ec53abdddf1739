"""The toolstack facade (``toolstack.ops``): opening and initialising a pool's state repository, and every
entry point the CLI and the API use.

:class:`Toolstack` assembles the services over one :class:`~toolstack.context.Context` (see
``toolstack/README.md``) and delegates to them: finding VMs (:mod:`toolstack.inventory`), the operations,
each one a task on the state repository that drives the hypervisor (lifecycle and migration from
:mod:`toolstack.lifecycle`, configuration and devices from :mod:`toolstack.devices`, run by
:mod:`toolstack.tasks`), history (:mod:`toolstack.history`), reconcile and rollback
(:mod:`toolstack.reconcile`). The services return an operation's task; the facade answers with the VM after
it, as the CLI and the API show it.

>>> ts = Toolstack.init("state.git", "sim://", name="lab")   # later: Toolstack.open("state.git", "sim://")
>>> vm = ts.create("web1", memory="512M", vcpus=2)
>>> ts.start("web1")
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import drivers
from drivers import Disk, Driver, Nic
from drivers.models import DomainInfo
from store import Branch, MissingObject, NotARepository, Store, StoreError, Tree
from toolstack import layout, messages
from toolstack.context import Context
from toolstack.devices import ConfigOperations
from toolstack.errors import DamagedRepository, ToolstackError, VMNotFound
from toolstack.history import rollback_tree, rolled_back
from toolstack.inventory import Inventory
from toolstack.lifecycle import LifecycleOperations
from toolstack.log_index import LogEntry, VMLogIndex, index_path
from toolstack.models import VM, Task, uuid_for_name
from toolstack.ownership import OwnedDriver
from toolstack.plan import Confirm, Plan, Progress
from toolstack.pool import Pool, init_pool, missing_repository, read_pool
from toolstack.reconcile import apply_plan, confirm_plan, converge_vm, make_plan
from toolstack.tasks import TaskObserver, TaskRunner
from toolstack.volumes import VolumeRequest

log = logging.getLogger(__name__)
T = TypeVar("T")
CATCH_UP_LIMIT = 64  # main's new commits an operation indexes after its merge; more are left to a query
SHARDING_MESSAGE = "Move vms/<uuid> and names/<name> into two-character shards"


def _verify(store: Store, main: Branch) -> None:
    try:
        main.verify()
    except MissingObject as err:
        raise DamagedRepository(store.path or "(in memory)", err.object_id, err.kind) from err


def _read_pool(store: Store, main: Branch) -> Pool:
    where = store.path or "(in memory)"
    if main.head is None:
        raise ToolstackError(
            f"the state repository {where} holds no pool yet: create one in it with `toolstack init`, "
            "or clone a pool with `toolstack clone URL`"
        )
    pool = read_pool(main.tree)
    if pool is None:
        raise ToolstackError(
            f"the state repository {where} was made before pools had an identity: run `toolstack init` "
            "in it once (on one host; the others get the record with their next pull)"
        )
    return pool


class Toolstack:
    """The toolstack: a state repository (main = desired state) and a hypervisor driver for this host.

    The constructor only assembles (reading main's pool record, which the ownership guard needs, after
    checking that main is intact); :meth:`open` also does the start-up work (:meth:`start_up`).

    Args:
        store: The state repository.
        driver: The hypervisor.
        host: This host's name (observed state lives under ``hosts/<host>/``; default: the hostname).
        author: The operator, recorded as the author of every commit.

    Raises:
        DamagedRepository: main's head commit or its tree is missing.
        ToolstackError: the repository holds no pool.
    """

    def __init__(
        self, store: Store, driver: Driver, host: str | None = None, author: str | None = None
    ) -> None:
        store.schema = layout.schema()
        main = store.branch(layout.MAIN)
        _verify(store, main)
        pool = _read_pool(store, main)
        # Every call that changes a domain goes through the ownership guard: this pool's domains only.
        owned = OwnedDriver(driver, pool.id)
        self.context = Context(store, owned, host or socket.gethostname(), pool, author)
        self.inventory = Inventory(self.context)
        self.runner = TaskRunner(self.context, converge=functools.partial(converge_vm, self.context))
        self.lifecycle = LifecycleOperations(self.context, self.runner, self.inventory)
        self.config = ConfigOperations(self.context, self.runner, self.inventory)
        self._log_index: VMLogIndex | None = None
        self._log_index_mutex = threading.Lock()
        self.recovered: list[Task] = []  # the interrupted tasks start_up settled

    # -- the context's parts, as callers know them -----------------------------------------------------------
    @property
    def store(self) -> Store:
        return self.context.store

    @property
    def main(self) -> Branch:
        return self.context.main

    @property
    def driver(self) -> Driver:
        return self.context.driver

    @property
    def host(self) -> str:
        return self.context.host

    @property
    def pool(self) -> Pool:
        return self.context.pool

    @property
    def author(self) -> str | None:
        """The operator every commit is recorded under (settable: the context's, for every service)."""
        return self.context.author

    @author.setter
    def author(self, author: str | None) -> None:
        self.context.author = author

    # -- opening, start-up, closing --------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        repo: str,
        driver_uri: str,
        *,
        host: str | None = None,
        author: str | None = None,
        recover: bool = True,
    ) -> Toolstack:
        """Open the driver first, then the pool's state repository, so that a bad URI writes nothing; then do
        the start-up work (:meth:`start_up`).

        Args:
            recover: Settle operations left unfinished by killed processes before anything else.

        Raises:
            ToolstackError: there is no state repository at ``repo`` (it is never created here: see
                :meth:`init`), or it holds no pool.
        """
        try:
            Store.check(repo, create=False)
        except NotARepository as err:
            if not os.path.exists(repo) or not os.listdir(repo):
                raise missing_repository(repo) from err
            raise ToolstackError(str(err)) from err
        driver = drivers.open(driver_uri)
        try:
            store = Store.open(repo, create=False)
        except NotARepository as err:
            driver.close()
            raise ToolstackError(str(err)) from err
        try:
            ts = cls(store, driver, host, author)
            ts.start_up(recover=recover)
        except BaseException:
            store.close()
            driver.close()
            raise
        return ts

    @classmethod
    def init(
        cls,
        repo: str,
        driver_uri: str,
        *,
        name: str | None = None,
        host: str | None = None,
        author: str | None = None,
    ) -> Toolstack:
        """Create a pool's state repository at ``repo`` (see :func:`toolstack.pool.init_pool`) and open it."""
        drivers.open(driver_uri).close()  # a bad URI fails before anything is written
        init_pool(repo, name, author)
        return cls.open(repo, driver_uri, host=host, author=author)

    def start_up(self, recover: bool = True) -> list[Task]:
        """What opening a repository does before anything else: settle the tasks killed processes left
        unfinished (with ``recover``), then move main out of any old layout; returns the settled tasks
        (also kept as :attr:`recovered`)."""
        self.recovered = self.runner.recover() if recover else []
        self.shard_layout()
        return self.recovered

    def verify(self) -> None:
        """Check, cheaply, that main's head commit and its tree exist (every command does, first).

        Raises:
            DamagedRepository: one is missing; nothing is written over a broken history.
        """
        _verify(self.store, self.main)

    def shard_layout(self) -> bool:
        """Move the VMs and names main holds in the flat layout (a repository made before the shards, or
        a merge from a host that still writes it) into their shards, in one commit; True if any moved.

        The move changes no content: the VM log does not count it as a change of any VM.
        """
        if not layout.needs_sharding(self.main.tree):
            return False
        with self.main.transaction(message=SHARDING_MESSAGE, author=self.author) as tx:
            tx.tree = layout.shard(tx.tree)
        return True

    def close(self) -> None:
        if self._log_index is not None:
            self._log_index.close()
        self.driver.close()
        self.store.close()

    def __enter__(self) -> Toolstack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading (:class:`toolstack.inventory.Inventory`) ----------------------------------------------------
    def vms(self) -> list[VM]:
        return self.inventory.vms()

    def vm(self, ref: str) -> VM:
        return self.inventory.vm(ref)

    def resolve(self, ref: str, tree: Tree | None = None) -> str:
        return self.inventory.resolve(ref, tree)

    def info(self, vm: VM) -> DomainInfo | None:
        return self.inventory.info(vm)

    # -- operations (:mod:`toolstack.lifecycle`, :mod:`toolstack.devices`): each one task --------------------
    def create(
        self,
        name: str,
        memory: int | str,
        vcpus: int = 1,
        disks: Sequence[str | Disk | VolumeRequest] = (),
        nics: Sequence[str | Nic] = (),
        host: str | None = None,
        start: bool = False,
        *,
        observer: TaskObserver | None = None,
        autostart: bool = False,
        **spec_fields: Any,
    ) -> VM:
        """See :meth:`LifecycleOperations.create`; returns the new VM.

        Every operation takes an ``observer`` (:class:`~toolstack.tasks.TaskObserver`): told its task once the
        VM is claimed, its precondition checked before the hypervisor is called (the API's If-Match).
        """
        task = self._indexed(
            self.lifecycle.create(
                name,
                memory,
                vcpus,
                disks,
                nics,
                host,
                start,
                observer=observer,
                autostart=autostart,
                **spec_fields,
            )
        )
        return self.vm(task.vm)

    def start(self, ref: str, *, observer: TaskObserver | None = None) -> VM:
        return self.vm(self._indexed(self.lifecycle.start(ref, observer=observer)).vm)

    def shutdown(
        self, ref: str, timeout: float = 60.0, force: bool = False, *, observer: TaskObserver | None = None
    ) -> VM:
        """See :meth:`LifecycleOperations.shutdown`."""
        return self.vm(self._indexed(self.lifecycle.shutdown(ref, timeout, force, observer=observer)).vm)

    def reboot(
        self,
        ref: str,
        *,
        apply: bool = False,
        timeout: float = 60.0,
        force: bool = False,
        observer: TaskObserver | None = None,
    ) -> VM:
        """See :meth:`LifecycleOperations.reboot` (``apply``: restart to apply the pending changes)."""
        task = self.lifecycle.reboot(ref, apply=apply, timeout=timeout, force=force, observer=observer)
        return self.vm(self._indexed(task).vm)

    def pause(self, ref: str, *, observer: TaskObserver | None = None) -> VM:
        return self.vm(self._indexed(self.lifecycle.pause(ref, observer=observer)).vm)

    def resume(self, ref: str, *, observer: TaskObserver | None = None) -> VM:
        return self.vm(self._indexed(self.lifecycle.resume(ref, observer=observer)).vm)

    def destroy(self, ref: str, *, observer: TaskObserver | None = None) -> VM:
        return self.vm(self._indexed(self.lifecycle.destroy(ref, observer=observer)).vm)

    def delete(self, ref: str, *, observer: TaskObserver | None = None) -> None:
        """See :meth:`LifecycleOperations.delete`."""
        self._indexed(self.lifecycle.delete(ref, observer=observer))

    def migrate(
        self, ref: str, to_host: str, force: bool = False, *, observer: TaskObserver | None = None
    ) -> VM:
        """See :meth:`LifecycleOperations.migrate`."""
        task = self._indexed(self.lifecycle.migrate(ref, to_host, force, observer=observer))
        return self.vm(ref if task is None else task.vm)

    def set_resources(
        self,
        ref: str,
        memory: int | str | None = None,
        vcpus: int | None = None,
        *,
        settings: Mapping[str, Any] | None = None,
        observer: TaskObserver | None = None,
    ) -> VM:
        """See :meth:`ConfigOperations.set_resources`."""
        return self.vm(
            self._indexed(
                self.config.set_resources(ref, memory, vcpus, settings=settings, observer=observer)
            ).vm
        )

    def attach(self, ref: str, device: Disk | Nic, *, observer: TaskObserver | None = None) -> VM:
        return self.vm(self._indexed(self.config.attach(ref, device, observer=observer)).vm)

    def attach_disk(
        self,
        ref: str,
        path: str,
        target: str | None = None,
        device_id: str | None = None,
        readonly: bool = False,
        *,
        observer: TaskObserver | None = None,
    ) -> VM:
        task = self._indexed(
            self.config.attach_disk(ref, path, target, device_id, readonly, observer=observer)
        )
        return self.vm(task.vm)

    def attach_nic(
        self,
        ref: str,
        network: str | None = None,
        bridge: str | None = None,
        mac: str | None = None,
        device_id: str | None = None,
        *,
        observer: TaskObserver | None = None,
    ) -> VM:
        task = self._indexed(self.config.attach_nic(ref, network, bridge, mac, device_id, observer=observer))
        return self.vm(task.vm)

    def detach(self, ref: str, device_id: str, *, observer: TaskObserver | None = None) -> VM:
        return self.vm(self._indexed(self.config.detach(ref, device_id, observer=observer)).vm)

    # -- history, reconcile, rollback ------------------------------------------------------------------------
    def _indexed(self, task: T) -> T:
        """Bring the VM log index up to date with main after an operation: its own merge (and any that
        landed meanwhile), read while its trees are fresh, so that no query has history to catch up on.
        Only an index that exists, and only a short catch-up without waiting for another writer: a rebuild,
        or the catch-up after a long pull, is the next query's."""
        if self._log_index is None and not os.path.exists(index_path(self.store) or ""):
            return task
        try:
            self.log_index.catch_up(CATCH_UP_LIMIT)
        except (sqlite3.Error, StoreError) as err:  # derived data: the operation stands, a query retries
            log.warning("the VM log index did not follow main: %s", err)
        return task

    @property
    def log_index(self) -> VMLogIndex:
        """The index of main's operations by VM (opened on first use, once: two indexes of one repository
        would each index main's new commits, and a first opening resets the tables the other uses)."""
        with self._log_index_mutex:
            if self._log_index is None:
                self._log_index = VMLogIndex(self.store)
            return self._log_index

    def last_change(self, uuid: str) -> str | None:
        """The commit of the newest operation that changed VM ``uuid`` (None if no operation did)."""
        return self.log_index.last_change(uuid)

    def log(self, ref: str | None = None, limit: int | None = None, offset: int = 0) -> list[LogEntry]:
        """Operations newest first, on one VM (name or uuid; a deleted VM by uuid) or on all."""
        index = self.log_index
        uuid = None
        if ref is not None:
            try:
                uuid = self.resolve(ref)
            except VMNotFound:
                if index.last_change(ref) is None:
                    raise
                uuid = ref
        return index.log(uuid, limit=limit, offset=offset)

    def reconcile(
        self,
        dry_run: bool = False,
        adopt: bool = False,
        progress: Progress | None = None,
        placed_only: bool = False,
        confirm: Confirm = True,
    ) -> Plan:
        """Compare main with the hypervisor; unless ``dry_run``, apply the difference and record drift.

        Args:
            confirm: Asked before a plan that stops or undefines domains is applied (see
                :func:`toolstack.reconcile.confirm_plan`); the default applies it, as library callers that
                decided already (a recovery, a test) expect.

        Raises:
            DestructivePlanRefused: the plan is destructive and ``confirm`` did not say yes; nothing applied.
        """
        plan = make_plan(self.context, adopt=adopt, placed_only=placed_only)
        if dry_run or not plan:
            return plan
        confirm_plan(plan, confirm, "reconcile")
        return apply_plan(self.context, plan, progress=progress)

    def rollback(
        self,
        rev: str,
        vm: str | None = None,
        dry_run: bool = False,
        progress: Progress | None = None,
        confirm: Confirm = True,
    ) -> Plan:
        """Restore the desired state of ``rev`` (all VMs, or one) in a forward commit, then reconcile.

        Args:
            confirm: Asked before the rollback commit is written if its plan stops or undefines domains (a
                rollback to before a VM existed deletes it), and again after it for any destructive action
                the hypervisor's changes meanwhile added.

        Raises:
            DestructivePlanRefused: the plan is destructive and ``confirm`` did not say yes. Refused before
                the commit, nothing is written; refused after it (a domain started meanwhile), main is rolled
                back and the hypervisor left as it was (``toolstack reconcile`` finishes it).
        """
        head = self.main.head
        target, tree = rollback_tree(self.context, rev, vm, base=head)
        only = None
        if vm is not None:
            only = {vm} | {u for t in (tree, self.main.tree) if (u := uuid_for_name(t, vm)) is not None}
        plan = make_plan(self.context, tree=tree, only=only)
        plan.drift.clear()
        if dry_run:
            return plan
        approved = confirm_plan(plan, confirm, "roll back")
        what = f"vm {vm}" if vm else "all VMs"
        # From the head the plan was made on (not whatever main is by now, which the tree would silently
        # revert), reading what it rolls back: a change made there meanwhile is a conflict.
        message = messages.rollback_message(what, target, rolled_back(self.store.tree_at(head), tree, only))
        with self.main.transaction(message=message, author=self.author, base=head) as tx:
            for path in [layout.VMS, layout.NAMES] if only is None else [layout.vm_dir(u) for u in only]:
                tx.subtree(path)
            tx.tree = tree
        plan = make_plan(self.context, only=only)
        plan.drift.clear()
        if not plan:
            return plan
        confirm_plan(plan, confirm, "roll back", approved)
        return apply_plan(self.context, plan, progress=progress)
