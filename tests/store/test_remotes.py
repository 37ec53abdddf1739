"""Clone, fetch, pull and push through real git servers, and plain git against the store's repositories."""

from __future__ import annotations

import subprocess

import pytest

from store import Conflict, NonFastForward, RemoteError, Store
from tests.store.git_servers import git_daemon, git_http_backend, ssh_server

# Remotes are git servers run as processes.
pytestmark = pytest.mark.native


def commit(branch, changes, message="change", author="tester"):
    with branch.transaction(message=message, author=author) as tx:
        for path, value in changes.items():
            tx.set(path, value)
    return tx.commit_id


@pytest.fixture(params=["path", "file", "git-daemon", "smart-http", "ssh"])
def served(request, tmp_path, monkeypatch):
    """A store acting as the central repository, and the URL clients reach it by."""
    base = tmp_path / "server"
    base.mkdir()
    central = Store.open(base / "central.git")
    commit(central.branch("main"), {"vms/a/config": b'{"memory": 512}\n'}, "seed")
    subprocess.run(["git", "-C", str(base / "central.git"), "config", "http.receivepack", "true"], check=True)
    if request.param == "path":
        yield central, str(base / "central.git")
    elif request.param == "file":
        yield central, f"file://{base}/central.git"
    elif request.param == "git-daemon":
        with git_daemon(str(base)) as url:
            yield central, f"{url}/central.git"
    elif request.param == "smart-http":
        with git_http_backend(str(base)) as url:
            yield central, f"{url}/central.git"
    else:
        with ssh_server(str(tmp_path / "sshd")) as (url, ssh_command):
            monkeypatch.setenv("GIT_SSH_COMMAND", ssh_command)  # what git and the store use to log in
            yield central, f"{url}{base}/central.git"
    central.close()


def test_clone_push_fetch_and_pull_through_every_transport(served, tmp_path):
    central, url = served
    one = Store.clone(url, tmp_path / "one.git")
    two = Store.clone(url, tmp_path / "two.git")
    assert one.branch("main").get("vms/a/config") == b'{"memory": 512}\n'
    commit(one.branch("main"), {"vms/b/config": b"{}\n"}, "add b")
    one.remote("origin").push("main")
    assert central.branch("main").get("vms/b/config") == b"{}\n"
    # two edits a different VM meanwhile: its push is refused until it pulls, then both changes merge.
    commit(two.branch("main"), {"vms/c/config": b"{}\n"}, "add c")
    with pytest.raises(NonFastForward):
        two.remote("origin").push("main")
    two.remote("origin").pull("main")
    two.remote("origin").push("main")
    assert sorted(central.branch("main").list("vms")) == ["a", "b", "c"]
    one.remote("origin").pull("main", strategy="ff-only")
    assert one.branch("main").head == central.branch("main").head
    for store in (one, two):
        store.close()
    for repo in (central.gitdir, tmp_path / "one.git", tmp_path / "two.git"):
        subprocess.run(["git", "-C", str(repo), "fsck", "--full"], check=True, capture_output=True)


def test_same_field_edited_on_two_clones_conflicts_with_both_values(served, tmp_path):
    central, url = served
    central.schema.add("vms/*/config", "json_object")
    one, two = Store.clone(url, tmp_path / "one.git"), Store.clone(url, tmp_path / "two.git")
    for store in (one, two):
        store.schema.add("vms/*/config", "json_object")
    commit(one.branch("main"), {"vms/a/config": b'{"memory": 1024}\n'}, "one sets memory")
    one.remote("origin").push("main")
    commit(two.branch("main"), {"vms/a/config": b'{"memory": 2048}\n'}, "two sets memory")
    head = two.branch("main").head
    with pytest.raises(Conflict) as err:
        two.remote("origin").pull("main")
    (entry,) = err.value.conflicts
    assert entry.path == "vms/a/config"
    assert "memory" in entry.reason and "1024" in entry.reason and "2048" in entry.reason
    assert two.branch("main").head == head
    with pytest.raises(NonFastForward):
        two.remote("origin").pull("main", strategy="ff-only")
    one.close()
    two.close()


def test_force_push_replaces_the_remote_branch(served, tmp_path):
    central, url = served
    mine = Store.clone(url, tmp_path / "mine.git")
    commit(central.branch("main"), {"elsewhere": b"1"}, "remote-only commit")
    commit(mine.branch("main"), {"mine": b"1"}, "local commit")
    with pytest.raises(NonFastForward):
        mine.remote("origin").push("main")
    mine.remote("origin").push("main", force=True)
    assert central.branch("main").head == mine.branch("main").head
    mine.close()


@pytest.mark.parametrize("client", ["git", "dulwich"])
def test_a_forced_push_with_a_lease_never_discards_commits_pushed_since(served, tmp_path, mocker, client):
    central, url = served
    if client == "dulwich":
        mocker.patch("store.remote.shutil.which", return_value=None)
    mine = Store.clone(url, tmp_path / "mine.git")
    seen = central.branch("main").head
    commit(central.branch("main"), {"elsewhere": b"1"}, "pushed by someone else after our fetch")
    theirs = central.branch("main").head
    commit(mine.branch("main"), {"mine": b"1"}, "local commit")
    with pytest.raises(NonFastForward, match="moved since it was last fetched"):
        mine.remote("origin").push("main", force=True, expect=seen)
    assert central.branch("main").head == theirs
    mine.remote("origin").push("main", force=True, expect=theirs)
    assert central.branch("main").head == mine.branch("main").head
    mine.close()


