"""Benchmark of ``toolstack serve`` (the HTTP API) against the in-process ``toolstack.ops`` rate, measured in
the same run on the same repository, so that the HTTP overhead shows as a ratio.

1. GET one VM (``GET /vms/{name}``) against ``ts.vm`` + ``ts.info`` + the ETag lookup, in-process;
2. the VM list with 1,000 VMs (``GET /vms``) against ``ts.vms()`` + ``driver.list()``;
3. create+start on the simulator (``POST /vms`` then ``POST /vms/{name}/start``) against ``ts.create`` +
   ``ts.start``, sequentially and with concurrent clients;
4. a VM created started in one request (``POST /vms`` with ``"start": true``: one task, as ``xl create``)
   against ``ts.create(start=True)``, shown beside the target but not counted for it;
5. baselines, the parts on their own: durable transactions on a bare store, and ``GET /health`` (a request
   that does nothing). A create+start needs two durable commits (each operation's outcome merged into main;
   its claim is a durable record lighter than a commit) and two requests; from the two rates the bench
   derives the most create+start could reach on this machine before any toolstack or driver work;
6. cold, what a client waits for from a fresh server: ``toolstack serve`` from its start until it answers
   ``GET /health``, and its first create+start (two requests), beside the warm ones; the server's peak RSS.

The load generator runs on loopback: wrk if it is installed (``make setup`` installs it), else httpx threads.
Under wrk, a Lua script makes each pair: ``POST /vms``, then ``POST /vms/{name}/start`` for the name the 201
answered; the rate counts pairs whose start answered 200, and the latencies are per request. The server and
the load generator share this machine's cores: read ratios, not absolute figures. Targets from issue 18:
create+start at 8 clients >= 100 pairs/s and >= 0.6x the bare store's ceiling printed in the same run; GET
one VM at 8 connections p50 <= 5 ms and p99 <= 50 ms.

Rates run for ``--seconds``; a batch of ``--ops`` pairs stops at ``--deadline`` seconds and says so.

Run: ``.venv/bin/python bench/api_bench.py [--vms 1000] [--ops 100] [--seconds 5] [--concurrency 8]``
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid as uuidlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import httpx
from fresh import Runs, peak_rss_mb  # bench/fresh.py

from store import Store
from toolstack.api.etags import vm_version
from toolstack.ops import Toolstack

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class Rate:
    """Operations per second with latency percentiles (milliseconds)."""

    per_second: float
    p50_ms: float
    p99_ms: float
    how: str

    def row(self) -> str:
        return (
            f"{self.per_second:10.1f}/s  p50 {self.p50_ms:7.2f} ms  p99 {self.p99_ms:7.2f} ms  ({self.how})"
        )


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def timed_loop(call: Callable[[int], None], seconds: float, threads: int = 1, how: str = "") -> Rate:
    """Call ``call(i)`` from ``threads`` threads for ``seconds``; every call is timed."""
    latencies: list[list[float]] = [[] for _ in range(threads)]
    deadline = time.perf_counter() + seconds

    def worker(slot: int) -> None:
        i = slot
        while time.perf_counter() < deadline:
            begin = time.perf_counter()
            call(i)
            latencies[slot].append(time.perf_counter() - begin)
            i += threads

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(worker, range(threads)))
    elapsed = time.perf_counter() - start
    samples = [s for slot in latencies for s in slot]
    return Rate(len(samples) / elapsed, percentile(samples, 0.5), percentile(samples, 0.99), how)


def fixed_batch(
    call: Callable[[str], None], names: list[str], threads: int, how: str, seconds: float
) -> Rate:
    """Call ``call(name)`` once per name from ``threads`` threads, every call timed, until ``seconds`` have
    passed: the names left then are not called, the rate counts the calls completed, and ``how`` says so."""
    samples: list[float] = []
    mutex = threading.Lock()
    deadline = time.monotonic() + seconds

    def one(name: str) -> None:
        if time.monotonic() >= deadline:
            return
        begin = time.perf_counter()
        call(name)
        with mutex:
            samples.append(time.perf_counter() - begin)

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, names))
    elapsed = time.perf_counter() - start
    how += Runs(samples, len(names)).note()
    return Rate(len(samples) / elapsed, percentile(samples, 0.5), percentile(samples, 0.99), how)


def names(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{uuidlib.uuid4().hex[:10]}" for _ in range(count)]


# -- in process ----------------------------------------------------------------------------------------------
def in_process(ts: Toolstack, args: argparse.Namespace, probe: str) -> dict[str, Rate]:
    def get_one(_: int) -> None:
        vm = ts.vm(probe)
        ts.info(vm)
        vm_version(ts, vm.uuid)

    def list_all(_: int) -> None:
        ts.driver.list()
        ts.vms()

    def create_start(name: str) -> None:
        ts.start(ts.create(name, memory=64).uuid)

    def create_started(name: str) -> None:
        ts.create(name, memory=64, start=True)

    def batch(call: Callable[[str], None], prefix: str, threads: int, how: str) -> Rate:
        return fixed_batch(call, names(prefix, args.ops), threads, how, args.deadline)

    n = args.concurrency
    return {
        "get": timed_loop(get_one, args.seconds, how="ts.vm + ts.info + ETag, 1 thread"),
        "list": timed_loop(list_all, args.seconds, how=f"ts.vms() of {args.vms}, 1 thread"),
        "create1": batch(create_start, "ops", 1, "ts.create + ts.start, 1 thread"),
        "createN": batch(create_start, "opsc", n, f"ts.create + ts.start, {n} threads"),
        "oneN": batch(create_started, "opso", n, f"ts.create(start=True), {n} threads"),
    }


# -- baselines: the parts on their own ------------------------------------------------------------------------
# A create+start publishes two durable commits: the merge of each operation's outcome into main (a pack and a
# ref update made durable). Each operation's claim is a durable record (one small file and its directory
# fsynced), not a commit, and is not counted: the ceiling is the stricter for it.
COMMITS_PER_PAIR = 2
REQUESTS_PER_PAIR = 2


def store_commits(workdir: str, records: int, seconds: float, threads: int) -> Rate:
    """Durable transactions on main of a bare store with ``records`` sharded records, each adding two small
    files (as a claim adds a VM's and a task's): what the store alone publishes here, with group commit."""
    store = Store.open(os.path.join(workdir, "baseline.git"))
    main = store.branch("main")
    with main.transaction(message="records", author="bench <bench@localhost>") as tx:
        for _ in range(records):
            key = uuidlib.uuid4().hex
            tx.set(f"vms/{key[:2]}/{key}/config", b"x" * 300)

    def commit(i: int) -> None:
        key = uuidlib.uuid4().hex
        with main.transaction(message=f"commit {i}", author="bench <bench@localhost>") as tx:
            tx.set(f"vms/{key[:2]}/{key}/config", b"y" * 300)
            tx.set(f"tasks/{key[-2:]}/{key}", b"z" * 200)

    try:
        return timed_loop(commit, seconds, threads, f"store transactions, {threads} threads")
    finally:
        store.close()


# -- over HTTP -----------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(workdir: str, repo: str, driver: str) -> tuple[subprocess.Popen[bytes], str, str, float]:
    """A fresh ``toolstack serve``: the process, its URL, its token, and the seconds until it answered."""
    started = time.perf_counter()
    port = free_port()
    token_file = os.path.join(workdir, "bench.api-token")
    command = [
        sys.executable,
        "-m",
        "toolstack.cli",
        "--repo",
        repo,
        "--driver",
        driver,
        "--author",
        "bench",
        "serve",
        "--port",
        str(port),
        "--token-file",
        token_file,
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("toolstack serve did not start")
        time.sleep(0.01)
    ready = time.perf_counter() - started
    with open(token_file, encoding="utf-8") as handle:
        return process, url, handle.read().strip(), ready


def first_pair(url: str, token: str) -> float:
    """Seconds of the first create+start a fresh server answers (two requests, on a new connection)."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
        name = names("cold", 1)[0]
        started = time.perf_counter()
        codes = (client.post("/vms", json={"name": name, "memory": 64}).status_code,)
        codes += (client.post(f"/vms/{name}/start").status_code,)
        if codes != (201, 200):
            raise SystemExit(f"the first create+start failed: {codes}")
        return time.perf_counter() - started


