"""Cloning from a dumb-HTTP mirror (issue 22): a bare repository after ``git update-server-info``, served by a
plain static server, read into a store in memory with nothing but GETs.

The mirror mixes what real ones have: packs written by the store, and loose objects written by the git CLI
after them. The clone must hold every branch at the mirror's commit, with the same history git shows.
"""

from __future__ import annotations

import asyncio
import functools
import http.server
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from store import Store
from store.dumbhttp import MirrorError, clone
from tests.conftest import git

pytestmark = pytest.mark.native  # a git CLI and an HTTP server: processes and threads


@pytest.fixture
def static_server(tmp_path) -> Iterator[tuple[str, list[str]]]:
    """``python -m http.server`` over tmp_path, in a thread: (its URL, the paths it was asked for)."""
    asked: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            asked.append(self.path)

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(tmp_path))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", asked
    finally:
        server.shutdown()
        server.server_close()


async def urllib_get(url: str) -> bytes | None:
    def get() -> bytes | None:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return response.read()
        except urllib.error.HTTPError as err:
            if err.code == 404:
                return None
            raise

    return await asyncio.to_thread(get)


def make_mirror(path) -> Store:
    s = Store.open(path)
    main = s.branch("main")
    for i in range(5):
        with main.transaction(message=f"web1 memory {i}", author="Ann <ann@example.org>") as tx:
            tx.set("vms/ab/web1/config", b'{"memory": %d}' % (256 * (i + 1)))
            tx.set(f"vms/cd/db{i}/config", b"{}")
    s.fork("staging", "main")
    with s.branch("staging").transaction(message="staging only", author="Bob <bob@example.org>") as tx:
        tx.set("vms/ab/web1/config", b'{"memory": 4096}')
    return s


def test_a_clone_from_a_static_mirror_has_every_branch_and_git_s_history(tmp_path, static_server):
    url, asked = static_server
    mirror = tmp_path / "pool.git"
    make_mirror(mirror).close()
    # A commit by the git CLI after the store's packs: loose objects, as an operator's edit would leave.
    git(mirror, "read-tree", "main")
    blob = git(mirror, "hash-object", "-w", "--stdin", input='{"memory": 8192}').strip()
    git(mirror, "update-index", "--add", "--cacheinfo", f"100644,{blob},vms/ab/web1/config")
    tree = git(mirror, "write-tree").strip()
    env_commit = git(
        mirror,
        "-c",
        "user.name=Cli",
        "-c",
        "user.email=cli@x",
        "commit-tree",
        tree,
        "-p",
        "main",
        "-m",
        "by the git CLI",
    ).strip()
    git(mirror, "update-ref", "refs/heads/main", env_commit)
    git(mirror, "update-server-info")

    cloned = asyncio.run(clone(f"{url}/pool.git", urllib_get))

    assert sorted(cloned.branches()) == ["main", "staging"]
    assert cloned.branch("main").head == env_commit
    assert cloned.branch("main").get("vms/ab/web1/config") == b'{"memory": 8192}'
    assert cloned.branch("staging").get("vms/ab/web1/config") == b'{"memory": 4096}'
    expected = git(mirror, "log", "--format=%H", "main", "--", "vms/ab/web1").split()
    assert [entry.id for entry in cloned.branch("main").log("vms/ab/web1")] == expected
    assert any(path.startswith("/pool.git/objects/pack/") for path in asked)
    assert f"/pool.git/objects/{env_commit[:2]}/{env_commit[2:]}" in asked


def test_a_mirror_without_update_server_info_is_named_as_such(tmp_path, static_server):
    url, _ = static_server
    make_mirror(tmp_path / "pool.git").close()

    with pytest.raises(MirrorError, match="update-server-info"):
        asyncio.run(clone(f"{url}/pool.git", urllib_get))
