"""Refs on disk: git's loose refs and ``packed-refs``, moved with git's lock-file protocol.

A ref moves by an O_EXCL ``<ref>.lock`` renamed over the ref, as git does, so the git CLI and this library
can share a repository. Each move is taken under an ``flock`` lease first (see :mod:`store.locks`): the
kernel drops it when its holder dies, so a ``.lock`` left by a killed process is recognised and recovered
instead of blocking every later writer.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from store.backend import RefStore
from store.errors import StoreError
from store.locks import Leases, create_git_lock, fsync_directory

RACY_NS = 1_000_000_000  # a packed-refs younger than this is read again rather than taken from the cache


class DiskRefs(RefStore):
    """The refs of a git repository on disk; the twin of :class:`store.backend.MemoryRefs`.

    Args:
        gitdir: The repository's git directory.
        leases: The repository's leases (one per ref, and one for ``packed-refs``).
        durable: fsync a moved ref (and its directory) before returning.
    """

    def __init__(self, gitdir: str, leases: Leases, durable: bool = True) -> None:
        self.gitdir = gitdir
        self.durable = durable
        self._leases = leases
        self._packed_refs_cache: tuple[tuple[int, int, int], dict[str, str]] | None = None

    def _ref_path(self, name: str) -> str:
        parts = name.split("/")
        if not name or "\0" in name or any(part in ("", ".", "..") for part in parts):
            raise StoreError(f"invalid ref name {name!r}")
        return os.path.join(self.gitdir, *parts)

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
        with self._leases.get(name).hold():
            yield

    def compare_and_swap(self, name: str, old: str | None, new: str | None, *, sync: bool = True) -> bool:
        durable = self.durable and sync
        path = self._ref_path(name)
        with self._leases.get(name).hold():
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
            with self._leases.get("packed-refs").hold():
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
