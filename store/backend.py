"""Backends: a repository's objects and its refs, each behind an interface of its own (as dulwich keeps its
object store and its refs container apart).

:class:`ObjectStore` holds raw objects by id, with a batch write that is durable when it returns, and caches
of parsed trees and blobs; :class:`RefStore` holds refs with a compare-and-swap. A :class:`Backend` pairs
one of each: :class:`MemoryBackend` (``MemoryObjects`` and ``MemoryRefs``) here, and its twin
:class:`store.disk.DiskBackend` (``DiskObjects`` and ``DiskRefs``). The layers above write through
:class:`store.repository.Repository`; trees, merges and history read its object store.
"""

from __future__ import annotations

import contextlib
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Hashable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

from store.errors import CorruptObject
from store.objects import TREE, ObjectId

TreeEntries = dict[str, tuple[bool, ObjectId]]  # name -> (is_directory, object id)


class ObjectCache:
    """A bounded id -> value map for immutable objects (first in, first out).

    Objects never change under an id, so a cache hit is always right; FIFO eviction keeps every operation a
    single dict call, which is safe under the GIL without a lock.
    """

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._items: dict[Hashable, object] = {}

    def get(self, key: Hashable) -> object | None:
        return self._items.get(key)

    def put(self, key: Hashable, value: object) -> None:
        items = self._items
        if len(items) >= self._capacity:
            # Another thread may have evicted first.
            with contextlib.suppress(StopIteration, KeyError, RuntimeError):
                del items[next(iter(items))]
        items[key] = value


class ObjectReader(Protocol):
    """What trees, merges and history read objects through: an :class:`ObjectStore`, or a whole
    :class:`Backend` (which passes the reads on to its object store)."""

    def get_raw(self, oid: ObjectId) -> tuple[int, bytes]: ...

    def tree_entries(self, oid: ObjectId) -> TreeEntries: ...

    def tree_raw(self, oid: ObjectId) -> bytes: ...

    def tree_keys(self, oid: ObjectId) -> list[bytes]: ...

    def blob(self, oid: ObjectId) -> bytes: ...


