"""The 10,000-VM stage of bench/scale_bench.py (issue 18): the commands an operator runs on a pool that size.

Every command runs in fresh processes under ``/usr/bin/time`` (peak RSS: the issue bounds it at 300 MB for
every command), on a private copy of the cached state (:func:`scale_harness.private_copy`), so the cached
state is never changed. Wall times are beside the floor where a command reads all the data (``git archive
main | wc -c`` plus ``cat`` of every simulator file), beside git's own equivalent where there is one, else
beside a process that only imports the toolstack; peak RSS is beside that process's.

* ``vm list``, ``reconcile --dry-run`` and ``reconcile`` (nothing to do): the first run after the on-disk
  parse caches are deleted (it parses everything and fills them), then cold runs with the caches filled,
  and warm (the second call in one process);
* ``vm show NAME``, ``log NAME`` (its first run builds the log index), ``events`` and ``show main`` (the
  commit that made the 10,000 VMs);
* ``toolstack agent --once`` against a bare clone of the state as its remote, where every VM is placed on
  this host: the first round (it pulls the placement), then rounds with nothing to do;
* ``toolstack serve`` while a client GETs ``/vms`` (every VM) twice and ``/vms/NAME``: the server's RSS;
* ``gc --before main`` (squash) and ``gc --compact``, each on its own copy, beside ``git repack -adf``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from fresh import Runs, timed_runs
from scale_harness import (
    ENV,
    MB,
    TIME,
    Bench,
    Run,
    check_log,
    drop_parse_caches,
    git,
    private_copy,
    show,
    toolstack,
    warm,
)
from scale_states import AUTHOR, HOST

from store import Store
from toolstack import layout

RSS_LIMIT = 300 * MB


def measure_vms(b: Bench, state: str, vms: int, scratch: str) -> None:
    """Every measure of the stage, on a private copy of ``state`` made under ``scratch``."""
    where = private_copy(state, os.path.join(scratch, "vms"))
    repo, sim = os.path.join(where, "pool.git"), os.path.join(where, "pool.sim")
    driver = f"sim://{sim}"
    head = git(repo, "rev-parse", "main").strip()
    archive = b.shell(f"git -C '{repo}' archive main | wc -c")
    # The simulator's data, not its cache of parsed domains (derived data: the floor reads the data once).
    files = b.shell(f"find '{sim}' -path '{sim}/cache' -prune -o -type f -exec cat {{}} + | wc -c")
    floor = archive.wall + files.wall
    b.notes.append(
        f"floor: git archive main {show(archive.wall, 's')} ({int(archive.stdout) / 2**20:.1f} MB) "
        f"+ simulator files {show(files.wall, 's')} ({int(files.stdout) / 2**20:.1f} MB)"
    )
    imports = b.run([sys.executable, "-c", "import toolstack.ops, toolstack.status, toolstack.cli.vm"])
    drop_parse_caches(where)
    list_fill = b.run(toolstack(repo, driver, "vm", "list"), repeat=1)
    drop_parse_caches(where)
    reconcile_fill = b.run(toolstack(repo, driver, "reconcile"), repeat=1)
    listed = b.run(toolstack(repo, driver, "vm", "list"))
    if len(listed.stdout.splitlines()) != vms + 1:
        b.fail(f"vm list printed {len(listed.stdout.splitlines())} lines for {vms} VMs")
    dry = b.run(toolstack(repo, driver, "reconcile", "--dry-run"))
    real = b.run(toolstack(repo, driver, "reconcile"))
    for label, run in (
        ("reconcile (first run, parse caches deleted)", reconcile_fill),
        ("reconcile --dry-run", dry),
        ("reconcile", real),
    ):
        said = run.stdout.strip()
        b.notes.append(f"{label}: {said[:300]!r}")
        if said != "nothing to do":
            b.fail(f"{label} had something to do at {vms} VMs: the state was not faithful")
    if git(repo, "rev-parse", "main").strip() != head:
        b.fail("reconcile changed main: the state was not faithful")
    listing, plan = warm("list", repo, driver), warm("plan", repo, driver)
    for label, calls in (("vm list (status.listing)", listing), ("reconcile plan", plan)):
        b.notes.append(
            f"{label} in process: 1st call {show(calls['first'], 's')}, 2nd {show(calls['second'], 's')}"
        )

    what, n = "floor: git archive + cat sim files", f"{vms} VMs"
    b.add(f"vm list, {n}, cold", listed.wall, "s", floor, what, "<= 2x floor", 2.0 * floor)
    b.add(f"vm list, {n}, first run after the parse caches are deleted", list_fill.wall, "s", floor, what)
    b.add(f"vm list, {n}, warm (in process, 2nd call)", listing["second"], "s", floor, what)
    b.add(f"reconcile --dry-run, {n}, cold", dry.wall, "s", floor, what)
    b.add(f"reconcile, nothing to do, {n}, cold", real.wall, "s", floor, what, "<= 3x floor", 3.0 * floor)
    b.add(
        f"reconcile, nothing to do, {n}, first run after the parse caches are deleted",
        reconcile_fill.wall,
        "s",
        floor,
        what,
    )
    b.add(f"reconcile plan, {n}, warm (in process, 2nd call)", plan["second"], "s", floor, what)
    rss = [
        ("vm list", listed),
        ("vm list, caches deleted", list_fill),
        ("reconcile --dry-run", dry),
        ("reconcile", real),
        ("reconcile, caches deleted", reconcile_fill),
    ]
    rss += measure_reads(b, repo, driver, imports, vms)
    rss += measure_agent(b, where, driver, floor, scratch, vms)
    rss += measure_serve(b, repo, driver, floor, scratch, vms)
    rss += measure_gc(b, where, scratch)
    for label, run in rss:
        b.add(
            f"{label}, {n}, peak RSS",
            run.rss,
            "KB",
            imports.rss,
            "python + toolstack imports",
            "<= 300 MB",
            RSS_LIMIT,
        )


def measure_reads(b: Bench, repo: str, driver: str, imports: Run, vms: int) -> list[tuple[str, Run]]:
    """``vm show NAME``, ``log NAME``, ``events`` and ``show main``; returns their runs for the RSS rows."""
    name = f"vm-{vms // 2:05d}"
    uuid = git(repo, "show", f"main:{layout.name_path(name)}").strip()
    path, n = layout.vm_dir(uuid), f"{vms} VMs"
    shown = b.run(toolstack(repo, driver, "vm", "show", name))
    if name not in shown.stdout:
        b.fail(f"vm show {name} did not name it: {shown.stdout[:200]!r}")
    plain = b.run(["git", "-C", repo, "log", "--format=%H", "main", "--", path])
    built = b.run(toolstack(repo, driver, "log", name), repeat=1)  # the copy's first: builds the log index
    logged = b.run(toolstack(repo, driver, "log", name))
    check_log(b, repo, name, path)
    events = b.run(toolstack(repo, driver, "events"))
    git_log_p = b.shell(f"git -C '{repo}' log -p main | wc -c")
    commit = b.run(toolstack(repo, driver, "show", "main"))
    git_show = b.shell(f"git -C '{repo}' show main | wc -c")
    b.notes.append(
        f"events printed {len(events.stdout.splitlines())} lines; show main {len(commit.stdout.splitlines())} "
        f"lines ({len(commit.stdout) / 2**20:.1f} MB)"
    )
    imported = "python + toolstack imports"
    b.add(f"vm show {name}, {n}, cold", shown.wall, "s", imports.wall, imported)
    b.add(f"log {name}, {n}, cold", logged.wall, "s", plain.wall, "git log -- PATH")
    b.add(
        f"log {name}, {n}, first run (builds the log index)", built.wall, "s", plain.wall, "git log -- PATH"
    )
    b.add(f"events, {n}, cold", events.wall, "s", git_log_p.wall, "git log -p main | wc -c")
    b.add(f"show main ({vms} VMs created), cold", commit.wall, "s", git_show.wall, "git show main | wc -c")
    return [
        (f"vm show {name}", shown),
        (f"log {name}", logged),
        (f"log {name}, building the index", built),
        ("events", events),
        ("show main", commit),
    ]


def measure_agent(
    b: Bench, where: str, driver: str, floor: float, scratch: str, vms: int
) -> list[tuple[str, Run]]:
    """``agent --once`` on the copy, its remote a bare clone of it where every VM is placed on this host."""
    repo, origin = os.path.join(where, "pool.git"), os.path.join(scratch, "origin.git")
    subprocess.run(["git", "clone", "-q", "--bare", "--local", repo, origin], check=True, timeout=600)
    message = f"bench: place every VM on {HOST}"  # as `vm migrate` or `--on` would, all in one commit
    with (
        Store.open(origin, durable=False) as store,
        store.branch(layout.MAIN).transaction(message=message, author=AUTHOR) as tx,
    ):
        tree = tx.tree
        for uuid in layout.vm_uuids(tree):
            tree = tree.set(layout.host_path(uuid), f"{HOST}\n".encode())
        tx.tree = tree
    argv = toolstack(repo, driver, "agent", "--remote", origin, "--once", "--metrics-file", "")
    first = b.run(argv, repeat=1)
    idle = b.run(argv)
    b.notes.append(
        f"agent --once, first round: {first.stdout.strip()[:300]!r}; then: {idle.stdout.strip()[:300]!r}"
    )
    placed = git(repo, "ls-tree", "-r", "--name-only", "main", "--", layout.VMS)
    if sum(line.endswith("/host") for line in placed.splitlines()) != vms:
        b.fail(f"agent --once did not pull the placement of the {vms} VMs on {HOST}")
    what, n = "floor: git archive + cat sim files", f"{vms} VMs placed here"
    b.add(f"agent --once, nothing to do, {n}, cold", idle.wall, "s", floor, what)
    b.add(f"agent --once, first round (pulls their placement), {n}", first.wall, "s", floor, what)
    return [("agent --once, nothing to do", idle), ("agent --once, first round", first)]


def measure_serve(
    b: Bench, repo: str, driver: str, floor: float, scratch: str, vms: int
) -> list[tuple[str, Run]]:
    """``toolstack serve`` under /usr/bin/time while this process GETs ``/vms`` twice and ``/vms/NAME``."""
    with socket.socket() as probe:  # a free port (the server binds it a moment later)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    token_file, base = os.path.join(scratch, "api-token"), f"http://127.0.0.1:{port}"
    argv = toolstack(
        repo, driver, "serve", "--port", str(port), "--token-file", token_file, "--log-level", "warning"
    )
    name = f"vm-{vms // 2:05d}"
    with (
        tempfile.NamedTemporaryFile("r", suffix=".time") as report,
        open(os.path.join(scratch, "serve.log"), "w") as log,
    ):
        started = time.perf_counter()
        server = subprocess.Popen(
            [TIME, "-f", "%e %M", "-o", report.name, *argv], env=ENV, stdout=log, stderr=log
        )
        walls: dict[str, float] = {}
        gets = Runs([], 20)
        try:
            ready = wait_ready(base, server, deadline=time.monotonic() + 120)
            walls["ready"] = time.perf_counter() - started if ready else float("nan")
            if not ready:
                b.fail(f"serve did not answer /health within 120 s (exit {server.poll()})")
            else:
                with open(token_file, encoding="utf-8") as tokens:
                    token = tokens.read().strip()
                for label in ("first", "second"):
                    walls[label], listing = get(f"{base}/vms", token)
                    if len(listing) != vms:
                        b.fail(f"GET /vms ({label}) listed {len(listing)} VMs of {vms}")
                one: list[tuple[float, object]] = []
                gets = timed_runs(
                    lambda _: one.append(get(f"{base}/vms/{name}", token)), 20, time.monotonic() + b.budget
                )
                walls["one"] = statistics.median(wall for wall, _ in one)
                if one[0][1].get("name") != name:
                    b.fail(f"GET /vms/{name} answered {str(one[0][1])[:200]}")
        except OSError as err:
            b.fail(f"serve: {err}")
        finally:
            stop(server)
        report.seek(0)
        said = report.read().split()
    run = Run(walls.get("ready", float("nan")), int(said[-1]) if said else 0, "")
    if not said:
        b.fail("serve: /usr/bin/time reported nothing")
    b.notes.append(
        f"serve answered /health {show(walls.get('ready'), 's')} after its start; GET /vms/{name} "
        f"median of {gets.done} {show(walls.get('one'), 's')}{gets.note()}"
    )
    what, n = "floor: git archive + cat sim files", f"{vms} VMs"
    b.add(f"serve: GET /vms, {n}, first request", walls.get("first"), "s", floor, what)
    b.add(f"serve: GET /vms, {n}, second request", walls.get("second"), "s", floor, what)
    return [("serve (GET /vms twice, GET /vms/NAME x20)", run)]


def wait_ready(base: str, server: subprocess.Popen[bytes], deadline: float) -> bool:
    """Whether the server answers ``/health`` before ``deadline`` (False at once if it exited)."""
    while time.monotonic() < deadline and server.poll() is None:
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=5) as answer:
                if answer.status == 200:
                    return True
        except OSError:
            time.sleep(0.1)
    return False


def get(url: str, token: str) -> tuple[float, object]:
    """One authenticated GET: its wall time (to the last byte) and the decoded JSON body."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=600) as answer:
        body = answer.read()
    return time.perf_counter() - started, json.loads(body)


