"""The page's detail view lists a running VM's pending changes under "Pending" (issue 19), each field with its
live and next-boot values, in a real headless Chromium against a live ``toolstack serve``; the screenshot is
saved under artifacts/."""

from __future__ import annotations

import httpx
from playwright.sync_api import expect

from tests.toolstack.api.test_browser import ARTIFACTS, page  # noqa: F401 (the fixture)


def test_the_detail_view_shows_pending_changes_live_and_next_boot(page, live_server):  # noqa: F811
    ARTIFACTS.mkdir(exist_ok=True)
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    with httpx.Client(base_url=live_server.url, headers=live_server.auth, timeout=30) as client:
        assert client.post("/vms", json={"name": "web1", "memory": "256M", "start": True}).status_code == 201
        assert client.patch("/vms/web1", json={"memory": "1G", "cpu": "host"}).status_code == 200
    page.goto(f"{live_server.url}/#token={live_server.token}")
    page.click('tr[data-vm="web1"] td.name button')
    pending = page.locator("#detail-pending")
    expect(pending.locator('li.next-boot[data-field="memory"]')).to_contain_text("memory: 256 → 1024 MiB")
    expect(pending.locator('li.next-boot[data-field="cpu"]')).to_contain_text("cpu: — → host")
    expect(pending).to_contain_text("vm reboot web1 --apply")
    expect(pending).not_to_contain_text("running with")  # not drift: it waits for the next boot
    expect(page.locator('tr[data-vm="web1"]')).not_to_contain_text("drift")
    page.screenshot(path=str(ARTIFACTS / "api-browser-pending.png"), full_page=True)
    assert errors == []
