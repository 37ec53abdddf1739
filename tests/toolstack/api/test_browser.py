"""The web page in a real headless Chromium (Debian's), against a live ``toolstack serve`` on loopback: create
and start a VM, see its timeline and a step's diff, roll it back through the dry-run dialog, see live updates;
screenshots are saved under artifacts/ at the repository root."""

from __future__ import annotations

import os
import re

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

import drivers
from tests.toolstack.api.conftest import ROOT

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "artifacts"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

if not os.path.exists(CHROMIUM):
    pytest.skip(
        f"BROWSER TEST NOT RUN: {CHROMIUM} is missing; install Debian's `chromium` package "
        "(apt-get install chromium) to run it",
        allow_module_level=True,
    )


@pytest.fixture
def page(tmp_path):
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=LAUNCH_ARGS,
            viewport={"width": 1400, "height": 950},
        )
        try:
            browser_page = context.new_page()
            browser_page.set_default_timeout(15_000)
            yield browser_page
        finally:
            context.close()


def test_create_start_timeline_diff_and_rollback_through_the_dry_run_dialog(page, live_server):
    ARTIFACTS.mkdir(exist_ok=True)
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))

    # 1. The page, given the token in the fragment, which it removes from the address bar.
    page.goto(f"{live_server.url}/#token={live_server.token}")
    expect(page.locator("#app")).to_be_visible()
    assert live_server.token not in page.url
    expect(page.locator("#live")).to_have_text("live")

    # 2. Create and start a VM (one task, as `xl create` does), then pause it from its row.
    page.fill("#create-name", "web1")
    page.fill("#create-memory", "256M")
    page.click("#create-start")
    row = page.locator('tr[data-vm="web1"]')
    expect(row.locator("td.state")).to_have_text("running")
    row.locator('button[data-action="pause"]').click()
    expect(row.locator("td.state")).to_have_text("paused")

    # 3. Its timeline: who, when, what; and a step's diff.
    page.click('tr[data-vm="web1"] td.name button')
    steps = page.locator("#timeline li")
    expect(steps).to_have_count(2)
    expect(steps.nth(0)).to_contain_text("vm pause web1")
    expect(steps.nth(0)).to_contain_text("Web Operator")
    expect(steps.nth(1)).to_contain_text("vm create web1")
    steps.nth(0).locator("button.step").click()
    expect(page.locator('#diff-changes li[data-field="desired"]')).to_have_text("desired: running → paused")

    # 4. Roll back to the create step: the dialog shows the dry-run plan first, and nothing has changed yet.
    steps.nth(1).locator("button.rollback").click()
    dialog = page.locator("#rollback-dialog")
    expect(dialog).to_be_visible()
    expect(page.locator("#plan li")).to_contain_text(["resume web1"])
    expect(row.locator("td.state")).to_have_text("paused")
    page.screenshot(path=str(ARTIFACTS / "api-browser-rollback-plan.png"))
    page.click("#rollback-apply")
    expect(dialog).to_be_hidden()
    expect(row.locator("td.state")).to_have_text("running")
    expect(page.locator("#status")).to_contain_text("rolled web1 back")
    expect(page.locator("#timeline li").first).to_contain_text(re.compile(r"reconcile|rollback"))

    # Drift made behind the toolstack's back, then a reconcile: both are steps of the VM's timeline.
    uuid = httpx.get(f"{live_server.url}/vms/web1", headers=live_server.auth).json()["uuid"]
    with drivers.open(f"sim://{live_server.repo.parent}/served.sim") as hypervisor:
        hypervisor.destroy(uuid)
    reconciled = httpx.post(f"{live_server.url}/reconcile", json={}, headers=live_server.auth).json()
    assert reconciled["applied"] is True and reconciled["errors"] == []
    page.click('tr[data-vm="web1"] td.name button')
    expect(page.locator("#timeline > li").nth(0)).to_contain_text("reconcile: start web1")
    expect(page.locator("#timeline > li").nth(1)).to_contain_text("drift: web1 is shutoff")
    expect(row.locator("td.state")).to_have_text("running")

    # Live updates: a change made by another client shows up without reloading the page.
    with httpx.Client(base_url=live_server.url, headers=live_server.auth) as other:
        assert other.post("/vms", json={"name": "from-elsewhere", "memory": 64}).status_code == 201
    expect(page.locator('tr[data-vm="from-elsewhere"]')).to_be_visible()
    expect(page.locator('#events li[data-kind="created"]').first).to_contain_text("from-elsewhere")

    # 5. The screenshot, kept as a test artifact.
    shot = ARTIFACTS / "api-browser.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 10_000
    assert errors == []


