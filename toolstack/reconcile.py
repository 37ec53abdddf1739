"""Reconcile: make the hypervisor match main (the desired state), and record what was found.

A plan lists, per domain, what would be done: define (or update), start, stop, pause, resume, undefine,
adopt. Differences between what the toolstack last observed and what the hypervisor now reports are drift
(a VM stopped outside the toolstack, or its memory or vCPUs changed live): drift is committed first, in a
commit that says so, then the plan is applied (``set-memory``/``set-vcpus`` put live resources back to the
desired values) and the new observed state committed.

A VM migrated to this host is started only once its source host's record shows it stopped or gone
(:func:`held_by_source`): until then the plan lists it as waiting.

A plan that would stop or undefine domains is destructive (:attr:`Plan.destructive`): the operations that
apply plans take a ``confirm`` (:data:`Confirm`) and refuse such a plan unless it says yes
(:func:`confirm_plan`). A VM whose directory is on main but does not validate is reported as invalid and its
domain is left alone: a bad entry never takes its domain down with it.

The plan model (:class:`Plan`, :class:`Action`, :data:`Confirm`) is :mod:`toolstack.plan`'s, re-exported here.
Every function takes the toolstack's :class:`~toolstack.context.Context`.
"""

from __future__ import annotations

from drivers import DriverError
from drivers.errors import DomainNotFound
from drivers.models import DomainInfo, DomainSpec, DomainState, Scope
from store import Transaction, Tree
from toolstack import layout, messages
from toolstack.claims import Claims
from toolstack.context import Context
from toolstack.errors import DestructivePlanRefused, DomainNameTaken, InvalidInput
from toolstack.models import VM, Desired, Observed, observed_of, read_vm, vm_files
from toolstack.ownership import Ownership
from toolstack.plan import Action, Confirm, Plan, Progress
from toolstack.vmsource import ParsedVMs, VMSource

_ACTIVE_STATES = {state.value for state in DomainState if state.is_active}


def confirm_plan(
    plan: Plan, confirm: Confirm, operation: str, approved: frozenset[tuple[str, str]] = frozenset()
) -> frozenset[tuple[str, str]]:
    """Let a plan through if it is not destructive or ``confirm`` says yes, else raise.

    Args:
        approved: (kind, uuid) of destructive actions confirmed already (a rollback re-plans after its commit:
            only what is new in the second plan is asked about).

    Returns:
        The destructive actions now approved, ``approved`` included.

    Raises:
        DestructivePlanRefused: the plan stops or undefines domains and ``confirm`` did not say yes.
    """
    new = [a for a in plan.destructive if (a.kind, a.uuid) not in approved]
    if new and confirm is not True:
        if confirm is False:
            raise DestructivePlanRefused(plan, operation)
        if not confirm(plan):
            raise DestructivePlanRefused(plan, operation, declined=True)
    return approved | {(a.kind, a.uuid) for a in plan.destructive}


def desired_vms(source: VMSource, vms: ParsedVMs, plan: Plan) -> tuple[dict[str, VM], set[str]]:
    """Every valid VM of a tree by uuid, and the uuids of those that do not validate.

    An invalid VM is reported in the plan; its domain must be left alone (not taken for a domain main no
    longer wants), whatever broke it: a config, a device or a ``desired`` file.

    Args:
        source: The tree's VMs.
        vms: Where VMs parsed before are kept: only the VMs whose files changed since are parsed again.
    """
    desired = {}
    invalid = set()
    uuids = layout.vm_uuids(source.tree)
    for uuid in uuids:
        try:
            desired[uuid] = vms.read(source, uuid)
        except InvalidInput as err:
            invalid.add(uuid)
            plan.invalid.append(f"{err}: its domain is left alone until the entry is fixed")
    vms.keep_only(uuids)
    return desired, invalid


