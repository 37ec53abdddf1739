"""The service units in packaging/: installed by scripts/install-units.sh, each valid for systemd, sandboxed,
and running a toolstack command line that the CLI accepts."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNITS = sorted(path.name for path in (ROOT / "packaging" / "systemd").glob("*.service"))
TOOLSTACK = Path(sys.executable).with_name("toolstack")
needs_systemd = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (make setup installs it)",
)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The units as scripts/install-units.sh stages them under DESTDIR, for this checkout's toolstack."""
    destdir = tmp_path_factory.mktemp("destdir")
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "install-units.sh"), str(TOOLSTACK)],
        env={**os.environ, "DESTDIR": str(destdir)},
        check=True,
        capture_output=True,
        timeout=60,
    )
    return destdir


def unit_settings(path: Path) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def test_there_are_units_for_serve_agent_xenstored_and_the_boot_reconcile():
    assert UNITS == [
        "toolstack-agent.service",
        "toolstack-boot.service",
        "toolstack-serve.service",
        "toolstack-xenstored.service",
    ]


def test_the_boot_reconcile_runs_once_after_libvirtd_and_before_serve_and_agent(installed):
    settings = unit_settings(installed / "etc" / "systemd" / "system" / "toolstack-boot.service")
    assert settings["Type"] == ["oneshot"]
    assert shlex.split(settings["ExecStart"][0])[1:] == ["reconcile", "--boot"]
    assert "libvirtd.service" in settings["After"][0].split()
    assert set(settings["Before"][0].split()) == {"toolstack-serve.service", "toolstack-agent.service"}
    for unit in ("toolstack-serve.service", "toolstack-agent.service"):
        after = unit_settings(installed / "etc" / "systemd" / "system" / unit)["After"][0].split()
        assert "toolstack-boot.service" in after


@needs_systemd
@pytest.mark.parametrize("unit", UNITS)
def test_each_unit_passes_systemd_analyze_verify_without_a_warning(installed, unit):
    path = installed / "etc" / "systemd" / "system" / unit
    assert "@TOOLSTACK@" not in path.read_text()
    verified = subprocess.run(
        ["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60
    )
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout + verified.stderr == "", "systemd only warns of an unknown key: none may be there"


@pytest.mark.parametrize("unit", UNITS)
def test_each_unit_is_sandboxed_with_a_state_directory(installed, unit):
    settings = unit_settings(installed / "etc" / "systemd" / "system" / unit)
    assert settings["ProtectSystem"] == ["strict"]
    assert settings["ProtectHome"] == ["yes"]
    assert settings["NoNewPrivileges"] == ["yes"]
    assert settings["SystemCallFilter"] == ["@system-service"]
    if unit == "toolstack-xenstored.service":  # xenstored is dom0's: it must open /dev/xen as root
        assert "User" not in settings
        assert settings["StateDirectory"] == ["toolstack-xenstored"]
    else:
        assert settings["User"] == ["toolstack"]
        assert settings["StateDirectory"] == ["toolstack"]
        assert settings["CapabilityBoundingSet"] == [""]
        assert settings["PrivateDevices"] == ["yes"]


def test_no_two_units_of_different_users_share_a_state_directory(installed):
    # systemd chowns a unit's state directory, recursively, to the unit's user when they differ: two users
    # sharing one would take it from each other at every start (root's xenstored, the toolstack user's serve).
    users_of: dict[str, set[str]] = {}
    for unit in UNITS:
        settings = unit_settings(installed / "etc" / "systemd" / "system" / unit)
        for directory in settings.get("StateDirectory", []):
            for name in directory.split():
                users_of.setdefault(name, set()).add(settings.get("User", ["root"])[-1])
    assert users_of == {"toolstack": {"toolstack"}, "toolstack-xenstored": {"root"}}


def test_serve_appends_the_textfiles_the_xenstored_and_agent_units_write(installed):
    from toolstack.cli.serve import default_textfiles
    from toolstack.metrics import agent_metrics_file

    units = installed / "etc" / "systemd" / "system"
    serve = unit_settings(units / "toolstack-serve.service")
    assert "--metrics-textfile" not in serve["ExecStart"][0]  # it would replace [serve] metrics_textfiles
    # No --repo in the units: serve and the agent use ./toolstack.git in their working directory.
    repo = os.path.join(serve["WorkingDirectory"][0], "toolstack.git")
    assert unit_settings(units / "toolstack-agent.service")["WorkingDirectory"] == serve["WorkingDirectory"]
    xenstored = unit_settings(units / "toolstack-xenstored.service")
    argv = shlex.split(xenstored["ExecStart"][0])
    written = argv[argv.index("--metrics-file") + 1]
    assert os.path.dirname(written) == "/var/lib/" + xenstored["StateDirectory"][0]
    assert set(default_textfiles(repo)) >= {written, agent_metrics_file(repo)}
    # serve runs as the toolstack user: xenstored's (root's) directory must let it reach the file.
    assert int(xenstored["StateDirectoryMode"][0], 8) & 0o005 == 0o005


def test_the_xenstored_unit_serves_xens_rings_as_the_daemon_it_replaces(installed):
    # Conflicts=xenstored.service: on a Xen host it is dom0's only xenstored, so it must map dom0's ring and
    # the guests' (--xen); a socket-only daemon there would leave every guest without its devices.
    settings = unit_settings(installed / "etc" / "systemd" / "system" / "toolstack-xenstored.service")
    assert settings["Conflicts"] == ["xenstored.service"]
    assert "--xen" in shlex.split(settings["ExecStart"][0])


@pytest.mark.parametrize("unit", UNITS)
def test_each_units_command_line_is_one_the_cli_accepts(installed, unit):
    (command,) = unit_settings(installed / "etc" / "systemd" / "system" / unit)["ExecStart"]
    argv = shlex.split(command)
    assert argv[0] == str(TOOLSTACK.resolve())
    # click parses every option before --help acts: an unknown option or a bad value fails here.
    checked = subprocess.run([*argv, "--help"], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stderr


@needs_systemd
def test_the_service_account_is_valid_for_systemd_sysusers(installed):
    dry_run = subprocess.run(
        ["systemd-sysusers", "--dry-run", str(installed / "usr" / "lib" / "sysusers.d" / "toolstack.conf")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert dry_run.returncode == 0, dry_run.stderr
    assert "Failed" not in dry_run.stderr and "Failed" not in dry_run.stdout
