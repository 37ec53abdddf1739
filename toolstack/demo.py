"""`make run`: the main job on the embedded default (the simulator), narrated as a user would type it.

Creates a pool, then three guests and starts them, changes one, destroys one, rolls back, then prints the
state repository's `git log --graph --oneline` and each VM's history.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys

from toolstack import layout

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    workdir = os.path.join(ROOT, "run", "demo")
    shutil.rmtree(workdir, ignore_errors=True)
    os.makedirs(workdir)
    env = {
        **os.environ,
        "TOOLSTACK_REPO": os.path.join(workdir, "toolstack.git"),
        "TOOLSTACK_DRIVER": f"sim://{workdir}/toolstack.sim",
        "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    author = ["--author", "Demo Operator <operator@example.org>"]

    def toolstack(*args: str) -> str:
        print(f"$ toolstack {shlex.join(args)}")
        result = subprocess.run(
            [sys.executable, "-m", "toolstack.cli", *author, *args],
            env=env,
            capture_output=True,
            text=True,
            cwd=workdir,
        )
        print(result.stdout.rstrip() or "", result.stderr.rstrip() or "", sep="\n" if result.stderr else "")
        if result.returncode != 0:
            sys.exit(f"demo failed: toolstack {' '.join(args)} exited {result.returncode}")
        return result.stdout

    def git(*args: str) -> None:
        print(f"$ git {shlex.join(args)}")
        subprocess.run(["git", "-C", env["TOOLSTACK_REPO"], *args], check=True)

    print(f"# state repository: {env['TOOLSTACK_REPO']}\n# hypervisor: {env['TOOLSTACK_DRIVER']}\n")
    print("## 0. create the pool: its state repository, whose root commit records the pool's identity")
    toolstack("init", "--name", "demo")
    print("## 1. create three guests and start them")
    for name, memory in (("web1", "512M"), ("web2", "512M"), ("db1", "1G")):
        toolstack(
            "vm",
            "create",
            name,
            "--memory",
            memory,
            "--vcpus",
            "2",
            "--disk",
            f"/var/lib/images/{name}.qcow2",
            "--nic",
            "default",
            "--start",
        )
    toolstack("vm", "list")
    before_change = subprocess.run(
        ["git", "-C", env["TOOLSTACK_REPO"], "rev-parse", "main"], capture_output=True, text=True, check=True
    ).stdout.strip()

    print("\n## 2. change one: db1 gets more memory and another disk")
    toolstack("vm", "set", "db1", "--memory", "2G", "--vcpus", "4")
    toolstack("disk", "attach", "db1", "/var/lib/images/db1-data.qcow2")

    print("\n## 3. destroy one")
    toolstack("vm", "destroy", "web2")
    toolstack("vm", "list")

    print(f"\n## 4. roll back to {before_change[:12]} (the three guests running, db1 as created)")
    toolstack("rollback", before_change, "--dry-run")
    toolstack("rollback", before_change)
    toolstack("vm", "list")
    toolstack("reconcile", "--dry-run")

    print("\n## 5. the state repository is plain git")
    git("log", "--graph", "--oneline", "main")
    for name in ("web1", "web2", "db1"):
        print()
        toolstack("log", name)
    uuid = toolstack("store", "get", layout.name_path("db1")).strip()
    git("log", "--first-parent", "--format=%h %an %s", "main", "--", layout.vm_dir(uuid))
    git("fsck", "--full")
    print(
        "\ndemo finished: git fsck is clean; explore with "
        f"`git -C {env['TOOLSTACK_REPO']} log --graph` or `TOOLSTACK_REPO={env['TOOLSTACK_REPO']} "
        f"TOOLSTACK_DRIVER={env['TOOLSTACK_DRIVER']} toolstack vm list`"
    )


if __name__ == "__main__":
    main()