def make_plan(
    ctx: Context,
    tree: Tree | None = None,
    adopt: bool = False,
    only: set[str] | None = None,
    placed_only: bool = False,
) -> Plan:
    """Compare a desired tree (default: main's) with the hypervisor.

    Args:
        placed_only: Leave VMs that are placed on no host alone (an agent runs only its own VMs).
    """
    plan = Plan()
    observed_tree = ctx.main.tree
    observed = VMSource(observed_tree, ctx.host)
    # The desired VMs are read with this host's observed records (which planning reads beside them), as the
    # inventory reads them: both keep the same parsed VMs.
    source = observed if tree is None else VMSource(tree, ctx.host)
    desired, invalid = desired_vms(source, ctx.vms, plan)
    busy = Claims(ctx.store).busy()
    actual = {str(info.uuid): info for info in ctx.driver.list()}
    seen = _Seen()
    for uuid, vm in sorted(desired.items(), key=lambda item: item[1].name):
        if only is not None and uuid not in only:
            continue
        if vm.host is not None and vm.host != ctx.host:
            # Placed on another host: that host's agent runs it; a copy here was migrated away.
            if uuid in actual and uuid not in busy and _ours(ctx, actual[uuid], seen, plan):
                if actual[uuid].state.is_active:
                    plan.actions.append(Action("stop", uuid, vm.name, f"placed on {vm.host}"))
                plan.actions.append(Action("undefine", uuid, vm.name, f"placed on {vm.host}"))
            continue
        if vm.host is None and placed_only:
            continue  # an agent runs only what is placed on its host
        held = held_by_source(observed_tree, vm)
        if held is not None:
            plan.waiting.append(f"{vm.name}: {held}")
            continue
        if uuid in busy:
            plan.busy.append(f"{vm.name}: an operation is in progress")
            continue
        info = actual.get(uuid)
        if info is not None and not _ours(ctx, info, seen, plan, claim=adopt):
            continue
        _plan_vm(
            ctx,
            vm,
            info,
            seen.specs.pop(uuid, None),
            observed if source is observed else None,
            observed,
            plan,
        )
    for uuid, info in sorted(actual.items(), key=lambda item: item[1].name):
        if uuid in desired or uuid in invalid or (only is not None and uuid not in only) or uuid in busy:
            continue
        owner = _owner(ctx, info, seen)
        if owner is None:
            continue
        if owner is Ownership.OURS:
            if info.state.is_active:
                plan.actions.append(Action("stop", uuid, info.name, "not in the desired state"))
            plan.actions.append(Action("undefine", uuid, info.name, "not in the desired state"))
        elif owner is Ownership.FOREIGN:
            plan.foreign.append(f"{info.name} ({uuid}) {info.state.value}: {_whose(owner)}")
        elif adopt:
            plan.actions.append(Action("adopt", uuid, info.name, f"{_whose(owner)} ({info.state.value})"))
        elif owner is Ownership.LEGACY:
            plan.foreign.append(f"{info.name} ({uuid}) {info.state.value}: {_whose(owner)}")
        else:
            plan.unknown.append(f"{info.name} ({uuid}) {info.state.value}: not managed (use --adopt)")
    return plan


class _Seen:
    """What a plan asked the hypervisor of each domain (once): whose it is, and its persistent spec."""

    def __init__(self) -> None:
        self.owners: dict[str, Ownership] = {}
        self.specs: dict[str, DomainSpec] = {}


def _owner(ctx: Context, info: DomainInfo, seen: _Seen) -> Ownership | None:
    """Whose a domain is (None if it vanished meanwhile); asked of the hypervisor once per plan, with its
    spec (which planning the domain compares with main's: one read of the domain for both)."""
    uuid = str(info.uuid)
    if uuid not in seen.owners:
        try:
            seen.owners[uuid], seen.specs[uuid] = ctx.driver.inspect(uuid)
        except DomainNotFound:
            return None
    return seen.owners[uuid]


