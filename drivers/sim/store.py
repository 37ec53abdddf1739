"""Where the simulated host keeps its domains: in memory, or in a directory shared by processes.

Directory layout (``sim:///abs/dir``)::

    lock                 flock'ed around every read-modify-write (reads take no lock)
    domains/<uuid>.json  one file per domain, replaced atomically (temp file + fsync + rename)
    names/<name>         the uuid holding that name (an index, so define stays O(1))
    domid                the last domid handed out
    events.jsonl         append-only event log read by subscribers in other processes
    fail-<operation>     fault-injection markers (see faults.py)
    cache/<xx>           parsed domains by the digest of their file's bytes, kept across processes
                         (drivers/content_cache.py: derived data, safe to delete)
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import threading
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, ConfigDict

from drivers.content_cache import ContentCache, code_version
from drivers.files import atomic_write
from drivers.models import DomainEvent, DomainSpec, DomainState, EventKind


class SimDomain(BaseModel):
    """One simulated domain, as stored.

    Attributes:
        uuid: Identity.
        config: Persistent configuration; None for a transient domain (created out of band, or undefined while
            running), which disappears when it stops.
        live: The running configuration while active, else None.
        state: Run state.
        domid: Assigned at start, None while inactive.
        ignores_shutdown: The simulated guest ignores ACPI power-off requests (to test shutdown timeouts).
    """

    model_config = ConfigDict(frozen=True)

    uuid: uuidlib.UUID
    config: DomainSpec | None
    live: DomainSpec | None = None
    state: DomainState = DomainState.SHUTOFF
    domid: int | None = None
    ignores_shutdown: bool = False

    @property
    def current(self) -> DomainSpec:
        """The configuration that describes the domain now: live while active, else persistent."""
        spec = self.live if self.live is not None else self.config
        assert spec is not None, "a stored domain always has a live or a persistent configuration"
        return spec

    @property
    def name(self) -> str:
        """Current name."""
        return self.current.name


# What a kept domain depends on besides its file: the records and their parsing.
PARSING_MODULES = (
    "drivers.content_cache",
    "drivers.devices",
    "drivers.fields",
    "drivers.models",
    "drivers.spec",
    "drivers.sim.store",
)


def _digest(data: bytes) -> bytes:
    """What a domain file's bytes are known by (16 bytes kept per domain, not the whole file)."""
    return hashlib.blake2b(data, digest_size=16).digest()


def parse_domain(data: bytes) -> SimDomain:
    """A domain file's domain: ``SimDomain.model_validate_json(data)``, with a running domain's live spec
    validated once when it is its persistent one (as it mostly is), and shared: half the work and memory.

    Raises:
        pydantic.ValidationError: the file does not validate (raised as validating it whole raises it).
    """
    try:
        document = json.loads(data)
        config = document.get("config") if isinstance(document, dict) else None
        if isinstance(config, dict) and document.get("live") == config:
            spec = DomainSpec.model_validate(config)
            return SimDomain.model_validate({**document, "config": spec, "live": spec})
    except ValueError:
        pass  # the error is the whole file's, as below reports it
    return SimDomain.model_validate_json(data)


class Transaction(Protocol):
    """A consistent view of the host, exclusive while it lasts when opened for writing."""

    def get(self, uuid: uuidlib.UUID) -> SimDomain | None: ...

    def put(self, domain: SimDomain) -> None: ...

    def delete(self, uuid: uuidlib.UUID) -> None: ...

    def all(self) -> list[SimDomain]: ...

    def uuid_for_name(self, name: str) -> uuidlib.UUID | None: ...

    def next_domid(self) -> int: ...


class StateStore(Protocol):
    """Storage of the simulated host."""

    path: Path | None

    def transaction(self, write: bool = True) -> contextlib.AbstractContextManager[Transaction]: ...

    def append_event(self, event: DomainEvent, origin: str) -> None: ...


class _MemoryTransaction:
    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    def get(self, uuid: uuidlib.UUID) -> SimDomain | None:
        return self._store.domains.get(uuid)

    def put(self, domain: SimDomain) -> None:
        old = self._store.domains.get(domain.uuid)
        if old is not None and old.name != domain.name:
            self._store.names.pop(old.name, None)
        self._store.domains[domain.uuid] = domain
        self._store.names[domain.name] = domain.uuid

    def delete(self, uuid: uuidlib.UUID) -> None:
        old = self._store.domains.pop(uuid, None)
        if old is not None:
            self._store.names.pop(old.name, None)

    def all(self) -> list[SimDomain]:
        return list(self._store.domains.values())

    def uuid_for_name(self, name: str) -> uuidlib.UUID | None:
        return self._store.names.get(name)

    def next_domid(self) -> int:
        self._store.last_domid += 1
        return self._store.last_domid


