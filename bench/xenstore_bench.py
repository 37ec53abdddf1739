"""Benchmark of the xenstored on the versioned store, side by side with Debian's oxenstored.

Boot storm: N parallel simulated VM lifecycles (N = 10, 50, 100, 200), each following xapi's pattern:

1. one transaction creating /vm/<uuid>/..., /vss/<uuid>/..., /local/domain/<domid>/... with the vif
   frontend and the backend nodes under /local/domain/0/backend/vif/<domid>/0, and their permissions;
2. the xenbus device handshake through the two state nodes, each side watching the other's;
3. shutdown (frontend and backend Closing/Closed) and destroy: one transaction removing everything.

Every lifecycle uses two connections (toolstack/backend, and frontend), all driven by one asyncio client
process, against each daemon in turn (a fresh daemon per run, the daemons interleaved, the median of
``--repeat`` runs reported, fewer if a size's ``--deadline`` passes: its line says so); a transaction that
gets EAGAIN is retried and counted. Then Xen's test-xenstore reports per-operation latency against both
daemons. Ratios are ours / oxenstored within the same run (below 1 means faster). This is a benchmark, not a
test: the machine has 2 cores and is noisy.
While each storm runs, a bystander client (``bench/bystander.py``, a process of its own) makes sequential
READ round trips, one at a time as xenconsoled sets up a new guest's console; their median, mean and p99
are printed beside oxenstored's. Each daemon is cold for its storm (a fresh process); beside the storms,
each daemon's start (until its socket answers) and its peak RSS after the storm (VmHWM) are printed, the
median of the runs at each N.

Run: ``.venv/bin/python bench/xenstore_bench.py [--sizes 10,50,100,200] [--iterations 200]``

``--baseline CHECKOUT`` adds the durable daemon of another checkout of this project (say a worktree of the
commit before a change) to the same interleaved runs, so that a change is measured against the code before
it side by side, on the same noisy machine: ``git worktree add /tmp/base HEAD~3``, then
``--baseline /tmp/base --sizes 200,400``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bystander import Bystander, latencies  # noqa: E402 - bench/bystander.py
from fresh import peak_rss_mb, timed_runs  # noqa: E402 - bench/fresh.py

from xenstored.client import AsyncClient, ClientError  # noqa: E402 - after the sys.path line
from xenstored.reference import RUN_SH as OXENSTORED_RUN  # noqa: E402
from xenstored.reference import Oxenstored, wait_for_socket  # noqa: E402

TEST_XENSTORE = "/usr/lib/xen-4.17/bin/test-xenstore"


@dataclass
class Counters:
    eagain: int = 0
    transactions: int = 0
    commit_lag: float = 0.0  # ours: seconds from the storm's end until its last transaction is in git
    cpu: float = 0.0  # ours: the daemon's CPU seconds (all threads) from its start until then
    ready: float = 0.0  # seconds from starting the daemon until its socket answered (cold start)
    rss_mb: float = float("nan")  # the daemon's peak RSS after the storm (VmHWM)
    bystander: list[float] = field(default_factory=list)  # seconds of the bystander's READs during the storm


async def transaction(client: AsyncClient, counters: Counters, body) -> None:  # type: ignore[no-untyped-def]
    """Run ``body(tx_id)`` in a transaction, retrying on EAGAIN like libxenstore users do."""
    while True:
        tx = await client.start()
        try:
            await body(tx)
            await client.end(tx)
            counters.transactions += 1
            return
        except ClientError as err:
            if err.errno != "EAGAIN":
                raise
            counters.eagain += 1


async def wait_for_value(client: AsyncClient, path: str, wanted: set[str]) -> str:
    """Wait (on watch events) until ``path`` holds one of ``wanted``."""
    while True:
        try:
            value = (await client.read(path)).decode()
        except ClientError:
            value = ""
        if value in wanted:
            return value
        await client.events.get()


async def lifecycle(socket: str, index: int, counters: Counters, count: int) -> None:
    vm = str(uuid.UUID(int=index + 1))
    domid = 100 + index
    home = f"/local/domain/{domid}"
    front = f"{home}/device/vif/0"
    back = f"/local/domain/0/backend/vif/{domid}/0"
    # oxenstored listens with a tiny backlog and, on a loaded host, accepts 2N connections slowly: wait for
    # them as long as the storm itself may take (boot_storm's deadline) rather than the client's default.
    tool = await AsyncClient.connect(socket, timeout=15 + count)
    guest = await AsyncClient.connect(socket, timeout=15 + count)
    try:

        async def create(tx: int) -> None:
            with contextlib.suppress(ClientError):  # not there yet, as expected: but now it was read
                await tool.read(f"/vm/{vm}/uuid", tx)
            for key, value in [
                ("uuid", vm),
                ("name", f"vm-{index}"),
                ("domid", str(domid)),
                ("memory/static-max", "1048576"),
                ("memory/target", "1048576"),
                ("vcpus/number", "2"),
                ("on_crash", "destroy"),
                ("image/ostype", "linux"),
            ]:
                await tool.write(f"/vm/{vm}/{key}", value, tx)
            await tool.write(f"/vss/{vm}/uuid", vm, tx)
            await tool.write(f"/vss/{vm}/vm", f"/vm/{vm}", tx)
            for key, value in [
                ("vm", f"/vm/{vm}"),
                ("name", f"vm-{index}"),
                ("domid", str(domid)),
                ("memory/target", "1048576"),
                ("cpu/0/availability", "online"),
                ("cpu/1/availability", "online"),
                ("control/shutdown", ""),
                ("data", ""),
            ]:
                await tool.write(f"{home}/{key}", value, tx)
            for key, value in [
                ("backend", back),
                ("backend-id", "0"),
                ("handle", "0"),
                ("mac", f"00:16:3e:00:{index // 256:02x}:{index % 256:02x}"),
                ("state", "1"),
            ]:
                await tool.write(f"{front}/{key}", value, tx)
            for key, value in [
                ("frontend", front),
                ("frontend-id", str(domid)),
                ("online", "1"),
                ("handle", "0"),
                ("state", "1"),
            ]:
                await tool.write(f"{back}/{key}", value, tx)
            await tool.set_perms(home, [f"n{domid}", "r0"], tx)
            await tool.set_perms(front, [f"b{domid}", "r0"], tx)
            await tool.set_perms(back, ["b0", f"r{domid}"], tx)

        await transaction(tool, counters, create)

        # The xenbus handshake: each side watches the other's state node.
        await tool.watch(f"{front}/state", "fe")
        await guest.watch(f"{back}/state", "be")

        async def backend() -> None:
            await tool.write(f"{back}/state", "2")  # InitWait
            await wait_for_value(tool, f"{front}/state", {"4"})
            await tool.write(f"{back}/state", "4")  # Connected
            await wait_for_value(tool, f"{front}/state", {"6"})
            await tool.write(f"{back}/state", "6")  # Closed

        async def frontend() -> None:
            await wait_for_value(guest, f"{back}/state", {"2"})
            await guest.write(f"{front}/state", "3")  # Initialised
            await guest.write(f"{front}/state", "4")  # Connected
            await wait_for_value(guest, f"{back}/state", {"4"})
            await guest.write(f"{home}/data/ip", f"10.0.{index // 256}.{index % 256}")
            await guest.write(f"{front}/state", "5")  # Closing: shutdown starts
            await guest.write(f"{front}/state", "6")  # Closed
            await wait_for_value(guest, f"{back}/state", {"6"})

        await tool.write(f"{home}/control/shutdown", "")
        await asyncio.gather(backend(), frontend())
        await tool.unwatch(f"{front}/state", "fe")
        await guest.unwatch(f"{back}/state", "be")

        async def destroy(tx: int) -> None:
            for path in (home, f"/local/domain/0/backend/vif/{domid}", f"/vm/{vm}", f"/vss/{vm}"):
                await tool.rm(path, tx)

        await transaction(tool, counters, destroy)
    finally:
        await tool.close()
        await guest.close()


async def boot_storm(socket: str, count: int) -> tuple[float, Counters]:
    counters = Counters()
    started = time.perf_counter()
    await asyncio.wait_for(
        asyncio.gather(*(lifecycle(socket, i, counters, count) for i in range(count))), 15 + count
    )
    return time.perf_counter() - started, counters


async def check_empty(socket: str) -> None:
    client = await AsyncClient.connect(socket)
    try:
        for path in ("/vm", "/vss"):
            try:
                left = await client.directory(path)
            except ClientError:
                left = []
            assert not left, f"{path} not cleaned up: {left[:5]}"
    finally:
        await client.close()


# -- daemons ---------------------------------------------------------------------------------------------
class Daemon:
    name: str
    socket: str
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        raise NotImplementedError


class Ours(Daemon):
    def __init__(self, directory: str, durable: bool, checkout: str = ROOT) -> None:
        self.name = "ours (durable)" if durable else "ours"
        self.socket = os.path.join(directory, "socket")
        self.repo = os.path.join(directory, "state.git")
        argv = [sys.executable, "-m", "xenstored", "--socket", self.socket, "--repo", self.repo]
        # The checkout's own code, whatever the environment's PYTHONPATH names.
        env = {**os.environ, "PYTHONPATH": checkout}
        self.process = subprocess.Popen([*argv, *(["--durable"] if durable else [])], cwd=checkout, env=env)
        wait_for_socket(self.socket, self.process)
        self._started_cpu = 0.0
        self._started_cpu = self.cpu_seconds()  # its imports and start: not the storm's

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=120)

    def cpu_seconds(self) -> float:
        """CPU the daemon used since it started serving, all threads (what a noisy host's wall times hide)."""
        with open(f"/proc/{self.process.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK") - self._started_cpu

    def commit_lag(self, merges: int) -> float:
        """Seconds until the branch holds ``merges`` transaction merges (outside durable mode the journal
        defers its work while requests keep coming, by up to a second)."""
        started = time.perf_counter()
        while True:
            out = subprocess.run(
                ["git", "-C", self.repo, "rev-list", "--count", "--merges", "main"],
                capture_output=True,
                text=True,
            )
            if int(out.stdout.strip() or 0) >= merges:
                return time.perf_counter() - started
            if time.perf_counter() - started > 60:
                raise RuntimeError(f"the journal did not catch up: {out.stdout.strip()} of {merges} merges")
            time.sleep(0.01)


def test_xenstore(socket: str, iterations: int) -> dict[str, float]:
    """Average ns per operation of each test-xenstore test."""
    out = subprocess.run(
        ["timeout", "300", TEST_XENSTORE, "-i", str(iterations)],
        env={**os.environ, "XENSTORED_PATH": socket},
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise RuntimeError(f"test-xenstore failed: {out.stdout}{out.stderr}")
    result = {}
    for line in out.stdout.splitlines():
        match = re.match(r"(.+?)\s*: avg: (\d+) ns", line)
        if match:
            result[match.group(1)] = float(match.group(2))
    return result


@dataclass(frozen=True)
class Kind:
    """A daemon the storms run against: oxenstored (durable None), or ours from a checkout."""

    name: str
    durable: bool | None
    checkout: str = ROOT


def run_storm(
    work: str,
    kind: Kind,
    n: int,
    repeat: int,
    latency: dict[str, dict[str, float]],
    args: argparse.Namespace,
) -> tuple[float, Counters]:
    """One boot storm on a fresh daemon (and, the first time, test-xenstore's latencies on it)."""
    name, durable = kind.name, kind.durable
    # oxenstored without Xen (shared/tools/oxenstored) now and then breaks a client socket under load (recv
    # fails with EINVAL): such a run is retried on a fresh daemon and reported.
    for attempt in range(1, 4):
        directory = os.path.join(work, f"{name.replace(' ', '-')}-{n}-{repeat}-{attempt}")
        started = time.perf_counter()
        daemon: Daemon = Oxenstored(directory) if durable is None else Ours(directory, durable, kind.checkout)
        ready = time.perf_counter() - started
        bystander: Bystander | None = None
        try:
            bystander = Bystander(daemon.socket)
            result = asyncio.run(boot_storm(daemon.socket, n))
            result[1].bystander, bystander = bystander.stop(), None
            result[1].ready, result[1].rss_mb = ready, peak_rss_mb(daemon.process.pid)
            if isinstance(daemon, Ours):
                result[1].commit_lag = daemon.commit_lag(result[1].transactions)
                result[1].cpu = daemon.cpu_seconds()
            asyncio.run(check_empty(daemon.socket))
            if name not in latency and kind.checkout == ROOT:  # the baseline: storms only
                latency[name] = test_xenstore(daemon.socket, args.iterations)
            return result
        except (ConnectionError, OSError) as err:
            print(f"  {name:15} N={n:<4} attempt {attempt} lost a connection ({err!r}); retrying")
            if attempt == 3:
                raise
        finally:
            if bystander is not None:
                bystander.process.kill()
                bystander.process.wait()
            daemon.stop()
    raise AssertionError("unreachable")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,50,100,200")
    parser.add_argument("--iterations", type=int, default=200, help="test-xenstore iterations per test")
    parser.add_argument("--no-durable", action="store_true", help="skip the durable-mode run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per daemon and size (median reported)")
    parser.add_argument(
        "--deadline",
        type=float,
        default=600.0,
        help="seconds for each size's runs: no new round starts after",
    )
    parser.add_argument(
        "--baseline",
        metavar="CHECKOUT",
        help="also run the durable daemon of this checkout (e.g. a worktree of an older commit), interleaved",
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    have_ox = os.path.exists(OXENSTORED_RUN) and os.path.exists("/usr/lib/xen-4.17/bin/oxenstored")
    if not have_ox:
        sys.exit(
            "oxenstored is needed as the baseline: apt-get install xen-utils-4.17 gcc (see shared/tools/oxenstored)"
        )
    work = tempfile.mkdtemp(prefix="xenstore-bench-")
    storms: dict[str, dict[int, tuple[float, Counters]]] = {}
    latency: dict[str, dict[str, float]] = {}
    cpus: dict[str, dict[int, list[tuple[float, Counters]]]] = {}  # every run, for the CPU medians
    kinds = [Kind("oxenstored", None), Kind("ours", False)]
    kinds += [] if args.no_durable else [Kind("ours (durable)", True)]
    if args.baseline:
        kinds.append(Kind("base (durable)", True, os.path.abspath(args.baseline)))
    try:
        for n in sizes:
            # Each daemon in turn, fresh for every run, interleaved so that a noisy moment hits both sides:
            # the median of the runs is reported.
            runs: dict[str, list[tuple[float, Counters]]] = {kind.name: [] for kind in kinds}

            def one_round(
                repeat: int, n: int = n, runs: dict[str, list[tuple[float, Counters]]] = runs
            ) -> None:
                for kind in kinds:
                    runs[kind.name].append(run_storm(work, kind, n, repeat, latency, args))

            rounds = timed_runs(one_round, args.repeat, time.monotonic() + args.deadline)
            for name in runs:
                cpus.setdefault(name, {})[n] = runs[name]
                ordered = sorted(runs[name], key=lambda run: run[0])
                storms.setdefault(name, {})[n] = ordered[len(ordered) // 2]
                seconds = ", ".join(f"{run[0]:.2f}" for run in runs[name])
                eagain = sum(run[1].eagain for run in runs[name])
                lag = (
                    ""
                    if name == "oxenstored"
                    else f"  (in git +{max(r[1].commit_lag for r in runs[name]):.2f} s; daemon CPU "
                    + ", ".join(f"{run[1].cpu:.2f}" for run in runs[name])
                    + " s)"
                )
                print(
                    f"  {name:15} N={n:<4} runs {seconds} s  EAGAIN {eagain}{lag}{rounds.note()}", flush=True
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print("\nBoot storm: N parallel VM lifecycles (create transaction, xenbus handshake, shutdown, destroy)")
    print(
        f"{'N':>5} | {'oxenstored':>12} | {'ours':>12} {'ratio':>6} | "
        + ("" if args.no_durable else f"{'ours durable':>12} {'ratio':>6} |")
        + " EAGAIN ox/ours/durable"
    )
    for n in sizes:
        ox_s, ox_c = storms["oxenstored"][n]
        ours_s, ours_c = storms["ours"][n]
        row = f"{n:>5} | {ox_s:>10.2f} s | {ours_s:>10.2f} s {ours_s / ox_s:>6.2f} | "
        eagains = [ox_c.eagain, ours_c.eagain]
        if not args.no_durable:
            dur_s, dur_c = storms["ours (durable)"][n]
            row += f"{dur_s:>10.2f} s {dur_s / ox_s:>6.2f} | "
            eagains.append(dur_c.eagain)
        print(row + " " + "/".join(str(e) for e in eagains))
    print(
        "in git: how long after a storm's end its last transaction was committed (median run); outside"
        " durable mode the journal yields to requests: it starts writing once they pause for 0.1 s, or once"
        " a change has waited 1 s"
    )
    for name in [kind.name for kind in kinds if kind.durable is not None]:
        print(f"  {name:15} " + "  ".join(f"N={n}: +{storms[name][n][1].commit_lag:.2f} s" for n in sizes))
    if args.baseline:
        print(f"\nDurable mode against the baseline checkout {args.baseline} (same runs, interleaved)")
        print(
            f"{'N':>5} | {'base durable':>12} {'/ox':>6} | {'ours durable':>12} {'/ox':>6} | ours / base"
            " | daemon CPU base, ours (medians)"
        )
        for n in sizes:
            ox_s = storms["oxenstored"][n][0]
            base_s = storms["base (durable)"][n][0]
            dur_s = storms["ours (durable)"][n][0]
            cpu = [
                statistics.median(r[1].cpu for r in cpus[k][n]) for k in ("base (durable)", "ours (durable)")
            ]
            print(
                f"{n:>5} | {base_s:>10.2f} s {base_s / ox_s:>6.2f} | {dur_s:>10.2f} s {dur_s / ox_s:>6.2f} | "
                f"{dur_s / base_s:>11.2f} | {cpu[0]:.2f} s, {cpu[1]:.2f} s ({cpu[1] / cpu[0]:.2f})"
            )
    print(
        "\nBystander: one more client's sequential READs (one at a time, like xenconsoled's) during the storm,"
        " all runs' round trips pooled: median / mean / p99 in ms, and ours / oxenstored (xenconsoled's handful"
        " of round trips per guest costs their sum: the mean)"
    )
    for n in sizes:
        ox = latencies([s for run in cpus["oxenstored"][n] for s in run[1].bystander])
        cells = [f"oxenstored {ox.cell()}"]
        for name in [kind.name for kind in kinds if kind.durable is not None]:
            cells.append(f"{name} {latencies([s for r in cpus[name][n] for s in r[1].bystander]).cell(ox)}")
        print(f"  N={n:<4} " + " | ".join(cells))
    print("\nCold start (until the socket answers) and peak RSS after the storm, medians of the runs")
    for name, by_size in cpus.items():
        cells = (
            f"N={n}: {statistics.median(r[1].ready for r in runs) * 1e3:.0f} ms, "
            f"{statistics.median(r[1].rss_mb for r in runs):.0f} MB"
            for n, runs in by_size.items()
        )
        print(f"  {name:15} " + "  ".join(cells))
    target = storms["ours"].get(200)
    if target is not None:
        print(f"Target N=200 in <= 5 s: {target[0]:.2f} s ({'met' if target[0] <= 5 else 'NOT met'})")

    print(f"\ntest-xenstore per-operation latency (avg of {args.iterations} iterations, ns)")
    names = list(latency["oxenstored"])
    print(
        f"{'test':>11} | {'oxenstored':>11} | {'ours':>11} {'ratio':>6}"
        + ("" if args.no_durable else f" | {'durable':>11} {'ratio':>6}")
    )
    for test in names:
        ox = latency["oxenstored"][test]
        ours = latency["ours"].get(test, float("nan"))
        row = f"{test:>11} | {ox:>11.0f} | {ours:>11.0f} {ours / ox:>6.2f}"
        if not args.no_durable:
            dur = latency["ours (durable)"].get(test, float("nan"))
            row += f" | {dur:>11.0f} {dur / ox:>6.2f}"
        print(row)


if __name__ == "__main__":
    main()