def test_the_real_git_cli_clones_fetches_and_pushes_the_stores_repository(served, tmp_path):
    central, url = served
    work = tmp_path / "work"
    subprocess.run(["git", "clone", "-q", url, str(work)], check=True)
    assert (work / "vms" / "a" / "config").read_bytes() == b'{"memory": 512}\n'
    (work / "vms" / "a" / "config").write_bytes(b'{"memory": 768}\n')
    identity = ["-c", "user.name=Operator", "-c", "user.email=op@example.org"]
    subprocess.run(["git", "-C", str(work), *identity, "commit", "-qam", "operator edit"], check=True)
    subprocess.run(["git", "-C", str(work), "push", "-q", "origin", "main"], check=True, capture_output=True)
    assert central.branch("main").get("vms/a/config") == b'{"memory": 768}\n'
    assert central.branch("main").log()[0].author == "Operator <op@example.org>"
    commit(central.branch("main"), {"from/store": b"1"}, "store commit")
    subprocess.run(["git", "-C", str(work), "pull", "-q", "--ff-only"], check=True, capture_output=True)
    assert (work / "from" / "store").read_bytes() == b"1"


def test_an_unreachable_remote_is_a_clear_error(tmp_path):
    store = Store.open(tmp_path / "lonely.git")
    commit(store.branch("main"), {"a": b"1"})
    with pytest.raises(RemoteError, match="nowhere"):
        store.remote("nowhere", "git://127.0.0.1:1/none.git").fetch()
    store.close()


def test_without_the_git_cli_dulwich_alone_fetches_and_pushes(served, tmp_path, mocker):
    central, url = served
    mocker.patch("store.remote.shutil.which", return_value=None)
    one = Store.clone(url, tmp_path / "one.git")
    commit(one.branch("main"), {"pure": b"dulwich"}, "pushed by dulwich")
    one.remote("origin").push("main")
    assert central.branch("main").get("pure") == b"dulwich"
    commit(central.branch("main"), {"elsewhere": b"1"}, "remote-only commit")
    commit(one.branch("main"), {"mine": b"1"}, "local commit")
    with pytest.raises(NonFastForward):
        one.remote("origin").push("main")
    one.remote("origin").pull("main")
    one.remote("origin").push("main")
    assert central.branch("main").get("mine") == b"1"
    one.close()


@pytest.mark.parametrize("client", ["git", "dulwich"])
def test_a_branch_that_moves_while_a_local_fetch_runs_is_tracked_at_the_commit_received(
    tmp_path, mocker, client
):
    # A commit lands in the remote between the pack being chosen and the fetch finishing (an agent's clone
    # racing an operator's command on the same host). The tracking ref must name what was received.
    central = Store.open(tmp_path / "central.git")
    commit(central.branch("main"), {"a": b"1"}, "seed")
    if client == "dulwich":
        mocker.patch("store.remote.shutil.which", return_value=None)
    mine = Store.open(tmp_path / "mine.git")
    from dulwich.repo import BaseRepo

    choose_objects = BaseRepo.find_missing_objects

    def then_the_remote_moves(self, *args, **kwargs):
        missing = choose_objects(self, *args, **kwargs)
        commit(central.branch("main"), {"b": b"2"}, "landed during the fetch")
        return missing

    mocker.patch.object(BaseRepo, "find_missing_objects", then_the_remote_moves)
    fetched = mine.remote("origin", str(tmp_path / "central.git")).fetch()
    seed = central.branch("main").log()[1].id
    assert fetched == {"main": seed}
    assert mine.backend.read_ref("refs/remotes/origin/main") == seed
    mocker.stopall()
    # The next fetch brings the commit that landed meanwhile.
    assert mine.remote("origin", str(tmp_path / "central.git")).fetch() == {
        "main": central.branch("main").head
    }
    mine.remote("origin").pull("main", strategy="ff-only")
    assert mine.branch("main").get("b") == b"2"
    mine.close()
    central.close()


def test_a_single_branch_clone_makes_only_that_branch_and_tracks_them_all(tmp_path):
    central = Store.open(tmp_path / "central.git")
    commit(central.branch("main"), {"a": b"1"}, "seed")
    central.fork("vm-task/x", central.branch("main").head)
    one = Store.clone(str(tmp_path / "central.git"), tmp_path / "one.git", branches=("main",))
    assert one.branches() == ["main"]
    assert one.list_refs("refs/remotes/origin/") == {
        "refs/remotes/origin/main": central.branch("main").head,
        "refs/remotes/origin/vm-task/x": central.branch("main").head,
    }
    every = Store.clone(str(tmp_path / "central.git"), tmp_path / "every.git")
    assert sorted(every.branches()) == ["main", "vm-task/x"]
    for store in (one, every, central):
        store.close()