class MemoryStore:
    """The ``sim://`` host: private to one driver object, gone when it is closed."""

    path: Path | None = None

    def __init__(self) -> None:
        self.domains: dict[uuidlib.UUID, SimDomain] = {}
        self.names: dict[str, uuidlib.UUID] = {}
        self.last_domid = 0
        self._lock = threading.RLock()

    @contextlib.contextmanager
    def transaction(self, write: bool = True) -> Iterator[Transaction]:
        with self._lock:
            yield _MemoryTransaction(self)

    def append_event(self, event: DomainEvent, origin: str) -> None:
        """In-memory hosts deliver events in process only."""


class _DirectoryTransaction:
    def __init__(self, store: DirectoryStore) -> None:
        self._store = store
        self._cache: dict[uuidlib.UUID, SimDomain | None] = {}

    def _domain_file(self, uuid: uuidlib.UUID) -> Path:
        return self._store.path / "domains" / f"{uuid}.json"

    def get(self, uuid: uuidlib.UUID) -> SimDomain | None:
        if uuid not in self._cache:
            self._cache[uuid] = self._store.load(uuid)
        return self._cache[uuid]

    def put(self, domain: SimDomain) -> None:
        old = self.get(domain.uuid)
        data = domain.model_dump_json().encode()
        atomic_write(self._domain_file(domain.uuid), data, durable=self._store.durable)
        self._store.remember(domain.uuid, data, domain)
        self._cache[domain.uuid] = domain
        if old is None or old.name != domain.name:
            if old is not None:
                self._drop_name(old.name, domain.uuid)
            atomic_write(self._name_file(domain.name), str(domain.uuid).encode(), durable=self._store.durable)

    def delete(self, uuid: uuidlib.UUID) -> None:
        old = self.get(uuid)
        if old is None:
            return
        self._domain_file(uuid).unlink(missing_ok=True)
        self._store.forget(uuid)
        self._drop_name(old.name, uuid)
        self._cache[uuid] = None

    def all(self) -> list[SimDomain]:
        domains = []
        present = set()
        for entry in os.scandir(self._store.path / "domains"):
            if entry.name.endswith(".json") and not entry.name.startswith("."):
                uuid = uuidlib.UUID(entry.name[: -len(".json")])
                present.add(uuid)
                domain = self.get(uuid)
                if domain is not None:
                    domains.append(domain)
        self._store.keep_only(present)
        return domains

    def uuid_for_name(self, name: str) -> uuidlib.UUID | None:
        try:
            holder = uuidlib.UUID(self._name_file(name).read_text())
        except FileNotFoundError:
            return None
        # The index is written after the domain file: trust it only while the domain agrees.
        domain = self.get(holder)
        return holder if domain is not None and domain.name == name else None

    def next_domid(self) -> int:
        counter = self._store.path / "domid"
        try:
            last = int(counter.read_text())
        except FileNotFoundError:
            last = 0
        atomic_write(counter, str(last + 1).encode(), durable=self._store.durable)
        return last + 1

    def _name_file(self, name: str) -> Path:
        return self._store.path / "names" / name

    def _drop_name(self, name: str, uuid: uuidlib.UUID) -> None:
        with contextlib.suppress(FileNotFoundError, ValueError):
            if uuidlib.UUID(self._name_file(name).read_text()) == uuid:
                self._name_file(name).unlink()