def _whose(owner: Ownership) -> str:
    return {
        Ownership.FOREIGN: "another pool's domain, never touched",
        Ownership.LEGACY: "tagged by a release without pool ids (reconcile --adopt claims it)",
        Ownership.UNMANAGED: "not managed by the toolstack (reconcile --adopt imports it)",
    }.get(owner, "")


def _ours(ctx: Context, info: DomainInfo, seen: _Seen, plan: Plan, claim: bool = False) -> bool:
    """Whether the plan may act on the domain that holds a VM's uuid. With ``claim`` (``--adopt``) a legacy
    or unmanaged domain is claimed first; another pool's domain is only reported."""
    owner = _owner(ctx, info, seen)
    if owner is None or owner is Ownership.OURS:
        return True
    uuid = str(info.uuid)
    if claim and owner is not Ownership.FOREIGN:
        plan.actions.append(Action("claim", uuid, info.name, _whose(owner)))
        return True
    plan.foreign.append(f"{info.name} ({uuid}) {info.state.value}: has this VM's uuid but is {_whose(owner)}")
    return False


def held_by_source(tree: Tree, vm: VM) -> str | None:
    """Why a VM migrated to its host must not start yet, or None if it may.

    The source host's own record decides: the source's agent stops and undefines the VM, then records
    that (its record shows it shut off, or is gone) in the same push. Until main shows that, the VM may
    still run there. A record that does not parse proves nothing: it holds too. An operator who knows the
    source is down releases the VM with ``vm migrate NAME --to HOST --force``.
    """
    move = vm.migration
    if move is None or move.forced or move.target != vm.host or move.source == vm.host:
        return None
    raw = layout.read_observed(tree, move.source, vm.uuid)
    if raw is None:
        return None
    try:
        last = Observed.model_validate_json(raw)
        active = DomainState(last.state).is_active
    except ValueError:
        return f"migrating from {move.source}, whose record of it does not parse: waiting for it to report"
    if not active:
        return None
    return (
        f"migrating from {move.source}, which last reported it {last.state}: waiting for {move.source} "
        f"to stop it (if {move.source} is down: vm migrate {vm.name} --to {move.target} --force)"
    )


def _resource_drift(vm: VM, last: Observed, info: DomainInfo) -> list[str]:
    """Live memory or vCPUs that changed since the toolstack last observed the running domain."""
    if not info.state.is_active or last.state not in _ACTIVE_STATES:
        return []  # a stopped domain's figures are its configuration's: a config change is an update
    found = []
    for name, unit, was, now, wanted in (
        ("memory", " MiB", last.memory, info.memory, vm.spec.memory),
        ("vcpus", "", last.vcpus, info.vcpus, vm.spec.vcpus),
    ):
        if was is not None and was != now:
            found.append(
                f"vm {vm.name} ({vm.uuid}) {name} is {now}{unit}, was {was}{unit}, desired {wanted}{unit}: "
                "changed outside the toolstack"
            )
    return found


def _plan_resources(ctx: Context, vm: VM, info: DomainInfo, plan: Plan) -> None:
    """Put a running domain's live memory and vCPUs back to the desired values (within the live ceilings,
    which only a reboot raises: a ``vm set`` beyond them waits for the next boot, and is no drift)."""
    if not info.state.is_active or vm.desired == Desired.STOPPED:
        return
    if info.memory == vm.spec.memory and info.vcpus == vm.spec.vcpus:
        return
    try:
        live = ctx.driver.get_spec(vm.uuid, live=True)
    except DriverError as err:
        plan.errors.append(f"{vm.name}: cannot read its live configuration: {err}")
        return
    if info.memory != vm.spec.memory and vm.spec.memory <= live.effective_max_memory:
        reason = f"{info.memory} MiB live, desired {vm.spec.memory} MiB"
        plan.actions.append(Action("set-memory", vm.uuid, vm.name, reason))
    if info.vcpus != vm.spec.vcpus and vm.spec.vcpus <= live.effective_max_vcpus:
        reason = f"{info.vcpus} vCPUs live, desired {vm.spec.vcpus}"
        plan.actions.append(Action("set-vcpus", vm.uuid, vm.name, reason))


