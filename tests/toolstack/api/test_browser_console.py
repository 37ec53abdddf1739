"""The web console in Debian's Chromium against a live ``toolstack serve``, as an operator uses it: the
login box alone, 1,000 VMs (search, filters, sort, paging, a bulk stop, a destroy that asks first), a narrow
phone-sized screen, a step's field-level changes, a rollback dialog with each field's before and after,
the events panel's recent history, and ``/docs``. Screenshots go under artifacts/ at the repository root."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from bench.scale_states import HOST, build_pool_of_vms
from store import Store
from tests.toolstack.api import test_browser
from tests.toolstack.api.conftest import LiveServer, free_port, launch
from tests.toolstack.api.test_browser import ARTIFACTS
from toolstack import layout

page = test_browser.page  # the fixture: Debian's Chromium, headless
POOL_SIZE = 1000
DASH = "\u2013"  # the pager says "1 to 50" with an en dash
NARROW = {"width": 390, "height": 844}  # a phone
OTHER_HOST = "rack-2"
# The VMs placed on OTHER_HOST: the odd ones from vm-00501 (250); the others are on HOST, the server's.
ON_OTHER_HOST = [f"vm-{n:05d}" for n in range(501, POOL_SIZE, 2)]


def serve(tmp_path: Path, repo: Path, sim: Path, host: str) -> LiveServer:
    """``toolstack serve`` on an existing repository (conftest's start_server makes a new one)."""
    port = free_port()
    token_file = tmp_path / "served.api-token"
    log = tmp_path / "server.log"
    command = [sys.executable, "-m", "toolstack.cli", "--repo", str(repo), "--driver", f"sim://{sim}"]
    command += ["--host", host, "--author", "Web Operator <web@example.org>"]
    command += ["serve", "--port", str(port), "--token-file", str(token_file)]
    url, process = launch(command, port, log)
    return LiveServer(url, token_file.read_text().strip(), token_file, log, repo, process)


@pytest.fixture
def pool_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A server over 1,000 VMs (vm-00000...vm-00999: ~80% running, 15% stopped, 5% paused), written in one
    commit by the benchmarks' bulk builder: creating them through the API would take minutes."""
    repo, sim = tmp_path / "pool.git", tmp_path / "pool.sim"
    build_pool_of_vms(str(repo), str(sim), POOL_SIZE, seed=20, deadline=time.monotonic() + 120)
    place_on_another_host(repo, ON_OTHER_HOST)
    server = serve(tmp_path, repo, sim, HOST)
    yield server
    server.stop()


def place_on_another_host(repo: Path, names: list[str]) -> None:
    """Place ``names`` on OTHER_HOST, as `vm migrate` leaves them once it is done: their placement says
    OTHER_HOST, and their state is what OTHER_HOST reported (HOST's report of them moved there)."""
    with Store.open(str(repo), durable=False) as store:
        main = store.branch(layout.MAIN)
        with main.transaction(message=f"test: {len(names)} VMs on {OTHER_HOST}", author="t <t@x>") as tx:
            tree = tx.tree
            for name in names:
                uuid = (tree.get(layout.name_path(name)) or b"").decode().strip()
                report = layout.read_observed(tree, HOST, uuid)
                tree = tree.set(layout.host_path(uuid), f"{OTHER_HOST}\n".encode())
                tree = layout.with_observed(
                    layout.with_observed(tree, HOST, uuid, None), OTHER_HOST, uuid, report
                )
            tx.tree = tree


def rows(page: Page):
    return page.locator("#vm-table tbody tr[data-vm]")


def no_horizontal_overflow(page: Page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_the_login_box_stands_alone_and_fits_a_phone(page, live_server):
    page.set_viewport_size(NARROW)
    page.goto(live_server.url + "/")
    expect(page.locator("#login")).to_be_visible()
    # The panels under it stay hidden until the token is accepted (a grid layout must not override that).
    expect(page.locator("#app")).to_be_hidden()
    expect(page.locator("#vms-panel")).to_be_hidden()
    expect(page.locator("#events-panel")).to_be_hidden()
    assert no_horizontal_overflow(page)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "console-login-390.png"))
    page.fill("#token-input", live_server.token)
    page.click("#login-form button")
    expect(page.locator("#vms-panel")).to_be_visible()
    expect(page.locator("#login")).to_be_hidden()


