"""File locks that survive their owner's death.

Git's own protocol for updating a ref is an O_EXCL "<ref>.lock" file renamed over the ref. A process killed
while holding one leaves it behind and blocks every later writer, git's included. We therefore take an
``flock`` lease first: the kernel releases it when its holder dies, so a ``.lock`` file found while we hold
the lease belongs either to a git CLI process (held for milliseconds) or to a dead writer, and its age tells
which.
"""

from __future__ import annotations

import errno
import hashlib
import os
import threading
import time
import types
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from store.errors import LockTimeout

STALE_LOCK_SECONDS = 2.0
LOCK_TIMEOUT_SECONDS = 30.0
# How often a lock file's directory is created again when something (`git pack-refs`, `git gc`) removes it
# between its creation and the lock's, as git's raceproof_create_file() does.
DIRECTORY_RACE_ATTEMPTS = 8


def _fcntl() -> types.ModuleType:
    """The ``fcntl`` module, imported on first use: only the disk backend takes leases, and platforms the
    in-memory store runs on (Pyodide, in a browser) have no ``fcntl``."""
    import fcntl

    return fcntl


def fsync_directory(path: str) -> None:
    """Make a rename or a new file in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DirectorySyncer:
    """fsyncs directories through descriptors kept open (a directory's descriptor stays valid across the
    renames made in it)."""

    def __init__(self) -> None:
        self._fds: dict[str, int] = {}
        self._mutex = threading.Lock()

    def sync(self, path: str) -> None:
        fd = self._fds.get(path)
        if fd is None:
            with self._mutex:
                fd = self._fds.get(path)
                if fd is None:
                    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                    if len(self._fds) < 64:
                        self._fds[path] = fd
                    else:
                        try:
                            os.fsync(fd)
                        finally:
                            os.close(fd)
                        return
        os.fsync(fd)

    def close(self) -> None:
        with self._mutex:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()


class Lease:
    """An exclusive ``flock`` on a file, shared by threads of one process through a mutex.

    Args:
        path: The lease file; created if missing, never deleted (deleting it would let two holders in).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._mutex = threading.RLock()
        self._depth = 0  # re-entries by the thread that holds the lease
        self._fd = -1  # kept open: taking the lease is then one flock call

    @contextmanager
    def hold(self, timeout: float = LOCK_TIMEOUT_SECONDS) -> Iterator[None]:
        """Hold the lease (re-entrant within a thread); raises LockTimeout if a live holder keeps it longer
        than ``timeout``."""
        if not self._mutex.acquire(timeout=timeout):
            raise LockTimeout(self.path, timeout)
        try:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            if self._fd < 0:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            self._flock(self._fd, timeout)
            self._depth = 1
            try:
                yield
            finally:
                self._depth = 0
                _fcntl().flock(self._fd, _fcntl().LOCK_UN)
        finally:
            self._mutex.release()

    def close(self) -> None:
        with self._mutex:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def try_hold(self) -> int | None:
        """Take the lease without waiting; returns a descriptor to close to release it, or None."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl = _fcntl()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return None
        return fd

    def _flock(self, fd: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        delay = 0.0005
        fcntl = _fcntl()
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except OSError as err:
                if err.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if time.monotonic() > deadline:
                raise LockTimeout(self.path, timeout)
            time.sleep(delay)
            delay = min(delay * 2, 0.01)


class Leases:
    """The leases of one repository by name (a ref, "packed-refs", "repack"), each a file in ``directory``
    named by a hash of the name: shared by its refs and its pack maintenance.

    Args:
        directory: Where the lease files live (created if missing).
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory
        os.makedirs(directory, exist_ok=True)
        self._leases: dict[str, Lease] = {}
        self._mutex = threading.Lock()

    def get(self, name: str) -> Lease:
        """The lease for ``name`` (one object per name, so that its threads share its mutex)."""
        with self._mutex:
            lease = self._leases.get(name)
            if lease is None:
                digest = hashlib.sha1(name.encode()).hexdigest()[:20]
                lease = self._leases[name] = Lease(os.path.join(self.directory, digest))
            return lease

    def close(self) -> None:
        with self._mutex:
            for lease in self._leases.values():
                lease.close()


def create_git_lock(lock_path: str, timeout: float = LOCK_TIMEOUT_SECONDS) -> int:
    """Create git's "<file>.lock" with O_EXCL, breaking it if it is stale, and its directory if missing.

    Call this only while holding the matching :class:`Lease`: then no writer of this library can own an
    existing lock file, and one older than STALE_LOCK_SECONDS was left by a dead process.

    The directory is assumed to exist (it nearly always does) and created only when the lock cannot be:
    `git pack-refs` and `git gc` remove the empty directories under ``refs/``, possibly between our creating
    one and creating the lock in it, so that is retried (up to DIRECTORY_RACE_ATTEMPTS times), as git's own
    ``raceproof_create_file()`` does.

    Returns:
        The open descriptor of the new lock file.

    Raises:
        LockTimeout: A live owner kept the lock longer than ``timeout``.
        FileNotFoundError: The directory kept vanishing (or cannot exist).
    """
    deadline = time.monotonic() + timeout
    vanished = 0
    while True:
        try:
            return os.open(lock_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            pass
        except FileNotFoundError:
            vanished += 1
            if vanished > DIRECTORY_RACE_ATTEMPTS:
                raise
            os.makedirs(os.path.dirname(lock_path), exist_ok=True)
            continue
        try:
            age = time.time() - os.stat(lock_path).st_mtime
        except FileNotFoundError:
            continue
        if age > STALE_LOCK_SECONDS:
            with suppress(FileNotFoundError):
                os.unlink(lock_path)
            continue
        if time.monotonic() > deadline:
            raise LockTimeout(lock_path, timeout)
        time.sleep(0.002)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
