"""The on-disk backend: a real git repository, read through dulwich, written as fsynced packs.

Each batch of new objects (one transaction, or a group of them) becomes one small pack written to a
temporary file, fsynced, and renamed into place, before any ref points at it. Packs are rolled up in tiers
(size-tiered compaction, as LSM trees do): when sixteen packs share a tier of object counts, they become one
pack of the next tier. An object is then copied about once per tier (log16 of the repository's size) instead
of once per doubling, and the pack count stays small (under 16 per tier) for git and for lookups. Refs
follow git's lock-file protocol, guarded by an flock lease so that locks left by killed processes are
recovered.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import hashlib
import logging
import os
import re
import secrets
import struct
import threading
import time
import weakref
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from dulwich.object_store import DiskObjectStore
from dulwich.pack import Pack

from store.backend import Backend
from store.errors import StoreError
from store.group import GroupCommit, Waiter
from store.locks import DirectorySyncer, Lease, create_git_lock, fsync_directory, pid_alive
from store.objects import TREE, ObjectId
from store.packs import PackSet

# Temporary names must not end in .pack/.idx: readers would take a half-written pair for a pack.
_TMP_PATTERN = re.compile(r"^tmp_(?:pack|idx)_(\d+)_[0-9a-f]+$")
ROLL_UP_FANOUT = 16  # packs of one tier rolled into one of the next (tiers: object counts, powers of 16)
MAINTENANCE_EVERY = 8
MAX_ROLL_UP_ROUNDS = 16
STORED_BELOW = 512  # objects smaller than this are written uncompressed (git gc recompresses them)
ORPHAN_GRACE_SECONDS = 600.0
RACY_NS = 1_000_000_000  # a packed-refs younger than this is read again rather than taken from the cache
KEPT_PACK_BYTES = 1 << 20  # packs up to this size are read from the bytes written, not mapped again


log = logging.getLogger(__name__)
_OPEN_BACKENDS: weakref.WeakSet[DiskBackend] = weakref.WeakSet()


@atexit.register
def _close_open_backends() -> None:
    # dulwich's pack finalisers fail noisily during interpreter shutdown; close packs while we still can.
    for backend in list(_OPEN_BACKENDS):
        backend.close()


def _pack_object_header(type_num: int, size: int) -> bytes:
    byte = (type_num << 4) | (size & 0x0F)
    size >>= 4
    out = bytearray()
    while size:
        out.append(byte | 0x80)
        byte = size & 0x7F
        size >>= 7
    out.append(byte)
    return bytes(out)


def _deflate(raw: bytes) -> bytes:
    if len(raw) > 65536:
        return zlib.compress(raw, 1)
    # A small memLevel makes zlib's per-stream set-up, which dominates for small objects, ~2.5x cheaper.
    stream = zlib.compressobj(1, zlib.DEFLATED, 15, 1)
    return stream.compress(raw) + stream.flush()


def _zlib_stored(raw: bytes) -> bytes:
    """A valid zlib stream of uncompressed ("stored") deflate blocks, built without zlib's set-up cost.

    Trees are mostly 20-byte ids, which do not compress; `git gc` recompresses them anyway.
    """
    out = bytearray(b"\x78\x01")
    view = memoryview(raw)
    position = 0
    while True:
        block = view[position : position + 65535]
        position += len(block)
        final = position >= len(raw)
        out += struct.pack("<BHH", 1 if final else 0, len(block), len(block) ^ 0xFFFF)
        out += block
        if final:
            break
    out += struct.pack(">L", zlib.adler32(raw))
    return bytes(out)


def encode_pack(
    objects: Iterable[tuple[ObjectId, int, bytes]],
    chunks: Iterable[tuple[bytes, bytes, int]] = (),
) -> tuple[bytes, bytes, bytes]:
    """Build a version-2 pack and its version-2 index from whole (undeltified) objects.

    Args:
        objects: (hex id, type number, raw bytes) to compress.
        chunks: (binary id, pack entry bytes, crc32) copied verbatim from another pack.

    Returns:
        (pack bytes, index bytes, pack checksum).
    """
    entries_by_sha: dict[bytes, bytes | tuple[bytes, int]] = {}
    for sha, chunk, crc in chunks:
        entries_by_sha[sha] = (chunk, crc)
    for oid, type_num, raw in objects:
        sha = bytes.fromhex(oid.decode("ascii"))
        if len(sha) != 20:
            raise ValueError(f"not an object id: {oid!r}")  # never write an index git cannot read
        if sha not in entries_by_sha:
            # Trees are mostly ids, and small objects barely shrink: zlib's set-up costs more than it saves.
            body = _zlib_stored(raw) if type_num == TREE or len(raw) < STORED_BELOW else _deflate(raw)
            entries_by_sha[sha] = _pack_object_header(type_num, len(raw)) + body
    body = bytearray(b"PACK" + struct.pack(">II", 2, len(entries_by_sha)))
    entries: list[tuple[bytes, int, int]] = []
    for sha, entry in entries_by_sha.items():
        chunk, crc = entry if isinstance(entry, tuple) else (entry, zlib.crc32(entry))
        entries.append((sha, len(body), crc))
        body += chunk
    checksum = hashlib.sha1(body).digest()
    body += checksum
    return bytes(body), encode_index(entries, checksum), checksum


def encode_index(entries: list[tuple[bytes, int, int]], checksum: bytes) -> bytes:
    """A version-2 pack index of (binary id, offset, crc32) entries, for the pack with this checksum."""
    entries.sort()
    fanout = [0] * 256
    for sha, _, _ in entries:
        fanout[sha[0]] += 1
    running = 0
    for i in range(256):
        running += fanout[i]
        fanout[i] = running
    index = bytearray(b"\377tOc" + struct.pack(">L", 2))
    index += struct.pack(">256L", *fanout)
    index += b"".join(sha for sha, _, _ in entries)
    index += struct.pack(f">{len(entries)}L", *[crc for _, _, crc in entries])
    large: list[int] = []
    small: list[int] = []
    for _, offset, _ in entries:
        if offset < 0x80000000:
            small.append(offset)
        else:
            small.append(0x80000000 | len(large))
            large.append(offset)
    index += struct.pack(f">{len(small)}L", *small)
    index += struct.pack(f">{len(large)}Q", *large)
    index += checksum
    index += hashlib.sha1(index).digest()
    return bytes(index)


def read_whole_object_pack(base: str) -> tuple[bytes, list[tuple[bytes, int, int]]] | None:
    """A pack's bytes and its entries as (binary id, offset, crc32), if none of them is a delta.

    Returns None for packs with deltas (e.g. written by `git gc`), or an index that is not v2.
    """
    with open(base + ".idx", "rb") as f:
        index = f.read()
    with open(base + ".pack", "rb") as f:
        pack = f.read()
    if index[:8] != b"\377tOc" + struct.pack(">L", 2):
        return None
    count = struct.unpack_from(">L", index, 8 + 255 * 4)[0]
    shas_at = 8 + 1024
    crcs_at = shas_at + 20 * count
    offsets_at = crcs_at + 4 * count
    large_at = offsets_at + 4 * count
    crcs = struct.unpack_from(f">{count}L", index, crcs_at)
    offsets = list(struct.unpack_from(f">{count}L", index, offsets_at))
    entries = []
    for i, offset in enumerate(offsets):
        if offset & 0x80000000:
            offset = struct.unpack_from(">Q", index, large_at + 8 * (offset & 0x7FFFFFFF))[0]
        if (pack[offset] >> 4) & 7 not in (1, 2, 3, 4):  # 6 and 7 are deltas
            return None
        entries.append((index[shas_at + 20 * i : shas_at + 20 * (i + 1)], offset, crcs[i]))
    return pack, entries


def concatenate_packs(
    packs: list[tuple[bytes, list[tuple[bytes, int, int]]]],
) -> tuple[list[bytes | memoryview], bytes, bytes]:
    """One pack holding the objects of whole-object packs, made by concatenating their bodies.

    Nothing is inflated or re-encoded: the parts are views of runs of entries in the source packs, hashed
    (outside the GIL, for big buffers) and written as they are. An object already taken from an earlier pack
    (small blobs such as "running" are written again and again) ends a run, so that the index lists it once.

    Returns:
        (pack parts, index, checksum).
    """
    seen: set[bytes] = set()
    runs: list[memoryview] = []
    located: list[tuple[bytes, int, int]] = []
    position = 12  # after the header
    for pack, entries in packs:
        view = memoryview(pack)
        end_of_data = len(pack) - 20
        ordered = sorted(entries, key=lambda entry: entry[1])
        run_start = None
        for index, (sha, offset, crc) in enumerate(ordered):
            end = ordered[index + 1][1] if index + 1 < len(ordered) else end_of_data
            if sha in seen:
                if run_start is not None:
                    runs.append(view[run_start:offset])
                    run_start = None
                continue
            seen.add(sha)
            if run_start is None:
                run_start = offset
            located.append((sha, position, crc))
            position += end - offset
        if run_start is not None:
            runs.append(view[run_start:end_of_data])
    header = b"PACK" + struct.pack(">II", 2, len(located))
    hasher = hashlib.sha1(header)
    for run in runs:
        hasher.update(run)
    checksum = hasher.digest()
    return [header, *runs, checksum], encode_index(located, checksum), checksum


def read_whole_object_chunks(base: str) -> list[tuple[bytes, bytes, int]] | None:
    """The entries of a pack as (binary id, entry bytes, crc32), if none of them is a delta.

    Rolling up packs this library wrote then copies compressed bytes instead of inflating and deflating
    every object. Returns None for packs with deltas (e.g. written by `git gc`), or an index that is not v2.
    """
    read = read_whole_object_pack(base)
    if read is None:
        return None
    pack, entries = read
    ordered = sorted(entries, key=lambda entry: entry[1])
    end_of_data = len(pack) - 20
    return [
        (sha, pack[offset : ordered[i + 1][1] if i + 1 < len(ordered) else end_of_data], crc)
        for i, (sha, offset, crc) in enumerate(ordered)
    ]


def pack_tier(count: int) -> int:
    """The tier of a pack of ``count`` objects: 0 below 16 objects, 1 below 256, 2 below 4,096..."""
    tier = 0
    while count >= ROLL_UP_FANOUT:
        count //= ROLL_UP_FANOUT
        tier += 1
    return tier


def tier_to_roll_up(packs: list[tuple[str, int]]) -> list[str]:
    """The packs to roll up next: those of the lowest tier holding ``ROLL_UP_FANOUT`` packs, with every
    smaller one; none if no tier is full.

    Their union holds at least ``ROLL_UP_FANOUT`` times a pack of their tier, so it lands in a higher tier:
    each object climbs a tier per copy, and no tier keeps more than ``ROLL_UP_FANOUT - 1`` packs.

    Args:
        packs: (basename, object count) of the packs that may be rolled up.
    """
    by_tier: dict[int, list[str]] = {}
    for name, count in packs:
        by_tier.setdefault(pack_tier(count), []).append(name)
    full = [tier for tier, names in by_tier.items() if len(names) >= ROLL_UP_FANOUT]
    if not full:
        return []
    return [name for tier in sorted(by_tier) if tier <= min(full) for name in by_tier[tier]]


def _write_file(path: str, data: bytes | list[bytes | memoryview], durable: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
    try:
        for part in [data] if isinstance(data, bytes) else data:
            view = memoryview(part)
            while view:
                written = os.write(fd, view)
                view = view[written:]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)


class _PendingWrite(Waiter):
    """One caller's batch of objects, waiting to be written in a shared pack."""

    def __init__(self, objects: list[tuple[ObjectId, int, bytes]]) -> None:
        super().__init__()
        self.objects = objects