def test_a_thousand_vms_searched_filtered_sorted_paged_stopped_in_bulk_and_destroyed_after_asking(
    page, pool_server
):
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(f"{pool_server.url}/#token={pool_server.token}")

    # Paging: one page of 50 in the DOM, and the count of everything.
    expect(page.locator("#vm-count")).to_have_text("1000 VMs")
    expect(rows(page)).to_have_count(50)
    expect(page.locator("#page-info")).to_have_text(f"1{DASH}50 of 1000 · page 1 of 20")
    expect(rows(page).first).to_have_attribute("data-vm", "vm-00000")
    page.click("#page-next")
    expect(page.locator("#page-info")).to_have_text(f"51{DASH}100 of 1000 · page 2 of 20")
    expect(rows(page).first).to_have_attribute("data-vm", "vm-00050")
    page.select_option("#page-size", "200")
    expect(rows(page)).to_have_count(200)
    expect(page.locator("#page-info")).to_have_text(f"1{DASH}200 of 1000 · page 1 of 5")

    # Sort: by name, then the other way round.
    page.click('#vm-table th[data-sort="name"] button')
    expect(rows(page).first).to_have_attribute("data-vm", "vm-00999")
    page.click('#vm-table th[data-sort="name"] button')
    expect(rows(page).first).to_have_attribute("data-vm", "vm-00000")

    # Search: one VM by name, then by the start of its uuid.
    page.fill("#vm-search", "vm-00777")
    expect(rows(page)).to_have_count(1)
    expect(page.locator("#vm-count")).to_have_text("1 of 1000 VMs match")
    uuid = httpx.get(f"{pool_server.url}/vms/vm-00777", headers=pool_server.auth).json()["uuid"]
    page.fill("#vm-search", uuid[:13])
    expect(rows(page)).to_have_count(1)
    expect(rows(page).first).to_have_attribute("data-vm", "vm-00777")

    # Filter by state, by host (250 VMs are on the other host), and by both.
    listed = httpx.get(f"{pool_server.url}/vms", headers=pool_server.auth).json()
    assert sorted(vm["name"] for vm in listed if vm["host"] == OTHER_HOST) == ON_OTHER_HOST
    paused = sorted(vm["name"] for vm in listed if vm["state"] == "paused")
    paused_there = [name for name in paused if name in ON_OTHER_HOST]
    assert 0 < len(paused_there) < len(paused), "paused VMs on both hosts"
    page.fill("#vm-search", "")
    page.select_option("#vm-filter-state", "paused")
    expect(page.locator("#vm-count")).to_have_text(f"{len(paused)} of 1000 VMs match")
    assert [row.get_attribute("data-vm") for row in rows(page).all()] == paused
    page.select_option("#vm-filter-host", OTHER_HOST)
    expect(page.locator("#vm-count")).to_have_text(f"{len(paused_there)} of 1000 VMs match")
    assert [row.get_attribute("data-vm") for row in rows(page).all()] == paused_there
    page.select_option("#vm-filter-host", HOST)
    expect(page.locator("#vm-count")).to_have_text(f"{len(paused) - len(paused_there)} of 1000 VMs match")
    page.select_option("#vm-filter-state", "")
    expect(page.locator("#vm-count")).to_have_text(f"{1000 - len(ON_OTHER_HOST)} of 1000 VMs match")
    page.select_option("#vm-filter-host", OTHER_HOST)
    expect(page.locator("#vm-count")).to_have_text(f"{len(ON_OTHER_HOST)} of 1000 VMs match")
    page.select_option("#vm-filter-host", "")

    # Bulk stop: the running VMs among vm-00010...vm-00019, each with its outcome.
    running = sorted(vm["name"] for vm in listed if vm["state"] == "running" and "vm-0001" in vm["name"])
    assert len(running) >= 3, running
    page.fill("#vm-search", "vm-0001")
    page.select_option("#vm-filter-state", "running")
    expect(page.locator("#vm-count")).to_have_text(f"{len(running)} of 1000 VMs match")
    page.check("#select-page")
    expect(page.locator("#bulk-count")).to_have_text(f"{len(running)} selected")
    page.click("#bulk-stop")
    outcomes = page.locator("#bulk-results li[data-outcome]")
    expect(outcomes).to_have_count(len(running))
    expect(page.locator("#bulk-results .meta, #bulk-results .error")).to_have_text(
        f"Stop: {len(running)} stopped, 0 skipped, 0 failed"
    )
    for name in running:
        expect(page.locator(f'#bulk-results li[data-vm="{name}"]')).to_contain_text(f"{name}: stopped")
    page.select_option("#vm-filter-state", "")
    for name in running:
        expect(page.locator(f'tr[data-vm="{name}"] td.state')).to_have_text("shutoff")
    page.screenshot(path=str(ARTIFACTS / "console-bulk-stop.png"))
    page.click("#bulk-results button.close")

    # Bulk start: the same VMs again, each started.
    page.select_option("#vm-filter-state", "shutoff")
    stopped = sorted(row.get_attribute("data-vm") for row in rows(page).all())
    assert set(running) <= set(stopped), stopped
    page.check("#select-page")
    expect(page.locator("#bulk-count")).to_have_text(f"{len(stopped)} selected")
    page.click("#bulk-start")
    expect(page.locator("#bulk-results li[data-outcome]")).to_have_count(len(stopped))
    expect(page.locator("#bulk-results .meta, #bulk-results .error")).to_have_text(
        f"Start: {len(stopped)} started, 0 skipped, 0 failed"
    )
    page.select_option("#vm-filter-state", "")
    for name in stopped:
        expect(page.locator(f'tr[data-vm="{name}"] td.state')).to_have_text("running")
    states = {
        vm["name"]: vm["state"] for vm in httpx.get(f"{pool_server.url}/vms", headers=pool_server.auth).json()
    }
    assert {states[name] for name in stopped} == {"running"}

    # Destroy asks first: cancelled, nothing happens; confirmed, the VM is off.
    page.fill("#vm-search", "vm-00002")
    target = page.locator('tr[data-vm="vm-00002"]')
    if target.locator("td.state").inner_text() != "running":
        target.locator('button[data-action="start"]').click()
    expect(target.locator("td.state")).to_have_text("running")
    target.locator('button[data-action="destroy"]').click()
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_be_visible()
    expect(page.locator("#confirm-title")).to_have_text("Destroy vm-00002?")
    expect(page.locator("#confirm-text")).to_contain_text("powered off at once")
    page.screenshot(path=str(ARTIFACTS / "console-destroy-confirmation.png"))
    page.click("#confirm-cancel")
    expect(dialog).to_be_hidden()
    expect(target.locator("td.state")).to_have_text("running")
    target.locator('button[data-action="destroy"]').click()
    page.click("#confirm-ok")
    expect(target.locator("td.state")).to_have_text("shutoff")

    # Delete asks too, and a cancelled delete leaves the VM there.
    target.locator('button[data-action="delete"]').click()
    expect(page.locator("#confirm-title")).to_have_text("Delete vm-00002?")
    page.click("#confirm-cancel")
    expect(target).to_be_visible()

    # On a phone: the list becomes cards, nothing is wider than the screen.
    page.fill("#vm-search", "")
    page.click("#bulk-results button.close")
    page.set_viewport_size(NARROW)
    expect(page.locator("#vm-count")).to_have_text("1000 VMs")
    assert no_horizontal_overflow(page)
    page.screenshot(path=str(ARTIFACTS / "console-390.png"))
    page.click('tr[data-vm="vm-00001"] td.name button')
    expect(page.locator("#detail-title")).to_have_text("vm-00001")
    assert no_horizontal_overflow(page)
    page.locator("#detail-panel").screenshot(path=str(ARTIFACTS / "console-390-detail.png"))
    assert errors == []