class DirectoryStore:
    """The ``sim:///abs/dir`` host: one directory, safely shared by threads and processes.

    Args:
        path: Absolute state directory; created if missing.
        durable: fsync every write (the default). Tests on tmpfs may turn it off for speed.
    """

    def __init__(self, path: Path, durable: bool = True) -> None:
        self.path = path
        self.durable = durable
        for sub in ("domains", "names"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        self._domains = str(path / "domains")
        self._lock_fd = os.open(path / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        # flock is per open file description: threads of this process must also exclude each other.
        self._thread_lock = threading.RLock()
        # Per domain file, a digest of its bytes when last read or written and the domain they parse to: one
        # entry per domain, so the cache is sized to the host and never has to drop a domain still there.
        self._parsed: dict[uuidlib.UUID, tuple[bytes, SimDomain]] = {}
        # The same across processes: a cold process parses only the files that changed since a full scan.
        self._disk = ContentCache(path / "cache", code_version(PARSING_MODULES))

    @contextlib.contextmanager
    def transaction(self, write: bool = True) -> Iterator[Transaction]:
        if not write:
            # Every file is replaced by a rename, so each read sees a whole old or new domain without the
            # lock: readers never wait for a writer's fsyncs (as a hypervisor answers queries while it
            # starts other domains), and a domain read twice in one transaction is read once.
            yield _DirectoryTransaction(self)
            return
        with self._thread_lock:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                yield _DirectoryTransaction(self)
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def load(self, uuid: uuidlib.UUID) -> SimDomain | None:
        """Read and parse one domain's file; None if it does not exist.

        The file is read every time (another process may have replaced it), but bytes equal to the last
        ones seen for this domain are not parsed again.
        """
        try:
            with open(f"{self._domains}/{uuid}.json", "rb") as file:  # not pathlib: read per VM per call
                data = file.read()
        except FileNotFoundError:
            self.forget(uuid)
            return None
        digest = _digest(data)
        known = self._parsed.get(uuid)
        if known is not None and known[0] == digest:
            return known[1]
        stored = self._disk.get(str(uuid))
        if stored is not None and stored[0] == digest and isinstance(stored[1], SimDomain):
            self._parsed[uuid] = (digest, stored[1])
            return stored[1]
        domain = parse_domain(data)
        self._parsed[uuid] = (digest, domain)
        return domain

    def remember(self, uuid: uuidlib.UUID, data: bytes, domain: SimDomain) -> None:
        """Keep ``domain`` as what ``uuid``'s file holds while it holds ``data`` (domains are frozen, so
        sharing one is safe). Replaces what was kept for that file: a domain has one entry."""
        self._parsed[uuid] = (_digest(data), domain)

    def forget(self, uuid: uuidlib.UUID) -> None:
        """Drop what is kept of a domain whose file is gone."""
        self._parsed.pop(uuid, None)

    def keep_only(self, present: set[uuidlib.UUID]) -> None:
        """Drop what is kept of the domains whose files a full scan did not find (another process removed
        them): what is kept never outgrows the host. A domain defined meanwhile is only parsed again.
        The on-disk cache is brought up to date (only its shards that changed are written)."""
        for uuid in list(self._parsed):  # a copy: readers in other threads may add entries meanwhile
            if uuid not in present:
                self._parsed.pop(uuid, None)
        self._disk.sync({str(uuid): entry for uuid, entry in list(self._parsed.items())})

    def append_event(self, event: DomainEvent, origin: str) -> None:
        """Append to the shared event log (called inside a write transaction, so lines never interleave).

        Args:
            event: The event.
            origin: Token of the driver object that caused it, so that it can skip its own events.
        """
        line = json.dumps(
            {
                "uuid": str(event.uuid),
                "name": event.name,
                "kind": event.kind.value,
                "detail": event.detail,
                "timestamp": event.timestamp,
                "origin": origin,
            }
        )
        with open(self.path / "events.jsonl", "a", encoding="utf-8") as log:
            log.write(line + "\n")

    def read_events(self, offset: int) -> tuple[list[tuple[str, DomainEvent]], int]:
        """(origin, event) pairs appended at or after byte ``offset``, and the offset to continue from."""
        try:
            with open(self.path / "events.jsonl", "rb") as log:
                log.seek(offset)
                data = log.read()
        except FileNotFoundError:
            return [], offset
        complete = data[: data.rfind(b"\n") + 1]
        events = []
        for raw in complete.splitlines():
            record = json.loads(raw)
            events.append(
                (
                    record["origin"],
                    DomainEvent(
                        uuid=uuidlib.UUID(record["uuid"]),
                        name=record["name"],
                        kind=EventKind(record["kind"]),
                        detail=record["detail"],
                        timestamp=record["timestamp"],
                    ),
                )
            )
        return events, offset + len(complete)

    def event_log_size(self) -> int:
        """Current end of the event log, where a new subscriber starts reading."""
        try:
            return (self.path / "events.jsonl").stat().st_size
        except FileNotFoundError:
            return 0

    def close(self) -> None:
        """Release the lock file descriptor."""
        with contextlib.suppress(OSError):
            os.close(self._lock_fd)
