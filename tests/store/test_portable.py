"""The store in memory runs where the platform has no ``fcntl``, ``mmap`` or processes (issue 22: Pyodide in a
browser): importing ``store`` and working with ``Store.memory()`` loads none of them, nor the disk backend.

The check runs in a fresh interpreter whose import system refuses those modules, as Pyodide's does for
``fcntl``, so a module-level import anywhere on the path fails loudly instead of passing unseen.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# This test starts an interpreter: it checks, on CPython, what Pyodide runs.
pytestmark = pytest.mark.native


ROOT = Path(__file__).resolve().parents[2]
BLOCKED = ["fcntl", "mmap", "subprocess", "store.disk", "store.locks", "store.packs", "store.disk_objects"]

PROGRAM = textwrap.dedent(
    """
    import json
    import sys

    BLOCKED = set(json.loads(sys.argv[1]))


    class Refuse:
        def find_spec(self, name, path=None, target=None):
            if name in BLOCKED:
                raise ImportError(f"{name} is refused on this platform")
            return None


    for name in BLOCKED:
        sys.modules.pop(name, None)
    sys.meta_path.insert(0, Refuse())

    import store
    from store import Conflict, NonFastForward, RemoteError, Schema, Store

    s = Store.memory()
    main = s.branch("main")
    with main.transaction(message="create web1", author="Ann <ann@example.org>") as tx:
        tx.set("vms/web1/config", b'{"memory": 512}')
    base = main.head
    s.fork("other", "main")
    with s.branch("other").transaction(message="add db1", author="Bob <bob@example.org>") as tx:
        tx.set("vms/db1/config", b'{"memory": 256}')
    with main.transaction(message="grow web1", author="Ann <ann@example.org>") as tx:
        tx.set("vms/web1/config", b'{"memory": 1024}')
    merged = s.merge("other", "main", author="Ann <ann@example.org>")
    result = {
        "web1": main.get("vms/web1/config").decode(),
        "db1": main.get("vms/db1/config").decode(),
        "log": [entry.message.strip() for entry in main.log("vms/web1")],
        "history": len(main.history("vms/web1/config")),
        "diff": [c.path for c in s.diff(base, merged).changed],
        "errors": [cls.__name__ for cls in (Conflict, NonFastForward, RemoteError, Schema)],
        "loaded": sorted(name for name in BLOCKED if name in sys.modules),
    }
    print(json.dumps(result))
    """
)


def run_with_blocked_modules() -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM, json.dumps(BLOCKED)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_store_in_memory_needs_no_fcntl_mmap_subprocess_nor_the_disk_backend():
    result = run_with_blocked_modules()

    assert result["loaded"] == []
    assert result["web1"] == '{"memory": 1024}'
    assert result["db1"] == '{"memory": 256}'
    assert result["log"] == ["grow web1", "create web1"]
    assert result["history"] == 2
    assert result["diff"] == ["vms/web1/config"]
    assert result["errors"] == ["Conflict", "NonFastForward", "RemoteError", "Schema"]


def test_the_disk_backend_and_remotes_are_still_importable_from_store():
    from store import Remote, Store
    from store.remote import NonFastForward, RemoteError

    assert Remote.__module__ == "store.remote"
    assert issubclass(NonFastForward, RemoteError)
    assert Store.open.__qualname__ == "Store.open"
