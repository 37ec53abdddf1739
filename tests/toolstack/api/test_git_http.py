"""``toolstack serve``'s git endpoint (issue 22), against a live server: the git CLI clones over smart HTTP
with the token, and pushes; the store's own HTTP clients (what the browser page runs) clone over the dumb
protocol and push over receive-pack. A push is a GitOps edit: applied when every VM it changes validates,
refused with the error otherwise, main untouched."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from store.dumbhttp import clone
from store.smarthttp import PushRejected, push
from tests.conftest import git

pytestmark = pytest.mark.native


def create_vm(server, name: str, memory: str = "256M") -> dict:
    with server.client() as client:
        response = client.post("/vms", json={"name": name, "memory": memory})
        assert response.status_code == 201, response.text
        return response.json()["vm"]


def git_with_token(server, *args: str, check: bool = True, cwd=None) -> str:
    header = f"http.extraHeader=Authorization: Bearer {server.token}"
    return git(
        cwd or ".",
        "-c",
        header,
        "-c",
        "user.name=Dana",
        "-c",
        "user.email=dana@example.org",
        *args,
        check=check,
    )


def memory_of(server, name: str) -> tuple[int, int]:
    """(memory in the configuration, memory the hypervisor reports)."""
    with server.client() as client:
        response = client.get(f"/vms/{name}")
        assert response.status_code == 200, response.text
        vm = response.json()
        return vm["spec"]["memory"], vm["observed"]["memory"]


def config_path(uuid: str) -> str:
    return f"vms/{uuid[:2]}/{uuid}/config"


def test_the_git_cli_clones_with_the_token_and_a_valid_push_is_applied(live_server, tmp_path):
    uuid = create_vm(live_server, "web1")["uuid"]
    work = tmp_path / "work"

    refused = httpx.get(f"{live_server.url}/git/info/refs?service=git-upload-pack")
    assert refused.status_code == 401

    git_with_token(live_server, "clone", "-q", f"{live_server.url}/git", str(work))
    config = json.loads((work / config_path(uuid)).read_text())
    assert config["memory"] == 256
    config["memory"] = 512
    (work / config_path(uuid)).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    git_with_token(live_server, "commit", "-qam", "web1: 512 MiB, by hand", cwd=work)
    git_with_token(live_server, "push", "-q", "origin", "main", cwd=work)

    assert memory_of(live_server, "web1") == (512, 512)
    with live_server.client() as client:
        history = client.get("/vms/web1/history").json()["items"]
    assert any(entry["message"].startswith("web1: 512 MiB, by hand") for entry in history)


def test_an_invalid_push_is_refused_with_the_validation_error_and_main_is_untouched(live_server, tmp_path):
    uuid = create_vm(live_server, "web1")["uuid"]
    work = tmp_path / "work"
    git_with_token(live_server, "clone", "-q", f"{live_server.url}/git", str(work))
    before = git(work, "rev-parse", "origin/main").strip()
    config = json.loads((work / config_path(uuid)).read_text())
    config["memory"] = "lots"
    (work / config_path(uuid)).write_text(json.dumps(config))
    git_with_token(live_server, "commit", "-qam", "web1: lots of memory", cwd=work)

    header = f"http.extraHeader=Authorization: Bearer {live_server.token}"
    import subprocess

    result = subprocess.run(
        ["git", "-C", str(work), "-c", header, "push", "origin", "main"],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode != 0
    assert "remote rejected" in result.stderr
    assert "invalid VM configuration: web1" in result.stderr and "memory" in result.stderr
    assert memory_of(live_server, "web1") == (256, 256)
    heads = git_with_token(live_server, "ls-remote", f"{live_server.url}/git", "refs/heads/main").split()
    assert heads[0] == before


def test_the_store_s_http_clients_clone_dumb_and_push_smart_as_the_browser_does(live_server):
    uuid = create_vm(live_server, "web1")["uuid"]
    create_vm(live_server, "db1")
    auth = live_server.auth

    async def get(url: str) -> bytes | None:
        async with httpx.AsyncClient(headers=auth, timeout=30) as client:
            response = await client.get(url)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.content

    async def request(
        method: str, url: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.request(method, url, content=body, headers=headers)
        return response.status_code, response.content

    async def scenario() -> tuple[str, str]:
        store = await clone(f"{live_server.url}/git", get)
        main = store.branch("main")
        config = json.loads(main.get(config_path(uuid)))
        config["memory"] = 1024
        with main.transaction(message="web1: 1 GiB from the store", author="Eve <eve@example.org>") as tx:
            tx.set(config_path(uuid), json.dumps(config, indent=2, sort_keys=True).encode() + b"\n")
        pushed = await push(store, f"{live_server.url}/git", "main", request, auth)
        config["vcpus"] = -3
        with main.transaction(message="web1: negative vCPUs", author="Eve <eve@example.org>") as tx:
            tx.set(config_path(uuid), json.dumps(config).encode())
        try:
            # The server's main has moved since (reconcile's commit): the push is merged there.
            await push(store, f"{live_server.url}/git", "main", request, auth, known=[pushed])
        except PushRejected as err:
            return pushed, err.reason
        return pushed, ""

    pushed, refusal = asyncio.run(scenario())

    assert memory_of(live_server, "web1") == (1024, 1024)
    with live_server.client() as client:
        history = client.get("/vms/web1/history").json()["items"]
    # The pushed commit itself is in main's history (reconcile may have committed on top of it since).
    assert [entry["commit"] for entry in history if "1 GiB from the store" in entry["message"]] == [pushed]
    assert refusal.startswith("invalid VM configuration: web1:") and "vcpus" in refusal


def test_a_read_only_user_clones_over_smart_http_but_cannot_push(live_server, tmp_path):
    # git's smart HTTP fetches with a POST to git-upload-pack: a read, which a read-only auditor may make;
    # git-receive-pack (a push) is a write.
    from tests.toolstack.api.test_identity import add_user

    create_vm(live_server, "web1")
    reader = add_user(live_server, "rita", "--role", "read-only")
    header = f"http.extraHeader=Authorization: Bearer {reader}"
    work = tmp_path / "audit"
    git(".", "-c", header, "clone", "-q", f"{live_server.url}/git", str(work))
    assert git(work, "rev-parse", "HEAD").strip() == git(live_server.repo, "rev-parse", "main").strip()
    (work / "README").write_text("an auditor's edit\n")
    git(work, "-c", "user.name=Rita", "-c", "user.email=rita@example.org", "commit", "-qam", "edit")
    head = git(live_server.repo, "rev-parse", "main").strip()
    pushed = git(work, "-c", header, "push", "-q", "origin", "main", check=False)
    assert git(live_server.repo, "rev-parse", "main").strip() == head, pushed
