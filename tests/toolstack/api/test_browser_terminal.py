"""A VM's serial console in the page's terminal (xterm.js over the WebSocket), in Debian's Chromium against a
live ``toolstack serve``: the simulator's fake boot log shows, typed keys come back echoed, the VM stopping
ends the session, and all of it runs under the page's Content-Security-Policy without one refusal. The
screenshot goes under artifacts/ at the repository root."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.toolstack.api import test_browser
from tests.toolstack.api.test_browser import ARTIFACTS

page = test_browser.page  # the fixture: Debian's Chromium, headless

# Every refusal by the Content-Security-Policy from the first script on: a blocked <style>, WebSocket, file.
RECORD_CSP_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


def test_the_console_button_shows_the_boot_log_in_a_terminal_and_echoes_keys(page, live_server):
    ARTIFACTS.mkdir(exist_ok=True)
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.add_init_script(RECORD_CSP_VIOLATIONS)
    with live_server.client() as client:
        assert client.post("/vms", json={"name": "web1", "memory": "256M", "start": True}).status_code == 201
        assert client.post("/vms", json={"name": "off", "memory": "256M"}).status_code == 201

    page.goto(f"{live_server.url}/#token={live_server.token}")
    # A stopped VM has no console to show.
    page.click('tr[data-vm="off"] td.name button')
    expect(page.locator("#detail-title")).to_have_text("off")
    expect(page.locator("#console-open")).to_be_disabled()

    page.click('tr[data-vm="web1"] td.name button')
    expect(page.locator("#detail-title")).to_have_text("web1")
    page.click("#console-open")
    dialog = page.locator("#console-dialog")
    expect(dialog).to_be_visible()
    expect(page.locator("#console-status")).to_contain_text("connected to web1")
    screen = page.locator("#console-term .xterm-rows")
    expect(screen).to_contain_text("Linux version 6.1.0-sim (simulated console of web1)")
    expect(screen).to_contain_text("web1 login:")

    # Keys typed in the terminal reach the guest, which echoes them as a tty does.
    page.keyboard.type("root")
    page.keyboard.press("Enter")
    expect(screen).to_contain_text("web1 login: root")
    # Escape goes to the guest too: the dialog stays open.
    page.keyboard.press("Escape")
    expect(dialog).to_be_visible()

    # The terminal's own styles apply (its renderer's <style> text, under a policy refusing inline styles).
    font = screen.evaluate("rows => getComputedStyle(rows).fontFamily")
    assert "monospace" in font, font
    page.screenshot(path=str(ARTIFACTS / "console-terminal.png"))

    # The VM stopping ends the session, and the page says so.
    with live_server.client() as client:
        assert client.post("/vms/web1/destroy").status_code == 200
    expect(page.locator("#console-status")).to_have_text("the console closed (the VM stopped)")
    page.click("#console-close")
    expect(dialog).to_be_hidden()

    assert page.evaluate("window.cspViolations") == []
    assert errors == []
