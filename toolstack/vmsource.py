"""Reading many VMs of one tree: each shard walked once, each VM parsed once per content.

:class:`VMSource` reads the VMs of one tree (main's, a commit's) shard by shard: the ``vms/<xx>`` directory
of a shard, and this host's ``hosts/<host>/domains/<xx>`` beside it, are looked up once for all the VMs in
it, where :func:`~toolstack.models.read_vm` walks the tree from its root for every file of every VM.

:class:`ParsedVMs` keeps, per VM, the VM last parsed and the ids of what it was parsed from (its directory,
its observed record): a VM whose ids are unchanged is not parsed again. The ids are git object ids, so a
kept VM is exactly what parsing would give; there is one entry per VM, so it is sized to the pool and never
drops a VM that is still there (a full read drops the VMs that are gone). Given a
:class:`~drivers.content_cache.ContentCache` (:func:`vm_cache`: ``gitstore/vm-cache/`` in the git directory),
it keeps them across processes too: a cold process takes a VM from it when its ids are unchanged, and each
full read writes back the shards whose VMs changed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from drivers.content_cache import ContentCache, code_version
from store import NotADirectory, Tree
from store.objects import ObjectId
from toolstack import layout
from toolstack.models import VM, parse_vm

Key = tuple[str | None, ObjectId | None, ObjectId | None, ObjectId | None]

# What a kept VM depends on besides its files: the records, their parsing, and the keys.
PARSING_MODULES = (
    "drivers.content_cache",
    "drivers.devices",
    "drivers.fields",
    "drivers.models",
    "drivers.spec",
    "toolstack.layout",
    "toolstack.models",
    "toolstack.vmsource",
)


def vm_cache(gitdir: str | None) -> ContentCache:
    """The on-disk cache of the parsed VMs of the repository at ``gitdir`` (None: in memory, none kept):
    ``gitstore/vm-cache/``, derived data that is safe to delete."""
    directory = None if gitdir is None else os.path.join(gitdir, "gitstore", "vm-cache")
    return ContentCache(directory, code_version(PARSING_MODULES) if directory else None)


def _plain(name: str) -> bool:
    """Whether ``name`` is one path segment (a uuid as the layout stores it)."""
    return bool(name) and name not in {".", ".."} and "/" not in name and "\0" not in name


class VMSource:
    """The VMs of one tree, read shard by shard.

    Args:
        tree: The tree to read.
        host: Whose observed records to read with each VM (None: none, as a desired tree is read).
    """

    __slots__ = ("_domains", "_observed", "_shards", "host", "tree")

    def __init__(self, tree: Tree, host: str | None = None) -> None:
        self.tree = tree
        self.host = host
        self._shards: dict[str, Tree | None] = {}
        self._observed: dict[str, Tree | None] = {}
        self._domains: Tree | None = None
        if host is not None and _plain(host):
            self._domains = self._subtree(tree, f"{layout.HOSTS}/{host}/domains")

    @staticmethod
    def _subtree(tree: Tree | None, path: str) -> Tree | None:
        if tree is None:
            return None
        try:
            return tree.subtree(path)
        except NotADirectory:
            return None

    def _shard(self, uuid: str) -> Tree | None:
        prefix = uuid[:2]
        if prefix not in self._shards:
            self._shards[prefix] = self._subtree(self.tree, f"{layout.VMS}/{prefix}")
        return self._shards[prefix]

    def _observed_shard(self, uuid: str) -> Tree | None:
        prefix = uuid[:2]
        if prefix not in self._observed:
            self._observed[prefix] = self._subtree(self._domains, prefix)
        return self._observed[prefix]

    def directory(self, uuid: str) -> Tree | None:
        """VM ``uuid``'s directory (None: a value stands there; an empty tree: nothing does)."""
        if not _plain(uuid) or len(uuid) < 2:
            return self._subtree(self.tree, layout.vm_dir(uuid))
        return self._subtree(self._shard(uuid), uuid)

    def observed(self, uuid: str) -> bytes | None:
        """The host's observed record of VM ``uuid``, in either layout (as :func:`layout.read_observed`)."""
        if self.host is None:
            return None
        if not _plain(uuid) or not _plain(self.host) or len(uuid) < 2:
            return layout.read_observed(self.tree, self.host, uuid)
        shard = self._observed_shard(uuid)
        raw = None if shard is None else shard.get(uuid)
        if raw is None and self._domains is not None:
            raw = self._domains.get(uuid)
        return raw

    def key(self, uuid: str) -> Key | None:
        """The ids of everything VM ``uuid`` is parsed from (equal keys, equal VMs); None for a uuid that
        is not one path segment (no VM of the layout: not worth keeping)."""
        if not _plain(uuid) or len(uuid) < 2 or (self.host is not None and not _plain(self.host)):
            return None
        shard = self._shard(uuid)
        observed = legacy = None
        if self.host is not None:
            observed_shard = self._observed_shard(uuid)
            observed = None if observed_shard is None else observed_shard.id_at(uuid)
            legacy = None if self._domains is None else self._domains.id_at(uuid)
        return (self.host, None if shard is None else shard.id_at(uuid), observed, legacy)

    def read(self, uuid: str) -> VM:
        """Parse VM ``uuid`` (as :func:`~toolstack.models.read_vm` with this source's host).

        Raises:
            InvalidRecord: the VM's entry does not validate (``path`` names the offending file).
        """
        return parse_vm(self.directory(uuid), uuid, self.observed(uuid))


class ParsedVMs:
    """Parsed VMs by uuid, each with the key (:meth:`VMSource.key`) of what it was parsed from.

    Safe to share between threads: each call is a few single dict operations, and a VM kept by one thread
    while another keeps a newer one is only parsed again (a kept VM is used only under its own key).

    Args:
        disk: Where VMs are kept across processes (None: in this process only).
    """

    def __init__(self, disk: ContentCache | None = None) -> None:
        self._kept: dict[str, tuple[Key, VM]] = {}
        self._disk = disk

    def __len__(self) -> int:
        return len(self._kept)

    def read(self, source: VMSource, uuid: str) -> VM:
        """VM ``uuid`` of ``source``, parsed only if its files changed since it was last parsed here.

        Raises:
            InvalidRecord: the VM's entry does not validate (``path`` names the offending file).
        """
        key = source.key(uuid)
        kept = self._kept.get(uuid)
        if key is not None and kept is not None and kept[0] == key:
            return kept[1]
        stored = None if key is None or self._disk is None else self._disk.get(uuid)
        if stored is not None and stored[0] == key and isinstance(stored[1], VM):
            self._kept[uuid] = (key, stored[1])
            return stored[1]
        vm = source.read(uuid)
        if key is not None:
            self._kept[uuid] = (key, vm)  # VMs are frozen: sharing one is safe
        return vm

    def keep_only(self, uuids: Iterable[str]) -> None:
        """Drop the VMs not in ``uuids`` (all of a tree's, after reading them all): deleted VMs go, and the
        on-disk cache is brought up to date (only its shards that changed are written)."""
        wanted = set(uuids)
        for uuid in list(self._kept):  # a copy: other threads may add entries meanwhile
            if uuid not in wanted:
                self._kept.pop(uuid, None)
        if self._disk is not None:
            self._disk.sync(dict(self._kept))
