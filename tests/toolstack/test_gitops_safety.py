"""GitOps never deletes by accident, and a pool survives `toolstack gc`: through the real CLI, on the
simulator, around a real git daemon.

- an invalid edit (broken JSON, a wrong type, a missing file, a name that does not match, a half-done
  deletion) is reverted to the VM's last valid version from history, never removed; the pull exits 5 and
  names the commit, its author, the path and the error; a VM born broken is left out, and the revert says so;
- a host refuses (exit 7) to push a removal that no operation asked for;
- after gc and a forced push, a peer's pull exits 6 naming `toolstack pull --resync`, which keeps local-only
  commits under refs/resync/, resets main and reconciles; the README's recovery by hand works on the bare
  repository; event tokens of rewritten commits keep working.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

import drivers
from store import Store
from tests.store.git_servers import git_daemon
from tests.toolstack.conftest import ROOT
from tests.toolstack.pool_helpers import cli_argv
from toolstack import layout

IDENTITY = ["-c", "user.name=Operator", "-c", "user.email=op@example.org"]


def git(path, *args, check=True):
    return subprocess.run(
        ["git", "-C", str(path), *IDENTITY, *args], check=check, capture_output=True, text=True
    )


def toolstack(tmp_path, host, *args, author="Host <host@example.org>"):
    """`toolstack` as a process on host ``host``'s repository and simulator."""
    return subprocess.run(
        cli_argv(tmp_path, host, *args, author=author),
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": ROOT},
        timeout=120,
    )


def ok(result):
    assert result.returncode == 0, f"exit {result.returncode}: {result.stdout}\n{result.stderr}"
    return result.stdout


def vcpus(tmp_path, host, uuid):
    with drivers.open(f"sim://{tmp_path}/{host}.sim") as hv:
        return hv.get_spec(uuid).vcpus


def domains(tmp_path, host):
    with drivers.open(f"sim://{tmp_path}/{host}.sim") as hv:
        return {str(info.uuid): info for info in hv.list()}


def central_tree(base):
    with Store.open(base / "pool.git") as central:
        return central.branch("main").tree


@pytest.fixture
def pool(tmp_path):
    """A pool on a git daemon: host h1 made VM web (256 MiB, a disk) and pushed; an operator's plain git
    clone; the daemon's URL. Yields (url, uuid, operator work tree, server directory)."""
    base = tmp_path / "server"
    base.mkdir()
    with git_daemon(str(base)) as daemon:
        url = f"{daemon}/pool.git"
        Store.open(base / "pool.git").close()
        ok(toolstack(tmp_path, "h1", "init", "--name", "pool"))
        ok(toolstack(tmp_path, "h1", "vm", "create", "web", "--memory", "256M", "--disk", "/img/web.qcow2"))
        ok(toolstack(tmp_path, "h1", "vm", "start", "web"))
        ok(toolstack(tmp_path, "h1", "push", "--url", url))
        uuid = json.loads(ok(toolstack(tmp_path, "h1", "--json", "vm", "show", "web")))["uuid"]
        work = tmp_path / "operator"
        subprocess.run(["git", "clone", "-q", url, str(work)], check=True)
        yield url, uuid, work, base


def fresh_host(tmp_path, host):
    """A host that has not joined the pool yet: no state repository (its first pull --url clones)."""
    assert not (tmp_path / f"{host}.git").exists()


def edit_config(work, uuid, change):
    path = work / layout.config_path(uuid)
    config = json.loads(path.read_text())
    change(config)
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def break_json(work, uuid):
    (work / layout.config_path(uuid)).write_text('{"name": "web", "memory": 256,')
    return "not valid JSON", layout.config_path(uuid)


def wrong_type(work, uuid):
    edit_config(work, uuid, lambda c: c.update(memory="lots"))
    return "memory", layout.config_path(uuid)


def missing_config(work, uuid):
    git(work, "rm", "-q", layout.config_path(uuid))  # the devices/ are left behind
    return "is missing", layout.config_path(uuid)


def name_mismatch(work, uuid):
    edit_config(work, uuid, lambda c: c.update(name="web2"))  # a rename without names/
    return "does not name", layout.name_path("web2")


def half_deletion(work, uuid):
    git(work, "rm", "-rq", layout.vm_dir(uuid))  # its name is left behind
    return f"is gone, but {layout.name_path('web')} still names it", layout.vm_dir(uuid)


