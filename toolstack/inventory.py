"""The VMs main describes, found by name, uuid or uuid prefix, and read with a cache; and what this host's
hypervisor says of each. The operations look VMs up here; the facade's ``vm``/``vms``/``resolve``/``info``
are these.
"""

from __future__ import annotations

from drivers.errors import DomainNotFound
from drivers.models import DomainInfo
from store import Tree
from toolstack import layout
from toolstack.context import Context
from toolstack.errors import VMNotFound
from toolstack.models import VM, uuid_for_name, vm_uuids
from toolstack.vmsource import VMSource


class Inventory:
    """Reads VMs from the context's main, for its host.

    Args:
        ctx: The toolstack's context.
    """

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._source: VMSource | None = None

    def source(self, tree: Tree) -> VMSource:
        """A :class:`VMSource` of ``tree`` for this host: the last one made, while it is of the same tree
        (reading the VMs of one tree one by one then walks each of its shards once)."""
        source = self._source
        if source is None or source.tree is not tree:
            source = VMSource(tree, self.ctx.host)
            self._source = source
        return source

    def read(self, tree: Tree, uuid: str) -> VM:
        """``read_vm`` for this host, parsed only if the ids of what it reads changed (its directory and
        its observed state; see :class:`~toolstack.vmsource.ParsedVMs`). Listing 1,000 VMs then parses and
        validates only the ones that changed.

        Raises:
            InvalidRecord: the VM's entry does not validate (``path`` names the offending file).
        """
        return self.ctx.vms.read(self.source(tree), uuid)

    def vms(self) -> list[VM]:
        """Every VM of main, by name."""
        tree = self.ctx.main.tree
        uuids = vm_uuids(tree)
        found = sorted((self.read(tree, u) for u in uuids), key=lambda vm: vm.name)
        self.ctx.vms.keep_only(uuids)
        return found

    def vm(self, ref: str) -> VM:
        """A VM by name or uuid (or a unique uuid prefix of at least 4 characters).

        Raises:
            VMNotFound: no VM matches.
            InvalidRecord: the VM's entry does not validate (``path`` names the offending file).
        """
        tree = self.ctx.main.tree
        return self.read(tree, self.resolve(ref, tree))

    def resolve(self, ref: str, tree: Tree | None = None) -> str:
        """The uuid of the VM ``ref`` names (a name, a uuid, or a unique uuid prefix of at least 4
        characters), without reading its entry: a VM whose entry does not validate is still found.

        Raises:
            VMNotFound: no VM matches.
        """
        tree = tree if tree is not None else self.ctx.main.tree
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
        """What this host's hypervisor says of ``vm`` now (None: it has no such domain)."""
        try:
            return self.ctx.driver.info(vm.uuid)
        except DomainNotFound:
            return None
