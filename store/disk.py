"""The on-disk backend: a real git repository, its objects in fsynced packs and its refs in git's own files.

:class:`DiskBackend` pairs :class:`store.disk_objects.DiskObjects` (packs: written per batch, rolled up in
tiers) with :class:`store.disk_refs.DiskRefs` (loose refs and ``packed-refs`` under git's lock-file
protocol). Both take their locks from one set of ``flock`` leases kept in ``<gitdir>/gitstore/locks``, so
that locks left by killed processes are recovered.
"""

from __future__ import annotations

import atexit
import os
import weakref

from store.backend import Backend
from store.disk_objects import DiskObjects
from store.disk_refs import DiskRefs
from store.locks import Leases

_OPEN_BACKENDS: weakref.WeakSet[DiskBackend] = weakref.WeakSet()


@atexit.register
def _close_open_backends() -> None:
    # dulwich's pack finalisers fail noisily during interpreter shutdown; close packs while we still can.
    for backend in list(_OPEN_BACKENDS):
        backend.close()


class DiskBackend(Backend):
    """A git repository on disk; the twin of :class:`store.backend.MemoryBackend`.

    Args:
        gitdir: The repository's git directory (the bare repository, or the ``.git`` of a work tree).
        durable: fsync objects before refs, and refs before returning (default). Without it a crash may lose
            recent commits, though never corrupt history.
    """

    objects: DiskObjects
    refs: DiskRefs

    def __init__(self, gitdir: str, durable: bool = True) -> None:
        self.gitdir = os.path.abspath(gitdir)
        self.durable = durable
        self.leases = Leases(os.path.join(self.gitdir, "gitstore", "locks"))
        super().__init__(
            DiskObjects(self.gitdir, self.leases, durable=durable),
            DiskRefs(self.gitdir, self.leases, durable=durable),
        )
        self.pack_dir = self.objects.pack_dir
        _OPEN_BACKENDS.add(self)

    def wait_for_maintenance(self, timeout: float = 30.0) -> bool:
        """Wait until no roll-up of packs is pending or running (for tests and orderly shutdown)."""
        return self.objects.wait_for_maintenance(timeout)

    def close(self) -> None:
        super().close()
        self.leases.close()