def test_without_a_token_the_page_asks_for_one_and_refuses_a_wrong_one(page, live_server):
    page.goto(live_server.url + "/")
    expect(page.locator("#login")).to_be_visible()
    page.fill("#token-input", "wrong-token-value-123")
    page.click("#login-form button")
    expect(page.locator("#login-error")).to_have_text("That token is wrong.")
    page.fill("#token-input", live_server.token)
    page.click("#login-form button")
    expect(page.locator("#app")).to_be_visible()


def test_the_list_shows_a_remote_vms_host_and_report_and_a_broken_entry(page, live_server, tmp_path):
    import json
    import subprocess
    import sys
    import time

    from toolstack import layout

    def cli(*args: str) -> str:
        command = [sys.executable, "-m", "toolstack.cli", "--repo", str(live_server.repo)]
        command += ["--driver", f"sim://{tmp_path}/served.sim", *args]
        return subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True).stdout

    cli("vm", "create", "here", "--memory", "64M", "--start")
    far = json.loads(cli("--json", "vm", "create", "far", "--memory", "64M", "--on", "h2"))["uuid"]
    bad = json.loads(cli("--json", "vm", "create", "bad", "--memory", "64M"))["uuid"]
    seen = json.dumps({"state": "running", "domid": 3, "memory": 64, "vcpus": 1, "seen_at": time.time() - 30})
    cli("store", "set", layout.observed_path("h2", far), seen)  # what h2's agent pushes
    cli("store", "set", layout.config_path(bad), "{broken")

    page.goto(f"{live_server.url}/#token={live_server.token}")
    remote = page.locator('tr[data-vm="far"]')
    expect(remote.locator("td.state")).to_have_text("running")
    expect(remote.locator("td.host")).to_contain_text(re.compile(r"h2, reported \d+ s ago"))
    expect(page.locator('tr[data-vm="here"] td.host')).to_contain_text("(here, live)")
    broken = page.locator('tr[data-vm="bad"]')
    expect(broken.locator("td.state")).to_have_text("broken")
    expect(broken.locator("td.error")).to_contain_text(f"{layout.config_path(bad)}: is not valid JSON")
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#vms-panel").screenshot(path=str(ARTIFACTS / "api-browser-pool-view.png"))


def test_the_timeline_shows_who_edited_a_gitops_change_and_who_merged_it(page, live_server, tmp_path):
    import subprocess
    import sys

    from tests.toolstack.api.test_history import edit_pushed_elsewhere

    with httpx.Client(base_url=live_server.url, headers=live_server.auth) as http:
        uuid = http.post("/vms", json={"name": "web1", "memory": 64}).json()["vm"]["uuid"]
        assert http.post("/vms", json={"name": "web2", "memory": 64}).status_code == 201
        central = edit_pushed_elsewhere(live_server.repo, uuid, tmp_path, 512)  # Ada's GitOps edit
        assert http.patch("/vms/web2", json={"memory": 128}).status_code == 200  # meanwhile, here
    olga = "Olga Operator <olga@example.org>"
    command = [sys.executable, "-m", "toolstack.cli", "--repo", str(live_server.repo), "--author", olga]
    command += ["--driver", f"sim://{tmp_path}/served.sim", "pull", "--url", str(central), "--yes"]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True, timeout=120)

    page.goto(f"{live_server.url}/#token={live_server.token}")
    page.click('tr[data-vm="web1"] td.name button')
    merge = page.locator("#timeline li", has_text="Merge origin/main into main")
    expect(merge).to_contain_text("edited by Ada Pusher, merged by Olga Operator")
    expect(merge.locator(".who").first).to_have_attribute("title", "Ada Pusher <ada@example.org>")
    expect(page.locator("#timeline li", has_text="vm create web1")).not_to_contain_text("edited by")
    recent = page.locator('#events li[data-kind="history"]', has_text="Merge origin/main into main")
    expect(recent).to_contain_text("edited by Ada Pusher, merged by Olga Operator")
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#timeline").screenshot(path=str(ARTIFACTS / "api-browser-edited-by.png"))
    page.screenshot(path=str(ARTIFACTS / "api-browser-edited-by-page.png"), full_page=True)