def _plan_vm(
    ctx: Context,
    vm: VM,
    info: DomainInfo | None,
    spec: DomainSpec | None,
    read_from: VMSource | None,
    observed: VMSource,
    plan: Plan,
) -> None:
    """Plan one VM that main wants here.

    Args:
        spec: The domain's persistent spec, if this plan read it already (asking whose the domain is).
        read_from: The source ``vm`` was read from when it is ``observed`` (main's): its observed record is
            then the one read with it.
        observed: Main's VMs, with this host's observed records.
    """
    if info is None:
        plan.actions.append(Action("define", vm.uuid, vm.name, "missing from the hypervisor"))
        if vm.desired != Desired.STOPPED:
            plan.actions.append(Action("start", vm.uuid, vm.name, f"desired {vm.desired.value}"))
        if vm.desired == Desired.PAUSED:
            plan.actions.append(Action("pause", vm.uuid, vm.name, "desired paused"))
        return
    last = vm.observed if read_from is observed else _observed(observed.observed(vm.uuid))
    if last is not None:
        if last.state != info.state.value:
            plan.drift.append(
                f"vm {vm.name} ({vm.uuid}) is {info.state.value}, was {last.state}, desired "
                f"{vm.desired.value}: changed outside the toolstack"
            )
        plan.drift.extend(_resource_drift(vm, last, info))
    try:
        current = spec if spec is not None else ctx.driver.get_spec(vm.uuid)
    except DriverError as err:
        plan.errors.append(f"{vm.name}: cannot read its configuration: {err}")
        return
    if current != vm.spec:
        reason = _spec_difference(current, vm.spec)
        if info.state.is_active:
            reason += " (the running domain gets it at its next boot)"
        plan.actions.append(Action("update", vm.uuid, vm.name, reason))
    _plan_resources(ctx, vm, info, plan)
    if vm.desired.matches(info.state):
        return
    if vm.desired == Desired.STOPPED:
        plan.actions.append(Action("stop", vm.uuid, vm.name, f"{info.state.value}, desired stopped"))
    elif not info.state.is_active:
        plan.actions.append(
            Action("start", vm.uuid, vm.name, f"{info.state.value}, desired {vm.desired.value}")
        )
        if vm.desired == Desired.PAUSED:
            plan.actions.append(Action("pause", vm.uuid, vm.name, "desired paused"))
    elif vm.desired == Desired.PAUSED:
        plan.actions.append(Action("pause", vm.uuid, vm.name, f"{info.state.value}, desired paused"))
    else:
        plan.actions.append(Action("resume", vm.uuid, vm.name, f"{info.state.value}, desired running"))


def _observed(raw: bytes | None) -> Observed | None:
    """An observed record, None if there is none or it does not parse (as a VM's ``observed``: a damaged
    record says nothing)."""
    if raw is None:
        return None
    try:
        return Observed.model_validate_json(raw)
    except ValueError:
        return None


def _spec_difference(current: DomainSpec, wanted: DomainSpec) -> str:
    have, want = current.model_dump(mode="json"), wanted.model_dump(mode="json")
    fields = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
    return "configuration differs: " + ", ".join(fields)


