"""Named API users on a real ``toolstack serve``: their tokens, roles, revocation, and the commits made as
them. The users are managed with the real CLI (``toolstack token ...``) while the server runs."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

import drivers
from tests.toolstack.api.conftest import ROOT, LiveServer, start_server


def toolstack(server: LiveServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "toolstack.cli", "--repo", str(server.repo), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def add_user(server: LiveServer, name: str, *options: str) -> str:
    added = toolstack(server, "token", "add", name, *options)
    assert added.returncode == 0, added.stderr
    return added.stdout.strip()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def author_of(repo: Path, rev: str = "main") -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "log", "-1", "--format=%an <%ae>", rev],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


@pytest.fixture
def server(tmp_path: Path):
    live = start_server(tmp_path)
    yield live
    live.stop()


def test_the_single_token_is_an_operator_named_after_the_servers_author_until_users_exist(server):
    with server.client() as client:
        assert client.post("/vms", json={"name": "web1", "memory": "256M"}).status_code == 201
        assert author_of(server.repo) == "Web Operator <web@example.org>"
        add_user(server, "alice")
        # Users chosen: the old token is refused from the next request, without a restart.
        assert client.get("/vms").status_code == 403


def test_each_users_commits_are_authored_by_that_user_and_shown_in_the_timeline(server):
    alice = add_user(server, "alice", "--email", "alice@example.org")
    bob = add_user(server, "bob")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        created = client.post("/vms", json={"name": "web1", "memory": "256M"}, headers=bearer(alice))
        assert created.status_code == 201, created.text
        assert created.json()["task"]["who"] == "alice <alice@example.org>"
        assert author_of(server.repo) == "alice <alice@example.org>"
        assert client.post("/vms/web1/start", headers=bearer(bob)).status_code == 200
        host = client.get("/vms/web1", headers=bearer(bob)).json()["host"]
        assert author_of(server.repo) == f"bob <bob@{host}>"
        timeline = client.get("/vms/web1/history", headers=bearer(bob)).json()["items"]
        assert [step["author"] for step in timeline] == [f"bob <bob@{host}>", "alice <alice@example.org>"]


def authors_since(repo: Path, rev: str) -> list[str]:
    """The authors of the commits main gained since ``rev`` (its first-parent chain: one per operation)."""
    return subprocess.run(
        ["git", "-C", str(repo), "log", "--first-parent", "--format=%an", f"{rev}..main"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()


def test_a_vm_set_a_rollback_a_reconcile_and_a_bulk_stop_are_each_authored_by_the_user_who_asked(server):
    tokens = {name: add_user(server, name) for name in ("alice", "bob", "carol", "dave", "erin")}
    names = ["web1", "web2", "web3"]
    with httpx.Client(base_url=server.url, timeout=60) as client:

        def asks(user: str, method: str, path: str, **kwargs: object) -> httpx.Response:
            answer = client.request(method, path, headers=bearer(tokens[user]), **kwargs)
            assert answer.is_success, answer.text
            return answer

        for name in names:
            asks("alice", "POST", "/vms", json={"name": name, "memory": "256M", "start": True})
        created = asks("alice", "GET", "/vms/web1/history").json()["items"][0]["commit"]

        head = asks("alice", "GET", "/vms").headers["etag"].strip('"')
        asks("bob", "PATCH", "/vms/web1", json={"memory": 512})
        assert authors_since(server.repo, head) == ["bob"]

        head = asks("alice", "GET", "/vms").headers["etag"].strip('"')
        asks("carol", "POST", "/rollback", json={"commit": created, "vm": "web1"})
        assert authors_since(server.repo, head) and set(authors_since(server.repo, head)) == {"carol"}

        # A domain stopped behind the toolstack's back: the drift and the repair are dave's reconcile's.
        with drivers.open(f"sim://{server.repo.parent}/served.sim") as hypervisor:
            hypervisor.destroy(asks("alice", "GET", "/vms/web2").json()["uuid"])
        head = asks("alice", "GET", "/vms").headers["etag"].strip('"')
        asks("dave", "POST", "/reconcile", json={})
        assert authors_since(server.repo, head) == ["dave", "dave"]  # the drift, then the reconcile

        # A bulk stop as the page makes it: one request per VM, several at once.
        head = asks("alice", "GET", "/vms").headers["etag"].strip('"')
        with ThreadPoolExecutor(len(names)) as pool:
            list(pool.map(lambda name: asks("erin", "POST", f"/vms/{name}/shutdown?wait=30"), names))
        assert authors_since(server.repo, head) == ["erin"] * len(names)
        assert {asks("alice", "GET", f"/vms/{name}").json()["state"] for name in names} == {"shutoff"}


def test_a_read_only_user_reads_and_scrapes_but_every_write_is_refused(server):
    operator = add_user(server, "alice")
    reader = add_user(server, "rita", "--role", "read-only")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        created = client.post("/vms", json={"name": "web1", "memory": "256M"}, headers=bearer(operator))
        assert created.is_success
        head = author_of(server.repo)
        assert client.get("/vms", headers=bearer(reader)).status_code == 200
        assert client.get("/metrics", headers=bearer(reader)).status_code == 200
        writes = [
            client.post("/vms", json={"name": "web2", "memory": "256M"}, headers=bearer(reader)),
            client.post("/vms/web1/start", headers=bearer(reader)),
            client.patch("/vms/web1", json={"memory": 512}, headers=bearer(reader)),
            client.delete("/vms/web1", headers=bearer(reader)),
            client.post("/reconcile", json={"dry_run": True}, headers=bearer(reader)),
        ]
        assert [response.status_code for response in writes] == [403] * len(writes)
        assert "read-only" in writes[0].json()["message"]
        assert client.get("/vms/web1", headers=bearer(reader)).json()["state"] != "running"
        assert author_of(server.repo) == head


def test_a_revoked_token_is_refused_at_once_and_the_others_still_work(server):
    alice = add_user(server, "alice")
    bob = add_user(server, "bob")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.get("/vms", headers=bearer(alice)).status_code == 200
        revoked = toolstack(server, "token", "revoke", "alice")
        assert revoked.returncode == 0, revoked.stderr
        refused = client.get("/vms", headers=bearer(alice))
        assert refused.status_code == 401
        assert "revoked" in refused.json()["message"]
        assert client.get("/vms", headers=bearer(bob)).status_code == 200
        assert client.get("/vms", headers=bearer("not-a-token-of-anyone-here")).status_code == 403
        assert client.get("/vms").status_code == 401


def test_token_commands_keep_only_hashes_in_a_private_file_and_list_who_has_access(server):
    token = add_user(server, "alice", "--role", "read-only", "--email", "alice@example.org")
    users_file = server.repo.with_suffix(".api-users")
    assert stat.S_IMODE(users_file.stat().st_mode) == 0o600
    assert token not in users_file.read_text()
    assert toolstack(server, "token", "revoke", "alice").returncode == 0
    listed = toolstack(server, "--json", "token", "list")
    [alice] = json.loads(listed.stdout)
    assert (alice["name"], alice["role"], alice["email"]) == ("alice", "read-only", "alice@example.org")
    assert alice["revoked"] is not None and "token" not in alice


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["token", "add", "Alice"], "invalid user name"),
        (["token", "add", "alice", "--email", "not an email"], "invalid email"),
        (["token", "add", "alice", "--role", "admin"], "admin"),
        (["token", "revoke", "nobody"], "no user 'nobody'"),
    ],
)
def test_bad_token_commands_name_the_problem_and_write_nothing(server, args, complaint):
    refused = toolstack(server, *args)
    assert refused.returncode != 0
    assert complaint in refused.stderr
    assert not server.repo.with_suffix(".api-users").exists()


def test_a_users_file_others_can_read_is_refused_and_the_server_refuses_to_start(tmp_path):
    live = start_server(tmp_path)
    try:
        add_user(live, "alice")
    finally:
        live.stop()
    users_file = live.repo.with_suffix(".api-users")
    os.chmod(users_file, 0o644)
    listed = toolstack(live, "token", "list")
    assert listed.returncode == 1 and "chmod 600" in listed.stderr
    with pytest.raises(AssertionError, match="chmod 600"):
        start_server(tmp_path / "again", "--users-file", str(users_file))