@pytest.mark.parametrize("damage", [break_json, wrong_type, missing_config, name_mismatch, half_deletion])
def test_a_fresh_host_pulling_an_invalid_edit_restores_the_last_valid_vm_and_exits_5(tmp_path, pool, damage):
    """The issue's scenario: a fresh host pulls (and pushes back) a pool whose head holds an invalid VM."""
    url, uuid, work, base = pool
    edit_config(work, uuid, lambda c: c.update(memory=384))  # a valid edit first: the one to restore
    git(work, "commit", "-qam", "more memory")
    error, path = damage(work, uuid)
    git(work, "add", "-A")
    git(work, "commit", "-qm", "the bad edit")
    bad = git(work, "rev-parse", "HEAD").stdout.strip()
    git(work, "push", "-q", "origin", "main")
    fresh_host(tmp_path, "h2")

    pulled = toolstack(tmp_path, "h2", "pull", "--url", url, "--push")
    assert pulled.returncode == 5, pulled.stderr
    message = pulled.stderr
    assert bad[:12] in message and "Operator <op@example.org>" in message
    assert path in message and error in message and uuid in message
    # Restored as of the operator's valid edit, with its name and desired state; the hypervisor runs it.
    shown = json.loads(ok(toolstack(tmp_path, "h2", "--json", "vm", "show", "web")))
    assert shown["uuid"] == uuid and shown["memory"] == 384 and shown["desired"] == "running"
    assert shown["devices"] and domains(tmp_path, "h2")[uuid].state.value == "running"
    # What was pushed back keeps the VM in the pool, valid, and the revert names the error.
    tree = central_tree(base)
    assert json.loads(tree.get(layout.config_path(uuid)))["memory"] == 384
    assert tree.get(layout.name_path("web")) == f"{uuid}\n".encode()
    git(work, "fetch", "-q")
    revert = git(work, "log", "-1", "--format=%B", "--grep=^gitops: reverted", "origin/main").stdout
    assert revert.startswith("gitops: reverted an invalid edit from origin") and "restored as of" in revert


def test_a_vm_born_broken_is_left_out_and_the_revert_says_so(tmp_path, pool):
    _, uuid, work, base = pool
    born = "0b0b0b0b-0000-4000-8000-000000000001"
    config = work / layout.config_path(born)
    config.parent.mkdir(parents=True)
    config.write_text('{"name": "broken", "memory": -1}\n')
    (work / layout.name_path("broken")).parent.mkdir(parents=True, exist_ok=True)
    (work / layout.name_path("broken")).write_text(f"{born}\n")
    git(work, "add", "-A")
    git(work, "commit", "-qm", "a new VM, broken from birth")
    git(work, "push", "-q", "origin", "main")

    pulled = toolstack(tmp_path, "h1", "pull", "--push")
    assert pulled.returncode == 5 and "never valid anywhere in history: left out" in pulled.stderr
    names = [vm["name"] for vm in json.loads(ok(toolstack(tmp_path, "h1", "--json", "vm", "list")))]
    assert names == ["web"]
    tree = central_tree(base)  # left out, and that removal was pushed: it was asked for by validation
    assert tree.kind(layout.vm_dir(born)) is None and tree.kind(layout.vm_dir(uuid)) == "directory"
    git(work, "pull", "-q", "--ff-only")
    message = git(work, "log", "-1", "--format=%B", "--grep=^gitops: reverted").stdout
    assert "never valid anywhere in history: left out" in message and f"Gitops-left-out: {born}" in message


def test_a_whole_deletion_by_a_person_is_a_deletion_not_an_invalid_edit(tmp_path, pool):
    _, uuid, work, base = pool
    git(work, "rm", "-rq", layout.vm_dir(uuid))
    git(work, "commit", "-qm", "delete web, the directory only")
    git(work, "push", "-q", "origin", "main")
    half = toolstack(tmp_path, "h1", "pull", "--push")
    assert half.returncode == 5 and layout.name_path("web") in half.stderr  # half done: restored
    assert uuid in domains(tmp_path, "h1")

    git(work, "pull", "-q", "--ff-only")
    git(work, "rm", "-rq", layout.vm_dir(uuid), layout.name_path("web"))
    git(work, "commit", "-qm", "delete web, directory and name")
    git(work, "push", "-q", "origin", "main")
    # Removing a running VM's domain is destructive: without a terminal it takes --yes (test_deletion_guard).
    out = ok(toolstack(tmp_path, "h1", "pull", "--push", "--yes"))
    assert "rejected" not in out
    assert json.loads(ok(toolstack(tmp_path, "h1", "--json", "vm", "list"))) == []
    assert uuid not in domains(tmp_path, "h1")  # reconciled: undefined
    assert central_tree(base).kind(layout.vm_dir(uuid)) is None


