"""Parsed records kept on disk across processes, each beside the id of the content it was parsed from.

A cold ``vm list`` or ``reconcile`` at 10,000 VMs spent most of its time validating every VM's files and
every domain file with pydantic, although almost none changed since the last command. A
:class:`ContentCache` keeps, per name (a VM's or domain's uuid), the last parsed object and the key of what
it was parsed from (git object ids, a digest of a file's bytes): a caller uses a kept object only when its
key equals the key of what it would parse now, so a kept object is exactly what parsing would give.

It is derived data, safe to delete at any time (the next full read writes it again):

- one file per shard of names (their first two characters), so that a change to one VM rewrites ~1/256 of
  the cache, and reading one VM loads one shard;
- each file starts with a header naming the format and a *version*: a digest of the source of the modules
  that define the records and their parsing, of Python's and pydantic's versions. A file of another version
  (older code, another interpreter), a damaged file (its digest does not match), or one another user could
  have written is ignored, and replaced by the next full read;
- the body is a pickle: it restores the very objects parsing made (enums, UUIDs, nested models) at ~20 µs a
  VM, where validating one costs ~300 µs. Pickles run code when loaded, so a file is loaded only when it is
  owned by this user and writable by no one else, in a directory writable by no one else: the trust already
  given to the repository's and the simulator's own files.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import os
import pickle
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Hashable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pydantic

MAGIC = b"git-toolstack content cache 1\n"
_DIGEST = 32
STALE_TEMP_SECONDS = 3600

Entry = tuple[Hashable, Any]


def code_version(modules: Iterable[str]) -> bytes | None:
    """A digest of the source of ``modules`` (by name, imported), Python's and pydantic's versions: files
    written under another version are ignored. None when a module's source cannot be read (no cache)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{sys.version_info[:2]} {pydantic.VERSION}".encode())
    for name in modules:
        try:
            with open(sys.modules[name].__file__ or "", "rb") as source:
                digest.update(name.encode() + b"\0" + source.read())
        except (KeyError, OSError):
            return None
    return digest.digest()


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """Keep the cyclic collector off a bulk load, and off what it loaded afterwards.

    A load allocates only long-lived objects (10,000 VMs: ~1M), and each full collection walks them all:
    a cold ``vm list`` spent as much time in the collector as in the rest of its work. They are frozen
    (``gc.freeze``) instead: still freed by reference counting when dropped, never walked again. The
    price: a garbage cycle that exists at that moment is never collected; a process loads each shard
    once, so this happens a bounded number of times, early.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def _trusted(st: os.stat_result) -> bool:
    """Owned by this user and writable by no one else."""
    return st.st_uid == os.geteuid() and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


class ContentCache:
    """Objects by name, each with the key of the content it was parsed from, in the files of ``directory``.

    Safe to share between threads and processes: files are replaced by a rename, so a reader sees a whole
    old or new shard; two writers of one shard both write exact entries and the last rename wins.

    Args:
        directory: Where the shard files live (created on first write); None keeps nothing on disk.
        version: The code's version (:func:`code_version`); None keeps nothing on disk.
    """

    def __init__(self, directory: str | Path | None, version: bytes | None) -> None:
        self.directory = None if directory is None or version is None else str(directory)
        self._header = MAGIC + (version or b"")
        self._lock = threading.Lock()
        # Per shard loaded or written: the keys the file holds, by name (what a sync compares to).
        self._on_disk: dict[str, dict[str, Hashable]] = {}
        self._loaded: dict[str, Entry] = {}

    @staticmethod
    def shard(name: str) -> str:
        """The shard ``name`` is kept in."""
        prefix = name[:2]
        return prefix if len(prefix) == 2 and prefix.isalnum() and prefix.isascii() else "__"

    def get(self, name: str) -> Entry | None:
        """The (key, object) kept for ``name`` on disk, if any; the caller compares the key."""
        if self.directory is None:
            return None
        shard = self.shard(name)
        if shard not in self._on_disk:
            self._load(shard)
        # Taken, not kept: the caller keeps what it uses, and an object it replaced is not held here.
        return self._loaded.pop(name, None)

    def _load(self, shard: str) -> None:
        entries = self._read(shard)
        with self._lock:
            if shard in self._on_disk:
                return  # another thread loaded it meanwhile
            self._on_disk[shard] = {name: key for name, (key, _) in entries.items()}
            self._loaded.update(entries)

    def _read(self, shard: str) -> dict[str, Entry]:
        """A shard file's entries; none when it is missing, foreign, damaged or untrusted."""
        assert self.directory is not None
        try:
            if not _trusted(os.stat(self.directory)):
                return {}
            fd = os.open(os.path.join(self.directory, shard), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return {}
        with os.fdopen(fd, "rb") as file:
            if not _trusted(os.fstat(fd)):
                return {}
            data = file.read()
        header = self._header
        body = data[len(header) + _DIGEST :]
        if data[: len(header)] != header or data[len(header) : len(header) + _DIGEST] != _digest(body):
            return {}
        try:
            with _no_gc():
                entries = pickle.loads(body)
        except Exception:  # a file that does not load is no cache: the next full read rewrites it
            return {}
        if not isinstance(entries, dict):
            return {}
        return {
            name: entry for name, entry in entries.items() if isinstance(entry, tuple) and len(entry) == 2
        }

    def sync(self, entries: Mapping[str, Entry]) -> None:
        """Make the files hold ``entries`` (every name's, after a full read): only the shards whose keys
        differ from what their files hold are written, and those of names that are all gone removed.

        Failing to write is not an error (the cache is only a shortcut): what is not written is parsed again.
        """
        if self.directory is None:
            return
        by_shard: dict[str, dict[str, Entry]] = {}
        for name, entry in entries.items():
            by_shard.setdefault(self.shard(name), {})[name] = entry
        try:
            names = os.listdir(self.directory)
        except OSError:
            names = []
        present = {name for name in names if not name.startswith(".")}
        self._drop_stale_temps(name for name in names if name.startswith("."))
        for shard in sorted(set(by_shard) | present):
            wanted = by_shard.get(shard, {})
            keys = {name: key for name, (key, _) in wanted.items()}
            if self._on_disk.get(shard) == keys and (shard in present) == bool(keys):
                continue  # the file holds these very keys already
            try:
                self._write(shard, wanted)
            except Exception:  # a full disk, an object pickle refuses: that shard is parsed again
                continue
            with self._lock:
                self._on_disk[shard] = keys

    def _drop_stale_temps(self, temps: Iterable[str]) -> None:
        """Remove the temporary files of writers that died before their rename (an hour old: no writer
        takes that long), so that the directory never grows past its shards."""
        assert self.directory is not None
        for name in temps:
            path = os.path.join(self.directory, name)
            with contextlib.suppress(OSError):
                if time.time() - os.lstat(path).st_mtime > STALE_TEMP_SECONDS:
                    os.unlink(path)

    def _write(self, shard: str, entries: dict[str, Entry]) -> None:
        assert self.directory is not None
        path = os.path.join(self.directory, shard)
        if not entries:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        body = pickle.dumps(entries, protocol=pickle.HIGHEST_PROTOCOL)
        fd, temp = tempfile.mkstemp(prefix=f".{shard}.", dir=self.directory)  # mode 0600
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(self._header + _digest(body) + body)
            # No fsync: after a crash a torn file fails its digest and is rewritten; no entry is ever wrong.
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise


def _digest(body: bytes) -> bytes:
    return hashlib.blake2b(body, digest_size=_DIGEST).digest()
