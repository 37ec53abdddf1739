"""Benchmark of the store in the browser (issue 22): the page ``toolstack/browser/`` in Debian's Chromium under
Pyodide, against the same work on CPython, on one mirror, in the same run.

The mirror is a state repository of ``--commits`` commits (default 10,000) over ``--vms`` VMs, each commit
changing one VM's memory, in the toolstack's layout (``vms/<xx>/<uuid>/config``, ``names/<xx>/<name>``),
built by ``git fast-import`` and served as a dumb-HTTP mirror by ``python -m http.server`` beside the page.

Printed:

1. time from opening the page to the first history (the page's own clock from its start, and the wall time
   from ``goto`` to ``ready``), with Pyodide's start-up alone beside it;
2. the download: every response's bytes, split into the runtime (Pyodide, dulwich, the store) and the
   repository;
3. peak memory (VmHWM from ``/proc``) of the processes the user waits on: the server, and Chromium's (the
   largest renderer, the page's, where Pyodide runs; the browser process; and the sum over all of them: an
   upper bound of their peak together, since each peaked at its own moment and shared pages count in each);
4. ``log(vm)`` for a few VMs in the browser against ``Branch.log`` on CPython over the same clone: the median
   of ``--repeat`` runs each, and the ratio; and the clone itself, both ways.

Each loop has a deadline (``--deadline`` seconds): a loop that reaches it stops and says so, and its median is
of the runs it completed (bench/fresh.py's ``timed_runs``). The browser and
the server share this machine's cores: read ratios, not absolute figures.

Run: ``.venv/bin/python bench/browser_bench.py [--commits 10000] [--vms 50] [--repeat 5]`` (it runs
``scripts/pyodide-setup.sh browser`` first, as ``make browser`` does).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid as uuidlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from fresh import Runs, peak_rss_mb, timed_runs  # noqa: E402  (bench/fresh.py)

from store.dumbhttp import clone  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
]


def config(name: str, memory: int) -> bytes:
    return json.dumps({"name": name, "memory": memory, "vcpus": 1}, indent=2, sort_keys=True).encode() + b"\n"


def build_mirror(repo: Path, commits: int, vms: int) -> list[tuple[str, str]]:
    """A bare repository of ``commits`` commits on main, by git fast-import; returns [(name, uuid)]."""
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(repo)], check=True)
    machines = [(f"vm{i:03d}", str(uuidlib.UUID(int=i + 1))) for i in range(vms)]
    stream: list[bytes] = []

    def blob(data: bytes) -> None:
        stream.append(b"data %d\n" % len(data) + data + b"\n")

    for number in range(commits):
        name, uuid = machines[number % vms]
        memory = 256 + 64 * (number // vms % 32)
        message = f"vm set {name} --memory {memory}M ({uuid})\n".encode()
        stream.append(b"commit refs/heads/main\n")
        stream.append(
            b"author Op %d <op%d@example.org> %d +0000\n" % (number % 7, number % 7, 1_700_000_000 + number)
        )
        stream.append(b"committer Op <op@example.org> %d +0000\n" % (1_700_000_000 + number))
        blob(message)
        if number < vms:  # the first commits create each VM and its name record
            shard = hashlib.sha1(name.encode()).hexdigest()[:2]
            stream.append(b"M 100644 inline names/%s/%s\n" % (shard.encode(), name.encode()))
            blob(f"{uuid}\n".encode())
        stream.append(b"M 100644 inline vms/%s/%s/config\n" % (uuid[:2].encode(), uuid.encode()))
        blob(config(name, memory))
        stream.append(b"\n")
    subprocess.run(["git", "-C", str(repo), "fast-import", "--quiet"], input=b"".join(stream), check=True)
    subprocess.run(["git", "-C", str(repo), "repack", "-adq"], check=True)
    subprocess.run(["git", "-C", str(repo), "update-server-info"], check=True)
    return machines


def serve(site: Path, port: int) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(site)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/pool.git/HEAD", timeout=1).close()
            return server
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    server.kill()
    raise SystemExit("python -m http.server did not start")


def descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (children, theirs, ...), from ``/proc``; the browser is the playwright
    driver's child, not this process's."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as stat:
                    parents[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):  # gone meanwhile
                continue
    found, frontier = [], [pid]
    while frontier:
        below = [child for child, parent in parents.items() if parent in frontier]
        found += below
        frontier = below
    return found


def chromium_peaks() -> list[tuple[str, float]]:
    """Each Chromium process this benchmark started, read while they still run: its kind (``--type``:
    renderer, gpu-process, ...; the browser process has none) and its peak RSS in MiB."""
    peaks = []
    for pid in descendants(os.getpid()):
        try:
            with open(f"/proc/{pid}/cmdline", encoding="utf-8", errors="replace") as cmdline:
                # Chromium rewrites its children's command lines as one string: split on spaces too.
                argv = cmdline.read().replace("\0", " ").split()
        except OSError:
            continue
        if argv and "chrom" in os.path.basename(argv[0]):
            kind = next((a.split("=", 1)[1] for a in argv if a.startswith("--type=")), "browser")
            peaks.append((kind, peak_rss_mb(pid)))
    return [(kind, peak) for kind, peak in peaks if peak == peak]  # NaN: it exited in between


def browser_side(url: str, names: list[str], repeat: int, seconds: float) -> dict:
    from playwright.sync_api import sync_playwright

    sizes: dict[str, int] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        try:
            page = browser.new_context().new_page()
            # A timed loop may overrun its budget by one run: the page's own timeout must not cut it first.
            page.set_default_timeout((seconds + 60) * 1000)

            def count(response) -> None:
                try:
                    sizes[response.url] = len(response.body())
                except Exception:  # a redirect or an aborted request has no body
                    sizes.setdefault(response.url, 0)

            page.on("response", count)
            start = time.perf_counter()
            page.goto(url)
            page.evaluate("window.toolstackStore.ready")
            wall = time.perf_counter() - start
            timings = page.evaluate("window.toolstackStore.timings")
            logs = {}
            for name in names:
                times = page.evaluate(
                    """async ([name, repeat, budgetMs]) => {
                        const out = [];
                        const end = performance.now() + budgetMs;
                        for (let i = 0; i < repeat && performance.now() < end; i++) {
                            const t = performance.now();
                            await window.toolstackStore.log(name);
                            out.push((performance.now() - t) / 1000);
                        }
                        return out;
                    }""",
                    [name, repeat, seconds * 1000],  # each VM's loop its own budget, as on the CPython side
                )
                logs[name] = page.evaluate("n => window.toolstackStore.log(n)", name)
                logs[name + ":times"] = times
            chromium = chromium_peaks()
        finally:
            browser.close()
    return {"wall": wall, "timings": timings, "sizes": sizes, "logs": logs, "chromium": chromium}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commits", type=int, default=10_000)
    parser.add_argument("--vms", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--deadline", type=float, default=300.0, help="seconds allowed for each loop")
    args = parser.parse_args()
    if not os.path.exists(CHROMIUM):
        raise SystemExit(f"{CHROMIUM} is missing: apt-get install chromium (make setup installs it)")
    env = {**os.environ, "VENV": str(Path(sys.executable).parents[1])}
    subprocess.run(
        ["bash", "scripts/pyodide-setup.sh", "browser"], cwd=ROOT, env=env, check=True, timeout=600
    )

    with tempfile.TemporaryDirectory(prefix="browser-bench-") as tmp:
        site = Path(tmp)
        start = time.perf_counter()
        machines = build_mirror(site / "pool.git", args.commits, args.vms)
        print(
            f"mirror: {args.commits} commits over {args.vms} VMs, built in {time.perf_counter() - start:.1f} s"
        )
        (site / "browser").symlink_to(ROOT / "toolstack" / "browser")
        port = 8000 + os.getpid() % 1000
        server = serve(site, port)
        try:
            names = [machines[0][0], machines[len(machines) // 2][0], machines[-1][0]]
            page = browser_side(
                f"http://127.0.0.1:{port}/browser/?repo=/pool.git", names, args.repeat, args.deadline
            )

            async def get(url: str) -> bytes | None:
                def read() -> bytes | None:
                    try:
                        with urllib.request.urlopen(url, timeout=60) as response:
                            return response.read()
                    except urllib.error.HTTPError as err:
                        if err.code == 404:
                            return None
                        raise

                return await asyncio.to_thread(read)

            start = time.perf_counter()
            store = asyncio.run(clone(f"http://127.0.0.1:{port}/pool.git", get))
            cpython_clone = time.perf_counter() - start
            server_rss = peak_rss_mb(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=10)

    uuid_of = dict(machines)
    runtime = sum(n for u, n in page["sizes"].items() if "/vendor/" in u or "/browser/" in u)
    repository = sum(n for u, n in page["sizes"].items() if "/pool.git/" in u)
    print(
        f"download: {(runtime + repository) / 1e6:.1f} MB = runtime {runtime / 1e6:.1f} MB (Pyodide, dulwich, "
        f"the store, the page) + repository {repository / 1e6:.2f} MB"
    )
    timings = page["timings"]
    print(
        f"first history: {timings['firstHistoryMs'] / 1000:.1f} s on the page's clock (Python ready at "
        f"{timings['pythonMs'] / 1000:.1f} s, then the clone and the history), {page['wall']:.1f} s from goto to "
        f"ready; CPython's clone of the same mirror: {cpython_clone:.2f} s"
    )
    print(f"log(vm) over {args.commits} commits, median of up to {args.repeat} runs:")
    for name in names:
        path = f"vms/{uuid_of[name][:2]}/{uuid_of[name]}"
        runs = timed_runs(
            lambda _, p=path: store.branch("main").log(p), args.repeat, time.monotonic() + args.deadline
        )
        expected = [entry.id for entry in store.branch("main").log(path)]
        assert page["logs"][name] == expected, f"log({name}) differs between the browser and CPython"
        browser = Runs(page["logs"][name + ":times"], args.repeat)
        b, c = browser.median, runs.median
        sides = (("browser", browser), ("CPython", runs))
        note = "".join(f" ({side}: {cut.note().strip(' ()')})" for side, cut in sides if cut.cut)
        print(
            f"  {name}: {len(expected)} commits; browser {b * 1000:.0f} ms, CPython {c * 1000:.0f} ms, "
            f"ratio {b / c:.1f}x{note}"
        )

    chromium = page["chromium"]
    renderer = max((peak for kind, peak in chromium if kind == "renderer"), default=float("nan"))
    browser = max((peak for kind, peak in chromium if kind == "browser"), default=float("nan"))
    print(
        f"peak RSS (VmHWM): server (python -m http.server) {server_rss:.0f} MB; Chromium's largest renderer "
        f"(the page, Pyodide) {renderer:.0f} MB, its browser process {browser:.0f} MB, its {len(chromium)} "
        f"processes {sum(peak for _, peak in chromium):.0f} MB summed (an upper bound: shared pages count in "
        f"each); this process (CPython's clone and logs) {peak_rss_mb():.0f} MB"
    )


if __name__ == "__main__":
    main()
