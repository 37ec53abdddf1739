"""A lean reader for whole objects in git packs, for hot paths such as history walks.

dulwich reads any pack, deltas included, but spends tens of microseconds of Python per object. Packs this
library writes hold whole objects only, so a lookup here is a binary search in the memory-mapped index and
one inflate. Anything else (a delta, an object in no pack) is left to dulwich.
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
import zlib

_IDX_V2 = b"\377tOc\x00\x00\x00\x02"
_DELTA_TYPES = (6, 7)


class PackView:
    """One pack and its version-2 index, memory-mapped.

    Args:
        base: The pack's path without ".pack"/".idx".

    Raises:
        ValueError: the index is not version 2 or is truncated.
        OSError: a file is missing.
    """

    __slots__ = ("_count", "_fanout", "_index", "_large_at", "_offsets_at", "_pack", "name")

    def __init__(self, base: str, written: tuple[bytes, bytes] | None = None) -> None:
        self.name = os.path.basename(base)
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
        """(type number, raw bytes) of the whole object at ``offset``; None for a delta (or once closed)."""
        try:
            return self._read(offset)
        except ValueError:
            return None

    def _read(self, offset: int) -> tuple[int, bytes] | None:
        pack = self._pack
        byte = pack[offset]
        type_num = (byte >> 4) & 7
        if type_num in _DELTA_TYPES:
            return None
        size = byte & 0x0F
        shift = 4
        position = offset + 1
        while byte & 0x80:
            byte = pack[position]
            size |= (byte & 0x7F) << shift
            shift += 7
            position += 1
        # A deflate stream of incompressible data is its input in stored blocks of 5 bytes of header each:
        # blocks of 16 KiB at the default memLevel, but of ~128 bytes at the memLevel 1 that small objects
        # are deflated with here (~4%), so the window allows 1/16 more, and a header.
        window = pack[position : position + size + (size >> 4) + 64]
        raw = zlib.decompressobj().decompress(window, size)
        if len(raw) != size:
            return None
        return type_num, raw


class PackSet:
    """The packs of one directory, newest first; re-scanned on demand."""

    def __init__(self, pack_dir: str) -> None:
        self.pack_dir = pack_dir
        self._packs: list[PackView] = []
        self._mutex = threading.Lock()
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
            view = PackView(os.path.join(self.pack_dir, name), written)
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
                    fresh.append(PackView(os.path.join(self.pack_dir, name)))
                except (OSError, ValueError):
                    continue
            kept = [p for p in self._packs if p.name in names]
            for gone in (p for p in self._packs if p.name not in names):
                gone.close()  # removed by a roll-up or `git repack`: its objects are in another pack
            if self._last is not None and self._last.name not in names:
                self._last = None
            # Small packs are the recent ones; look in them first.
            self._packs = sorted(fresh, key=lambda p: p._count) + kept
