"""The CLI package: a command imports only what it uses (a cold `toolstack --help` loads no layer: no
FastAPI, no libvirt, not even the store; `toolstack log NAME` only the store and the log index),
global options go before or after the subcommand, and under `--json` errors are JSON (same exit codes)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from tests.toolstack.conftest import ROOT
from toolstack import errors, layout
from toolstack.cli import errors as cli_errors
from toolstack.cli.group import COMMANDS, SUMMARIES, main

# Runs the CLI as `python -m toolstack.cli` does, then prints the modules it loaded (at exit: after click's
# sys.exit) as the last line of stderr.
PROBE = """
import atexit, json, runpy, sys
atexit.register(lambda: sys.stderr.write("\\n" + json.dumps(sorted(sys.modules)) + "\\n"))
sys.argv = ["toolstack", *sys.argv[1:]]
runpy.run_module("toolstack.cli", run_name="__main__", alter_sys=True)
"""
WEB_AND_LIBVIRT = {"fastapi", "uvicorn", "starlette", "libvirt"}
LAYERS = {"store", "drivers", "dulwich", "pydantic", "xenstored", "toolstack.ops", "asyncio"}


def run(tmp_path, *args, code=0, probe=False):
    """`toolstack ARGS`, the repository and the simulator given by the environment (``probe``: under
    :data:`PROBE`)."""
    result = subprocess.run(
        [sys.executable, *(["-c", PROBE] if probe else ["-m", "toolstack.cli"]), *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        env={
            **os.environ,
            "PYTHONPATH": ROOT,
            "TOOLSTACK_REPO": str(tmp_path / "state.git"),
            "TOOLSTACK_DRIVER": f"sim://{tmp_path}/sim",
        },
    )
    assert result.returncode == code, f"exit {result.returncode}: {result.stdout}\n{result.stderr}"
    return result


def loaded(tmp_path: Path, *args: str) -> set[str]:
    """The modules a cold `toolstack ARGS` imported, and their top-level packages."""
    modules = json.loads(run(tmp_path, *args, probe=True).stderr.splitlines()[-1])
    return {name.split(".")[0] for name in modules} | set(modules)


# -- imports -----------------------------------------------------------------------------------------------
def test_a_cold_help_imports_no_layer(tmp_path):
    modules = loaded(tmp_path, "--help")
    assert not modules & WEB_AND_LIBVIRT
    assert not modules & LAYERS  # the commands' modules import click only: the listing needs no more
    assert "toolstack.cli.vm" in modules  # listed from its own help


def test_a_command_imports_only_what_it_uses(tmp_path):
    run(tmp_path, "init")
    run(tmp_path, "vm", "create", "web", "--memory", "64M")
    modules = loaded(tmp_path, "show", "main")
    assert not modules & WEB_AND_LIBVIRT
    assert "toolstack.ops" in modules and "toolstack.cli.state" in modules
    assert "toolstack.cli.vm" not in modules and "xenstored" not in modules  # nor the other commands
    assert not loaded(tmp_path, "serve", "--help") & WEB_AND_LIBVIRT  # FastAPI when it serves


def test_a_log_reads_the_index_without_opening_the_toolstack(tmp_path):
    """`toolstack log NAME` is a query of the VM log index: no models, no drivers, no hypervisor."""
    run(tmp_path, "init")
    run(tmp_path, "vm", "create", "web", "--memory", "64M")
    modules = loaded(tmp_path, "log", "web")
    assert "toolstack.log_index" in modules and "store" in modules
    assert not modules & {"toolstack.ops", "toolstack.models", "drivers", "pydantic", "toolstack.cli.state"}


def test_the_listing_line_of_a_command_not_imported_is_its_own():
    ctx = click.Context(main)
    for name, summary in SUMMARIES.items():
        command = main.get_command(ctx, name)
        assert command is not None
        for limit in (20, 45, 80, 200):
            assert click.Command(name, help=summary).get_short_help_str(limit) == command.get_short_help_str(
                limit
            ), name


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_in_the_table_loads(name):
    command = main.get_command(click.Context(main), name)
    assert isinstance(command, click.Command) and command.name == name


def test_command_modules_never_import_the_group():
    package = Path(ROOT) / "toolstack" / "cli"
    for path in sorted(package.glob("*.py")):
        if path.name in ("__init__.py", "__main__.py", "group.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module in ("toolstack.cli", "toolstack.cli.group"):
                pytest.fail(f"{path.name} imports {node.module}: the group loads the commands, not back")


# -- global options before or after the subcommand ------------------------------------------------------
def test_global_options_are_accepted_after_the_subcommand_and_the_last_one_wins(tmp_path):
    run(tmp_path, "init", "--name", "p")
    other = tmp_path / "other"
    run(tmp_path, "init", "--repo", str(other / "state.git"))  # `init --repo`: the option after init
    assert (other / "state.git").is_dir()

    created = run(
        tmp_path,
        *("--host", "before", "--author", "Before <b@example.org>"),
        *("vm", "create", "web", "--memory", "64M", "--json"),
        *("--host", "h1", "--author", "After <a@example.org>", "--driver", f"sim://{tmp_path}/sim2"),
    )
    assert json.loads(created.stdout)["name"] == "web"
    assert os.listdir(tmp_path / "sim2")  # the driver given after the subcommand
    assert json.loads(run(tmp_path, "store", "ls", "hosts", "--json").stdout) == ["h1"]  # observed there
    assert json.loads(run(tmp_path, "--json", "log", "web").stdout)["author"] == "After <a@example.org>"

    # Before, after, and in the middle (after a group's name) say the same.
    listings = [
        run(tmp_path, "--json", "vm", "list").stdout,
        run(tmp_path, "vm", "list", "--json").stdout,
        run(tmp_path, "vm", "--json", "list").stdout,
    ]
    assert len(set(listings)) == 1 and [vm["name"] for vm in json.loads(listings[0])] == ["web"]

    # --repo after the subcommand overrides the one before it (and $TOOLSTACK_REPO).
    elsewhere = run(
        tmp_path, "--repo", str(tmp_path / "state.git"), "vm", "list", "--repo", str(other / "state.git")
    )
    assert "web" not in elsewhere.stdout


def test_a_command_keeps_its_own_option_of_a_global_name():
    ctx = click.Context(main)
    serve, agent = main.get_command(ctx, "serve"), main.get_command(ctx, "agent")
    options = {p.name: p for p in serve.params}
    assert options["bind_host"].opts == ["--host"] and options["repo"].expose_value  # serve's own
    assert "host_name" in {p.name for p in agent.params}
    hidden = {o for p in serve.params if getattr(p, "hidden", False) for o in p.opts}
    # the globals it lacks, hidden from its help
    assert hidden == {"--author", "--json", "-v", "--verbose", "-q", "--quiet", "--log-format"}


# -- errors under --json ---------------------------------------------------------------------------------
def error_of(result) -> dict:
    """The JSON error: the last line of stderr, nothing on stdout besides a refused plan."""
    record = json.loads(result.stderr.splitlines()[-1])
    assert set(record) == {"error"} and set(record["error"]) == {"code", "message", "type"}
    assert record["error"]["code"] == result.returncode
    return record["error"]


def test_errors_under_json_are_one_json_object_on_stderr_with_the_same_exit_codes(tmp_path):
    run(tmp_path, "init")
    missing = run(tmp_path, "vm", "show", "nope", "--json", code=1)
    assert missing.stdout == "" and len(missing.stderr.splitlines()) == 1
    assert error_of(missing) == {"code": 1, "message": "no VM named 'nope'", "type": "VMNotFound"}

    # Usage errors (click's own, exit 2), wherever --json stands, even before it could be parsed.
    for args in (
        ["--json", "vm", "frobnicate"],
        ["vm", "create", "x", "--memory", "12XB", "--json"],
        ["--json", "--bogus"],
        ["--json", "nic", "attach", "web"],
    ):
        error = error_of(run(tmp_path, *args, code=2))
        assert error["message"] and error["type"] != "Failure", args
    assert (
        "12XB"
        in error_of(run(tmp_path, "--json", "vm", "create", "x", "--memory", "12XB", code=2))["message"]
    )

    # Without --json: the one-line text error, and click's usage text.
    assert run(tmp_path, "vm", "show", "nope", code=1).stderr == "error: no VM named 'nope'\n"
    assert "Usage:" in run(tmp_path, "vm", "frobnicate", code=2).stderr


def test_a_refused_plan_under_json_is_the_result_and_its_error_is_json(tmp_path):
    run(tmp_path, "init")
    uuid = json.loads(run(tmp_path, "--json", "vm", "create", "web", "--memory", "64M", "--start").stdout)[
        "uuid"
    ]
    run(tmp_path, "store", "set", layout.desired_path(uuid), "stopped")

    refused = run(tmp_path, "reconcile", "--json", code=cli_errors.EXIT_DESTRUCTIVE_REFUSED)
    assert json.loads(refused.stdout)["refused"] is True
    error = error_of(refused)
    assert error["type"] == "DestructivePlanRefused" and "--yes" in error["message"]


def test_the_documented_exit_codes_are_the_errors_own():
    assert errors.OperationInProgress.exit_code == cli_errors.EXIT_BUSY
    assert errors.OperationConflict.exit_code == cli_errors.EXIT_CONFLICT
    assert errors.RejectedEdits.exit_code == cli_errors.EXIT_REJECTED
    assert errors.HistoryRewritten.exit_code == cli_errors.EXIT_REWRITTEN
    assert errors.UnrequestedRemoval.exit_code == cli_errors.EXIT_UNREQUESTED_REMOVAL
    assert errors.DestructivePlanRefused.exit_code == cli_errors.EXIT_DESTRUCTIVE_REFUSED
