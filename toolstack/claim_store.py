"""Claim records: the durable note of a running task, lighter than the commit it stands for.

A task that claims a VM makes its claim durable as one small file, ``<gitdir>/toolstack/claims/<uuid>`` (the
task, the main head it forks from, the files it intends), created exclusively: the record is the claim, and no
claim ref (``refs/heads/vm-task/<uuid>``, see :mod:`toolstack.claims`) is written unless its commit is. That
costs one file and its directory made durable, where a claim commit cost a pack, its index and a ref, each
made durable in turn. The record holds what the claim commit held, so recovery rebuilds that commit from it
(:meth:`toolstack.claims.Claims.materialize`) and settles it as before; a task that fails does the same, so
that ``failed-tasks/<id>`` keeps the same history as ever. Records are local to their repository: a clone
never copies them, as it never copies claims.

A store without a directory (in memory) keeps its records in memory.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import threading
import weakref
from dataclasses import dataclass

from store import Store
from store.locks import fsync_directory
from toolstack import layout
from toolstack.models import Task

CLAIMS_DIRECTORY = layout.CLAIMS_DIRECTORY


@dataclass(frozen=True)
class ClaimRecord:
    """What a claim intends: enough to rebuild its claim commit.

    Attributes:
        task: The task, running.
        base: The main head the claim forks from.
        intended: Files to write (bytes) or remove (None) on main if the task succeeds.
        message: The claim commit's message.
        author: The claim commit's author.
    """

    task: Task
    base: str
    intended: dict[str, bytes | None]
    message: str
    author: str | None

    def encode(self) -> bytes:
        document = {
            "task": json.loads(self.task.encode()),
            "base": self.base,
            "intended": {
                path: None if value is None else base64.b64encode(value).decode("ascii")
                for path, value in self.intended.items()
            },
            "message": self.message,
            "author": self.author,
        }
        return json.dumps(document, sort_keys=True).encode()

    @classmethod
    def decode(cls, raw: bytes) -> ClaimRecord:
        """Raises ValueError (or pydantic's ValidationError, one) if ``raw`` is not a record."""
        document = json.loads(raw)
        return cls(
            task=Task.model_validate(document["task"]),
            base=document["base"],
            intended={
                path: None if value is None else base64.b64decode(value)
                for path, value in document["intended"].items()
            },
            message=document["message"],
            author=document["author"],
        )


class ClaimRecordStore:
    """The claim records of one repository, by VM uuid: at most one each.

    Args:
        store: The state repository (its git directory holds the records; in memory: this process).
    """

    def __init__(self, store: Store) -> None:
        gitdir = store.gitdir
        self._directory = None if gitdir is None else os.path.join(gitdir, CLAIMS_DIRECTORY)
        self._durable = bool(getattr(store.backend, "durable", True))
        self._memory = _memory_records(store) if self._directory is None else None

    def create(self, uuid: str, record: ClaimRecord) -> bool:
        """Record a claim of VM ``uuid``, durably; False (and nothing written) if one is recorded already."""
        raw = record.encode()
        if self._memory is not None:
            with _MEMORY_MUTEX:
                if uuid in self._memory:
                    return False
                self._memory[uuid] = raw
                return True
        assert self._directory is not None
        os.makedirs(self._directory, exist_ok=True)
        final = os.path.join(self._directory, uuid)
        temporary = os.path.join(self._directory, f".{uuid}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, raw)
            if self._durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        try:
            # A link fails if the name exists: readers never see a half-written record, and two claimers
            # of one VM never both succeed.
            os.link(temporary, final)
        except FileExistsError:
            return False
        finally:
            os.unlink(temporary)
        if self._durable:
            fsync_directory(self._directory)
        return True

    def read(self, uuid: str) -> ClaimRecord | None:
        """VM ``uuid``'s record; None if there is none, or if it does not parse (a claim made by hand)."""
        raw = self._raw(uuid)
        if raw is None:
            return None
        try:
            return ClaimRecord.decode(raw)
        except (ValueError, KeyError, TypeError):
            return None

    def _raw(self, uuid: str) -> bytes | None:
        if self._memory is not None:
            return self._memory.get(uuid)
        assert self._directory is not None
        try:
            with open(os.path.join(self._directory, uuid), "rb") as handle:
                return handle.read()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def uuids(self) -> list[str]:
        """The VMs with a record."""
        if self._memory is not None:
            return sorted(self._memory)
        assert self._directory is not None
        try:
            return sorted(name for name in os.listdir(self._directory) if not name.startswith("."))
        except FileNotFoundError:
            return []

    def remove(self, uuid: str, sync: bool = True) -> None:
        """Drop VM ``uuid``'s record (gone already: nothing to do).

        Args:
            sync: Make the removal durable before returning.
        """
        if self._memory is not None:
            with _MEMORY_MUTEX:
                self._memory.pop(uuid, None)
            return
        assert self._directory is not None
        try:
            os.unlink(os.path.join(self._directory, uuid))
        except FileNotFoundError:
            return
        if sync and self._durable:
            with contextlib.suppress(FileNotFoundError):
                fsync_directory(self._directory)


# In-memory stores: their records, shared by every ClaimRecordStore of one store, for as long as it lives.
_MEMORY: weakref.WeakKeyDictionary[Store, dict[str, bytes]] = weakref.WeakKeyDictionary()
_MEMORY_MUTEX = threading.Lock()


def _memory_records(store: Store) -> dict[str, bytes]:
    with _MEMORY_MUTEX:
        return _MEMORY.setdefault(store, {})
