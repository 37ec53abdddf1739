"""The page's console against a real guest (``make e2e``): ``toolstack serve`` on the e2e libvirtd boots the
e2e kernel, and the page's terminal (xterm.js over the WebSocket) shows its boot messages as they come, from
the kernel's first lines to its init's; the VM stopping ends the session. The screenshot goes under
artifacts/ at the repository root."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from tests.drivers.conftest import E2E_DIR, E2E_URI, _require_e2e_guest
from tests.toolstack.api import test_browser
from tests.toolstack.api.conftest import LiveServer, start_server
from tests.toolstack.api.test_browser import ARTIFACTS

pytestmark = pytest.mark.e2e

page = test_browser.page  # the fixture: Debian's Chromium, headless


@pytest.fixture
def qemu_server(tmp_path) -> Iterator[LiveServer]:
    """``toolstack serve`` on the e2e libvirtd; every domain it defined is destroyed and undefined after."""
    import libvirt

    _require_e2e_guest()
    server = start_server(tmp_path, driver=E2E_URI)
    yield server
    server.stop()
    connection = libvirt.open(E2E_URI.partition("?")[0])
    for domain in connection.listAllDomains():
        if domain.name().startswith("web19-"):
            if domain.isActive():
                domain.destroy()
            domain.undefine()
    connection.close()


def reset(name: str) -> None:
    """Reset the domain as a reset button would (libvirt's ``virDomainReset``)."""
    import libvirt

    connection = libvirt.open(E2E_URI.partition("?")[0])
    try:
        connection.lookupByName(name).reset()
    finally:
        connection.close()


def test_the_pages_console_shows_a_real_guests_boot_messages(page, qemu_server):
    ARTIFACTS.mkdir(exist_ok=True)
    name = f"web19-{secrets.token_hex(3)}"
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    boot = {
        "kernel": str(E2E_DIR / "vmlinuz"),
        "initrd": str(E2E_DIR / "initrd.img"),
        "cmdline": "console=ttyS0 panic=-1",
    }
    with qemu_server.client() as client:
        created = client.post("/vms", json={"name": name, "memory": "128M", "boot": boot, "start": True})
        assert created.status_code == 201, created.text

    page.goto(f"{qemu_server.url}/#token={qemu_server.token}")
    page.click(f'tr[data-vm="{name}"] td.name button')
    expect(page.locator("#detail-title")).to_have_text(name)
    page.click("#console-open")
    expect(page.locator("#console-status")).to_contain_text(f"connected to {name}")
    screen = page.locator("#console-term .xterm-rows")
    # libvirt's console replays nothing, and the guest may have booted before the page attached: reset it
    # (a hardware reset; the domain and its serial port stay) so that its whole boot comes through.
    reset(name)
    expect(screen).to_contain_text("e2e guest: userspace up", timeout=90_000)
    # The kernel's own lines came before it (the terminal shows the last screenful of them).
    expect(screen).to_contain_text("] Run /init as init process")
    page.screenshot(path=str(ARTIFACTS / "console-terminal-libvirt.png"))

    with qemu_server.client() as client:
        # 200 once done, or 202 with a job when QEMU takes longer than the API waits: either way it stops.
        assert client.post(f"/vms/{name}/destroy").status_code in (200, 202)
    expect(page.locator("#console-status")).to_have_text(
        "the console closed (the VM stopped)", timeout=30_000
    )
    assert errors == []
