"""``toolstack xenstored``: run the daemon (also ``python -m xenstored``)."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections.abc import Callable

import click

from xenstored.client import AsyncClient, ClientError
from xenstored.protocol import Op
from xenstored.quotas import Quotas
from xenstored.rings import RingUnavailable
from xenstored.server import ServerConfig, XenstoreServer
from xenstored.xenlibs import XenError


@click.command("xenstored")
@click.option(
    "--socket", "socket_path", required=True, type=click.Path(), help="The dom0 unix socket to serve."
)
@click.option(
    "--repo",
    default="xenstore.git",
    show_default=True,
    type=click.Path(),
    help="The git repository holding the state (created if missing).",
)
@click.option("--branch", default="main", show_default=True, help="The branch holding the state.")
@click.option(
    "--durable/--no-durable",
    default=False,
    show_default=True,
    help="Reply to a change only once its commit is on disk (otherwise commits follow within milliseconds).",
)
@click.option(
    "--domain-socket-dir",
    type=click.Path(),
    default=None,
    help="Where an introduced domain N gets a socket N speaking as that domain (default: <socket>.d).",
)
@click.option(
    "--xen",
    is_flag=True,
    help="Serve domains on their shared rings under Xen (dom0's kernel too) and release dying domains: "
    "dom0's xenstored.",
)
@click.option(
    "--ring-dir",
    type=click.Path(),
    default=None,
    help="Without Xen: serve introduced domain N on the ring page <dir>/N/page, kicked through the FIFOs "
    "<dir>/N/kick and <dir>/N/notify.",
)
@click.option("--quota-nodes", default=1000, show_default=True, help="Nodes an unprivileged domain may own.")
@click.option(
    "--quota-watches", default=128, show_default=True, help="Watches an unprivileged domain may hold."
)
@click.option(
    "--quota-value-size", default=2048, show_default=True, help="Bytes in a node value (unprivileged)."
)
@click.option(
    "--quota-transactions",
    default=10,
    show_default=True,
    help="Open transactions per connection (unprivileged).",
)
@click.option(
    "--quota-path-max",
    default=2048,
    show_default=True,
    help="Bytes in a node path below the domain's home (unprivileged; C xenstored's path-max).",
)
@click.option(
    "--pid-file", type=click.Path(), default=None, help="Write the daemon's pid here once it serves."
)
@click.option(
    "--metrics-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the daemon's counters here in Prometheus's text format, every few seconds and at exit, for "
    "toolstack serve's metrics_textfiles or node_exporter's textfile collector; '' writes none "
    "[beside the repository: xenstore.git -> xenstore.prom].",
)
@click.option(
    "--metrics-interval",
    type=click.FloatRange(0.01),
    default=5.0,
    show_default=True,
    help="Seconds between two writes of --metrics-file.",
)
@click.option("--log-level", default="WARNING", show_default=True, help="Python logging level.")
@click.option(
    "--status",
    "show_status",
    is_flag=True,
    help="Print the health of the daemon serving SOCKET (its journal) and exit: 0 healthy, 1 failing or "
    "unreachable.",
)
def xenstored(
    socket_path: str,
    repo: str,
    branch: str,
    durable: bool,
    domain_socket_dir: str | None,
    xen: bool,
    ring_dir: str | None,
    quota_nodes: int,
    quota_watches: int,
    quota_value_size: int,
    quota_transactions: int,
    quota_path_max: int,
    pid_file: str | None,
    metrics_file: str | None,
    metrics_interval: float,
    log_level: str,
    show_status: bool,
) -> None:
    """Serve the xenstore wire protocol on SOCKET, keeping the state in a git repository."""
    if show_status:
        raise SystemExit(print_status(socket_path))
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = ServerConfig(
        socket=socket_path,
        repo=repo,
        branch=branch,
        durable=durable,
        domain_socket_dir=domain_socket_dir,
        xen=xen,
        ring_dir=ring_dir,
        quotas=Quotas(
            nodes=quota_nodes,
            watches=quota_watches,
            value_size=quota_value_size,
            transactions=quota_transactions,
            path_max=quota_path_max,
        ),
        metrics_file=default_metrics_file(repo) if metrics_file is None else metrics_file or None,
        metrics_interval=metrics_interval,
    )
    server = XenstoreServer(config)
    tune_garbage_collector()

    def ready() -> None:
        if pid_file:
            with open(pid_file, "w") as handle:
                handle.write(f"{os.getpid()}\n")

    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        try:
            runner.run(server.serve(ready))
        except (XenError, RingUnavailable) as err:  # --xen where Xen is not, or dom0's ring: say so, exit 1
            raise click.ClickException(f"cannot serve under Xen: {err}") from err


STATUS_TIMEOUT = 10.0


def default_metrics_file(repo: str) -> str:
    """The metrics file beside the repository: ``/var/lib/x/xenstore.git`` -> ``/var/lib/x/xenstore.prom``."""
    return os.path.splitext(os.path.abspath(repo))[0] + ".prom"


def print_status(socket_path: str) -> int:
    """Ask the daemon on ``socket_path`` for its journal's health (CONTROL ``status``) and print it.

    Returns:
        The exit code: 0 if the journal commits, 1 if it fails or the daemon does not answer.
    """

    async def ask() -> str:
        client = await AsyncClient.connect(socket_path, timeout=STATUS_TIMEOUT)
        try:
            reply = await asyncio.wait_for(client.request(Op.CONTROL, b"status\0"), STATUS_TIMEOUT)
        finally:
            await client.close()
        return reply.rstrip(b"\0").decode("utf-8", "replace")

    try:
        report = asyncio.run(ask())
    except (OSError, TimeoutError, ClientError) as err:
        click.echo(f"xenstored on {socket_path} does not answer: {err}", err=True)
        return 1
    click.echo(report, nl=not report.endswith("\n"))
    return 0 if report.startswith("journal ok") else 1


# Each request allocates dozens of tuples and nodes, nearly all acyclic. At the default threshold (700) the
# collector ran every few requests, and its older generations scanned the whole state: a quarter of the
# event loop's CPU in a boot storm.
GC_THRESHOLDS = (10_000, 50, 100)


def tune_garbage_collector() -> None:
    """Collect less often, and never scan again what was loaded at start (a daemon process only)."""
    gc.set_threshold(*GC_THRESHOLDS)
    gc.freeze()


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where it is installed: it halves the per-request cost of the asyncio plumbing,
    which is most of a xenstore request's cost here."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with the project's dependencies
        return None
    return uvloop.new_event_loop