class DiskBackend(Backend):
    """A git repository on disk.

    Args:
        gitdir: The repository's git directory (the bare repository, or the ``.git`` of a work tree).
        durable: fsync objects before refs, and refs before returning (default). Without it a crash may lose
            recent commits, though never corrupt history.
    """

    def __init__(self, gitdir: str, durable: bool = True) -> None:
        super().__init__()
        self.gitdir = os.path.abspath(gitdir)
        self.durable = durable
        self._objects = DiskObjectStore(os.path.join(self.gitdir, "objects"))
        # A multi-pack-index written by `git` would be stale after our next pack; don't consult it.
        self._objects._use_midx = False
        self.pack_dir = os.path.join(self.gitdir, "objects", "pack")
        os.makedirs(self.pack_dir, exist_ok=True)
        self._private = os.path.join(self.gitdir, "gitstore")
        os.makedirs(os.path.join(self._private, "locks"), exist_ok=True)
        self._directories = DirectorySyncer()
        self._packs = PackSet(self.pack_dir)
        self._leases: dict[str, Lease] = {}
        self._leases_mutex = threading.Lock()
        self._objects_mutex = threading.Lock()
        # A pack write is short: its leader writes until nothing is queued rather than wake another thread.
        self._pack_writes: GroupCommit[_PendingWrite] = GroupCommit(self._write_batch, hand_off=False)
        self._writes_since_maintenance = 0
        self._maintenance_due = threading.Event()
        self._maintainer: threading.Thread | None = None
        self._maintaining = False
        self._closed = False
        self._packed_refs_cache: tuple[tuple[int, int, int], dict[str, str]] | None = None
        self._remove_orphans()
        self._packs.rescan()
        _OPEN_BACKENDS.add(self)

    # -- objects -------------------------------------------------------------------------------------------
    def get_raw(self, oid: ObjectId) -> tuple[int, bytes]:
        sha = bytes.fromhex(oid.decode("ascii"))
        found = self._packs.get_raw(sha)
        if found is not None:
            return found
        try:
            return self._dulwich_get_raw(oid)  # loose objects, deltas, alternates
        except KeyError:
            pass
        # A directory listing made while another process rolls packs up can miss both the old pack and
        # its replacement (readdir is not atomic against renames), so look again before saying "absent".
        for delay in (0.0, 0.002, 0.01):
            time.sleep(delay)
            self._packs.rescan()
            found = self._packs.get_raw(sha)
            if found is not None:
                return found
            with self._objects_mutex:
                self._objects._update_pack_cache()
            try:
                return self._dulwich_get_raw(oid)
            except KeyError:
                continue
        raise KeyError(oid)

    def _dulwich_get_raw(self, oid: ObjectId) -> tuple[int, bytes]:
        # dulwich refreshes its pack cache on a miss, without a lock of its own: two refreshes at once (a
        # reader's and a roll-up's) both drop a vanished pack, and the second fails with a KeyError.
        with self._objects_mutex:
            return self._objects.get_raw(oid)

    def contains(self, oid: ObjectId) -> bool:
        with self._objects_mutex:
            if oid in self._objects:
                return True
        try:
            self.get_raw(oid)
        except KeyError:
            return False
        return True

    def find_prefix(self, prefix: str) -> list[ObjectId]:
        with self._objects_mutex:
            return list(self._objects.iter_prefix(prefix.encode("ascii")))

    def write_objects(self, objects: Iterable[tuple[ObjectId, int, bytes]]) -> None:
        """Write a batch as one pack; batches of threads writing at the same moment share one (group commit).

        One writer leads (see :mod:`store.group`) and writes batches until none is queued; the others wait
        for the pack that holds theirs. Each caller still returns only once its objects are durable, but
        concurrent operations (claims of different VMs, say) pay for one pack, one index and their fsyncs
        together.
        """
        pending = _PendingWrite(list(objects))
        if pending.objects:
            self._pack_writes.submit(pending)

    def _write_batch(self, batch: list[_PendingWrite]) -> None:
        self._write_pack([o for item in batch for o in item.objects])
        for item in batch:
            item.finish()

    def _write_pack(self, objects: list[tuple[ObjectId, int, bytes]]) -> None:
        pack, index, checksum = encode_pack(objects)
        if len(pack) <= 32:  # header and trailer only: nothing to write
            return
        name = "pack-" + checksum.hex()
        self._install_pack(name, pack, index)
        with self._objects_mutex:
            self._writes_since_maintenance += 1
            due = self._writes_since_maintenance >= MAINTENANCE_EVERY
            if due:
                self._writes_since_maintenance = 0
        if due:
            self._request_maintenance()

    def _request_maintenance(self) -> None:
        # Roll-ups run in a background thread so that the committing thread (the group-commit leader, which
        # every waiting transaction depends on) never pays for them.
        with self._objects_mutex:
            self._maintenance_due.set()
            if self._maintainer is None or not self._maintainer.is_alive():
                self._maintainer = threading.Thread(
                    target=self._maintain, name="store-pack-maintenance", daemon=True
                )
                self._maintainer.start()

    def _maintain(self) -> None:
        while not self._closed:
            if not self._maintenance_due.wait(timeout=5.0):
                return  # idle: the next request starts a new thread
            self._maintaining = True
            self._maintenance_due.clear()
            try:
                self.maintenance()
            except Exception:
                log.exception("pack maintenance failed in %s; will retry on a later commit", self.pack_dir)
            finally:
                self._maintaining = False

    def _install_pack(self, name: str, pack: bytes | list[bytes | memoryview], index: bytes) -> None:
        base = os.path.join(self.pack_dir, name)
        if os.path.exists(base + ".idx") and os.path.exists(base + ".pack"):
            return  # the same objects, already durable
        suffix = f"{os.getpid()}_{secrets.token_hex(6)}"
        tmp_pack = os.path.join(self.pack_dir, f"tmp_pack_{suffix}")
        tmp_idx = os.path.join(self.pack_dir, f"tmp_idx_{suffix}")
        try:
            _write_file(tmp_pack, pack, self.durable)
            _write_file(tmp_idx, index, self.durable)
            # The index appears last: a .pack with its .idx is complete, for git and for dulwich.
            os.replace(tmp_pack, base + ".pack")
            os.replace(tmp_idx, base + ".idx")
        finally:
            for leftover in (tmp_pack, tmp_idx):
                if os.path.exists(leftover):
                    os.unlink(leftover)
        if self.durable:
            self._directories.sync(self.pack_dir)
        # A small pack (a batch of transactions) is read from the bytes just written; a big one (a roll-up)
        # is mapped from its files rather than held in memory.
        small = isinstance(pack, bytes) and len(pack) <= KEPT_PACK_BYTES
        self._packs.add(name, (pack, index) if small else None)

    def _list_packs(self) -> list[tuple[str, int]]:
        """(basename, object count) of complete packs that may be rolled up (no .keep)."""
        names = set(os.listdir(self.pack_dir))
        packs = []
        for entry in names:
            if not entry.endswith(".pack"):
                continue
            base = entry[:-5]
            if base + ".idx" not in names or base + ".keep" in names:
                continue
            try:
                size = os.path.getsize(os.path.join(self.pack_dir, base + ".idx"))
            except FileNotFoundError:
                continue
            packs.append((base, max(1, (size - 8 - 1024 - 40) // 28)))
        return packs

    def refresh(self) -> None:
        self._packs.rescan()
        with self._objects_mutex:
            self._objects._update_pack_cache()

    def wait_for_maintenance(self, timeout: float = 30.0) -> bool:
        """Wait until no roll-up is pending or running (for tests and orderly shutdown)."""
        deadline = time.monotonic() + timeout
        while self._maintenance_due.is_set() or self._maintaining:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def maintenance(self) -> None:
        """Roll up the packs of every tier that has filled (see :func:`tier_to_roll_up`)."""
        if not tier_to_roll_up(self._list_packs()):
            return
        lease = self._lease("repack")
        fd = lease.try_hold()
        if fd is None:
            return  # another process is rolling up
        try:
            # A roll-up can fill the next tier: go on until no tier is full (a tier per round at most).
            for _ in range(MAX_ROLL_UP_ROUNDS):
                victims = tier_to_roll_up(self._list_packs())
                if not victims or not self._roll_up(victims):
                    break
        finally:
            os.close(fd)

    def _roll_up(self, victims: list[str]) -> bool:
        """Replace the packs ``victims`` (basenames) by one holding all their objects; False if one of them
        was removed meanwhile (by `git gc`?), to be tried again later."""
        if len(victims) < 2:
            return False
        whole = []
        for name in victims:
            try:
                read = read_whole_object_pack(os.path.join(self.pack_dir, name))
            except FileNotFoundError:
                return False  # removed under us (by `git gc`?): try again later
            if read is None:
                break
            whole.append(read)
        if len(whole) == len(victims):
            parts, index, checksum = concatenate_packs(whole)
            self._replace_packs(victims, "pack-" + checksum.hex(), parts, index)
            return True
        objects: list[tuple[ObjectId, int, bytes]] = []
        chunks: list[tuple[bytes, bytes, int]] = []
        for name in victims:
            base = os.path.join(self.pack_dir, name)
            try:
                copied = read_whole_object_chunks(base)
            except FileNotFoundError:
                return False  # removed under us (by `git gc`?): try again later
            if copied is not None:
                chunks.extend(copied)
                continue
            pack = Pack(base, object_format=self._objects.object_format)
            try:
                for hexsha in pack.index:  # dulwich yields hex ids here
                    type_num, raw = pack.get_raw(bytes.fromhex(hexsha.decode("ascii")))
                    objects.append((hexsha, type_num, raw))
            finally:
                pack.close()
        pack_bytes, index, checksum = encode_pack(objects, chunks)
        self._replace_packs(victims, "pack-" + checksum.hex(), pack_bytes, index)
        return True

    def _replace_packs(
        self, victims: list[str], new_name: str, pack: bytes | list[bytes | memoryview], index: bytes
    ) -> None:
        """Install a pack holding every object of ``victims``, then remove them."""
        self._install_pack(new_name, pack, index)
        present = set(os.listdir(self.pack_dir))
        for name in victims:
            if name == new_name:
                continue
            for suffix in (".idx", ".pack", ".rev", ".bitmap"):
                if name + suffix in present:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(self.pack_dir, name + suffix))
        self._packs.rescan()
        with self._objects_mutex:
            self._objects._update_pack_cache()

    def _remove_orphans(self) -> None:
        """Delete temporary packs of dead writers and packs that never got an index."""
        now = time.time()
        try:
            names = set(os.listdir(self.pack_dir))
        except FileNotFoundError:
            return
        for entry in names:
            path = os.path.join(self.pack_dir, entry)
            match = _TMP_PATTERN.match(entry)
            try:
                if (match and not pid_alive(int(match.group(1)))) or (
                    entry.endswith(".pack")
                    and entry[:-5] + ".idx" not in names
                    and now - os.stat(path).st_mtime > ORPHAN_GRACE_SECONDS
                ):
                    os.unlink(path)
            except FileNotFoundError:
                pass

    # -- refs ----------------------------------------------------------------------------------------------
    def _ref_path(self, name: str) -> str:
        parts = name.split("/")
        if not name or "\0" in name or any(part in ("", ".", "..") for part in parts):
            raise StoreError(f"invalid ref name {name!r}")
        return os.path.join(self.gitdir, *parts)

    def _lease(self, name: str) -> Lease:
        with self._leases_mutex:
            lease = self._leases.get(name)
            if lease is None:
                digest = hashlib.sha1(name.encode()).hexdigest()[:20]
                lease = Lease(os.path.join(self._private, "locks", digest))
                self._leases[name] = lease
            return lease

    def _packed_refs(self) -> dict[str, str]:
        path = os.path.join(self.gitdir, "packed-refs")
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return {}
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        cached = self._packed_refs_cache
        # A file rewritten within the filesystem's timestamp granularity, at the same size, in a reused
        # inode (pack-refs and deletions rewrite packed-refs in quick succession) has the same key: trust
        # the key only for a file older than that ("racily clean", as git says of its index).
        if cached is not None and cached[0] == key and time.time_ns() - st.st_mtime_ns > RACY_NS:
            return cached[1]
        refs: dict[str, str] = {}
        with open(path, "rb") as f:
            for line in f:
                if line.startswith((b"#", b"^")):
                    continue
                parts = line.strip().split(b" ", 1)
                if len(parts) == 2:
                    refs[parts[1].decode("utf-8", "surrogateescape")] = parts[0].decode("ascii")
        self._packed_refs_cache = (key, refs)
        return refs

    def read_ref(self, name: str) -> str | None:
        for _ in range(5):  # follow symbolic refs a few levels, as git does
            try:
                fd = os.open(self._ref_path(name), os.O_RDONLY | os.O_CLOEXEC)
            except (FileNotFoundError, NotADirectoryError):
                return self._packed_refs().get(name)
            except OSError as err:
                if err.errno == errno.ENAMETOOLONG:
                    return self._packed_refs().get(name)
                raise
            try:
                content = os.read(fd, 4096).strip()
            except IsADirectoryError:
                return self._packed_refs().get(name)
            finally:
                os.close(fd)
            if content.startswith(b"ref: "):
                name = content[5:].decode("utf-8", "surrogateescape")
                continue
            return content.decode("ascii") if content else None
        raise StoreError(f"symbolic ref loop at {name}")

    @contextmanager
    def locked(self, name: str) -> Iterator[None]:
        """Hold the ref's lease: no writer of this library, in any process, can move it meanwhile."""
        with self._lease(name).hold():
            yield

    def compare_and_swap(self, name: str, old: str | None, new: str | None, *, sync: bool = True) -> bool:
        durable = self.durable and sync
        path = self._ref_path(name)
        with self._lease(name).hold():
            lock_path = path + ".lock"
            # Creates the ref's directory too, again if `git pack-refs` removes it meanwhile.
            fd = create_git_lock(lock_path)
            renamed = False
            try:
                if self.read_ref(name) != old:
                    return False
                if new is None:
                    self._delete_ref(name, path, durable)
                    return True
                os.write(fd, new.encode("ascii") + b"\n")
                if durable:
                    os.fsync(fd)
                os.close(fd)
                fd = -1
                os.replace(lock_path, path)
                renamed = True
                if durable:
                    self._sync_ref_directory(os.path.dirname(path))
                return True
            finally:
                if fd >= 0:
                    os.close(fd)
                if not renamed:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(lock_path)

    def _delete_ref(self, name: str, path: str, durable: bool) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        packed_path = os.path.join(self.gitdir, "packed-refs")
        lock_path = packed_path + ".lock"
        # A `git pack-refs` that read the loose ref before the unlink writes it into packed-refs after: the
        # ref would come back. It holds packed-refs.lock from before it reads loose refs until its new
        # packed-refs is in place, so look at the lock first, then at packed-refs: if the lock is absent,
        # any pack-refs still to come starts after the unlink; if it was there, wait for it and look again.
        if os.path.exists(lock_path) or name in self._packed_refs():
            with self._lease("packed-refs").hold():
                fd = create_git_lock(lock_path)
                try:
                    try:
                        with open(packed_path, "rb") as f:
                            lines = f.readlines()
                    except FileNotFoundError:
                        lines = []
                    kept: list[bytes] = []
                    skip_peeled = False
                    for line in lines:
                        if line.startswith(b"^"):
                            if not skip_peeled:
                                kept.append(line)
                            continue
                        skip_peeled = line.rstrip(b"\n").endswith(b" " + name.encode())
                        if not skip_peeled:
                            kept.append(line)
                    if len(kept) < len(lines):  # else not packed after all: leave packed-refs alone
                        os.write(fd, b"".join(kept))
                        if durable:
                            os.fsync(fd)
                        os.close(fd)
                        fd = -1
                        os.replace(lock_path, packed_path)
                finally:
                    if fd >= 0:
                        os.close(fd)
                        os.unlink(lock_path)
        if durable:
            self._sync_ref_directory(os.path.dirname(path))

    def _sync_ref_directory(self, path: str) -> None:
        """fsync a directory under ``refs/``. Not through a descriptor kept open: `git pack-refs` removes
        empty ones, and one made again is another directory. If it is gone, the ref left it (deleted, or
        packed by git, which makes packed-refs durable itself): nothing is left to sync there."""
        with contextlib.suppress(FileNotFoundError):
            fsync_directory(path)

    def list_refs(self, prefix: str) -> dict[str, str]:
        # Loose refs first, then packed-refs: `git pack-refs` writes packed-refs before it removes the loose
        # files, so a ref it moves meanwhile is seen in one place or the other (the other order can miss it).
        loose: dict[str, str] = {}
        root = self._ref_path(prefix.rstrip("/"))
        for dirpath, _, files in os.walk(root):
            for file in files:
                if file.endswith(".lock"):
                    continue
                full = os.path.join(dirpath, file)
                name = os.path.relpath(full, self.gitdir).replace(os.sep, "/")
                value = self.read_ref(name)
                if value is not None:
                    loose[name] = value
        refs = {name: oid for name, oid in self._packed_refs().items() if name.startswith(prefix)}
        refs.update(loose)
        return refs

    def symbolic_head(self) -> str | None:
        try:
            with open(os.path.join(self.gitdir, "HEAD"), "rb") as f:
                content = f.read().strip()
        except FileNotFoundError:
            return None
        if content.startswith(b"ref: "):
            return content[5:].decode("utf-8", "surrogateescape")
        return None

    def close(self) -> None:
        self._closed = True
        self._maintenance_due.set()
        maintainer = self._maintainer
        if maintainer is not None and maintainer is not threading.current_thread():
            maintainer.join(timeout=30)
        self._objects.close()
        self._packs.close()
        self._directories.close()
        with self._leases_mutex:
            for lease in self._leases.values():
                lease.close()
