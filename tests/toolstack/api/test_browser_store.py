"""The store in a real browser (issue 22): Debian's Chromium runs the page ``toolstack/browser/`` under
Pyodide, with nothing of ours on the server side.

1. A state repository made by the toolstack, published as a dumb-HTTP mirror by ``python -m http.server``
   (the page and the mirror as plain files, from one directory): ``log(vm)`` is git's ``log -- <vm dir>`` for
   three VMs, and ``vmAt`` is the JSON git shows at two commits.
2. Against a live ``toolstack serve``: a memory change committed in the browser is pushed and applied; an
   invalid one is refused with the validation error, and main is left as it was.

The page's runtime (Pyodide from npm, dulwich's wheel, the store) is fetched into its vendor/ directory by
``scripts/pyodide-setup.sh browser`` (from the registries' caches after the first time).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import sync_playwright

from tests.conftest import git
from tests.toolstack.api.conftest import ROOT, free_port, start_server
from tests.toolstack.api.test_browser import CHROMIUM, LAUNCH_ARGS

pytestmark = pytest.mark.native

BROWSER_DIR = ROOT / "toolstack" / "browser"
PAGE_TIMEOUT_MS = 120_000  # Pyodide's first start on a loaded 2-core machine


@pytest.fixture(scope="module")
def vendored() -> Path:
    env = {**os.environ, "VENV": str(Path(sys.executable).parents[1])}
    subprocess.run(
        ["bash", "scripts/pyodide-setup.sh", "browser"], cwd=ROOT, env=env, check=True, timeout=600
    )
    return BROWSER_DIR / "vendor"


@pytest.fixture
def chromium(vendored) -> Iterator[object]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def open_page(chromium, url: str, errors: list[str]):
    page = chromium.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(url)
    page.evaluate("window.toolstackStore.ready")
    return page


def toolstack(repo: Path, sim: Path, *args: str) -> None:
    command = [sys.executable, "-m", "toolstack.cli", "--repo", str(repo), "--driver", f"sim://{sim}"]
    command += ["--author", "Ann Operator <ann@example.org>", *args]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, timeout=120)


def vm_dir(repo: Path, rev: str, name: str) -> str:
    names = git(repo, "ls-tree", "-r", "--name-only", rev, "names/").split()
    uuid = git(repo, "show", f"{rev}:{next(p for p in names if p.endswith('/' + name))}").strip()
    return f"vms/{uuid[:2]}/{uuid}"


def wait_until_served(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"python -m http.server did not serve {url}")
        time.sleep(0.1)


@pytest.fixture
def static_mirror(tmp_path) -> Iterator[tuple[str, Path]]:
    """A toolstack-made pool as static files beside the page: (the page's URL with ?repo=, the mirror)."""
    site = tmp_path / "site"
    site.mkdir()
    repo, sim = site / "pool.git", tmp_path / "sim"
    toolstack(repo, sim, "init", "--name", "audited")
    for name in ("web1", "web2", "db1"):
        toolstack(repo, sim, "vm", "create", name, "--memory", "256M")
    toolstack(repo, sim, "vm", "set", "web1", "--memory", "512M")
    toolstack(repo, sim, "vm", "start", "db1")
    toolstack(repo, sim, "vm", "set", "web2", "--vcpus", "2")
    toolstack(repo, sim, "vm", "set", "web1", "--memory", "1G")
    git(repo, "update-server-info")
    (site / "browser").symlink_to(BROWSER_DIR)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(site)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_served(f"{url}/pool.git/HEAD", server)
        yield f"{url}/browser/?repo=/pool.git", repo
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_a_static_mirror_read_in_the_browser_gives_git_s_log_and_git_s_json(chromium, static_mirror):
    url, repo = static_mirror
    errors: list[str] = []
    page = open_page(chromium, url, errors)

    for name in ("web1", "web2", "db1"):
        expected = git(repo, "log", "--format=%H", "main", "--", vm_dir(repo, "main", name)).split()
        assert page.evaluate("name => window.toolstackStore.log(name)", name) == expected

    web1_log = git(repo, "log", "--format=%H", "main", "--", vm_dir(repo, "main", "web1")).split()
    seen = {}
    for commit in (web1_log[0], web1_log[-1]):
        shown = json.loads(git(repo, "show", f"{commit}:{vm_dir(repo, 'main', 'web1')}/config"))
        seen[commit] = page.evaluate("([c, n]) => window.toolstackStore.vmAt(c, n)", [commit, "web1"])
        assert seen[commit] == shown
    assert (seen[web1_log[0]]["memory"], seen[web1_log[-1]]["memory"]) == (1024, 256)

    # What a person sees: the history with authors, the VMs at main, a field-level diff.
    assert page.locator("#history tbody tr").first.inner_text().count("Ann Operator") == 1
    assert page.locator('#vms tr[data-vm="web1"]').inner_text().split("\t")[2] == "1024"
    diff = page.evaluate("([a, b]) => window.toolstackStore.diff(a, b)", [web1_log[-1], web1_log[0]])
    assert {"vm": "web1", "field": "memory", "old": 256, "new": 1024} in diff
    assert errors == []


def test_a_change_made_in_the_browser_is_pushed_and_applied_and_an_invalid_one_refused(chromium, tmp_path):
    server = start_server(tmp_path)
    try:
        with server.client() as client:
            for name in ("web1", "db1"):
                assert client.post("/vms", json={"name": name, "memory": "256M"}).status_code == 201
        errors: list[str] = []
        page = open_page(chromium, f"{server.url}/browser/?repo=/git#token={server.token}", errors)
        assert server.token not in page.url

        pushed = page.evaluate(
            "t => window.toolstackStore.commitAndPush('web1', {memory: 768}, t)", server.token
        )

        with server.client() as client:
            vm = client.get("/vms/web1").json()
            history = client.get("/vms/web1/history").json()["items"]
            main_before = client.get("/branches").json()
        assert (vm["spec"]["memory"], vm["observed"]["memory"]) == (768, 768)
        assert [entry["commit"] for entry in history if "in the browser" in entry["message"]] == [pushed]

        refusal = page.evaluate(
            "t => window.toolstackStore.commitAndPush('web1', {memory: 'lots'}, t)"
            ".then(() => 'accepted', e => e.message)",
            server.token,
        )

        assert refusal.startswith("push of refs/heads/main refused: invalid VM configuration: web1: ")
        assert "memory" in refusal
        with server.client() as client:
            vm = client.get("/vms/web1").json()
            assert client.get("/branches").json() == main_before
        assert vm["spec"]["memory"] == 768
        assert errors == []
    finally:
        server.stop()