def stop(server: subprocess.Popen[bytes]) -> None:
    """Stop the server (SIGINT to /usr/bin/time's child: time itself would die unreported) and wait."""
    try:
        with open(f"/proc/{server.pid}/task/{server.pid}/children", encoding="ascii") as children:
            child = [int(pid) for pid in children.read().split()]
    except OSError:
        child = []
    for pid in child:
        os.kill(pid, signal.SIGINT)
    try:
        server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        for pid in child:
            os.kill(pid, signal.SIGKILL)
        server.wait(timeout=60)


def measure_gc(b: Bench, where: str, scratch: str) -> list[tuple[str, Run]]:
    """``gc --before main`` and ``gc --compact``, each on its own copy, beside ``git repack -adf``."""
    copies = {
        kind: private_copy(where, os.path.join(scratch, f"gc-{kind}"))
        for kind in ("squash", "compact", "git")
    }
    repo = {kind: os.path.join(path, "pool.git") for kind, path in copies.items()}
    driver = {kind: f"sim://{os.path.join(path, 'pool.sim')}" for kind, path in copies.items()}
    head = git(repo["squash"], "rev-parse", "main").strip()
    squash = b.run(toolstack(repo["squash"], driver["squash"], "gc", "--before", head), repeat=1)
    compact = b.run(toolstack(repo["compact"], driver["compact"], "gc", "--compact"), repeat=1)
    repack = b.run(["git", "-C", repo["git"], "repack", "-q", "-adf"], repeat=1)
    if squash.ok and git(repo["squash"], "rev-list", "--count", "main").strip() != "1":
        b.fail("gc --before main left more than one commit on main")
    b.notes.append(
        f"gc --before main: {squash.stdout.strip()[:200]!r}; gc --compact: {compact.stdout.strip()[:200]!r}"
    )
    b.add(
        "gc --before main (squash), copy of the state", squash.wall, "s", repack.wall, "git repack -adf, copy"
    )
    b.add("gc --compact, copy of the state", compact.wall, "s", repack.wall, "git repack -adf, copy")
    return [("gc --before main", squash), ("gc --compact", compact)]
