"""Objects on disk: written as fsynced packs, one per batch, and rolled up in tiers.

Each batch of new objects (one transaction, or a group of them) becomes one small pack written to a
temporary file, fsynced, and renamed into place, before any ref points at it. Packs are rolled up in tiers
(size-tiered compaction, as LSM trees do): when sixteen packs share a tier of object counts, they become one
pack of the next tier. An object is then copied about once per tier (log16 of the repository's size) instead
of once per doubling, and the pack count stays small (under 16 per tier) for git and for lookups. Small
roll-ups concatenate packs; git writes those into tier ``DELTA_TIER`` and above, and compresses the packs
concatenated while it was busy: versions of a tree become deltas of one another (:mod:`store.rollup`).

Reads go to :class:`store.packs.PackSet` first (whole objects and offset delta chains), then to dulwich
(loose objects, ref deltas, alternates).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Iterable

from dulwich.object_store import DiskObjectStore
from dulwich.pack import Pack

from store.backend import ObjectStore
from store.group import GroupCommit, Waiter
from store.locks import DirectorySyncer, Leases, pid_alive
from store.objects import ObjectId
from store.packfile import concatenate_packs, encode_pack, read_whole_object_chunks, read_whole_object_pack
from store.packs import PackSet
from store.rollup import (
    DELTA_TIER,
    ROLL_UP_FANOUT,
    DeltaCensus,
    RollUpFailed,
    git_available,
    git_pack_objects,
    install_pack_files,
    pack_tier,
    remove_scratch,
    scratch_directory,
    tier_to_roll_up,
)

# Temporary names must not end in .pack/.idx: readers would take a half-written pair for a pack.
_TMP_PATTERN = re.compile(r"^tmp_(?:pack|idx)_(\d+)_[0-9a-f]+$")
MAINTENANCE_EVERY = 8
MAX_ROLL_UP_ROUNDS = 16
ORPHAN_GRACE_SECONDS = 600.0
KEPT_PACK_BYTES = 1 << 20  # packs up to this size are read from the bytes written, not mapped again

log = logging.getLogger(__name__)


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


class DiskObjects(ObjectStore):
    """The objects of a git repository on disk; the twin of :class:`store.backend.MemoryObjects`.

    Args:
        gitdir: The repository's git directory.
        leases: The repository's leases (its "repack" lease keeps roll-ups to one process at a time).
        durable: fsync packs (and their directory) before a write returns.
    """

    def __init__(self, gitdir: str, leases: Leases, durable: bool = True) -> None:
        super().__init__()
        self.gitdir = gitdir
        self.durable = durable
        self.deltas = git_available()  # roll-ups into DELTA_TIER and above make deltas (with git)
        self._leases = leases
        self._dulwich = DiskObjectStore(os.path.join(gitdir, "objects"))
        # A multi-pack-index written by `git` would be stale after our next pack; don't consult it.
        self._dulwich._use_midx = False
        self.pack_dir = os.path.join(gitdir, "objects", "pack")
        os.makedirs(self.pack_dir, exist_ok=True)
        self._directories = DirectorySyncer()
        self._packs = PackSet(self.pack_dir)
        self._objects_mutex = threading.Lock()
        # A pack write is short: its leader writes until nothing is queued rather than wake another thread.
        self._pack_writes: GroupCommit[_PendingWrite] = GroupCommit(self._write_batch, hand_off=False)
        self._writes_since_maintenance = 0
        self._maintenance_due = threading.Event()
        self._maintainer: threading.Thread | None = None
        self._maintaining = False
        self._deltifying: set[str] = set()  # the packs a deltifier thread is rolling up
        self._census = DeltaCensus(self.pack_dir)
        self._deltifier: threading.Thread | None = None
        self._closed = False
        self._remove_orphans()
        remove_scratch(gitdir)
        self._packs.rescan()

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
                self._dulwich._update_pack_cache()
            try:
                return self._dulwich_get_raw(oid)
            except KeyError:
                continue
        raise KeyError(oid)

    def _dulwich_get_raw(self, oid: ObjectId) -> tuple[int, bytes]:
        # dulwich refreshes its pack cache on a miss, without a lock of its own: two refreshes at once (a
        # reader's and a roll-up's) both drop a vanished pack, and the second fails with a KeyError.
        with self._objects_mutex:
            return self._dulwich.get_raw(oid)

    def contains(self, oid: ObjectId) -> bool:
        with self._objects_mutex:
            if oid in self._dulwich:
                return True
        try:
            self.get_raw(oid)
        except KeyError:
            return False
        return True

    def find_prefix(self, prefix: str) -> list[ObjectId]:
        with self._objects_mutex:
            return list(self._dulwich.iter_prefix(prefix.encode("ascii")))

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
                with self._objects_mutex:  # idle: the next request starts a new thread, also right now
                    if not self._maintenance_due.is_set():
                        self._maintainer = None
                        return
                continue
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

    def _list_packs(self, every: bool = False) -> list[tuple[str, int]]:
        """(basename, object count) of complete packs that may be rolled up (no .keep), but for those a
        deltifier is rolling up (unless ``every``)."""
        names = set(os.listdir(self.pack_dir))
        busy = set() if every else self._deltifying
        packs = []
        for entry in names:
            if not entry.endswith(".pack"):
                continue
            base = entry[:-5]
            if base + ".idx" not in names or base + ".keep" in names or base in busy:
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
            self._dulwich._update_pack_cache()

    def wait_for_maintenance(self, timeout: float = 30.0) -> bool:
        """Wait until no roll-up is pending or running (for tests and orderly shutdown)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._objects_mutex:
                if not (self._maintenance_due.is_set() or self._maintaining or self._deltifying):
                    return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)

    def maintenance(self) -> None:
        """Roll up the packs of every tier that has filled (see :func:`tier_to_roll_up`); have git compress
        the whole-object packs left meanwhile (see :meth:`DeltaCensus.backlog`)."""
        packs = self._list_packs()
        if not tier_to_roll_up(packs) and (self._deltifying or not self._census.backlog(self.deltas, packs)):
            return
        lease = self._leases.get("repack")
        fd = lease.try_hold()
        if fd is None:
            return  # another process is rolling up
        try:
            # A roll-up can fill the next tier: go on until no tier is full (a tier per round at most).
            for _ in range(MAX_ROLL_UP_ROUNDS):
                packs = self._list_packs()  # without the packs a deltifier is rolling up
                victims = tier_to_roll_up(packs)
                objects = sum(count for name, count in packs if name in victims)
                if self.deltas and (
                    not victims
                    or pack_tier(objects) >= DELTA_TIER
                    or any(self._census.has_deltas(name) for name in victims)  # never inflated back
                ):
                    # git's work: a roll-up into the delta tiers, else whole-object packs left meanwhile.
                    job = victims or self._census.backlog(self.deltas, packs)
                    if job and self._start_deltifier(job):
                        continue
                    # The deltifier is busy (its git takes seconds): concatenate meanwhile (writers faster
                    # than git never pile up packs), whole-object packs only, in tiers of their own.
                    whole = [(name, count) for name, count in packs if not self._census.has_deltas(name)]
                    victims = tier_to_roll_up(whole)
                    objects = sum(count for name, count in whole if name in victims)
                if not victims or not self._roll_up(victims, objects, deltas=False):
                    break
        finally:
            os.close(fd)

    def _start_deltifier(self, victims: list[str]) -> bool:
        """Roll ``victims`` up with deltas in a thread of their own; False if one is running already."""
        with self._objects_mutex:
            if self._deltifying or self._closed:
                return False
            self._deltifying = set(victims)
        self._deltifier = threading.Thread(target=self._deltify, args=(victims,), name="store-pack-deltas")
        self._deltifier.daemon = True
        self._deltifier.start()
        return True

    def _deltify(self, victims: list[str]) -> None:
        """Roll ``victims`` up with git: first those of whole objects that git never searched, on their own
        (unless they are single batches), then the result with the others, whose deltas git reuses (little
        more than a copy). Each step replaces packs as any roll-up does (crash-safe)."""
        done = False
        try:
            counts = dict(self._list_packs(every=True))
            whole = [name for name in victims if name in counts and self._census.unsearched(name)]
            rest = [name for name in victims if name not in whole]
            if whole and (not rest or any(counts[name] >= ROLL_UP_FANOUT for name in whole)):
                written = self._git_roll_up(whole, recompress=True)
                if written is None:
                    return
                rest.append(written)
            done = len(rest) < 2 or self._git_roll_up(rest, recompress=False) is not None
        except Exception:
            log.exception("roll-up with deltas failed in %s; will retry on a later commit", self.pack_dir)
        finally:
            # Both at once (wait_for_maintenance sees one); after a failure, the next commits' retry it.
            with self._objects_mutex:
                self._deltifying = set()
                if done:
                    self._maintenance_due.set()
            if done:
                self._request_maintenance()

    def compact(self, threads: int | None = None) -> bool:
        """Roll every pack up into one, compressed and deltified by git's delta search over all objects.

        For repositories written before roll-ups made deltas (their big packs hold whole objects, and the
        tiers would not roll them up again for a long while); it is safe beside writers (their new packs are
        left as they are) and readers (in this process or others). Waits for a roll-up running elsewhere.

        Args:
            threads: git's delta search threads (None: one per CPU).

        Returns:
            False if there was nothing to compact, or git is missing.
        """
        if not self.deltas:
            return False
        with self._leases.get("repack").hold(timeout=3600.0):
            while self._deltifying:  # no new one starts: it needs the lease
                time.sleep(0.01)
            victims = [name for name, _ in self._list_packs()]
            if not victims:
                return False
            return self._git_roll_up(victims, recompress=True, threads=threads) is not None

    def _roll_up(self, victims: list[str], objects: int | None = None, deltas: bool | None = None) -> bool:
        """Replace the packs ``victims`` (basenames, holding about ``objects`` objects: counted if None) by
        one holding all their objects, with deltas if ``deltas`` (None: from ``DELTA_TIER`` up, if git is
        there); False if one of them was removed meanwhile (by `git gc`?), to be tried again later."""
        if len(victims) < 2:
            return False
        if objects is None:
            objects = sum(count for name, count in self._list_packs(every=True) if name in victims)
        if (self.deltas if deltas is None else deltas) and pack_tier(objects) >= DELTA_TIER:
            recompress = not any(self._census.has_deltas(name) for name in victims)
            return self._git_roll_up(victims, recompress) is not None
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
            pack = Pack(base, object_format=self._dulwich.object_format)
            try:
                for hexsha in pack.index:  # dulwich yields hex ids here
                    type_num, raw = pack.get_raw(bytes.fromhex(hexsha.decode("ascii")))
                    objects.append((hexsha, type_num, raw))
            finally:
                pack.close()
        pack_bytes, index, checksum = encode_pack(objects, chunks)
        self._replace_packs(victims, "pack-" + checksum.hex(), pack_bytes, index)
        return True

    def _git_roll_up(self, victims: list[str], recompress: bool, threads: int | None = 1) -> str | None:
        """Replace ``victims`` by one pack written by git (see :mod:`store.rollup`); its name, or None if git
        failed."""
        scratch = scratch_directory(self.gitdir)
        try:
            try:
                written = git_pack_objects(self.gitdir, victims, scratch, recompress, threads)
            except RollUpFailed as err:
                log.warning("roll-up of %d packs in %s failed: %s", len(victims), self.pack_dir, err)
                return None
            with self._objects_mutex:
                self._census.searched(written)
                if self._deltifying:
                    self._deltifying.add(written)  # the deltifier's next step may roll it up: leave it be
            install_pack_files(scratch, written, self.pack_dir, written, self.durable)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        if self.durable:
            self._directories.sync(self.pack_dir)
        self._packs.add(written)
        self._remove_packs(victims, written)
        return written

    def _replace_packs(
        self, victims: list[str], new_name: str, pack: bytes | list[bytes | memoryview], index: bytes
    ) -> None:
        """Install a pack holding every object of ``victims``, then remove them."""
        self._install_pack(new_name, pack, index)
        self._remove_packs(victims, new_name)

    def _remove_packs(self, victims: list[str], new_name: str) -> None:
        """Remove the packs ``victims`` once ``new_name``, which holds all their objects, is in place."""
        present = set(os.listdir(self.pack_dir))
        for name in victims:
            if name == new_name:
                continue
            for suffix in (".idx", ".pack", ".rev", ".bitmap"):
                if name + suffix in present:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(self.pack_dir, name + suffix))
            self._census.forget(name)
        self._packs.rescan()
        with self._objects_mutex:
            self._dulwich._update_pack_cache()

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

    def close(self) -> None:
        self._closed = True
        self._maintenance_due.set()
        maintainer = self._maintainer
        if maintainer is not None and maintainer is not threading.current_thread():
            maintainer.join(timeout=30)
        deltifier = self._deltifier
        if deltifier is not None and deltifier is not threading.current_thread():
            deltifier.join(timeout=30)
        self._dulwich.close()
        self._packs.close()
        self._directories.close()