def test_a_host_refuses_to_push_a_removal_no_operation_asked_for(tmp_path, pool):
    url, uuid, work, base = pool
    ok(toolstack(tmp_path, "h1", "vm", "create", "db", "--memory", "128M"))
    # What the revert of before did on a host: drop a VM in a commit that is not a deletion.
    with (
        Store.open(tmp_path / "h1.git") as store,
        store.branch("main").transaction(
            message="gitops: reverted an invalid edit from origin: bad JSON", author="host"
        ) as tx,
    ):
        tx.tree = tx.tree.remove(layout.vm_dir(uuid)).remove(layout.name_path("web"))
    before = central_tree(base).oid

    for command in (["push"], ["pull", "--push", "--no-reconcile"]):
        refused = toolstack(tmp_path, "h1", *command)
        assert refused.returncode == 7, refused.stderr
        assert f"web ({uuid})" in refused.stderr and "toolstack rollback" in refused.stderr
        assert central_tree(base).oid == before  # nothing was pushed
    agent = toolstack(tmp_path, "h1", "agent", "--host", "h1", "--remote", url, "--once")
    assert "UnrequestedRemoval" in agent.stdout and central_tree(base).oid == before

    # The way out the refusal names: restore it from the remote's main; then a deletion by an operation.
    remote_head = git(work, "rev-parse", "origin/main").stdout.strip()
    ok(toolstack(tmp_path, "h1", "rollback", remote_head, "--vm", "web"))
    ok(toolstack(tmp_path, "h1", "push"))
    assert central_tree(base).kind(layout.vm_dir(uuid)) == "directory"
    ok(toolstack(tmp_path, "h1", "vm", "delete", "web"))
    ok(toolstack(tmp_path, "h1", "push"))
    assert central_tree(base).kind(layout.vm_dir(uuid)) is None


# -- gc with peers ------------------------------------------------------------------------------------------
def test_a_force_push_after_gc_never_discards_an_operation_pushed_meanwhile(tmp_path, pool):
    url, _, _, base = pool
    fresh_host(tmp_path, "h2")
    ok(toolstack(tmp_path, "h2", "pull", "--url", url))
    ok(toolstack(tmp_path, "h1", "vm", "set", "web", "--vcpus", "2"))
    point = git(tmp_path / "h1.git", "rev-parse", "main~1").stdout.strip()
    ok(toolstack(tmp_path, "h2", "vm", "create", "late", "--memory", "64M"))
    ok(toolstack(tmp_path, "h2", "push"))  # acknowledged by the pool after h1 last fetched
    ok(toolstack(tmp_path, "h1", "gc", "--before", point))
    forced = toolstack(tmp_path, "h1", "push", "--force")
    assert forced.returncode == 1
    assert "moved since it was last fetched" in forced.stderr
    with Store.open(base / "pool.git") as central:
        assert "late" in [name for name, _ in layout.name_records(central.branch("main").tree)]


@pytest.fixture
def squashed(tmp_path, pool):
    """h2 joined the pool and pushed an operation; h1 pulled, worked on, ran gc and force-pushed; meanwhile
    h2 made an operation it never pushed. Yields (url, uuid, base, tokens): "pushed" is h2's operation that
    reached the pool, which became the squash point; "events" what h1 listed after it before the gc."""
    url, uuid, _, base = pool
    fresh_host(tmp_path, "h2")
    ok(toolstack(tmp_path, "h2", "pull", "--url", url))
    ok(toolstack(tmp_path, "h2", "vm", "set", "web", "--vcpus", "2"))
    pushed_token = json.loads(ok(toolstack(tmp_path, "h2", "--json", "push")))["main"]
    ok(toolstack(tmp_path, "h1", "pull"))
    ok(toolstack(tmp_path, "h1", "vm", "set", "web", "--vcpus", "3"))
    ok(toolstack(tmp_path, "h1", "vm", "create", "db", "--memory", "128M"))
    # What h1's events said before gc, after h2's operation (the squash point) and after each later commit.
    listed = ok(toolstack(tmp_path, "h1", "--json", "events", "--since", pushed_token))
    events = [json.loads(line) for line in listed.splitlines()]
    ok(toolstack(tmp_path, "h1", "gc", "--before", pushed_token))
    ok(toolstack(tmp_path, "h1", "push", "--force"))
    ok(toolstack(tmp_path, "h2", "vm", "set", "web", "--vcpus", "4"))  # local-only
    yield url, uuid, base, {"pushed": pushed_token, "events": events}


