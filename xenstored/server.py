"""The daemon: the store, the state, the journal, and the unix sockets clients connect to.

The main socket speaks as dom0. With a domain socket directory, introducing domain N opens the socket
``<dir>/N``, whose connections speak as domain N; the socket goes away when the domain is released. With
rings (``xen``, or ``ring_dir`` without Xen: ``rings.py``), an introduced domain is also served on its shared
ring page, and under Xen dom0's kernel on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field

from store import Store
from xenstored import nodes
from xenstored.admin import AdminRequests
from xenstored.connection import Connection
from xenstored.dispatch import Dispatcher
from xenstored.domains import DomainTable
from xenstored.errors import NotSaved
from xenstored.journal import GitJournal
from xenstored.metrics import WRITE_INTERVAL, XenstoredMetrics
from xenstored.perms import Caller
from xenstored.quotas import Quotas
from xenstored.requests import NodeRequests
from xenstored.rings import DomainRings, FileRings, RingProvider, RingUnavailable, reap_domains
from xenstored.state import State

log = logging.getLogger(__name__)
# Outside durable mode, changes gather this long before the journal writes them (seconds).
NON_DURABLE_WINDOW = 0.02
UNIX_PATH_MAX = 107  # sun_path holds 108 bytes with the terminating NUL


@dataclass
class ServerConfig:
    """How to run the daemon.

    Attributes:
        socket: The dom0 socket path.
        repo: The git repository holding the state (created if missing).
        branch: The branch holding the state.
        durable: Reply to a change only once it is committed and fsynced.
        domain_socket_dir: Where introduced domains get their sockets (default: ``<socket>.d``).
        quotas: The quotas in force.
        xen: Serve domains on their shared rings under Xen (dom0's kernel too), and release dying ones.
        ring_dir: Without Xen, serve introduced domains on file rings in this directory (``FileRings``).
        metrics_file: Where to write the daemon's counters for Prometheus (None: nowhere).
        metrics_interval: Seconds between two writes of ``metrics_file`` (it is written at exit too).
    """

    socket: str
    repo: str
    branch: str = "main"
    durable: bool = False
    domain_socket_dir: str | None = None
    quotas: Quotas = field(default_factory=Quotas)
    xen: bool = False
    ring_dir: str | None = None
    metrics_file: str | None = None
    metrics_interval: float = WRITE_INTERVAL

    @property
    def domain_dir(self) -> str:
        return self.domain_socket_dir or f"{self.socket}.d"


class DurableWaiters:
    """Futures on the event loop, released as the journal reports commits (from its thread)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._heap: list[tuple[int, int, asyncio.Future[None]]] = []
        self._flushed = 0
        self._counter = 0

    def wait(self, seq: int) -> asyncio.Future[None] | None:
        if seq <= self._flushed:
            return None
        future: asyncio.Future[None] = self._loop.create_future()
        self._counter += 1
        heapq.heappush(self._heap, (seq, self._counter, future))
        return future

    def flushed(self, seq: int) -> None:
        """Called from the journal's thread."""
        self._loop.call_soon_threadsafe(self._release, seq)

    def failed(self, reason: str) -> None:
        """The journal cannot commit (called from its thread): every reply waiting for a commit is answered
        with an error now, rather than never."""
        self._loop.call_soon_threadsafe(self._fail_all, reason)

    def _fail_all(self, reason: str) -> None:
        heap, self._heap = self._heap, []
        for _, _, future in heap:
            if not future.done():
                future.set_exception(NotSaved(f"the change could not be committed: {reason}"))

    def _release(self, seq: int) -> None:
        self._flushed = max(self._flushed, seq)
        while self._heap and self._heap[0][0] <= self._flushed:
            _, _, future = heapq.heappop(self._heap)
            if not future.done():
                future.set_result(None)


class XenstoreServer:
    """A xenstored serving a branch of a git repository."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.store = Store.open(config.repo, create=True, durable=True)
        self.branch = self.store.branch(config.branch)
        head = self.branch.head
        tree = nodes.load(self.store.objects, self.store.tree_at(head).oid) if head else nodes.EMPTY
        self.state = State(tree, config.quotas, head)
        self.domains = DomainTable()
        self.admin = AdminRequests(self.state, self.domains, self)
        self.dispatcher = Dispatcher(NodeRequests(self.state), self.admin)
        self.connections: set[Connection] = set()
        self.metrics = XenstoredMetrics()
        self._metrics_failing = False
        self._domain_servers: dict[int, asyncio.AbstractServer] = {}
        self._main_server: asyncio.AbstractServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: DurableWaiters | None = None
        self._stopped: asyncio.Event | None = None
        self.journal: GitJournal | None = None
        self.rings: DomainRings | None = None

    # -- running -------------------------------------------------------------------------------------------
    async def serve(self, ready: Callable[[], None] | None = None) -> None:
        """Serve until :meth:`stop` (or SIGTERM/SIGINT), then commit what is queued and clean up."""
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        self._waiters = DurableWaiters(self._loop)
        self.journal = GitJournal(
            self.branch,
            self.state,
            self._waiters.flushed,
            window=0.0 if self.config.durable else NON_DURABLE_WINDOW,
            failed=self._waiters.failed,
        )
        self.admin.flush_now = self.journal.write_now
        self.admin.journal_status = self.journal.status
        self.journal.flush()  # the initial layout, if the branch was empty, is its own commit
        self.journal.start()
        _remove_stale_socket(self.config.socket)
        os.makedirs(self.config.domain_dir, exist_ok=True)
        self._main_server = await _listen(lambda: self._connection(Caller(0)), self.config.socket)
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                self._loop.add_signal_handler(sig, self.stop)
        try:
            self._open_rings()
            log.info(
                "xenstored: serving %s (branch %s) on %s",
                self.config.repo,
                self.config.branch,
                self.config.socket,
            )
            if ready is not None:
                ready()
            writer = self._loop.create_task(self._write_metrics_every(self.config.metrics_interval))
            try:
                await self._stopped.wait()
            finally:
                writer.cancel()
        finally:
            await self._shutdown()

    def stop(self) -> None:
        if self._stopped is not None:
            self._stopped.set()

    async def _shutdown(self) -> None:
        servers = [s for s in (self._main_server, *self._domain_servers.values()) if s is not None]
        for server in servers:
            server.close()
        if self.rings is not None:
            self.rings.close_all()
        for connection in list(self.connections):
            connection.close()
        for domid in list(self._domain_servers):
            _remove_stale_socket(self._domain_socket(domid))
        self._domain_servers.clear()
        _remove_stale_socket(self.config.socket)
        if self.journal is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.journal.stop)
        self.store.close()
        self.write_metrics()  # the last counts, for whoever reads the file after the daemon is gone
        log.info("xenstored: stopped")

    # -- metrics -------------------------------------------------------------------------------------------
    async def _write_metrics_every(self, interval: float) -> None:
        while True:
            self.write_metrics()
            await asyncio.sleep(interval)

    def write_metrics(self) -> None:
        """Write the counters to the metrics file, if there is one; a failure is logged (once until it
        works again), never fatal: the daemon serves xenstore first."""
        if not self.config.metrics_file:
            return
        self.metrics.connections_open = len(self.connections)
        try:
            self.metrics.write(self.config.metrics_file)
        except OSError as err:
            if not self._metrics_failing:
                log.warning("xenstored: cannot write the metrics file %s: %s", self.config.metrics_file, err)
            self._metrics_failing = True
        else:
            self._metrics_failing = False

    def _connection(self, caller: Caller) -> Connection:
        assert self._waiters is not None
        waiters = self._waiters
        durable = self.config.durable
        connection = Connection(
            caller,
            self.dispatcher,
            (lambda seq: waiters.wait(seq)) if durable else (lambda seq: None),
            self._forget,
            self.metrics,
        )
        self.connections.add(connection)
        self.metrics.connections_opened += 1
        return connection

    def _forget(self, connection: Connection) -> None:
        self.connections.discard(connection)
        with self.state.lock:
            self.state.watches.remove_all(connection)

    # -- rings -------------------------------------------------------------------------------------------
    def _open_rings(self) -> None:
        assert self._loop is not None
        provider: RingProvider
        if self.config.xen:
            from xenstored.xenrings import XenRings  # loads Xen's libraries: only when asked to

            provider = XenRings(self._loop, lambda status: reap_domains(self.admin, status))
        elif self.config.ring_dir:
            provider = FileRings(self._loop, self.config.ring_dir)
        else:
            return
        self.rings = DomainRings(self._loop, provider, self._domain_connection)
        self.admin.ring_status = self.rings.describe
        if self.config.xen:
            self.rings.open(0, 0, 0)  # dom0's kernel: its xenbus waits for this daemon's first kick

    def _domain_connection(self, domid: int) -> Connection:
        domain = self.domains.domains.get(domid)
        return self._connection(Caller(domid, domain.target if domain else None))

    # -- domain sockets (DomainHooks) ----------------------------------------------------------------------
    def _domain_socket(self, domid: int) -> str:
        return os.path.join(self.config.domain_dir, str(domid))

    def domain_introduced(self, domid: int) -> None:
        assert self._loop is not None
        if self.rings is not None:
            domain = self.domains.get(domid)
            try:
                self.rings.open(domid, domain.mfn, domain.port)
            except RingUnavailable:
                self.domains.release(domid)  # INTRODUCE fails as a whole: the domain stays unknown
                raise
        self._loop.create_task(self._open_domain_socket(domid))

    async def _open_domain_socket(self, domid: int) -> None:
        path = self._domain_socket(domid)
        _remove_stale_socket(path)
        domain = self.domains.domains.get(domid)
        if domain is None:
            return
        server = await _listen(lambda: self._connection(Caller(domid, domain.target)), path)
        if domid in self.domains:
            self._domain_servers[domid] = server
        else:
            server.close()
            _remove_stale_socket(path)

    def domain_released(self, domid: int) -> None:
        if self.rings is not None:
            self.rings.close(domid)
        server = self._domain_servers.pop(domid, None)
        if server is not None:
            server.close()
        _remove_stale_socket(self._domain_socket(domid))
        for connection in list(self.connections):
            if connection.caller.domid == domid:
                connection.close()

    def domain_retargeted(self, domid: int, target: int | None) -> None:
        for connection in self.connections:
            if connection.caller.domid == domid:
                connection.caller = Caller(domid, target)


async def _listen(factory: Callable[[], Connection], path: str) -> asyncio.AbstractServer:
    """A unix socket server at ``path`` that accepts connections from the moment the path exists: it binds a
    staging name and renames it into place once listening, so a client never finds the path refusing."""
    staging = f"{path}.{os.getpid()}.new"
    if len(os.fsencode(staging)) > UNIX_PATH_MAX:  # no room for a staging name: bind the path itself
        return await asyncio.get_running_loop().create_unix_server(factory, path)
    _remove_stale_socket(staging)
    server = await asyncio.get_running_loop().create_unix_server(factory, staging)
    os.replace(staging, path)
    return server


def _remove_stale_socket(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