def test_a_steps_field_level_changes_a_rollback_dialogs_before_and_after_and_who_did_what(page, live_server):
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text) if message.type == "error" else None)
    with live_server.client() as http:
        assert http.post("/vms", json={"name": "web1", "memory": "256M"}).status_code == 201
        assert http.patch("/vms/web1", json={"memory": 512, "vcpus": 2}).status_code == 200
    page.goto(f"{live_server.url}/#token={live_server.token}")

    # The events panel starts with the recent history, each entry with its author.
    recent = page.locator("#events li.past")
    expect(recent.first).to_contain_text("vm set web1")
    expect(recent.first.locator(".who")).to_have_text("Web Operator")
    expect(recent.nth(1)).to_contain_text("vm create web1")

    # The VM in detail: configuration, and the timeline with who did each step.
    page.click('tr[data-vm="web1"] td.name button')
    expect(page.locator("#detail-config")).to_contain_text("512 MiB")
    steps = page.locator("#timeline > li")
    expect(steps).to_have_count(2)
    expect(steps.nth(0).locator(".who")).to_have_text("Web Operator")

    # A step's changes, field by field: the configuration only, until "show all".
    steps.nth(0).locator("button.step").click()
    changes = page.locator("#diff-changes")
    expect(changes.locator('li[data-field="memory"]')).to_have_text("memory: 256 → 512 MiB")
    expect(changes.locator('li[data-field="vcpus"]')).to_have_text("vcpus: 1 → 2")
    expect(changes.locator("li.field-change")).to_have_count(2)
    expect(changes.locator(".hidden-count")).to_contain_text("task records")
    page.screenshot(path=str(ARTIFACTS / "console-timeline-diff.png"))
    page.check("#diff-show-all")
    expect(changes.locator("li.field-change.task").first).to_be_visible()
    expect(changes.locator("details.raw")).to_have_count(1)
    expect(changes.locator('li[data-field="memory"]')).to_have_text("memory: 256 → 512 MiB")
    page.uncheck("#diff-show-all")

    # Roll back to the create step: the dialog shows each field from its value now to the restored one.
    steps.nth(1).locator("button.rollback").click()
    dialog = page.locator("#rollback-dialog")
    expect(dialog).to_be_visible()
    restored = page.locator("#rollback-changes li")
    expect(restored).to_have_text(["memory: 512 → 256 MiB", "vcpus: 2 → 1"])
    expect(page.locator("#plan li")).to_have_count(1)
    page.screenshot(path=str(ARTIFACTS / "console-rollback-dialog.png"))
    page.click("#rollback-apply")
    expect(dialog).to_be_hidden()
    expect(page.locator("#detail-config dd").first).to_have_text("256 MiB")
    expect(page.locator('tr[data-vm="web1"] td.num').first).to_have_text("256 MiB")
    assert console == []


def test_docs_shows_swagger_ui_with_the_tabs_token_and_nothing_without_it(page, live_server):
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text) if message.type == "error" else None)
    page.goto(f"{live_server.url}/docs")
    expect(page.locator("#docs-login")).to_be_visible()
    expect(page.locator(".swagger-ui .info")).to_have_count(0)

    page.goto(f"{live_server.url}/#token={live_server.token}")
    expect(page.locator("#live")).to_have_text("live")
    page.click("#docs-link")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("git-toolstack")
    files_route = page.locator(".opblock-summary-path", has_text="/vms/{vm}/files")
    expect(files_route).to_be_visible()
    expect(page.locator("#docs-login")).to_be_hidden()
    # "Try it out" sends the token: the list of VMs answers 200 from the page.
    page.locator(".opblock-summary-path", has_text=re.compile(r"^/vms$")).first.click()
    page.locator(".opblock.is-open button.try-out__btn").click()
    page.locator(".opblock.is-open button.execute").click()
    answered = page.locator(".opblock.is-open .live-responses-table tbody .response-col_status")
    expect(answered).to_have_text("200")
    page.screenshot(path=str(ARTIFACTS / "console-docs.png"))
    assert console == []  # a Content-Security-Policy refusal would be one
