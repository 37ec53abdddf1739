"""Shared fixtures."""

from __future__ import annotations

import os
import subprocess

import pytest

# What tests record with record_property(FIGURES, ...) is printed at the end of the run (tests/figures.py).
from tests.figures import pytest_configure

__all__ = ["git", "pytest_configure", "run_git"]

# The suite runs with no config file (a developer's /etc/toolstack/config.toml or ~/.config one would change
# the CLI's defaults under it); tests of the config files name their own with $TOOLSTACK_CONFIG.
os.environ["TOOLSTACK_CONFIG"] = ""


def git(repo: str | os.PathLike[str], *args: str, check: bool = True, **kw: object) -> str:
    """Run the real git CLI on a repository and return its stdout."""
    result = subprocess.run(
        ["git", "-C", os.fspath(repo), *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "HOME": os.environ.get("HOME", "/root")},
        **kw,  # type: ignore[arg-type]
    )
    if check and result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result.stdout


@pytest.fixture
def run_git():
    return git
