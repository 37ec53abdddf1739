"""Reading a whole history with little memory: raw trees compared without parsing, and a reader that
neither caches nor maps the packs.

A walk over every first-parent commit of 100,000 (the VM log index's build) reads two versions of a
directory per commit. :class:`RawTree` finds one entry, or the entries that differ between two versions,
without building the others; :class:`ScanReader` reads objects for the walk with its memory bounded by the
packs' indexes, whatever the size of the packs.
"""

from __future__ import annotations

import bisect
import mmap
import os
import re
import struct
import zlib

from store.backend import ObjectReader, parse_tree_entries
from store.errors import CorruptObject, UnknownCommit
from store.history import lookup_entry
from store.objects import COMMIT, TREE, ObjectId
from store.objects import _split_identity as split_identity


class RawTree:
    """A raw tree object read as it is, for walks over many commits: one entry is found, and two versions
    compared, without parsing the others.

    A tree whose entries are all of one width (its modes of one length, its names of one length: the
    shards of ``vms/``, named by two characters, or the uuids within them) is read as an array: an entry
    is found by a C-level search for its name, and two versions with the same names are compared by
    halves, each a C-level comparison of bytes, down to the entries that differ. Parsing the 256 entries of
    ``vms/`` instead costs tens of microseconds, for every commit of a history.
    """

    __slots__ = ("_mode", "_width", "raw")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self._width: int | None = None
        self._mode = 0

    @property
    def width(self) -> int:
        """The width of every entry if all are of one layout, else 0: then the n-th starts at n times it."""
        if self._width is None:
            self._width, self._mode = _fixed_layout(self.raw)
        return self._width

    def lookup(self, name: bytes) -> tuple[bool, ObjectId] | None:
        """The (is_dir, id) of entry ``name``, or None."""
        width, raw = self.width, self.raw
        if not width:
            return lookup_entry(raw, name)
        mode = self._mode
        if len(name) != width - mode - 22:
            return None
        needle, start = b" " + name + b"\0", 0
        while (at := raw.find(needle, start)) >= 0:
            if (at - mode) % width == 0:  # at an entry's name, not inside an id
                return raw[at - mode : at] == b"40000", raw[
                    at + width - mode - 20 : at + width - mode
                ].hex().encode()
            start = at + 1
        return None

    def changed(self, other: RawTree) -> set[bytes]:
        """The names of the entries that differ from ``other``'s (added, removed, another (is_dir, id)), as
        :meth:`store.Tree.changed_names` finds them."""
        old, new = other.raw, self.raw
        if old == new:
            return set()
        width = self.width
        if width and width == other.width and self._mode == other._mode and len(old) == len(new):
            # The first and the last byte that differ, found in C (the ends of the two trees' xor), bound
            # the entries to compare: usually one.
            xor = int.from_bytes(old, "big") ^ int.from_bytes(new, "big")
            first = len(old) - (xor.bit_length() + 7) // 8
            last = len(old) - 1 - ((xor & -xor).bit_length() - 1) // 8
            found: set[bytes] = set()
            if _bisect(old, new, width, first // width, last // width + 1, found):
                return found
        mine, theirs = parse_tree_entries(new), parse_tree_entries(old)
        return {name.encode("utf-8", "surrogateescape") for name, _ in mine.items() ^ theirs.items()}


_LAYOUTS: dict[tuple[int, int], re.Pattern[bytes]] = {}


def _fixed_layout(raw: bytes) -> tuple[int, int]:
    """(width of an entry, length of its mode) if every entry of ``raw`` has the first one's, else (0, 0)."""
    nul = raw.find(b"\0")
    mode = raw.find(b" ", 0, nul)
    if nul < 0 or mode <= 0 or len(raw) % (nul + 21):
        return 0, 0
    # Read as git's parser reads: the mode runs to the first space, the name to the first NUL after it.
    width = nul + 21
    count = len(raw) // width
    if count >= 32 and mode + (nul - mode - 1) <= 16:
        # Column by column, C-level: each mode column repeats the first entry's character (which is neither
        # a space nor a NUL), each name column holds no NUL; then the spaces and NULs are in place.
        same = all(raw[c::width] == raw[c : c + 1] * count for c in range(mode))
        if (
            same
            and raw[mode::width] == b" " * count
            and raw[nul::width] == b"\0" * count
            and not any(b"\0" in raw[c::width] for c in range(mode + 1, nul))
        ):
            return width, mode
    pattern = _LAYOUTS.get((mode, nul))
    if pattern is None:
        pattern = re.compile(rb"(?:[^ \0]{%d} [^\0]{%d}\0.{20})*" % (mode, nul - mode - 1), re.S)
        _LAYOUTS[(mode, nul)] = pattern
    return (nul + 21, mode) if pattern.fullmatch(raw) else (0, 0)


def _bisect(old: bytes, new: bytes, width: int, low: int, high: int, found: set[bytes]) -> bool:
    """Add to ``found`` the names of the entries in [low, high) whose (is_dir, id) differ; False if two
    entries in one place have different names (then the trees must be compared by name)."""
    if old[low * width : high * width] == new[low * width : high * width]:
        return True
    if high - low > 1:
        middle = (low + high) >> 1
        return _bisect(old, new, width, low, middle, found) and _bisect(old, new, width, middle, high, found)
    entry, other = old[low * width : high * width], new[low * width : high * width]
    space = entry.find(b" ")
    if entry[space:-20] != other[space:-20]:
        return False
    if (entry[:space] == b"40000") != (other[:space] == b"40000") or entry[-20:] != other[-20:]:
        found.add(entry[space + 1 : -21])  # not a change of mode alone (100644 to 100755)
    return True


def raw_subtree(read: ObjectReader, tree: RawTree, name: bytes) -> RawTree | None:
    """The directory ``name`` of ``tree`` (None if absent or a value)."""
    found = tree.lookup(name)
    if found is None or not found[0]:
        return None
    type_num, raw = read.get_raw(found[1])
    if type_num != TREE:
        raise CorruptObject(found[1].decode(), "expected a tree")
    return RawTree(raw)


def commit_summary(raw: bytes) -> tuple[str | None, str, int, str]:
    """(first parent, author, author time, message) of a raw commit, as :func:`store.objects.decode_commit`
    reads them, with a few C-level searches instead of a loop over the headers."""
    end = raw.find(b"\n\n")
    header, message = (raw, b"") if end < 0 else (raw[:end], raw[end + 2 :])
    at = header.find(b"\nparent ")
    parent = header[at + 8 : at + 48].decode("ascii") if at >= 0 else None
    at = header.rfind(b"\nauthor ")  # the last, as decode_commit keeps it (there is one)
    if at < 0:
        author, when = "", 0
    else:
        line_end = header.find(b"\n", at + 1)
        author, when, _ = split_identity(header[at + 8 : line_end if line_end >= 0 else len(header)])
    return parent, author, when, message.decode("utf-8", "replace")


class ScanReader:
    """Objects for one long scan (every commit of a history), read without growing the process.

    It caches nothing, and reads the packs with ``pread`` rather than through maps: the pages of a mapped
    pack count in the process's RSS, and the kernel maps those around each page read (fault-around), so a
    walk of 100,000 commits through maps of a 5 GB repository ends with 5 GB resident. Only the packs'
    indexes are mapped (a few percent of the packs). Objects not whole in the packs it found when opened
    (deltas, loose objects, packs written since) come from ``objects``.

    A scan is often short (an index catching up with the commits an operation just made, which the store
    holds in memory): the first ``warm`` objects are read through ``objects`` itself, and the packs are
    opened only when a scan goes on past them. Opening every pack costs ~6 system calls a pack, per scan.

    Args:
        objects: The store's objects (:attr:`store.Store.objects`).
        warm: How many objects to read through ``objects`` (and its caches) before the packs are opened.
    """

    def __init__(self, objects: ObjectReader, warm: int = 0) -> None:
        self._objects = objects
        self._packs: list[_Pack] = []
        self._last: _Pack | None = None  # objects read together tend to live in one pack
        self._warm = warm
        if warm <= 0:
            self._open_packs()

    def _open_packs(self) -> None:
        self._warm = 0
        pack_dir = getattr(self._objects, "pack_dir", None)
        if isinstance(pack_dir, str):
            self._open(pack_dir)

    def _open(self, pack_dir: str) -> None:
        try:
            entries = os.listdir(pack_dir)
        except FileNotFoundError:
            return
        for name in sorted(e[:-4] for e in entries if e.endswith(".idx") and e[:-4] + ".pack" in entries):
            try:
                self._packs.append(_Pack(os.path.join(pack_dir, name)))
            except (OSError, ValueError):
                continue  # removed by a roll-up meanwhile (its objects are in another pack), or not ours

    def get_raw(self, oid: ObjectId) -> tuple[int, bytes]:
        """(type number, raw bytes) of an object.

        Raises:
            KeyError: it is absent.
        """
        if self._warm > 0:
            self._warm -= 1
            if self._warm == 0:
                self._open_packs()  # for the next read: this scan is a long one
            return self._objects.get_raw(oid)
        sha = bytes.fromhex(oid.decode("ascii"))
        last = self._last
        for pack in (last, *self._packs) if last is not None else self._packs:
            offset = pack.offset(sha)
            if offset is not None:
                self._last = pack
                found = pack.read(offset)
                if found is not None:
                    return found
                break
        return self._objects.get_raw(oid)

    def commit(self, commit_id: str) -> bytes:
        """A raw commit.

        Raises:
            UnknownCommit: there is no such commit.
        """
        try:
            type_num, raw = self.get_raw(commit_id.encode("ascii"))
        except (KeyError, ValueError, AssertionError):
            raise UnknownCommit(commit_id) from None
        if type_num != COMMIT:
            raise UnknownCommit(commit_id, "not a commit")
        return raw

    def close(self) -> None:
        for pack in self._packs:
            pack.close()
        self._packs, self._last = [], None

    def __enter__(self) -> ScanReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


READ_AHEAD = 1024  # bytes read with an object's header: commits and small trees are whole in them
_IDX_V2 = b"\377tOc\x00\x00\x00\x02"


class _Pack:
    """One pack: its version-2 index mapped, the pack itself read with ``pread``.

    Raises:
        OSError: a file is missing.
        ValueError: the index is not version 2, or truncated.
    """

    def __init__(self, base: str) -> None:
        with open(base + ".idx", "rb") as f:
            self._index = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        index = self._index
        if index[:8] != _IDX_V2 or len(index) < 8 + 1024 + 40:
            index.close()
            raise ValueError(f"{base}.idx is not a version-2 pack index")
        self._fanout = struct.unpack_from(">256L", index, 8)
        count = self._fanout[255]
        self._offsets_at = 8 + 1024 + 24 * count
        self._large_at = self._offsets_at + 4 * count
        if len(index) < self._large_at + 40:
            index.close()
            raise ValueError(f"{base}.idx is truncated")
        try:
            self._pack = os.open(base + ".pack", os.O_RDONLY)
        except OSError:
            index.close()
            raise

    def _id(self, position: int) -> bytes:
        return self._index[1032 + 20 * position : 1052 + 20 * position]

    def offset(self, sha: bytes) -> int | None:
        """Where the object with this binary id starts in the pack, or None."""
        first = sha[0]
        low = self._fanout[first - 1] if first else 0
        high = self._fanout[first]
        position = bisect.bisect_left(range(high), sha, low, high, key=self._id)  # the loop in C
        if position >= high or self._id(position) != sha:
            return None
        offset: int = struct.unpack_from(">L", self._index, self._offsets_at + 4 * position)[0]
        if offset & 0x80000000:
            offset = struct.unpack_from(">Q", self._index, self._large_at + 8 * (offset & 0x7FFFFFFF))[0]
        return offset

    def read(self, offset: int) -> tuple[int, bytes] | None:
        """(type number, raw bytes) of the whole object at ``offset``; None for a delta, or a read that fell
        short (a truncated or removed file: the store reads it instead)."""
        return _read_whole(self._pack, offset)

    def close(self) -> None:
        self._index.close()
        os.close(self._pack)


def _read_whole(pack: int, offset: int) -> tuple[int, bytes] | None:
    """(type number, raw bytes) of the whole object at ``offset`` in a pack file; None for a delta, or a
    read that fell short (a truncated or removed file: the store reads it instead)."""
    try:
        data = os.pread(pack, READ_AHEAD, offset)
    except OSError:
        return None
    if not data:
        return None
    byte = data[0]
    type_num = (byte >> 4) & 7
    if type_num in (6, 7):
        return None
    size, shift, position = byte & 0x0F, 4, 1
    while byte & 0x80 and position < len(data):
        byte = data[position]
        size |= (byte & 0x7F) << shift
        shift += 7
        position += 1
    # The window of store.packs.PackView: a deflate stream of incompressible data is its input in stored
    # blocks of 5 bytes of header each (~128 bytes at memLevel 1), and a header.
    window = size + (size >> 4) + 64
    try:
        if position + window > len(data):
            data = os.pread(pack, position + window, offset)
        raw = zlib.decompressobj().decompress(memoryview(data)[position : position + window], size)
    except (OSError, zlib.error):
        return None
    return (type_num, raw) if len(raw) == size else None
