"""The page's boot and guest settings (issue 19), in Debian's headless Chromium against a live ``toolstack
serve``: the create form's "advanced" part makes a VM that boots a kernel with a command line and starts
with its host; the detail view shows its CPU, accelerator, graphics, autostart and consoles; its edit form
changes a setting through PATCH with If-Match, refuses to overwrite an edit made meanwhile (412), and the
API's record says what the page did. It fits a 390-pixel phone. Screenshots go under artifacts/."""

from __future__ import annotations

import httpx
from playwright.sync_api import Page, expect

from tests.toolstack.api.test_browser import ARTIFACTS, page  # noqa: F401 (the fixture)
from tests.toolstack.api.test_browser_console import NARROW, no_horizontal_overflow

KERNEL = "/var/lib/images/vmlinuz"
CMDLINE = "console=ttyS0 root=/dev/vda1"


def guest_facts(browser_page: Page) -> dict[str, str]:
    terms = browser_page.locator("#detail-guest dt").all_inner_texts()
    return dict(zip(terms, browser_page.locator("#detail-guest dd").all_inner_texts(), strict=True))


def test_create_with_a_kernel_and_autostart_see_and_edit_the_settings(page, live_server):  # noqa: F811
    ARTIFACTS.mkdir(exist_ok=True)
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(f"{live_server.url}/#token={live_server.token}")
    expect(page.locator("#live")).to_have_text("live")

    # 1. Create through the form's advanced part: a kernel with its command line, VNC, autostart.
    page.fill("#create-name", "kern1")
    page.fill("#create-memory", "256M")
    page.click("#create-advanced > summary")
    page.fill("#create-kernel", KERNEL)
    page.fill("#create-cmdline", CMDLINE)
    page.select_option("#create-accel", "tcg")
    page.check("#create-graphics")
    page.check("#create-autostart")
    page.screenshot(path=str(ARTIFACTS / "api-browser-guest-create.png"), full_page=True)
    page.click("#create-form button[data-start='0']")
    expect(page.locator("#status")).to_have_text("created kern1")
    # The form is ready for the next VM: its settings emptied, memory and vCPUs kept.
    expect(page.locator("#create-kernel")).to_have_value("")
    expect(page.locator("#create-autostart")).not_to_be_checked()
    expect(page.locator("#create-memory")).to_have_value("256M")
    expect(page.locator("#create-vcpus")).to_have_value("1")

    # 2. The detail view (the page selects the new VM): how it boots, and the guest's settings.
    expect(page.locator("#detail-title")).to_have_text("kern1")
    expect(page.locator("#detail-config")).to_contain_text(f"kernel={KERNEL}, cmdline={CMDLINE}")
    expect(page.locator("#detail-guest")).to_contain_text("autostart")
    facts = guest_facts(page)
    assert facts == {
        "cpu": "hypervisor default",
        "accel": "tcg (forced for this VM)",
        "graphics": "vnc on 127.0.0.1",
        "cd-rom": "none",
        "autostart": "yes",
        "consoles": "serial, vnc on 127.0.0.1",
    }
    with httpx.Client(base_url=live_server.url, headers=live_server.auth, timeout=30) as client:
        record = client.get("/vms/kern1").json()
        spec = record["spec"]
        assert spec["boot"] == {"kernel": KERNEL, "initrd": None, "cmdline": CMDLINE, "device": None}
        assert (spec["accel"], spec["graphics"], record["autostart"]) == ("tcg", "vnc", True)

        # 3. The edit form, filled from the record: change the CPU and autostart, keep the rest.
        page.click("#settings-edit > summary")
        expect(page.locator("#edit-kernel")).to_have_value(KERNEL)
        expect(page.locator("#edit-cmdline")).to_have_value(CMDLINE)
        expect(page.locator("#edit-autostart")).to_be_checked()
        page.fill("#edit-cpu", "host")
        page.uncheck("#edit-autostart")
        page.screenshot(path=str(ARTIFACTS / "api-browser-guest-edit.png"), full_page=True)
        page.click("#settings-save")
        expect(page.locator("#settings-result")).to_contain_text("saved: cpu, autostart")
        expect(page.locator("#detail-guest")).to_contain_text("host")
        assert guest_facts(page)["autostart"] == "no"
        edited = client.get("/vms/kern1").json()
        assert (edited["spec"]["cpu"], edited["autostart"]) == ("host", False)
        assert edited["spec"]["boot"] == record["spec"]["boot"]  # the form sent only what changed
        assert (edited["spec"]["accel"], edited["spec"]["graphics"]) == ("tcg", "vnc")
        history = client.get("/vms/kern1/history").json()["items"]
        assert len(history) == 2  # create, then one edit

        # 4. An edit made elsewhere while the form is open: the page's If-Match is stale, and it says so.
        page.click("#settings-edit > summary")
        page.fill("#edit-cmdline", "console=ttyS0 quiet")
        assert client.patch("/vms/kern1", json={"cpu": "qemu64"}).status_code == 200
        page.click("#settings-save")
        expect(page.locator("#settings-result")).to_contain_text("Someone changed this VM")
        expect(page.locator("#edit-cpu")).to_have_value("qemu64")  # refilled from the fresh record
        assert client.get("/vms/kern1").json()["spec"]["boot"]["cmdline"] == CMDLINE  # not overwritten
        page.fill("#edit-cmdline", "console=ttyS0 quiet")
        page.click("#settings-save")
        expect(page.locator("#settings-result")).to_contain_text("saved: boot")
        final = client.get("/vms/kern1").json()
        assert final["spec"]["boot"]["cmdline"] == "console=ttyS0 quiet" and final["spec"]["cpu"] == "qemu64"

    # 5. A phone: the create form's advanced part and the detail view fit, with nothing to scroll sideways.
    page.set_viewport_size(NARROW)
    page.click("#settings-edit > summary")
    assert no_horizontal_overflow(page)
    page.screenshot(path=str(ARTIFACTS / "api-browser-guest-390.png"), full_page=True)
    assert errors == []
