"""A lean reader for git packs, for hot paths such as history walks.

dulwich reads any pack but spends tens of microseconds of Python per object. A lookup here is a binary
search in the memory-mapped index and one inflate for a whole object. Roll-ups (:mod:`store.rollup`) store
versions of a tree as offset deltas against one another, so an OFS_DELTA chain is resolved here too, up to
``MAX_CHAIN`` links, with dulwich's C ``apply_delta``; resolved objects are kept in a small cache, because a
history walk reads the versions of one tree in a row and each is the next one's base. Anything else (a
REF_DELTA, a deeper chain, an object in no pack) is left to dulwich.
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
import zlib
from collections import OrderedDict

from dulwich.errors import ApplyDeltaError
from dulwich.pack import apply_delta

_IDX_V2 = b"\377tOc\x00\x00\x00\x02"
_OFS_DELTA = 6
_REF_DELTA = 7
MAX_CHAIN = 64  # roll-ups write chains of at most 50 (git's --depth); deeper ones are dulwich's
CACHE_OBJECTS = 512  # resolved delta chain links kept per pack set
CACHE_BYTES = 16 << 20


class DeltaCache:
    """Objects resolved through delta chains, by (pack, offset): least recently used evicted first.

    A walk over history reads one tree's versions in a row, newest first, and git stores the older version
    as a delta against the newer: with the newer one at hand, each read is one inflate and one apply.
    """

    def __init__(self, objects: int = CACHE_OBJECTS, size: int = CACHE_BYTES) -> None:
        self._entries: OrderedDict[tuple[str, int], tuple[int, bytes]] = OrderedDict()
        self._objects = objects
        self._size = size
        self._held = 0
        self._mutex = threading.Lock()

    def get(self, key: tuple[str, int]) -> tuple[int, bytes] | None:
        with self._mutex:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
            return found

    def put(self, key: tuple[str, int], value: tuple[int, bytes]) -> None:
        if len(value[1]) > self._size // 8:
            return  # one huge object would flush everything else
        with self._mutex:
            if key in self._entries:
                return
            self._entries[key] = value
            self._held += len(value[1])
            while len(self._entries) > self._objects or self._held > self._size:
                _, (_, evicted) = self._entries.popitem(last=False)
                self._held -= len(evicted)

    def clear(self) -> None:
        with self._mutex:
            self._entries.clear()
            self._held = 0


class PackView:
    """One pack and its version-2 index, memory-mapped.

    Args:
        base: The pack's path without ".pack"/".idx".

    Raises:
        ValueError: the index is not version 2 or is truncated.
        OSError: a file is missing.
    """

    __slots__ = ("_cache", "_count", "_fanout", "_index", "_large_at", "_offsets_at", "_pack", "name")

    def __init__(
        self, base: str, written: tuple[bytes, bytes] | None = None, cache: DeltaCache | None = None
    ) -> None:
        self.name = os.path.basename(base)
        self._cache = cache if cache is not None else DeltaCache()
        self._index: mmap.mmap | bytes
        self._pack: mmap.mmap | bytes
        if written is not None:
            # A pack this process has just written: its bytes are at hand, so neither file is opened again.
            self._pack, self._index = written
        else:
            with open(base + ".idx", "rb") as f:
                self._index = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            with open(base + ".pack", "rb") as f:
                self._pack = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        if self._index[:8] != _IDX_V2 or len(self._index) < 8 + 1024 + 40:
            raise ValueError(f"{base}.idx is not a version-2 pack index")
        self._fanout = struct.unpack_from(">256L", self._index, 8)
        self._count = self._fanout[255]
        self._offsets_at = 8 + 1024 + 24 * self._count
        self._large_at = self._offsets_at + 4 * self._count
        if len(self._index) < self._large_at + 40:
            raise ValueError(f"{base}.idx is truncated")

    def close(self) -> None:
        """Unmap the files (each map holds a descriptor of its own)."""
        for view in (self._index, self._pack):
            if isinstance(view, mmap.mmap):
                view.close()

    def offset(self, sha: bytes) -> int | None:
        """Where the object with this binary id starts in the pack, or None (also once closed)."""
        try:
            return self._offset(sha)
        except ValueError:  # unmapped by a concurrent rescan: the caller looks elsewhere
            return None

    def _offset(self, sha: bytes) -> int | None:
        first = sha[0]
        low = self._fanout[first - 1] if first else 0
        high = self._fanout[first]
        index = self._index
        while low < high:
            middle = (low + high) >> 1
            at = 1032 + 20 * middle
            probe = index[at : at + 20]
            if probe < sha:
                low = middle + 1
            elif probe > sha:
                high = middle
            else:
                offset = struct.unpack_from(">L", index, self._offsets_at + 4 * middle)[0]
                if offset & 0x80000000:
                    offset = struct.unpack_from(">Q", index, self._large_at + 8 * (offset & 0x7FFFFFFF))[0]
                return offset
        return None

    def read(self, offset: int) -> tuple[int, bytes] | None:
        """(type number, raw bytes) of the object at ``offset``, resolving offset deltas; None for what is
        left to dulwich (a REF_DELTA, a chain deeper than ``MAX_CHAIN``), or once closed."""
        try:
            return self._resolve(offset)
        except (ValueError, IndexError, zlib.error, ApplyDeltaError):
            return None  # unmapped by a concurrent rescan, or not ours to read: the caller asks dulwich

    def _resolve(self, offset: int) -> tuple[int, bytes] | None:
        # Walk down the chain to a whole object or a cached link, then apply the deltas back up.
        deltas: list[tuple[int, bytes]] = []
        at = offset
        while True:
            found = self._cache.get((self.name, at))
            if found is not None:
                type_num, raw = found
                break
            entry = self._entry(at)
            if entry is None:
                return None
            type_num, body, base_at = entry
            if base_at is None:
                raw = body
                if deltas:
                    self._cache.put((self.name, at), (type_num, raw))
                break
            if len(deltas) >= MAX_CHAIN:
                return None
            deltas.append((at, body))
            at = base_at
        # Every link is kept: the object read is most likely the base of the next one read (its older
        # version), and the links below it of the versions after that.
        for link_at, delta in reversed(deltas):
            raw = b"".join(apply_delta(raw, delta))
            self._cache.put((self.name, link_at), (type_num, raw))
        return type_num, raw

    def _entry(self, offset: int) -> tuple[int, bytes, int | None] | None:
        """(type number, inflated body, base offset) of the entry at ``offset``: the base offset is None for
        a whole object; the entry is None for a REF_DELTA or a short inflate."""
        pack = self._pack
        byte = pack[offset]
        type_num = (byte >> 4) & 7
        if type_num == _REF_DELTA:
            return None
        size = byte & 0x0F
        shift = 4
        position = offset + 1
        while byte & 0x80:
            byte = pack[position]
            size |= (byte & 0x7F) << shift
            shift += 7
            position += 1
        base_at = None
        if type_num == _OFS_DELTA:
            byte = pack[position]
            position += 1
            distance = byte & 0x7F
            while byte & 0x80:
                byte = pack[position]
                position += 1
                distance = ((distance + 1) << 7) | (byte & 0x7F)
            base_at = offset - distance
        # A deflate stream of incompressible data is its input in stored blocks of 5 bytes of header each:
        # blocks of 16 KiB at the default memLevel, but of ~128 bytes at the memLevel 1 that small objects
        # are deflated with here (~4%), so the window allows 1/16 more, and a header.
        window = pack[position : position + size + (size >> 4) + 64]
        raw = zlib.decompressobj().decompress(window, size)
        if len(raw) != size:
            return None
        return type_num, raw, base_at


class PackSet:
    """The packs of one directory, newest first; re-scanned on demand."""

    def __init__(self, pack_dir: str) -> None:
        self.pack_dir = pack_dir
        self._packs: list[PackView] = []
        self._mutex = threading.Lock()
        self._cache = DeltaCache()
        self._last: PackView | None = None  # objects read together tend to live in one pack

    def get_raw(self, sha: bytes) -> tuple[int, bytes] | None:
        last = self._last
        if last is not None:
            offset = last.offset(sha)
            if offset is not None:
                return last.read(offset)
        for pack in self._packs:
            if pack is last:
                continue
            offset = pack.offset(sha)
            if offset is not None:
                self._last = pack
                return pack.read(offset)
        return None

    def add(self, name: str, written: tuple[bytes, bytes] | None = None) -> None:
        """Register a pack this process has just written (it goes first: new objects are read most).

        Args:
            name: The pack's file name without extension.
            written: Its (pack, index) bytes, if at hand: they are kept instead of mapping the files.
        """
        try:
            view = PackView(os.path.join(self.pack_dir, name), written, self._cache)
        except (OSError, ValueError):
            return
        with self._mutex:
            for old in (p for p in self._packs if p.name == name):
                old.close()
            self._packs = [view, *(p for p in self._packs if p.name != name)]

    def close(self) -> None:
        with self._mutex:
            for pack in self._packs:
                pack.close()
            self._packs = []
            self._last = None
        self._cache.clear()

    def rescan(self) -> None:
        """Pick up packs written by other processes and forget removed ones (their maps stay valid for
        readers that still hold them)."""
        try:
            entries = os.listdir(self.pack_dir)
        except FileNotFoundError:
            return
        names = {e[:-4] for e in entries if e.endswith(".idx") and e[:-4] + ".pack" in entries}
        with self._mutex:
            known = {p.name: p for p in self._packs}
            fresh = []
            for name in names - set(known):
                try:
                    fresh.append(PackView(os.path.join(self.pack_dir, name), cache=self._cache))
                except (OSError, ValueError):
                    continue
            kept = [p for p in self._packs if p.name in names]
            for gone in (p for p in self._packs if p.name not in names):
                gone.close()  # removed by a roll-up or `git repack`: its objects are in another pack
            if self._last is not None and self._last.name not in names:
                self._last = None
            # Small packs are the recent ones; look in them first.
            self._packs = sorted(fresh, key=lambda p: p._count) + kept
