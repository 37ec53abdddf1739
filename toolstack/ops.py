"""The toolstack (``toolstack.ops``): opening and initialising a pool's state repository, finding VMs, and
the history, reconcile and rollback entry points. The operations, each one a task on the state repository
that drives the hypervisor, are mixed in: lifecycle and migration from :mod:`toolstack.lifecycle`,
configuration and devices from :mod:`toolstack.devices`.

>>> ts = Toolstack.init("state.git", "sim://", name="lab")   # later: Toolstack.open("state.git", "sim://")
>>> vm = ts.create("web1", memory="512M", vcpus=2)
>>> ts.start("web1")
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import drivers
from drivers import Driver
from drivers.errors import DomainNotFound
from drivers.models import DomainInfo
from store import MissingObject, NotARepository, Store, Tree
from store.backend import ObjectCache
from toolstack import layout
from toolstack.devices import ConfigOperations
from toolstack.errors import (
    DamagedRepository,
    ToolstackError,
    VMNotFound,
)
from toolstack.history import LogEntry, VMLogIndex, rollback_tree
from toolstack.lifecycle import LifecycleOperations
from toolstack.models import (
    VM,
    Task,
    read_vm,
    uuid_for_name,
    vm_uuids,
)
from toolstack.ownership import OwnedDriver
from toolstack.pool import Pool, init_pool, missing_repository, read_pool
from toolstack.reconcile import Action, Confirm, Plan, apply_plan, confirm_plan, converge_vm, make_plan
from toolstack.tasks import TaskRunner

VM_CACHE_SIZE = 16384  # parsed VMs kept (see Toolstack._read_vm)

SHARDING_MESSAGE = "Move vms/<uuid> and names/<name> into two-character shards"


class Toolstack(LifecycleOperations, ConfigOperations):
    """The toolstack: a state repository (main = desired state) and a hypervisor driver for this host.

    Args:
        store: The state repository.
        driver: The hypervisor.
        host: This host's name (observed state lives under ``hosts/<host>/``).
        author: The operator, recorded as the author of every commit.
        recover: Settle operations left unfinished by killed processes before doing anything else.
    """

    def __init__(
        self,
        store: Store,
        driver: Driver,
        host: str | None = None,
        author: str | None = None,
        recover: bool = True,
    ) -> None:
        self.store = store
        store.schema = layout.schema()
        self.main = store.branch(layout.MAIN)
        self.verify()
        self.pool = self._read_pool()
        # Every call that changes a domain goes through the ownership guard: this pool's domains only.
        self.driver = OwnedDriver(driver, self.pool.id)
        self.runner = TaskRunner(store, self.driver, host, author, converge=self._converge)
        self.host = self.runner.host
        self._log_index: VMLogIndex | None = None
        self._log_index_mutex = threading.Lock()
        self._vm_cache = ObjectCache(VM_CACHE_SIZE)
        self.recovered: list[Task] = self.runner.recover() if recover else []
        self.shard_layout()

    def verify(self) -> None:
        """Check, cheaply, that main's head commit and its tree exist (every command does, first).

        Raises:
            DamagedRepository: one is missing; nothing is written over a broken history.
        """
        try:
            self.main.verify()
        except MissingObject as err:
            raise DamagedRepository(self.store.path or "(in memory)", err.object_id, err.kind) from err

    def _read_pool(self) -> Pool:
        where = self.store.path or "(in memory)"
        if self.main.head is None:
            raise ToolstackError(
                f"the state repository {where} holds no pool yet: create one in it with `toolstack init`, "
                "or clone a pool with `toolstack clone URL`"
            )
        pool = read_pool(self.main.tree)
        if pool is None:
            raise ToolstackError(
                f"the state repository {where} was made before pools had an identity: run `toolstack init` "
                "in it once (on one host; the others get the record with their next pull)"
            )
        return pool

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
        """Open the driver first, then the pool's state repository, so that a bad URI writes nothing.

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
            return cls(store, driver, host, author, recover=recover)
        except BaseException:
            store.close()
            driver.close()
            raise

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

    def shard_layout(self) -> bool:
        """Move the VMs and names main holds in the flat layout (a repository made before the shards, or
        a merge from a host that still writes it) into their shards, in one commit; True if any moved.

        The move changes no content: the VM log does not count it as a change of any VM.
        """
        if not layout.needs_sharding(self.main.tree):
            return False
        with self.main.transaction(message=SHARDING_MESSAGE, author=self.runner.author) as tx:
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

    def _converge(self, uuid: str) -> None:
        converge_vm(self, uuid)

    # -- reading ---------------------------------------------------------------------------------------------
    def vms(self) -> list[VM]:
        tree = self.main.tree
        return sorted((self._read_vm(tree, u) for u in vm_uuids(tree)), key=lambda vm: vm.name)

    def _read_vm(self, tree: Tree, uuid: str) -> VM:
        """``read_vm`` for this host, cached by the ids of what it reads: the VM's directory and its
        observed state. Listing 1,000 VMs then parses and validates only the ones that changed."""
        key = (
            uuid,
            tree.id_at(layout.vm_dir(uuid)),
            tree.id_at(layout.observed_path(self.host, uuid)),
            tree.id_at(layout.legacy_observed_path(self.host, uuid)),
        )
        vm = self._vm_cache.get(key)
        if vm is None:
            vm = read_vm(tree, uuid, self.host)
            self._vm_cache.put(key, vm)  # VMs are frozen: sharing one is safe
        return vm  # type: ignore[return-value]

    def vm(self, ref: str) -> VM:
        """A VM by name or uuid (or a unique uuid prefix of at least 4 characters).

        Raises:
            VMNotFound: no VM matches.
            InvalidRecord: the VM's entry does not validate (``path`` names the offending file).
        """
        tree = self.main.tree
        return self._read_vm(tree, self.resolve(ref, tree))

    def resolve(self, ref: str, tree: Tree | None = None) -> str:
        """The uuid of the VM ``ref`` names (a name, a uuid, or a unique uuid prefix of at least 4
        characters), without reading its entry: a VM whose entry does not validate is still found.

        Raises:
            VMNotFound: no VM matches.
        """
        tree = tree if tree is not None else self.main.tree
        uuid = uuid_for_name(tree, ref)
        if (
            uuid is None
            and ref not in {"", ".", ".."}
            and not set(ref) & {"/", "\0"}
            and tree.kind(layout.vm_dir(ref))
        ):
            uuid = ref  # a full uuid: no need to scan every VM for prefixes
        if uuid is None:
            matches = [u for u in vm_uuids(tree) if u == ref or (len(ref) >= 4 and u.startswith(ref))]
            if len(matches) != 1:
                raise VMNotFound(ref)
            uuid = matches[0]
        if tree.kind(layout.vm_dir(uuid)) != "directory":
            raise VMNotFound(ref)
        return uuid

    def info(self, vm: VM) -> DomainInfo | None:
        try:
            return self.driver.info(vm.uuid)
        except DomainNotFound:
            return None

    # -- history, reconcile, rollback ------------------------------------------------------------------------
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
        progress: Callable[[Action], None] | None = None,
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
        plan = make_plan(self, adopt=adopt, placed_only=placed_only)
        if dry_run or not plan:
            return plan
        confirm_plan(plan, confirm, "reconcile")
        return apply_plan(self, plan, progress=progress)

    def rollback(
        self,
        rev: str,
        vm: str | None = None,
        dry_run: bool = False,
        progress: Callable[[Action], None] | None = None,
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
        target, tree = rollback_tree(self, rev, vm, base=head)
        only = None
        if vm is not None:
            only = {vm} | {u for t in (tree, self.main.tree) if (u := uuid_for_name(t, vm)) is not None}
        plan = make_plan(self, tree=tree, only=only)
        plan.drift.clear()
        if dry_run:
            return plan
        approved = confirm_plan(plan, confirm, "roll back")
        what = f"vm {vm}" if vm else "all VMs"
        # From the head the plan was made on (not whatever main is by now, which the tree would silently
        # revert), reading what it rolls back: a change made there meanwhile is a conflict.
        with self.main.transaction(
            message=f"rollback {what} to {target[:12]}", author=self.runner.author, base=head
        ) as tx:
            for path in [layout.VMS, layout.NAMES] if only is None else [layout.vm_dir(u) for u in only]:
                tx.subtree(path)
            tx.tree = tree
        plan = make_plan(self, only=only)
        plan.drift.clear()
        if not plan:
            return plan
        confirm_plan(plan, confirm, "roll back", approved)
        return apply_plan(self, plan, progress=progress)