def apply_plan(
    ctx: Context,
    plan: Plan,
    tree: Tree | None = None,
    progress: Progress | None = None,
    subject: str | None = None,
    files: dict[str, bytes | None] | None = None,
) -> Plan:
    """Carry a plan out, then commit drift (first) and the observed state (after).

    Args:
        subject: The message of the commit of the observed state, in place of ``reconcile: <actions>``.
        files: More writes for that commit (it is made for them even if the plan has no action).
    """
    source = tree if tree is not None else ctx.main.tree
    if plan.drift:
        _record(ctx, plan.drift, messages.drift_message(plan.drift), {})
    adopted: dict[str, bytes | None] = {}
    for action in plan.actions:
        try:
            _apply(ctx, action, source, adopted)
        except (DriverError, DomainNameTaken) as err:
            plan.errors.append(f"{action.describe()}: {err}")
        if progress is not None:
            progress(action, plan)
    plan.applied = True
    if plan.actions or files:
        done = [(a.kind, a.uuid, a.name, a.reason) for a in plan.actions]
        message = subject or messages.reconcile_message(done)
        _record(ctx, [a.uuid for a in plan.actions], message, {**adopted, **(files or {})})
    return plan


def _apply(ctx: Context, action: Action, source: Tree, adopted: dict[str, bytes | None]) -> None:
    driver = ctx.driver
    uuid = action.uuid
    if action.kind in ("define", "update"):
        driver.define(read_vm(source, uuid).spec)
    elif action.kind == "set-memory":
        driver.set_memory(uuid, read_vm(source, uuid).spec.memory, Scope.LIVE)
    elif action.kind == "set-vcpus":
        driver.set_vcpus(uuid, read_vm(source, uuid).spec.vcpus, Scope.LIVE)
    elif action.kind == "start":
        driver.start(uuid)
    elif action.kind == "stop":
        driver.destroy(uuid)
    elif action.kind == "pause":
        driver.pause(uuid)
    elif action.kind == "resume":
        driver.resume(uuid)
    elif action.kind == "undefine":
        driver.destroy(uuid)
        driver.undefine(uuid)
    elif action.kind == "claim":
        driver.claim(driver.get_spec(uuid))
    elif action.kind == "adopt":
        spec = driver.get_spec(uuid)
        if source.get(layout.name_path(spec.name)) is not None:
            raise DomainNameTaken(spec.name, uuid)
        driver.claim(spec)
        # Stored as the hypervisor now reports it: had it normalised anything of the verbatim extras on the
        # way, the stored spec would differ from the domain and every reconcile would plan an update.
        spec = driver.get_spec(uuid)
        desired = Desired.of_state(driver.info(uuid).state)
        adopted.update(vm_files(spec, desired))
    else:
        raise ValueError(f"unknown action {action.kind!r}")


def _record(ctx: Context, uuids: list[str], message: str, files: dict[str, bytes | None]) -> None:
    """Commit the observed state of the given domains (all domains for drift) plus ``files``."""
    actual: dict[str, DomainInfo] = {str(info.uuid): info for info in ctx.driver.list()}

    def record(tx: Transaction) -> None:
        for path, value in files.items():
            if value is None:
                tx.remove(path)
            else:
                tx.set(path, value)
        # Which VMs there are is read through the transaction (listing reads of vms/ and its shards): a VM
        # created or deleted meanwhile makes it run again rather than record for a stale set of VMs.
        for shard in tx.list(layout.VMS):
            tx.list(f"{layout.VMS}/{shard}")
        known = set(layout.vm_uuids(tx.tree))
        tree = tx.tree
        for uuid in known:
            info = actual.get(uuid)
            record = (
                None
                if info is None
                else observed_of(info.state, info.domid, info.memory, info.vcpus).encode()
            )
            tree = layout.with_observed(tree, ctx.host, uuid, record)
        for uuid in layout.observed_uuids(tree, ctx.host):
            if uuid not in known:
                tree = layout.with_observed(tree, ctx.host, uuid, None)
        tx.tree = tree

    ctx.main.atomically(record, message=message, author=ctx.author)


def converge_vm(ctx: Context, uuid: str) -> Plan:
    """Reconcile one VM (used after an interrupted task is rolled back)."""
    plan = make_plan(ctx, only={uuid})
    plan.drift.clear()  # the interruption explains the difference; the rollback commit already says so
    return apply_plan(ctx, plan) if plan.actions else plan
