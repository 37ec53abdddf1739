"""The wheel is the product: built from the sources, installed into a fresh virtualenv, it carries every file
the project needs at run time, and ``toolstack serve`` runs from it alone.

The wheel is built with pip's default build isolation (setuptools from the index, as pyproject.toml asks):
the project's virtualenv has an older setuptools without ``bdist_wheel``. The new virtualenv borrows the
project virtualenv's third-party packages through a ``.pth`` line (installing them from the index would take
minutes); that line adds the directory only, so the checkout's editable install (itself a ``.pth`` file
there) is not read, and the project's own modules can only come from the wheel.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.toolstack.api.conftest import start_server

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("store", "drivers", "toolstack", "xenstored")
# What the packages hold that is not needed to run them.
NOT_RUNTIME = {"README.md"}


def runtime_files() -> list[str]:
    """Every file of the packages but Python modules, documentation and caches, relative to ROOT."""
    found = []
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*"):
            cached = "__pycache__" in path.parts
            if path.is_file() and not cached and path.suffix != ".py" and path.name not in NOT_RUNTIME:
                found.append(path.relative_to(ROOT).as_posix())
    return sorted(found)


def build_wheel(workdir: Path) -> Path:
    """Build the project's wheel from a copy of its sources (a build writes build/ and *.egg-info beside
    them, and the checkout must stay clean)."""
    source = workdir / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, source / package, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    out = workdir / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), str(source)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    (wheel,) = out.glob("git_toolstack-*.whl")
    return wheel


def install_into_new_venv(wheel: Path, venv: Path) -> Path:
    """Install ``wheel`` (alone) into a new virtualenv that sees this one's third-party packages; return
    the new virtualenv's python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = venv / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps", str(wheel)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    site_packages = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(site_packages) / "borrowed-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def project_version() -> str:
    """The version written in the sources (toolstack/__init__.py; pyproject.toml reads it from there)."""
    return re.search(r'__version__ = "([^"]+)"', (ROOT / "toolstack" / "__init__.py").read_text()).group(1)


def clean_env() -> dict[str, str]:
    """This environment without what would put the checkout on the new interpreter's path."""
    return {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}


@pytest.mark.slow  # ~25 s: a build, a virtualenv, a server
def test_the_wheel_carries_every_runtime_file_and_the_cli_and_serve_run_from_it(tmp_path):
    wheel = build_wheel(tmp_path / "build")
    with zipfile.ZipFile(wheel) as archive:
        packed = set(archive.namelist())
    expected = runtime_files()
    assert "toolstack/api/static/index.html" in expected
    assert [name for name in expected if name not in packed] == []
    assert any(name.endswith(".dist-info/LICENSE") or "licenses/LICENSE" in name for name in packed), packed

    venv = tmp_path / "venv"
    python = install_into_new_venv(wheel, venv)
    elsewhere = tmp_path / "elsewhere"  # not the checkout: the current directory is on sys.path too
    elsewhere.mkdir()
    env = clean_env()
    where = subprocess.run(
        [
            str(python),
            "-c",
            "import store, drivers, toolstack, xenstored; "
            "print(store.__file__, drivers.__file__, toolstack.__file__, xenstored.__file__)",
        ],
        cwd=elsewhere,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert len(where) == 4
    assert all(Path(path).is_relative_to(venv) for path in where), where

    cli = str(venv / "bin" / "toolstack")
    version = subprocess.run([cli, "--version"], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert version.stdout == f"toolstack {project_version()}\n", version.stderr

    def session(*args: str) -> str:
        done = subprocess.run(
            [cli, "--repo", str(tmp_path / "cli.git"), "--driver", f"sim://{tmp_path}/cli.sim", *args],
            cwd=elsewhere,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, f"toolstack {' '.join(args)}: {done.stderr}"
        return done.stdout

    session("init", "--name", "wheel-pool")
    session("vm", "create", "cli-vm", "--memory", "64M")
    session("vm", "start", "cli-vm")
    assert "cli-vm" in session("vm", "list") and "running" in session("vm", "list")
    operations = [json.loads(line)["message"] for line in session("--json", "log", "cli-vm").splitlines()]
    assert [subject.split(":")[0] for subject in operations] == ["vm start cli-vm", "vm create cli-vm"]

    server = start_server(tmp_path, toolstack=[cli], cwd=elsewhere, env=env)
    try:
        page = httpx.get(f"{server.url}/", timeout=10)
        assert page.status_code == 200, server.log.read_text()
        assets = re.findall(r'(?:href|src)="(/static/[^"]+)"', page.text)
        assert sorted(assets) == ["/static/app.css", "/static/app.js"]
        for asset in assets:
            assert httpx.get(f"{server.url}{asset}", timeout=10).status_code == 200, asset
        with server.client() as http:
            assert http.post("/vms", json={"name": "from-wheel", "memory": "64M"}).status_code == 201
            listed = http.get("/vms")
            assert listed.status_code == 200
            assert [vm["name"] for vm in listed.json()] == ["from-wheel"]
    finally:
        server.stop()