class ObjectStore(ABC):
    """Objects by id, with parsed trees and small blobs cached (objects never change under an id)."""

    def __init__(self) -> None:
        self._trees = ObjectCache(1 << 16)
        self._blobs = ObjectCache(1 << 14)
        self._tree_keys = ObjectCache(1 << 10)

    @abstractmethod
    def get_raw(self, oid: ObjectId) -> tuple[int, bytes]:
        """Return (type number, raw bytes) of an object.

        Raises:
            KeyError: The object is absent.
        """

    @abstractmethod
    def contains(self, oid: ObjectId) -> bool:
        """Whether the object is present."""

    @abstractmethod
    def write_objects(self, objects: Iterable[tuple[ObjectId, int, bytes]]) -> None:
        """Store a batch of (id, type number, raw bytes); durable (on disk) when it returns."""

    @abstractmethod
    def find_prefix(self, prefix: str) -> list[ObjectId]:
        """Ids of the objects whose hex id starts with ``prefix``."""

    def tree_entries(self, oid: ObjectId) -> TreeEntries:
        """The parsed entries of a tree object, cached by id."""
        return self._tree(oid)[0]

    def tree_raw(self, oid: ObjectId) -> bytes:
        """The raw bytes of a tree object, cached by id (new trees are derived from them by splicing)."""
        return self._tree(oid)[1]

    def tree_keys(self, oid: ObjectId) -> list[bytes]:
        """The git sort keys of a stored tree's entries, in their raw order (for splicing), cached by id."""
        cached = self._tree_keys.get(oid)
        if cached is None:
            # Stored trees are in git's order, and the parsed entries keep it.
            cached = [
                name.encode("utf-8", "surrogateescape") + b"/"
                if is_dir
                else name.encode("utf-8", "surrogateescape")
                for name, (is_dir, _) in self.tree_entries(oid).items()
            ]
            self._tree_keys.put(oid, cached)
        return cached  # type: ignore[return-value]

    def _tree(self, oid: ObjectId) -> tuple[TreeEntries, bytes]:
        cached = self._trees.get(oid)
        if cached is not None:
            return cached  # type: ignore[return-value]
        type_num, raw = self.get_raw(oid)
        if type_num != TREE:
            raise CorruptObject(oid.decode(), f"expected a tree, found type {type_num}")
        parsed = (parse_tree_entries(raw), raw)
        self._trees.put(oid, parsed)
        return parsed

    def blob(self, oid: ObjectId) -> bytes:
        """The content of a blob, cached by id."""
        cached = self._blobs.get(oid)
        if cached is not None:
            return cached  # type: ignore[return-value]
        _, raw = self.get_raw(oid)
        if len(raw) <= 65536:
            self._blobs.put(oid, raw)
        return raw

    def refresh(self) -> None:  # noqa: B027 - optional hook
        """Pick up objects another writer (e.g. a fetch) added behind this store's back."""

    def maintenance(self) -> None:  # noqa: B027 - optional hook
        """Compact storage if needed (a no-op in memory)."""

    def compact(self) -> bool:
        """Compact all of storage now; False if there is nothing to do (in memory)."""
        return False

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release files and handles."""


class RefStore(ABC):
    """Refs by name, moved only by compare-and-swap."""

    @abstractmethod
    def read_ref(self, name: str) -> str | None:
        """The commit id a ref points to, or None if it does not exist."""

    @abstractmethod
    def compare_and_swap(self, name: str, old: str | None, new: str | None, *, sync: bool = True) -> bool:
        """Point ``name`` at ``new`` if it currently points at ``old`` (None: absent / delete).

        Args:
            name: The ref.
            old: The value it must have.
            new: The value to give it.
            sync: Make the change durable before returning (when the store is durable at all). Only a
                change whose loss a crash recovery tolerates may skip it (e.g. dropping a claim ref whose
                commit is already merged).

        Returns:
            True if the ref was updated, False if it had moved.
        """

    @contextmanager
    def locked(self, name: str) -> Iterator[None]:
        """Keep other writers of this library off a ref for a while (a writer that keeps losing the
        compare-and-swap race takes it to guarantee progress). A no-op where there is no contention."""
        yield

    @abstractmethod
    def list_refs(self, prefix: str) -> dict[str, str]:
        """Every ref under the directory ``prefix`` (e.g. "refs/heads/") with its commit id."""

    @abstractmethod
    def symbolic_head(self) -> str | None:
        """The ref HEAD points to (e.g. "refs/heads/main"), or None if HEAD is detached or absent."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release files and handles."""


class Backend:
    """A repository's storage: an object store and a ref store.

    Its methods are those of the two stores, so that a caller holding the backend (a test injecting a
    fault into ``write_objects``, say) sees every write the layers above make. Readers of objects on hot
    paths hold ``objects`` itself, which saves a call per read.

    Args:
        objects: Where objects live.
        refs: Where refs live.
    """

    def __init__(self, objects: ObjectStore, refs: RefStore) -> None:
        self.objects = objects
        self.refs = refs

    # -- objects -------------------------------------------------------------------------------------------
    def get_raw(self, oid: ObjectId) -> tuple[int, bytes]:
        return self.objects.get_raw(oid)

    def contains(self, oid: ObjectId) -> bool:
        return self.objects.contains(oid)

    def write_objects(self, objects: Iterable[tuple[ObjectId, int, bytes]]) -> None:
        self.objects.write_objects(objects)

    def find_prefix(self, prefix: str) -> list[ObjectId]:
        return self.objects.find_prefix(prefix)

    def tree_entries(self, oid: ObjectId) -> TreeEntries:
        return self.objects.tree_entries(oid)

    def tree_raw(self, oid: ObjectId) -> bytes:
        return self.objects.tree_raw(oid)

    def tree_keys(self, oid: ObjectId) -> list[bytes]:
        return self.objects.tree_keys(oid)

    def blob(self, oid: ObjectId) -> bytes:
        return self.objects.blob(oid)

    def refresh(self) -> None:
        self.objects.refresh()

    def maintenance(self) -> None:
        self.objects.maintenance()

    # -- refs ----------------------------------------------------------------------------------------------
    def read_ref(self, name: str) -> str | None:
        return self.refs.read_ref(name)

    def compare_and_swap(self, name: str, old: str | None, new: str | None, *, sync: bool = True) -> bool:
        return self.refs.compare_and_swap(name, old, new, sync=sync)

    def locked(self, name: str) -> AbstractContextManager[None]:
        return self.refs.locked(name)

    def list_refs(self, prefix: str) -> dict[str, str]:
        return self.refs.list_refs(prefix)

    def symbolic_head(self) -> str | None:
        return self.refs.symbolic_head()

    def close(self) -> None:
        self.objects.close()
        self.refs.close()


