"""The CLI's defaults: where the state repository is, which hypervisor to drive, and who the operator is.

Each is used only when its global option (``--repo``, ``--driver``, ``--author``) is not given. ``--host``
has no default here: the toolstack takes the machine's hostname.
"""

from __future__ import annotations

import os
import subprocess

REPO_ENV = "TOOLSTACK_REPO"
DRIVER_ENV = "TOOLSTACK_DRIVER"
REPO_NAME = "toolstack.git"  # in the working directory


def default_repo() -> str:
    """``$TOOLSTACK_REPO``, else ``./toolstack.git``."""
    return os.environ.get(REPO_ENV) or os.path.join(os.getcwd(), REPO_NAME)


def default_driver(repo: str) -> str:
    """``$TOOLSTACK_DRIVER``, else the simulator kept beside the repository (``toolstack.git`` ->
    ``sim://.../toolstack.sim``)."""
    base = os.path.splitext(os.path.abspath(repo))[0]
    return os.environ.get(DRIVER_ENV) or f"sim://{base}.sim"


def operator_identity() -> str:
    """The operator: git's configured user, else the login name."""
    try:
        name = subprocess.run(["git", "config", "user.name"], capture_output=True, text=True).stdout.strip()
        email = subprocess.run(["git", "config", "user.email"], capture_output=True, text=True).stdout.strip()
    except OSError:
        name = email = ""
    if name and email:
        return f"{name} <{email}>"
    return name or os.environ.get("USER") or "unknown"
