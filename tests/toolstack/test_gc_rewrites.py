"""A pull between histories that gc made unrelated says what happened and what fixes it: through the real
CLI, on the simulator, around a real git daemon.

- histories of one pool that share no commit were rewritten (by a gc here or on the server): the pull exits
  6 naming `toolstack pull --resync`, also when this host never held the squash point and its tracking ref
  already follows the rewritten main, and when the gc that rewrote them ran here and its forced push lost
  its lease (the pool chaos test's "acknowledged deletes undone");
- histories of two pools are refused (exit 3) with what to check, in text, JSON and the agent's report.
"""

from __future__ import annotations

import json

import pytest

from store import Store
from tests.store.git_servers import git_daemon
from tests.toolstack.test_gitops_safety import git, ok, toolstack


@pytest.fixture
def peers(tmp_path):
    """A pool on a git daemon: h1 made it with VMs web and old and pushed; h2 joined it. Yields the URL."""
    base = tmp_path / "server"
    base.mkdir()
    with git_daemon(str(base)) as daemon:
        url = f"{daemon}/pool.git"
        Store.open(base / "pool.git").close()
        ok(toolstack(tmp_path, "h1", "init", "--name", "pool"))
        ok(toolstack(tmp_path, "h1", "vm", "create", "web", "--memory", "64M"))
        ok(toolstack(tmp_path, "h1", "vm", "create", "old", "--memory", "64M"))
        ok(toolstack(tmp_path, "h1", "push", "--url", url))
        ok(toolstack(tmp_path, "h2", "pull", "--url", url))
        yield url


def names(tmp_path, host):
    return sorted(vm["name"] for vm in json.loads(ok(toolstack(tmp_path, host, "--json", "vm", "list"))))


def head(tmp_path, host):
    return git(tmp_path / f"{host}.git", "rev-parse", "main").stdout.strip()


def test_a_gc_here_whose_forced_push_lost_its_lease_is_a_rewrite_and_resync_undoes_no_delete(tmp_path, peers):
    ok(toolstack(tmp_path, "h1", "vm", "create", "extra", "--memory", "64M"))  # after the point, unpushed
    ok(toolstack(tmp_path, "h1", "gc", "--before", head(tmp_path, "h1") + "~1"))
    ok(toolstack(tmp_path, "h2", "vm", "delete", "old"))
    ok(toolstack(tmp_path, "h2", "push"))  # acknowledged by the pool after h1 last fetched
    assert toolstack(tmp_path, "h1", "push", "--force").returncode == 1  # the lease: the pool moved
    before = head(tmp_path, "h1")

    # Before the store refused unrelated histories, this pull merged them against the empty tree: old, which
    # h1's squashed main still held, came back on the pool (no field differed to conflict on).
    pulled = toolstack(tmp_path, "h1", "pull")
    assert pulled.returncode == 6, pulled.stderr
    assert "rewritten by gc" in pulled.stderr and f"toolstack --repo {tmp_path / 'h1.git'} pull --resync" in (
        pulled.stderr
    )
    assert head(tmp_path, "h1") == before

    record = json.loads(
        ok(toolstack(tmp_path, "h1", "--json", "pull", "--resync", "--yes"))
    )  # undefines old, extra
    assert [entry["message"][:15] for entry in record["local_only"]] == ["vm create extra"]
    assert git(tmp_path / "h1.git", "rev-parse", record["kept"]).stdout.strip() == before
    assert names(tmp_path, "h1") == ["web"]  # the acknowledged delete stays done
    ok(toolstack(tmp_path, "h1", "pull", "--push"))
    assert names(tmp_path, "h2") == ["web"] and ok(toolstack(tmp_path, "h2", "pull"))
    assert names(tmp_path, "h2") == ["web"]


def test_a_peer_whose_tracking_ref_follows_the_rewritten_main_without_its_squash_point_is_told_to_resync(
    tmp_path, peers
):
    ok(toolstack(tmp_path, "h1", "vm", "set", "web", "--memory", "96M"))
    ok(toolstack(tmp_path, "h1", "vm", "set", "web", "--vcpus", "2"))
    ok(toolstack(tmp_path, "h1", "gc", "--before", head(tmp_path, "h1") + "~1"))  # a point h2 never saw
    ok(toolstack(tmp_path, "h1", "push", "--force"))
    ok(toolstack(tmp_path, "h2", "vm", "set", "web", "--vcpus", "3"))  # local-only
    assert toolstack(tmp_path, "h2", "push").returncode != 0  # its fetch moved h2's tracking ref
    before = head(tmp_path, "h2")

    pulled = toolstack(tmp_path, "h2", "--json", "pull")
    assert pulled.returncode == 6, pulled.stderr
    error = json.loads(pulled.stderr)["error"]
    assert error["type"] == "HistoryRewritten" and "pull --resync" in error["message"]
    assert head(tmp_path, "h2") == before

    record = json.loads(ok(toolstack(tmp_path, "h2", "--json", "pull", "--resync")))
    assert [entry["message"][:10] for entry in record["local_only"]] == ["vm set web"]
    shown = json.loads(ok(toolstack(tmp_path, "h2", "--json", "vm", "show", "web")))
    assert (shown["memory"], shown["vcpus"]) == (96, 2)


def test_another_pools_history_is_refused_naming_what_to_check_in_text_json_the_agent_and_resync(tmp_path):
    ok(toolstack(tmp_path, "h1", "init", "--name", "one"))
    ok(toolstack(tmp_path, "other", "init", "--name", "two"))
    other = str(tmp_path / "other.git")
    before = head(tmp_path, "h1")

    pulled = toolstack(tmp_path, "h1", "pull", "--url", other)
    assert pulled.returncode == 3
    assert "refusing to merge unrelated histories" in pulled.stderr and "another pool (two, " in pulled.stderr
    assert "check origin's URL (`git -C" in pulled.stderr and "remote get-url origin`)" in pulled.stderr
    error = json.loads(toolstack(tmp_path, "h1", "--json", "pull").stderr)["error"]
    assert (error["code"], error["type"]) == (3, "HistoriesUnrelated") and "check origin's URL" in error[
        "message"
    ]
    round_ = ok(toolstack(tmp_path, "h1", "agent", "--host", "h1", "--remote", other, "--once"))
    assert "HistoriesUnrelated" in round_ and "check origin's URL" in round_
    resync = toolstack(tmp_path, "h1", "pull", "--resync")
    assert resync.returncode == 1 and "refusing to replace main by it" in resync.stderr
    assert "another pool (two, " in resync.stderr
    assert head(tmp_path, "h1") == before