# One tree entry: "<mode> <name>\0" and a 20-byte binary id. A whole tree is a run of them and nothing else.
_TREE_ENTRY = re.compile(rb"([^ \0]+) ([^\0]*)\0(.{20})", re.S)
_TREE = re.compile(rb"(?:[^ \0]+ [^\0]*\0.{20})*", re.S)


def parse_tree_entries(raw: bytes) -> TreeEntries:
    """Parse a raw tree into {name: (is_dir, id)}.

    Matched in C (a regular expression) rather than entry by entry in Python: a directory of a thousand
    VMs is parsed on every diff of ``vms/``.

    Raises:
        ValueError: The object is not a well-formed tree.
    """
    if not _TREE.fullmatch(raw):
        raise ValueError("malformed tree object")
    # Directories are "40000"; anything else (blobs, executables, symlinks) reads as a value.
    return {
        name.decode("utf-8", "surrogateescape"): (mode == b"40000", oid.hex().encode("ascii"))
        for mode, name, oid in _TREE_ENTRY.findall(raw)
    }


class MemoryObjects(ObjectStore):
    """Objects in a dictionary; the twin of :class:`store.disk_objects.DiskObjects`."""

    def __init__(self) -> None:
        super().__init__()
        self._objects: dict[ObjectId, tuple[int, bytes]] = {}

    def get_raw(self, oid: ObjectId) -> tuple[int, bytes]:
        return self._objects[oid]

    def contains(self, oid: ObjectId) -> bool:
        return oid in self._objects

    def find_prefix(self, prefix: str) -> list[ObjectId]:
        wanted = prefix.encode("ascii")
        return [oid for oid in list(self._objects) if oid.startswith(wanted)]

    def write_objects(self, objects: Iterable[tuple[ObjectId, int, bytes]]) -> None:
        for oid, type_num, raw in objects:
            self._objects[oid] = (type_num, raw)

    def all_objects(self) -> dict[ObjectId, tuple[int, bytes]]:
        return dict(self._objects)


class MemoryRefs(RefStore):
    """Refs in a dictionary; the twin of :class:`store.disk_refs.DiskRefs`."""

    def __init__(self) -> None:
        self._refs: dict[str, str] = {}
        self._head: str = "refs/heads/main"
        self._lock = threading.Lock()

    def read_ref(self, name: str) -> str | None:
        return self._refs.get(name)

    def compare_and_swap(self, name: str, old: str | None, new: str | None, *, sync: bool = True) -> bool:
        with self._lock:
            if self._refs.get(name) != old:
                return False
            if new is None:
                self._refs.pop(name, None)
            else:
                self._refs[name] = new
            return True

    def list_refs(self, prefix: str) -> dict[str, str]:
        return {name: oid for name, oid in list(self._refs.items()) if name.startswith(prefix)}

    def symbolic_head(self) -> str | None:
        return self._head


class MemoryBackend(Backend):
    """Objects and refs in dictionaries; the twin of :class:`store.disk.DiskBackend`."""

    objects: MemoryObjects

    def __init__(self) -> None:
        super().__init__(MemoryObjects(), MemoryRefs())

    def all_objects(self) -> dict[ObjectId, tuple[int, bytes]]:
        """Every object (for copying a memory store to disk or inspecting it in tests)."""
        return self.objects.all_objects()
