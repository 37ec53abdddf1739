"""The xl driver against real Xen: run inside dom0 by scripts/xen-e2e-dom0.sh (``make xen-e2e``).

Drives one PV guest (dom0's Debian kernel and the busybox initrd xen-e2e.sh builds) through the toolstack CLI
with ``--driver xl:///...``, checks every step against ``xl list -l`` and ``xenstore-ls``, and keeps what the
real xl printed in ``OUT/fixtures/`` so that fixtures/xl can be refreshed from it. Each check appends a
``PASS name`` or ``FAIL name: detail`` line to ``OUT/status``; commands and their output go to stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

GUEST = "e2e-pv"
XVDB = 51728  # xvdb's device number: (202 << 8) | (1 << 4)


class Checks:
    """The checks' state: where results go, the toolstack's repository and driver, the failures so far.

    Args:
        out: The results directory (the `results` 9p share).
        xen_dir: The image cache (the guest's kernel and initrd are there).
    """

    def __init__(self, out: Path, xen_dir: Path) -> None:
        self.out = out
        self.xen_dir = xen_dir
        self.fixtures = out / "fixtures"
        self.fixtures.mkdir(parents=True, exist_ok=True)
        self.work = Path("/tmp/xen-e2e")
        self.work.mkdir(parents=True, exist_ok=True)
        self.repo = self.work / "toolstack.git"
        # The disks' hotplug script is this checkout's one-call script (see disks()).
        self.plain_driver = f"xl://{self.work / 'xl'}"
        self.driver = (
            f"{self.plain_driver}?block-script={Path(__file__).resolve().parent / 'xen-block-oneshot'}"
        )
        self.failures = 0

    # -- running things ----------------------------------------------------------------------------------
    def run(self, *argv: str, timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
        """Run a command, echo it and its output, never raise on a non-zero exit."""
        started = time.monotonic()
        try:
            result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            result = subprocess.CompletedProcess(argv, 124, "", f"timeout after {timeout}s")
        print(f"$ {' '.join(argv)}  -> {result.returncode} ({time.monotonic() - started:.1f}s)", flush=True)
        for text in (result.stdout, result.stderr):
            if text.strip():
                print("  " + text.strip().replace("\n", "\n  ")[:4000], flush=True)
        return result

    def ts(self, *args: str, driver: str | None = None) -> subprocess.CompletedProcess[str]:
        """The toolstack CLI on the e2e repository and the xl driver (``driver`` or the checks'), with --json.

        In this process (click's CliRunner), not as a new one: a Python start that imports the toolstack
        over 9p under TCG takes about two minutes, a command about as long as its xl calls.
        """
        from click.testing import CliRunner

        from toolstack.cli import main as cli

        argv = ["--repo", str(self.repo), "--driver", driver or self.driver, "--json", *args]
        started = time.monotonic()
        outcome = CliRunner().invoke(cli, argv)
        result = subprocess.CompletedProcess(argv, outcome.exit_code, outcome.stdout, outcome.stderr)
        if outcome.exception is not None and not isinstance(outcome.exception, SystemExit):
            result.stderr += "".join(traceback.format_exception(outcome.exception))
        elapsed = time.monotonic() - started
        print(f"$ toolstack {' '.join(argv)}  -> {result.returncode} ({elapsed:.1f}s)", flush=True)
        for text in (result.stdout, result.stderr):
            if text.strip():
                print("  " + text.strip().replace("\n", "\n  ")[:4000], flush=True)
        return result

    def record(self, name: str, *argv: str) -> subprocess.CompletedProcess[str]:
        """Run an xl command and keep its stdout, stderr and exit status as fixtures/<name>.*."""
        result = self.run(*argv)
        (self.fixtures / f"{name}.stdout").write_text(result.stdout)
        (self.fixtures / f"{name}.stderr").write_text(result.stderr)
        (self.fixtures / f"{name}.rc").write_text(f"{result.returncode}\n")
        return result

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        """Record one check's outcome in OUT/status."""
        line = f"PASS {name}" if ok else f"FAIL {name}: {detail}"
        if not ok:
            self.failures += 1
        print(line, flush=True)
        with (self.out / "status").open("a") as status:
            status.write(line + "\n")
        return ok

    def info(self, text: str) -> None:
        """Record a fact (not a check) in OUT/status as an ``INFO`` line."""
        print(f"INFO {text}", flush=True)
        with (self.out / "status").open("a") as status:
            status.write(f"INFO {text}\n")

    def home_gone(self, name: str, domid: int) -> bool:
        """Check (one cheap read) that the domain's xenstore home /local/domain/<domid> is gone."""
        home = f"/local/domain/{domid}"
        return self.check(f"{name}: xenstore has no {home}", self.xs(home) is None, f"{home} still exists")

    # -- what Xen says -----------------------------------------------------------------------------------
    def xl_domain(self) -> dict[str, Any] | None:
        """The guest's entry in ``xl list -l``, or None."""
        result = self.run("xl", "list", "-l")
        for entry in json.loads(result.stdout or "[]"):
            if entry.get("config", {}).get("c_info", {}).get("name") == GUEST:
                return entry
        return None

    def xl_flags(self) -> str:
        """The guest's six state flags from ``xl list``, or "" when it is not listed."""
        for line in self.run("xl", "list").stdout.splitlines()[1:]:
            fields = line.split()
            if fields and fields[0] == GUEST:
                return fields[4]
        return ""

    def xs(self, path: str) -> str | None:
        """xenstore-read, None when the node does not exist."""
        result = self.run("xenstore-read", path, timeout=20)
        return result.stdout.strip() if result.returncode == 0 else None

    def wait_for(self, what: str, predicate: Any, timeout: float = 120.0) -> bool:
        """Poll ``predicate`` until it is true; report how long it took."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if predicate():
                print(f"  {what}: after {time.monotonic() - started:.1f}s", flush=True)
                return True
            time.sleep(1)
        return False

    def console_log(self) -> str:
        path = Path(f"/var/log/xen/console/guest-{GUEST}.log")
        return path.read_text(errors="replace") if path.exists() else ""


def scenario(c: Checks) -> None:
    """The whole life of one PV guest, each step checked against xl and xenstore."""
    c.ts("init", "--name", "xen-e2e")
    c.record("list", "xl", "list")
    c.record("list-l-dom0-only", "xl", "list", "-l")
    c.record("no-such-domain", "xl", "pause", "no-such-domain")
    # create
    result = c.ts(
        "vm", "create", GUEST, "--memory", "128M", "--max-memory", "256M",
        "--kernel", str(c.xen_dir / "vmlinuz"), "--initrd", str(c.xen_dir / "domU-initrd.img"),
        "--cmdline", "console=hvc0",
    )  # fmt: skip
    cfg = c.work / "xl" / f"{GUEST}.cfg"
    c.check("vm create writes an xl.cfg", result.returncode == 0 and cfg.exists(), result.stderr)
    if cfg.exists():
        (c.fixtures / "e2e-pv.cfg").write_text(cfg.read_text())
    c.check("vm create starts nothing", c.xl_domain() is None)
    # start
    result = c.ts("vm", "start", GUEST)
    entry = c.xl_domain()
    if not c.check("vm start: xl list -l lists the guest", result.returncode == 0 and entry is not None,
                   result.stderr.strip()[-2000:]):  # fmt: skip
        c.record("create-direct", "xl", "create", str(cfg))
        return
    domid = entry["domid"]
    uuid = entry["config"]["c_info"].get("uuid")
    c.check("vm start: the toolstack's uuid is the domain's", uuid == json.loads(result.stdout)["uuid"], uuid)
    c.check("xenstore has /local/domain/<domid>/name", c.xs(f"/local/domain/{domid}/name") == GUEST)
    c.check("xenstore has /vm/<uuid>", c.xs(f"/vm/{uuid}/name") == GUEST)
    booted = c.wait_for("guest userspace", lambda: "userspace up" in c.console_log(), timeout=240)
    c.check("the guest boots to its busybox init (console log)", booted, c.console_log()[-1500:])
    c.record("list-running", "xl", "list")
    c.record("list-l", "xl", "list", "-l")
    c.record("create-name-exists", "xl", "create", str(cfg))
    (c.fixtures / "xenstore-ls-guest.txt").write_text(c.run("xenstore-ls", f"/local/domain/{domid}").stdout)
    # The PV primary console is served by xenconsoled from console/ring-ref, not a xenbus device that
    # connects: keep its backend's nodes as evidence of the state Xen's own daemon leaves it in.
    console = c.run("xenstore-ls", "-f", "/local/domain/0/backend/console").stdout
    (c.out / "xenstore-ls-console-backend.txt").write_text(console)
    state = c.xs(f"/local/domain/0/backend/console/{domid}/0/state")
    c.info(f"Xen's xenstored: the PV console backend's state is {state}")
    # pause, resume
    result = c.ts("vm", "pause", GUEST)
    c.check("vm pause: xl list shows p", result.returncode == 0 and c.xl_flags()[2:3] == "p", c.xl_flags())
    c.record("list-paused", "xl", "list")
    show = json.loads(c.ts("vm", "show", GUEST).stdout or "{}")
    c.check("vm show reports paused", show.get("state") == "paused", str(show.get("state")))
    result = c.ts("vm", "resume", GUEST)
    c.check("vm resume: no p flag", result.returncode == 0 and c.xl_flags()[2:3] == "-", c.xl_flags())
    # balloon
    result = c.ts("vm", "set", GUEST, "--memory", "192M")
    entry = c.xl_domain() or {}
    target_kb = entry.get("config", {}).get("b_info", {}).get("target_memkb")
    target = c.xs(f"/local/domain/{domid}/memory/target")
    c.check("vm set --memory: xenstore memory/target", target == "196608", f"{target} {result.stderr}")
    c.check("vm set --memory: xl list -l target_memkb", target_kb == 196608, str(target_kb))
    c.record("list-l-ballooned", "xl", "list", "-l")
    show = json.loads(c.ts("vm", "show", GUEST).stdout or "{}")
    c.check("vm show reports 192 MiB", show.get("memory") == 192, str(show.get("memory")))
    disks(c, domid)
    # shutdown
    result = c.ts("vm", "shutdown", GUEST, "--timeout", "120")
    c.check("vm shutdown: the guest powers off", result.returncode == 0 and c.xl_domain() is None,
            result.stderr + c.console_log()[-500:])  # fmt: skip
    c.check("shutdown releases the xenstore nodes", c.xs(f"/local/domain/{domid}/name") is None)
    domid = drift(c)
    # destroy (of the guest reconcile restarted), delete
    result = c.ts("vm", "destroy", GUEST)
    gone = result.returncode == 0 and c.xl_domain() is None
    c.check("vm destroy: xl no longer lists it", gone, result.stderr)
    if domid is not None:
        c.home_gone("vm destroy", domid)
    result = c.ts("vm", "delete", GUEST)
    c.check("vm delete removes the xl.cfg", result.returncode == 0 and not cfg.exists(), result.stderr)
    domains = c.run("xenstore-list", "/local/domain").stdout.split()
    c.check("vm delete: xenstore lists only dom0 under /local/domain", domains == ["0"], str(domains))
    c.record("destroy-invalid-domain", "xl", "destroy", GUEST)


def disks(c: Checks, domid: int) -> None:
    """Disk attach and detach of a plain file.

    First through Xen's own ``block`` hotplug script: under TCG its ~20 xenstore client calls (a process
    start each) may outlast libxl's hotplug timeout; if the attach fails, the driver must leave nothing
    behind. Then through the driver's ``?block-script=`` (scripts/xen-block-oneshot: one read, one write),
    which must connect the disk.
    """
    image = c.work / "disk.img"
    with image.open("wb") as disk:
        disk.truncate(32 << 20)
    backend = f"/local/domain/0/backend/vbd/{domid}/{XVDB}/state"
    frontend = f"/local/domain/{domid}/device/vbd/{XVDB}/state"
    result = c.ts(
        "disk", "attach", GUEST, str(image), "--target", "xvdb", "--id", "data", driver=c.plain_driver
    )
    (c.fixtures / "block-attach-file.stderr").write_text(result.stderr)
    (c.fixtures / "block-attach-file.stdout").write_text(result.stdout)
    if result.returncode == 0:
        c.check("disk attach through Xen's block script", True)
        result = c.ts("disk", "detach", GUEST, "data", driver=c.plain_driver)
        c.check("disk detach through Xen's block script", result.returncode == 0, result.stderr[-500:])
    else:
        print(
            "  Xen's block script failed: libxl's reasons are in the drivers.xen log lines above", flush=True
        )
        vdevs = [disk.get("vdev") for disk in (c.xl_domain() or {}).get("config", {}).get("disks", [])]
        c.check("a failed attach leaves no disk in xl list -l", "xvdb" not in vdevs, str(vdevs))
        c.check(
            "a failed attach leaves no vbd backend",
            c.wait_for("no backend", lambda: c.xs(backend) is None, 60),
        )
    result = c.ts("disk", "attach", GUEST, str(image), "--target", "xvdb", "--id", "data")
    c.check(
        "disk attach (block-script=xen-block-oneshot)", result.returncode == 0, result.stderr.strip()[-500:]
    )
    c.record("block-list", "xl", "block-list", GUEST)
    connected = c.wait_for("vbd connected", lambda: c.xs(backend) == "4" and c.xs(frontend) == "4", 90)
    c.check("disk attach: backend and frontend state 4", connected, f"{c.xs(backend)} / {c.xs(frontend)}")
    c.record("list-l-disk", "xl", "list", "-l")
    entry = c.xl_domain() or {}
    vdevs = [disk.get("vdev") for disk in entry.get("config", {}).get("disks", [])]
    c.check("disk attach: xl list -l lists xvdb", "xvdb" in vdevs, str(vdevs))
    show = json.loads(c.ts("vm", "show", GUEST).stdout or "{}")
    c.check("vm show lists the disk", any(d.get("id") == "data" for d in show.get("devices", [])), str(show))
    result = c.ts("disk", "detach", GUEST, "data")
    gone = c.wait_for("vbd gone", lambda: c.xs(backend) is None, 60)
    c.check("disk detach: the backend goes", result.returncode == 0 and gone, result.stderr.strip()[-500:])
    loops = c.run("losetup", "--list", "--noheadings", "--output", "BACK-FILE").stdout
    c.check("disk detach: the hotplug script freed its loop device", str(image) not in loops, loops)
    c.record("block-detach-not-connected", "xl", "block-detach", GUEST, "xvdb")
    c.record("block-attach-invalid-domain", "xl", "block-attach", "no-such-domain", f"target={image}")


def drift(c: Checks) -> int | None:
    """An ``xl destroy`` made outside the toolstack is drift that reconcile sees and repairs.

    Returns:
        The domid of the guest reconcile restarted, None if it did not.
    """
    result = c.ts("vm", "start", GUEST)
    entry = c.xl_domain()
    c.check("vm start after shutdown", result.returncode == 0 and entry is not None, result.stderr)
    c.run("xl", "destroy", GUEST)
    if entry is not None:
        c.home_gone("xl destroy behind the toolstack", entry["domid"])
    plan = json.loads(c.ts("reconcile", "--dry-run").stdout or "{}")
    print(json.dumps(plan, indent=1), flush=True)
    text = json.dumps(plan)
    seen = GUEST in text and bool(plan.get("actions"))
    c.check("reconcile --dry-run sees the outside xl destroy", seen, text)
    result = c.ts("reconcile", "--yes")
    restarted = c.xl_domain()
    c.check("reconcile restarts it", result.returncode == 0 and restarted is not None, result.stderr)
    if restarted is not None:
        new = restarted["domid"]
        name = c.xs(f"/local/domain/{new}/name")
        c.check("reconcile restart: xenstore has the new domain's name", name == GUEST, str(name))
    history = c.ts("log", GUEST).stdout
    c.check("the drift is in the VM's history", "reconcile" in history, history[-800:])
    return restarted["domid"] if restarted is not None else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--xen-dir", type=Path, required=True)
    args = parser.parse_args()
    os.environ.setdefault("GIT_AUTHOR_NAME", "xen-e2e")
    # The xl driver logs a failed xl command's whole stderr (libxl's reasons) at INFO: keep it in the log.
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("  log %(name)s: %(message)s"))
    xl_log = logging.getLogger("drivers.xen")
    xl_log.addHandler(handler)
    xl_log.setLevel(logging.INFO)
    xl_log.propagate = False
    checks = Checks(args.out, args.xen_dir)
    started = time.monotonic()
    try:
        scenario(checks)
    except Exception as error:  # a crash is a failed check; its traceback is in the log
        traceback.print_exc()
        checks.check("the checks ran to the end", False, f"{type(error).__name__}: {error}")
    print(f"xl checks: {checks.failures} failed, {time.monotonic() - started:.0f}s", flush=True)
    return 1 if checks.failures else 0


if __name__ == "__main__":
    sys.exit(main())