def test_a_peer_detects_gc_and_changes_nothing_then_resyncs_keeping_local_commits(tmp_path, squashed):
    url, uuid, _, _ = squashed
    repo = tmp_path / "h2.git"
    head_before = git(repo, "rev-parse", "main").stdout.strip()
    refs_before = git(repo, "for-each-ref").stdout

    pulled = toolstack(tmp_path, "h2", "pull")
    assert pulled.returncode == 6, pulled.stderr
    assert (
        "the pool's history was rewritten by gc at" in pulled.stderr and "merge conflict" not in pulled.stderr
    )
    command = f"toolstack --repo {repo} pull --resync"
    assert command in pulled.stderr
    assert git(repo, "for-each-ref").stdout == refs_before  # everything as it was, tracking ref included
    assert vcpus(tmp_path, "h2", uuid) == 4

    resynced = toolstack(tmp_path, "h2", "--json", "pull", "--resync")
    record = json.loads(ok(resynced))
    local = [entry["message"] for entry in record["local_only"]]
    assert len(local) == 1 and local[0].startswith("vm set web")  # not the pushed vcpus=2, not older ones
    kept = record["kept"]
    assert kept.startswith("refs/resync/") and git(repo, "rev-parse", kept).stdout.strip() == head_before
    remote_main = git(repo, "ls-remote", url, "main").stdout.split()[0]
    assert record["after"] == remote_main  # main was reset to it; reconcile may have committed on top
    assert git(repo, "merge-base", "--is-ancestor", remote_main, "main").returncode == 0
    assert json.loads(ok(toolstack(tmp_path, "h2", "--json", "vm", "show", "web")))["vcpus"] == 3
    assert sorted(domains(tmp_path, "h2")) == sorted(
        vm["uuid"] for vm in json.loads(ok(toolstack(tmp_path, "h2", "--json", "vm", "list")))
    )
    # The pool works again: an operation here is pulled by h1 and pushed back.
    ok(toolstack(tmp_path, "h2", "vm", "set", "web", "--memory", "512M"))
    ok(toolstack(tmp_path, "h2", "push"))
    ok(toolstack(tmp_path, "h1", "pull"))
    assert json.loads(ok(toolstack(tmp_path, "h1", "--json", "vm", "show", "web")))["memory"] == 512
    assert git(repo, "fsck", "--full").returncode == 0


def test_an_agent_resyncs_by_itself_after_gc_keeping_its_old_main(tmp_path, squashed):
    url, _, _, _ = squashed
    repo = tmp_path / "h2.git"
    head_before = git(repo, "rev-parse", "main").stdout.strip()
    round_ = ok(toolstack(tmp_path, "h2", "agent", "--host", "h2", "--remote", url, "--once"))
    assert "the pool's history was rewritten by gc; resynced" in round_
    kept = [line.split()[-1] for line in git(repo, "for-each-ref", "refs/resync/").stdout.splitlines()]
    assert len(kept) == 1 and git(repo, "rev-parse", kept[0]).stdout.strip() == head_before
    remote_main = git(repo, "ls-remote", url, "main").stdout.split()[0]
    assert git(repo, "merge-base", "--is-ancestor", remote_main, "main").returncode == 0
    # The next round is an ordinary one: no history rewritten any more.
    again = ok(toolstack(tmp_path, "h2", "agent", "--host", "h2", "--remote", url, "--once"))
    assert "rewritten" not in again and "HistoryRewritten" not in again


