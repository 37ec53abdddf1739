"""Pool identity: `toolstack init` is the one command that creates a state repository; hosts and operators
join a pool by cloning it, so a pool has one root commit, always."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from store import Store
from tests.store.git_servers import GitDaemon, git_daemon
from tests.toolstack.test_cli import git, run
from toolstack import layout
from toolstack.pool import UPGRADE_MESSAGE


def roots(repo: Path) -> list[str]:
    return subprocess.run(
        ["git", "--git-dir", str(repo), "rev-list", "--max-parents=0", "main"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()


def pool_record(repo: Path) -> dict[str, object]:
    raw = subprocess.run(
        ["git", "--git-dir", str(repo), "show", f"main:{layout.POOL}"], capture_output=True, check=True
    ).stdout
    return json.loads(raw)


def test_init_creates_a_pool_whose_root_commit_records_its_identity(tmp_path):
    result = run(tmp_path, "--json", "init", "--name", "lab")
    created = json.loads(result.stdout)
    assert created["name"] == "lab" and created["repo"] == str(tmp_path / "state.git")
    record = pool_record(tmp_path / "state.git")
    assert record == {"id": created["id"], "name": "lab", "created": created["created"]}
    (root,) = roots(tmp_path / "state.git")
    assert git(tmp_path, "rev-parse", "main").strip() == root
    assert git(tmp_path, "log", "--format=%s", "main").strip() == "Initialize pool lab"
    assert git(tmp_path, "log", "--format=%(trailers:key=Pool,valueonly)", "main").strip() == created["id"]
    assert git(tmp_path, "ls-tree", "--name-only", "main").split() == ["README", "pool"]


def test_init_refuses_a_second_time_and_a_bad_name_and_writes_nothing(tmp_path):
    run(tmp_path, "init", "--name", "lab")
    refs = git(tmp_path, "for-each-ref")
    again = run(tmp_path, "init", "--name", "other", check=False)
    assert again.returncode == 1
    assert f"is already the state repository of pool lab ({pool_record(tmp_path / 'state.git')['id']})" in (
        again.stderr
    )
    assert git(tmp_path, "for-each-ref") == refs
    bad = run(tmp_path, "--repo", str(tmp_path / "bad.git"), "init", "--name", "no spaces", check=False)
    assert bad.returncode == 1 and "pool name 'no spaces'" in bad.stderr
    assert not (tmp_path / "bad.git").exists()


def test_the_default_name_comes_from_the_directory(tmp_path):
    out = run(tmp_path, "--repo", str(tmp_path / "rack-7.git"), "--json", "init").stdout
    assert json.loads(out)["name"] == "rack-7"


def test_clone_joins_a_pool_with_its_one_root_commit(tmp_path):
    run(tmp_path, "init", "--name", "lab")
    run(tmp_path, "vm", "create", "web", "--memory", "64M")
    base = tmp_path / "server"
    base.mkdir()
    Store.open(base / "pool.git").close()
    with git_daemon(str(base)) as daemon:
        url = f"{daemon}/pool.git"
        run(tmp_path, "push", "--url", url)
        out = run(tmp_path, "clone", url, str(tmp_path / "joined.git")).stdout
        assert out.startswith("cloned pool lab (")
        assert roots(tmp_path / "joined.git") == roots(tmp_path / "state.git")
        # A host joining with `pull --url` into an empty place clones too, and reconciles its hypervisor.
        host = ["--repo", str(tmp_path / "host.git"), "--driver", f"sim://{tmp_path}/host.sim"]
        run(tmp_path, *host, "pull", "--url", url)
        assert roots(tmp_path / "host.git") == roots(tmp_path / "state.git")
        assert json.loads(run(tmp_path, *host, "--json", "vm", "show", "web").stdout)["name"] == "web"
        # An agent started on a new directory clones as well: its first round adds no second root.
        agent = ["--repo", str(tmp_path / "agent.git"), "--driver", f"sim://{tmp_path}/agent.sim"]
        run(tmp_path, *agent, "agent", "--host", "h1", "--remote", url, "--once")
        run(tmp_path, *host, "pull", "--push")
        subprocess.run(["git", "--git-dir", str(base / "pool.git"), "fetch", "-q"], check=False)
        for repo in ("agent.git", "host.git", "joined.git", "state.git"):
            assert roots(tmp_path / repo) == roots(tmp_path / "state.git"), repo
        assert roots(base / "pool.git") == roots(tmp_path / "state.git")


def test_a_host_joining_while_an_operation_runs_elsewhere_takes_main_only_and_never_its_claim(tmp_path):
    # An operator's task holds web (its claim branch is in the pool's repository) at the moment a host
    # joins: the claim is that process's business. The joining host must neither see web as busy nor
    # "recover" a task that is not its own.
    run(tmp_path, "init", "--name", "lab")
    run(tmp_path, "vm", "create", "web", "--memory", "64M")
    uuid = json.loads(run(tmp_path, "--json", "vm", "show", "web").stdout)["uuid"]
    head = git(tmp_path, "rev-parse", "main").strip()
    git(tmp_path, "branch", f"{layout.LOCK_PREFIX}/{uuid}", head)  # in flight on the operator's host
    git(tmp_path, "branch", f"{layout.FAILED_PREFIX}/20261206T000000-0badc0de", head)

    # A second repository of the pool on the same host (and hypervisor) as the operator's.
    host = ["--repo", str(tmp_path / "host.git"), "--driver", f"sim://{tmp_path}/sim"]
    run(tmp_path, *host, "clone", str(tmp_path / "state.git"), str(tmp_path / "host.git"))

    branches = subprocess.run(
        ["git", "--git-dir", str(tmp_path / "host.git"), "for-each-ref", "--format=%(refname)", "refs/heads"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert branches == ["refs/heads/main"]
    started = run(tmp_path, *host, "vm", "start", "web")
    assert "recovered" not in started.stderr
    assert json.loads(run(tmp_path, *host, "--json", "vm", "show", "web").stdout)["state"] == "running"


def test_cloning_what_is_no_pool_fails_and_leaves_nothing(tmp_path):
    Store.open(tmp_path / "empty.git").close()
    result = run(tmp_path, "clone", str(tmp_path / "empty.git"), str(tmp_path / "joined.git"), check=False)
    assert result.returncode == 1 and "holds no pool" in result.stderr
    assert not (tmp_path / "joined.git").exists()


def test_a_clone_cut_short_by_an_unreachable_server_leaves_nothing_and_can_be_retried(tmp_path):
    """An agent started while the server is down must be able to join once it is back (issue 16's chaos
    test found agents that never could: the failed clone left a repository without a pool behind)."""
    base = tmp_path / "server"
    base.mkdir()
    daemon = GitDaemon(str(base))
    url = f"{daemon.url}/pool.git"
    result = run(tmp_path, "clone", url, str(tmp_path / "joined.git"), check=False)
    assert result.returncode == 1 and "Connection refused" in result.stderr
    assert os.listdir(tmp_path) == ["server"]  # no repository, no staging directory left
    run(tmp_path, "init", "--name", "lab")
    Store.open(base / "pool.git").close()
    run(tmp_path, "push", "--url", url, check=False)  # refused: the daemon is still down
    daemon.start()
    try:
        run(tmp_path, "push", "--url", url)
        (tmp_path / "empty.git").mkdir()
        run(tmp_path, "clone", url, str(tmp_path / "empty.git"))  # into an empty directory too
        run(tmp_path, "clone", url, str(tmp_path / "joined.git"))
    finally:
        daemon.stop()
    assert roots(tmp_path / "joined.git") == roots(tmp_path / "state.git") == roots(tmp_path / "empty.git")


def test_an_empty_repository_is_no_pool(tmp_path):
    Store.open(tmp_path / "state.git").close()  # `git init --bare`, or a clone of an empty remote
    refs = git(tmp_path, "for-each-ref")
    result = run(tmp_path, "vm", "create", "web", "--memory", "64M", check=False)
    assert result.returncode == 1
    assert "holds no pool yet: create one in it with `toolstack init`" in result.stderr
    assert git(tmp_path, "for-each-ref") == refs


def test_a_repository_made_before_pool_records_is_upgraded_by_init(tmp_path):
    repo = tmp_path / "state.git"
    with Store.open(repo) as store, store.branch("main").transaction(message="old", author="old") as tx:
        tx.set("README", b"state\n")
    head = git(tmp_path, "rev-parse", "main")
    result = run(tmp_path, "vm", "list", check=False)
    assert result.returncode == 1 and "was made before pools had an identity: run `toolstack init`" in (
        result.stderr
    )
    assert git(tmp_path, "rev-parse", "main") == head
    run(tmp_path, "init", "--name", "old-pool")
    assert git(tmp_path, "log", "-1", "--format=%s", "main").strip() == UPGRADE_MESSAGE
    assert roots(repo) == [head.strip()]  # upgraded in place: still one root
    run(tmp_path, "vm", "create", "web", "--memory", "64M")


def test_histories_of_two_pools_never_merge(tmp_path):
    run(tmp_path, "init", "--name", "one")
    other = ["--repo", str(tmp_path / "other.git"), "--driver", f"sim://{tmp_path}/other.sim"]
    run(tmp_path, *other, "init", "--name", "two")
    head = git(tmp_path, "rev-parse", "main")
    result = run(tmp_path, "pull", "--url", str(tmp_path / "other.git"), check=False)
    assert result.returncode == 3
    assert "refusing to merge unrelated histories" in result.stderr  # as git refuses, before any file
    assert git(tmp_path, "rev-parse", "main") == head


@pytest.mark.parametrize("command", [["reconcile"], ["reconcile", "--dry-run"], ["vm", "list"]])
def test_no_command_but_init_or_clone_creates_a_repository(tmp_path, command):
    result = run(tmp_path, *command, check=False, env={"TOOLSTACK_REPO": ""})  # the default, ./toolstack.git
    assert result.returncode == 1
    assert f"no state repository at {tmp_path / 'toolstack.git'}: create one with `toolstack init`" in (
        result.stderr
    )
    assert os.listdir(tmp_path) == []