_WRK_LATENCY = re.compile(r"^\s*(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_WRK_RATE = re.compile(r"Requests/sec:\s+([\d.]+)")


def run_wrk(
    url: str,
    token: str,
    script: str,
    seconds: float,
    threads: int,
    connections: int,
    workdir: str,
    *extra: str,
) -> tuple[str, dict[str, float]]:
    """Run wrk with the bearer token and ``script``; returns its output and its p50/p99 latencies (ms).

    The header goes through a script file (mode 0600), not the command line that `ps` shows.
    """
    path = os.path.join(workdir, "wrk.lua")
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
        handle.write(f'wrk.headers["Authorization"] = "Bearer {token}"\n' + script)
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s", path]
    deadline = seconds + 60  # wrk stops itself after `seconds`; a wedged server must not hang the bench
    output = subprocess.run(
        [*command, url, *extra], capture_output=True, text=True, check=True, timeout=deadline
    ).stdout
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    return output, {q: float(v) * scale[unit] for q, v, unit in _WRK_LATENCY.findall(output)}


def wrk(url: str, token: str, path: str, seconds: float, connections: int, workdir: str) -> Rate:
    output, latency = run_wrk(url + path, token, "", seconds, min(2, connections), connections, workdir)
    if "Non-2xx" in output:
        raise SystemExit(f"wrk saw errors:\n{output}")
    rate = float(_WRK_RATE.search(output).group(1))  # type: ignore[union-attr]
    return Rate(rate, latency["50"], latency["99"], f"wrk, {connections} connection(s)")


# Each connection alternates: create a VM, then start the VM a create answered (any connection's: the pairs are
# counted, not matched). wrk runs one Lua state per thread; done() sums the threads' counters.
WRK_PAIRS_SCRIPT = """
local threads = {}
function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end
function init(args)
  created, seq, starts, bad = {}, 0, 0, 0
  prefix = args[1] .. "-" .. id .. "-"
  pattern = '"(' .. prefix:gsub("%-", "%%-") .. '%d+)"'
  wrk.headers["Content-Type"] = "application/json"
end
function request()
  local name = table.remove(created)
  if name then
    return wrk.format("POST", "/vms/" .. name .. "/start", nil, "")
  end
  seq = seq + 1
  return wrk.format("POST", "/vms", nil, '{"name": "' .. prefix .. seq .. '", "memory": 64}')
end
function response(status, headers, body)
  local name = status == 201 and string.match(body, pattern)
  if name then
    table.insert(created, name)
  elseif status == 200 then
    starts = starts + 1
  else
    bad = bad + 1
  end
end
function done(summary, latency, requests)
  local pairs_done, failed = 0, 0
  for _, thread in ipairs(threads) do
    pairs_done = pairs_done + thread:get("starts")
    failed = failed + thread:get("bad")
  end
  io.write(string.format("PAIRS %d FAILED %d SECONDS %.3f\\n", pairs_done, failed, summary.duration / 1e6))
end
"""
_WRK_PAIRS = re.compile(r"^PAIRS (\d+) FAILED (\d+) SECONDS ([\d.]+)$", re.M)


def wrk_create_start(
    url: str, token: str, seconds: float, connections: int, workdir: str, prefix: str
) -> Rate:
    """create+start pairs for ``seconds`` over ``connections`` connections of one wrk thread."""
    output, latency = run_wrk(url, token, WRK_PAIRS_SCRIPT, seconds, 1, connections, workdir, "--", prefix)
    counted = _WRK_PAIRS.search(output)
    if counted is None or int(counted.group(2)) or "Non-2xx" in output:
        raise SystemExit(f"wrk create+start saw errors:\n{output}")
    rate = int(counted.group(1)) / float(counted.group(3))
    how = f"wrk, {connections} connection(s); latency per request"
    return Rate(rate, latency["50"], latency["99"], how)


def httpx_get(url: str, token: str, path: str, seconds: float, threads: int) -> Rate:
    local = threading.local()

    def get(_: int) -> None:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"})
        response = local.client.get(path)
        response.raise_for_status()

    return timed_loop(get, seconds, threads, f"httpx, {threads} thread(s)")


def http_create_start(
    url: str, token: str, batch: list[str], threads: int, seconds: float, one_request: bool = False
) -> Rate:
    """Create and start each VM: two requests (two tasks), or one ``POST /vms`` with ``start`` (one task)."""
    local = threading.local()

    def create_start(name: str) -> None:
        if not hasattr(local, "client"):
            local.client = httpx.Client(
                base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60
            )
        if one_request:
            created = local.client.post("/vms", json={"name": name, "memory": 64, "start": True})
            if created.status_code != 201 or created.json()["vm"]["state"] != "running":
                raise RuntimeError(f"{name}: {created.status_code} {created.text}")
            return
        created = local.client.post("/vms", json={"name": name, "memory": 64})
        started = local.client.post(f"/vms/{name}/start")
        if created.status_code != 201 or started.status_code != 200:
            raise RuntimeError(f"{name}: {created.status_code} {started.status_code} {started.text}")

    how = "POST /vms start:true" if one_request else "POST /vms + POST start"
    return fixed_batch(create_start, batch, threads, f"{how}, {threads} client(s)", seconds)


def over_http(url: str, token: str, args: argparse.Namespace, probe: str, workdir: str) -> dict[str, Rate]:
    use_wrk = shutil.which("wrk") is not None and not args.no_wrk

    def get(path: str, connections: int) -> Rate:
        if use_wrk:
            return wrk(url, token, path, args.seconds, connections, workdir)
        return httpx_get(url, token, path, args.seconds, connections)

    def create_start(prefix: str, clients: int) -> Rate:
        if use_wrk:
            return wrk_create_start(url, token, args.seconds, clients, workdir, prefix)
        return http_create_start(url, token, names(prefix, args.ops), clients, args.deadline)

    return {
        "get": get(f"/vms/{probe}", 1),
        "getN": get(f"/vms/{probe}", args.concurrency),
        "list": get("/vms", 1),
        "create1": create_start("http", 1),
        "createN": create_start("httpc", args.concurrency),
        "oneN": http_create_start(
            url, token, names("httpo", args.ops), args.concurrency, args.deadline, one_request=True
        ),
        "health": get("/health", args.concurrency),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=1000, help="VMs in the repository (the list size)")
    parser.add_argument("--ops", type=int, default=100, help="create+start pairs per measurement")
    parser.add_argument("--seconds", type=float, default=5.0, help="Duration of each GET measurement")
    parser.add_argument("--concurrency", type=int, default=8, help="Concurrent clients / threads")
    parser.add_argument("--deadline", type=float, default=300.0, help="Seconds allowed for each --ops batch")
    parser.add_argument("--no-wrk", action="store_true", help="Use httpx even if wrk exists")
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="api-bench-")
    repo = os.path.join(workdir, "state.git")
    driver = f"sim://{workdir}/sim"
    try:
        print(f"setting up {args.vms} VMs on the simulator...", flush=True)
        with Toolstack.init(repo, driver, author="bench") as ts:
            for name in names("vm", args.vms):
                ts.create(name, memory=64)
            probe = ts.vms()[args.vms // 2].name
            local = in_process(ts, args, probe)
        local["commits"] = store_commits(workdir, args.vms, args.seconds, args.concurrency)
        process, url, token, ready = start_server(workdir, repo, driver)
        try:
            cold_pair = first_pair(url, token)
            remote = over_http(url, token, args, probe, workdir)
            server_rss = peak_rss_mb(process.pid)
        finally:
            process.terminate()
            process.wait(timeout=30)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print()
    print(f"{'measure':34} {'in-process toolstack.ops':60} | {'HTTP (toolstack serve)':62} | HTTP/ops")
    rows = [
        ("GET one VM, 1 client", "get", "get"),
        (f"GET one VM, {args.concurrency} clients", "get", "getN"),
        (f"GET /vms ({args.vms} VMs)", "list", "list"),
        ("create+start, 1 client", "create1", "create1"),
        (f"create+start, {args.concurrency} clients", "createN", "createN"),
        (f"create started, {args.concurrency} clients", "oneN", "oneN"),
    ]
    for label, ops_key, http_key in rows:
        ops, http = local[ops_key], remote[http_key]
        print(f"{label:34} {ops.row():60} | {http.row():62} | {http.per_second / ops.per_second:6.2f}x")
    best_create = max(remote["create1"].per_second, remote["createN"].per_second)
    best_ops_create = max(local["create1"].per_second, local["createN"].per_second)
    print()
    commits, health = local["commits"].per_second, remote["health"].per_second
    ceiling = 1 / (COMMITS_PER_PAIR / commits + REQUESTS_PER_PAIR / health)
    created = remote["createN"].per_second
    get_n = remote["getN"]
    print(
        f"targets: create+start at {args.concurrency} clients >= 100 pairs/s and >= 0.6x the ceiling below: "
        f"{created:.0f}/s, {created / ceiling:.2f}x ({'met' if created >= 100 and created >= 0.6 * ceiling else 'NOT met'}"
        f"; the in-process rate is {best_ops_create:.0f}/s); GET one VM at {args.concurrency} connections "
        f"p50 <= 5 ms and p99 <= 50 ms: {get_n.p50_ms:.2f} ms, {get_n.p99_ms:.2f} ms "
        f"({'met' if get_n.p50_ms <= 5 and get_n.p99_ms <= 50 else 'NOT met'})"
    )
    print()
    print("baselines measured in this run, the parts on their own:")
    print(
        f"  store: {commits:7.1f} durable commits/s ({local['commits'].how}); "
        f"a pair makes {COMMITS_PER_PAIR}: at most {commits / COMMITS_PER_PAIR:.0f} pairs/s"
    )
    print(
        f"  HTTP:  {health:7.1f} GET /health/s ({remote['health'].how}); "
        f"a pair makes {REQUESTS_PER_PAIR} requests: at most {health / REQUESTS_PER_PAIR:.0f} pairs/s"
    )
    print(
        f"  both costs fall on one interpreter (one GIL), so they add: at most ~{ceiling:.0f} pairs/s before any "
        f"toolstack or driver work; measured {best_create:.0f}/s is {best_create / ceiling:.2f}x of that"
    )
    warm_pair = 1 / local["create1"].per_second
    print("\ncold, what a client of a fresh server waits for (the server's start, then its first requests):")
    print(f"  toolstack serve, start until GET /health answers: {ready * 1e3:8.0f} ms")
    print(
        f"  its first create+start, 1 client:                  {cold_pair * 1e3:8.1f} ms | warm: "
        f"{1e3 / remote['create1'].per_second:.1f} ms a pair over HTTP, {warm_pair * 1e3:.1f} ms in process"
    )
    print(f"  peak RSS of the server (VmHWM, after every measure): {server_rss:.0f} MB")
    print(
        f"'create started' is one request and one task (POST /vms with start, as xl create): "
        f"{remote['oneN'].per_second:.0f}/s; it is reported beside the target, not counted for it."
    )


if __name__ == "__main__":
    main()
