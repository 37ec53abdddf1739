"""Roll-ups with deltas: git's own delta search over the objects of the packs being rolled up.

A commit rewrites every tree on the path to what it changed, so most of a repository is versions of the same
few directories, each one entry apart from the last. Packs written per batch hold them whole (compressing
them would cost the committing thread, and ids do not compress). Compaction happens where the objects are
copied anyway: the roll-ups of :mod:`store.disk_objects`. Once a roll-up makes a pack of
``DELTA_TIER`` or more, ``git pack-objects --stdin-packs`` writes it: it packs exactly the objects of the
packs it is given (reachable or not: nothing a writer is about to name is dropped), names them by walking the
commits among them (git's delta search pairs versions of one path by that name) and stores each as a zlib
stream or an offset delta against a version of the same path, chains at most ``DELTA_DEPTH`` long.

Measured on the 10,000-operation history (193,063 objects, 336 MB as written): zlib alone made 270 MB;
deltas without path names 192 MB; ``--stdin-packs`` 25.1 MB in ~9 s, as small as the same objects named by
their paths (``git rev-list --objects``, as ``git repack -adf`` does): 24.9 MB.

git reuses what a pack it is given already holds: a delta, or a whole object, which it then never tries as a
delta against another whole object of the same pack (it assumes whoever wrote the pack did). That is true of
its own packs, not of ours: packs of whole objects only are therefore recompressed (``--no-reuse-object``),
and packs git wrote have their deltas reused (a roll-up then costs little more than a copy). A roll-up of
both kinds runs git twice: the whole-object packs on their own first, then the result with the others.

One git runs at a time. While it does, the tiers below go on being concatenated (writers faster than git
never pile up packs), but only packs of whole objects, in tiers of their own: inflating git's deltas back
would undo its work. Those concatenated packs are git's next work (:meth:`DeltaCensus.backlog`), before they
are rolled up with packs whose objects git reuses; and so are the whole-object packs of the lowest tiers
once they hold ``1 / WHOLE_SHARE`` of the pack bytes, as `git gc --auto` packs loose objects. Before these
rules a repository of a few thousand commits took 8x to 12x `git repack -adf` of it, its biggest packs
concatenated (or inflated back) while git was busy, and never searched for deltas again.

Crash safety: git writes into a scratch directory of this process (its temporary files too); the pack is
moved into ``objects/pack`` (fsynced, its index last, as every pack here) and only then are the packs it
replaces removed. A crash leaves either the old packs, or the old and the new (the same objects twice,
rolled up again later), and a scratch directory removed by the next process that opens the repository.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import re
import secrets
import shutil
import struct
import subprocess

from store.locks import pid_alive

ROLL_UP_FANOUT = 16  # packs of one tier rolled into one of the next (tiers: object counts, powers of 16)
DELTA_TIER = 2  # roll-ups into a pack of 16**2 = 256 objects or more make deltas (about every 16 commits)
WHOLE_SHARE = 8  # whole-object packs are compressed once they hold 1/8 of the pack bytes (below: 1.14x)
DELTA_DEPTH = 50  # git's default: the hot-path reader (store.packs) resolves chains up to MAX_CHAIN
DELTA_WINDOW = 10
ROLL_UP_NICENESS = 10  # the roll-up competes with writers for the CPU: they go first
SCRATCH = "roll-up"  # under <gitdir>/gitstore: one directory per running roll-up, <pid>_<random>
_SCRATCH_PATTERN = re.compile(r"^(\d+)_[0-9a-f]+$")


class RollUpFailed(Exception):
    """git could not write the rolled-up pack (a victim removed under it, git missing, ...)."""


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


def git_available() -> bool:
    """Whether the git CLI is there to roll packs up with deltas (without it, packs are concatenated)."""
    return shutil.which("git") is not None


def pack_has_deltas(base: str) -> bool:
    """Whether the pack at ``base`` (no extension) stores any object as a delta (git wrote it).

    Reads one byte per object until the first delta: git writes bases before their deltas, so a pack of
    git's is told after a few objects, a pack of whole objects (ours) after one pass over its index.
    """
    with open(base + ".idx", "rb") as f_idx, open(base + ".pack", "rb") as f_pack:
        if os.fstat(f_idx.fileno()).st_size == 0 or os.fstat(f_pack.fileno()).st_size == 0:
            return False
        with (
            mmap.mmap(f_idx.fileno(), 0, access=mmap.ACCESS_READ) as index,
            mmap.mmap(f_pack.fileno(), 0, access=mmap.ACCESS_READ) as pack,
        ):
            if index[:8] != b"\377tOc\x00\x00\x00\x02":
                return True  # not an index we read: let git treat it as its own
            count = struct.unpack_from(">L", index, 8 + 255 * 4)[0]
            offsets_at = 8 + 1024 + 24 * count
            large_at = offsets_at + 4 * count
            for offset in struct.unpack_from(f">{count}L", index, offsets_at):
                if offset & 0x80000000:
                    offset = struct.unpack_from(">Q", index, large_at + 8 * (offset & 0x7FFFFFFF))[0]
                if (pack[offset] >> 4) & 7 in (6, 7):
                    return True
    return False


class DeltaCensus:
    """Which packs of a directory store deltas, which ones git wrote (searched for deltas), and which ones
    git should compress next.

    Args:
        pack_dir: The repository's ``objects/pack``.
    """

    def __init__(self, pack_dir: str) -> None:
        self.pack_dir = pack_dir
        self._deltas_in: dict[str, bool] = {}  # a pack's name is its checksum: its contents never change
        self._by_git: set[str] = set()

    def has_deltas(self, name: str) -> bool:
        """Whether the pack ``name`` stores deltas (True if it is gone: nothing to concatenate)."""
        found = self._deltas_in.get(name)
        if found is None:
            try:
                found = pack_has_deltas(os.path.join(self.pack_dir, name))
            except FileNotFoundError:
                return True
            self._deltas_in[name] = found
        return found

    def unsearched(self, name: str) -> bool:
        """Whether the pack ``name`` holds whole objects that git never searched for deltas (ours)."""
        return name not in self._by_git and not self.has_deltas(name)

    def searched(self, name: str) -> None:
        """Record that git wrote the pack ``name`` (it stores deltas wherever git found any)."""
        self._by_git.add(name)

    def forget(self, name: str) -> None:
        """Drop what is known of a pack that was removed."""
        self._deltas_in.pop(name, None)
        self._by_git.discard(name)

    def backlog(self, deltas: bool, packs: list[tuple[str, int]]) -> list[str]:
        """The packs git should compress when it has no roll-up to do: whole-object packs of the delta
        tiers (concatenated while it was busy, or written before roll-ups made deltas), else every
        whole-object pack once they hold ``DELTA_TIER`` objects and more than ``1 / WHOLE_SHARE`` of the
        pack bytes (as `git gc --auto` packs loose objects), which bounds their share of a small repository.

        git does not look for deltas between whole objects of one pack whose objects it reuses, so these are
        compressed on their own before any roll-up that reuses what its packs hold.

        Args:
            deltas: Whether roll-ups make deltas (git is there): if not, there is nothing to do.
            packs: (basename, object count) of the packs to consider.
        """
        if not deltas:
            return []
        whole = [(name, count) for name, count in packs if self.unsearched(name)]
        big = [name for name, count in whole if pack_tier(count) >= DELTA_TIER]
        if big or pack_tier(sum(count for _, count in whole)) < DELTA_TIER:
            return big
        sizes = {name: self._size(name) for name, _ in packs}
        whole_bytes = sum(sizes[name] for name, _ in whole)
        return [name for name, _ in whole] if whole_bytes * WHOLE_SHARE > sum(sizes.values()) else []

    def _size(self, name: str) -> int:
        try:
            return os.path.getsize(os.path.join(self.pack_dir, name + ".pack"))
        except FileNotFoundError:
            return 0


def scratch_directory(gitdir: str) -> str:
    """A new scratch directory for one roll-up, named after this process, with an object directory of its
    own: git's temporary files go there rather than into the repository's ``objects/pack``."""
    path = os.path.join(gitdir, "gitstore", SCRATCH, f"{os.getpid()}_{secrets.token_hex(6)}")
    os.makedirs(os.path.join(path, "objects", "pack"))
    return path


def remove_scratch(gitdir: str) -> None:
    """Delete the scratch directories of roll-ups whose process died (its git may still be running: it then
    fails, and writes nothing outside the directory)."""
    root = os.path.join(gitdir, "gitstore", SCRATCH)
    with contextlib.suppress(FileNotFoundError):
        for entry in os.listdir(root):
            match = _SCRATCH_PATTERN.match(entry)
            if match and not pid_alive(int(match.group(1))):
                shutil.rmtree(os.path.join(root, entry), ignore_errors=True)


def git_pack_objects(
    gitdir: str, victims: list[str], scratch: str, recompress: bool, threads: int | None = 1
) -> str:
    """Write one pack holding every object of the packs ``victims`` (basenames) into ``scratch``.

    Args:
        gitdir: The repository (git reads the victims from its ``objects/pack``).
        victims: The packs to roll up.
        scratch: An empty directory of this roll-up, on the repository's filesystem.
        recompress: Deflate and search deltas for every object (packs of whole objects); else reuse what the
            victims hold.
        threads: git's delta search threads (None: one per CPU; one leaves the other CPUs to writers).

    Returns:
        The new pack's basename (``pack-<checksum>``); its files are in ``scratch``.

    Raises:
        RollUpFailed: git failed (e.g. a victim was removed by `git gc` meanwhile).
    """
    # git dies with the thread that runs it (a killed roll-up leaves no git writing into its scratch
    # directory, which the next process to open the repository removes).
    setpriv = shutil.which("setpriv")
    argv = [
        *([setpriv, "--pdeathsig", "KILL"] if setpriv else []),
        "git",
        "-C",
        gitdir,
        "-c",
        "pack.writeReverseIndex=false",
        "pack-objects",
        "-q",
        "--stdin-packs",
        "--delta-base-offset",
        f"--window={DELTA_WINDOW}",
        f"--depth={DELTA_DEPTH}",
    ]
    if threads is not None:
        argv.append(f"--threads={threads}")
    if recompress:
        argv.append("--no-reuse-object")
    argv.append(os.path.join(scratch, "pack"))
    # git reads the victims through an alternate and writes (its temporary files too) into the scratch's own
    # object directory: a roll-up killed at any moment leaves nothing in the repository's objects/pack.
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("GIT_DIR", "GIT_COMMON_DIR", "GIT_WORK_TREE")},
        "GIT_OBJECT_DIRECTORY": os.path.join(scratch, "objects"),
        "GIT_ALTERNATE_OBJECT_DIRECTORIES": os.path.abspath(os.path.join(gitdir, "objects")),
    }
    try:
        process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
    except OSError as err:
        raise RollUpFailed(f"cannot run git: {err}") from err
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, process.pid, ROLL_UP_NICENESS)
    out, err = process.communicate("".join(f"{name}.pack\n" for name in victims).encode())
    checksum = out.decode().strip()
    if process.returncode != 0 or not re.fullmatch(r"[0-9a-f]{40}", checksum):
        raise RollUpFailed(f"git pack-objects exited {process.returncode}: {err.decode().strip()[-300:]}")
    return "pack-" + checksum


def install_pack_files(scratch: str, written: str, pack_dir: str, name: str, durable: bool) -> None:
    """Move the pack git wrote (``scratch``/pack-<checksum>.*) into ``pack_dir`` as ``name``.

    The files are fsynced first (git fsyncs packs by default, but its configuration may say otherwise),
    the index moved last: a .pack with its .idx is complete, for git and for dulwich.
    """
    source = os.path.join(scratch, written)
    target = os.path.join(pack_dir, name)
    for suffix in (".pack", ".idx"):
        if durable:
            fd = os.open(source + suffix, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    if not (os.path.exists(target + ".idx") and os.path.exists(target + ".pack")):
        os.replace(source + ".pack", target + ".pack")
        os.replace(source + ".idx", target + ".idx")