def test_the_readme_recovery_by_hand_works_on_the_bare_repository(tmp_path, squashed):
    url = squashed[0]
    with open(os.path.join(ROOT, "README.md")) as file:
        readme = file.read()
    section = readme[readme.index("**History squash.**") :]
    section = section[: section.index("\n- **")]
    commands = re.findall(r"^\s+(git -C toolstack\.git .*)$", section, re.MULTILINE)
    assert len(commands) >= 2, section
    assert toolstack(tmp_path, "h2", "pull").returncode == 6
    repo = tmp_path / "h2.git"
    for command in commands:
        subprocess.run(
            command.replace("toolstack.git", str(repo)), shell=True, check=True, capture_output=True
        )
    assert (
        git(repo, "rev-parse", "main").stdout.strip() == git(repo, "ls-remote", url, "main").stdout.split()[0]
    )
    ok(toolstack(tmp_path, "h2", "reconcile"))
    assert ok(toolstack(tmp_path, "h2", "pull")).startswith("main:")


def test_event_tokens_of_rewritten_commits_keep_working_and_cut_ones_are_lost(tmp_path, squashed):
    tokens = squashed[3]

    def events(host, since):
        return toolstack(tmp_path, host, "--json", "events", "--since", since)

    # On the host that ran gc, whose archive holds the old commits.
    with Store.open(tmp_path / "h1.git") as store:
        (archive,) = store.backend.list_refs("refs/archive/").values()
        old = list(store.graph.first_parent_chain(archive))
        main = list(store.graph.first_parent_chain(store.branch("main").head))
    point = old.index(tokens["pushed"])
    rewritten, cut = old[:point], old[point + 1 :]
    assert rewritten and cut

    def listed(host, since):
        return [json.loads(line) for line in ok(events(host, since)).splitlines()]

    def without_tokens(found):
        return [{k: v for k, v in e.items() if k != "token"} for e in found]

    before = tokens["events"]
    rank = {commit: n for n, commit in enumerate(reversed(old))}
    assert before and {e["token"] for e in before} <= set(rewritten)
    # Every rewritten token resumes after its rewrite: the same events as before gc, with tokens on main.
    for token in rewritten:
        resumed = listed("h1", token)
        assert all(e["token"] in main for e in resumed)
        expected = [e for e in before if rank[e["token"]] > rank[token]]
        assert without_tokens(resumed) == without_tokens(expected)
    # The squash point resumes from the new root: everything after it.
    after_point = listed("h1", tokens["pushed"])
    assert without_tokens(after_point) == without_tokens(before)
    assert ("created", "db") in [(e["kind"], e["name"]) for e in after_point]
    # Only what was really cut away is lost.
    lost = events("h1", cut[0])
    assert lost.returncode == 1 and "lost" in lost.stderr

    # On the peer, after resync: its token of the operation it had pushed still works.
    assert toolstack(tmp_path, "h2", "pull").returncode == 6
    ok(toolstack(tmp_path, "h2", "pull", "--resync"))
    # (then the events of the resync's own reconcile, which defined db here)
    assert listed("h2", tokens["pushed"])[: len(after_point)] == after_point


def test_a_host_whose_own_revert_meets_the_pools_later_repair_takes_the_repair(tmp_path, pool):
    # Found by the chaos test (seed 3): h2 reverted an invalid edit locally (memory "lots" -> 256); meanwhile
    # the pool repaired it differently (another host's revert, then a valid edit to 384). Against the
    # invalid base, "256" and "384" conflicted on every pull, for good: the host never converged.
    url, uuid, work, base = pool
    ok(toolstack(tmp_path, "h2", "pull", "--url", url))
    wrong_type(work, uuid)
    git(work, "commit", "-qam", "the bad edit")
    git(work, "push", "-q", "origin", "main")
    assert toolstack(tmp_path, "h2", "pull").returncode == 5  # reverted here, not pushed
    edit_config(work, uuid, lambda c: c.update(memory=384))  # the pool's own repair
    git(work, "commit", "-qam", "repair: 384 MiB")
    git(work, "push", "-q", "origin", "main")

    pulled = toolstack(tmp_path, "h2", "pull", "--push")

    assert pulled.returncode == 0, pulled.stderr
    shown = json.loads(ok(toolstack(tmp_path, "h2", "--json", "vm", "show", "web")))
    assert shown["memory"] == 384
    assert json.loads(central_tree(base).get(layout.config_path(uuid)))["memory"] == 384
    taken = subprocess.run(
        ["git", "--git-dir", str(tmp_path / "h2.git"), "log", "--format=%s", "--grep=^gitops: took", "main"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert taken.startswith(f"gitops: took origin's repair of an invalid edit of {uuid} over this host's own")
