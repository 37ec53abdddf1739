"""The store is a real git repository: git reads what the store writes, and the store reads git's commits."""

from __future__ import annotations

import os
import subprocess
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from store import Store

# Fidelity is checked by the git CLI, a process.
pytestmark = pytest.mark.native


def commit(branch, changes, message="change", author="Alice Example <alice@example.org>"):
    with branch.transaction(message=message, author=author) as tx:
        for path, value in changes.items():
            tx.set(path, value)
    return tx.commit_id


def test_git_fsck_is_clean_after_a_mixed_workload(disk_store, run_git):
    main = disk_store.branch()
    disk_store.schema.add("count", "counter")
    for i in range(30):
        commit(main, {f"vms/{i % 7}/config": f"{i}".encode(), "count": str(i).encode()})
    task = main.transaction(message="task", keep_branch=True, no_ff=True)
    task.set("tasks/1", b"done")
    task.commit()
    disk_store.fork("side", "main")
    commit(disk_store.branch("side"), {"side": b"1"})
    commit(main, {"main": b"1"})
    disk_store.merge("side", into="main")
    threads = [
        threading.Thread(target=lambda n=n: [commit(main, {f"t/{n}/{i}": b"x"}) for i in range(10)])
        for n in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # git fsck --full reads every pack it listed: a roll-up replacing packs meanwhile would fail it, as a
    # `git repack` running beside it would.
    assert disk_store.backend.wait_for_maintenance()
    run_git(disk_store.gitdir, "fsck", "--full", "--strict")
    assert run_git(disk_store.gitdir, "rev-list", "--count", "main").strip() == str(
        sum(1 for _ in disk_store.graph.walk([main.head]))
    )


def test_git_log_shows_messages_authors_and_dates(disk_store, run_git):
    main = disk_store.branch()
    commit(main, {"a": b"1"}, message="vm start web1 (1234)\n\nDetails here.")
    out = run_git(disk_store.gitdir, "log", "-1", "--format=%an|%ae|%s|%b|%at")
    name, email, subject, body, timestamp = out.strip().split("|")
    assert (name, email, subject, body.strip()) == (
        "Alice Example",
        "alice@example.org",
        "vm start web1 (1234)",
        "Details here.",
    )
    info = disk_store.graph.info(main.head)
    assert int(timestamp) == info.author_time


def test_git_show_and_checkout_give_the_stored_bytes(disk_store, run_git, tmp_path):
    main = disk_store.branch()
    payload = bytes(range(256)) * 3
    first = commit(main, {"bin/blob": payload, "text": b"hello\n"})
    commit(main, {"text": b"changed\n"})
    shown = subprocess.run(
        ["git", "-C", disk_store.gitdir, "show", f"{first}:bin/blob"], capture_output=True, check=True
    ).stdout
    assert shown == payload
    checkout = tmp_path / "checkout"
    run_git(tmp_path, "clone", "-q", disk_store.gitdir, str(checkout))
    run_git(checkout, "checkout", "-q", first)
    assert (checkout / "text").read_bytes() == b"hello\n"
    assert (checkout / "bin" / "blob").read_bytes() == payload


def test_a_commit_made_with_the_git_cli_is_read_logged_and_merged(tmp_path, run_git):
    with Store.open(tmp_path / "repo", bare=False) as s:
        main = s.branch()
        commit(main, {"vms/a/config": b"store\n"})
    work = tmp_path / "repo"
    run_git(work, "checkout", "-q", "main")
    run_git(work, "checkout", "-q", "-b", "cli")
    (work / "vms" / "b").mkdir(parents=True)
    (work / "vms" / "b" / "config").write_bytes(b"from git\n")
    run_git(work, "add", "-A")
    run_git(
        work,
        "-c",
        "user.name=Git User",
        "-c",
        "user.email=git@example.org",
        "commit",
        "-q",
        "-m",
        "cli commit",
    )
    cli_head = run_git(work, "rev-parse", "HEAD").strip()
    with Store.open(work) as s:
        cli = s.branch("cli")
        assert cli.head == cli_head
        assert cli.get("vms/b/config") == b"from git\n"
        assert cli.log()[0].author == "Git User <git@example.org>"
        assert cli.log()[0].paths == ["vms/b/config"]
        main = s.branch("main")
        commit(main, {"vms/a/config": b"store again\n"})
        s.merge("cli", into="main")
        assert main.get("vms/b/config") == b"from git\n"
        assert main.get("vms/a/config") == b"store again\n"
        merged = main.head
    assert run_git(work, "rev-parse", "main").strip() == merged
    run_git(work, "fsck", "--full")


def test_git_gc_and_repack_leave_the_store_readable(disk_store, run_git):
    main = disk_store.branch()
    for i in range(40):
        commit(main, {f"k/{i}": b"v"})
    head = main.head
    run_git(disk_store.gitdir, "gc", "-q", "--prune=now")
    with Store.open(disk_store.path) as reopened:
        assert reopened.branch().head == head
        assert reopened.branch().get("k/39") == b"v"
        commit(reopened.branch(), {"after": b"gc"})
    run_git(disk_store.gitdir, "fsck", "--full")


def test_packed_refs_written_by_git_are_read_and_updated(disk_store, run_git):
    main = disk_store.branch()
    commit(main, {"a": b"1"})
    run_git(disk_store.gitdir, "pack-refs", "--all")
    assert not os.path.exists(os.path.join(disk_store.gitdir, "refs", "heads", "main"))
    with Store.open(disk_store.path) as reopened:
        assert reopened.branch().get("a") == b"1"
        commit(reopened.branch(), {"a": b"2"})
        reopened.fork("tmp", "main")
    run_git(disk_store.gitdir, "pack-refs", "--all")
    with Store.open(disk_store.path) as reopened:
        reopened.delete_branch("tmp")
        assert reopened.branches() == ["main"]
    assert "tmp" not in run_git(disk_store.gitdir, "branch", "--list")
    assert run_git(disk_store.gitdir, "show", "main:a") == "2"


def test_small_packs_are_rolled_up(disk_store, run_git):
    main = disk_store.branch()
    for i in range(120):
        commit(main, {f"k/{i}": b"v"})
    assert disk_store.backend.wait_for_maintenance()
    packs = [p for p in os.listdir(os.path.join(disk_store.gitdir, "objects", "pack")) if p.endswith(".pack")]
    assert len(packs) <= 24
    run_git(disk_store.gitdir, "fsck", "--full")
    assert main.get("k/0") == b"v" and len(main.list("k")) == 120


def test_deltified_objects_from_git_gc_read_back_exactly(disk_store, run_git):
    main = disk_store.branch()
    versions = []
    for i in range(15):
        text = "".join(f"line {n} of a long config {'edited ' * (n == i)}\n" for n in range(200)).encode()
        versions.append(text)
        commit(main, {"big/config": text})
    run_git(disk_store.gitdir, "gc", "-q", "--aggressive", "--prune=now")
    verify = run_git(
        disk_store.gitdir,
        "verify-pack",
        "-v",
        *[
            os.path.join(disk_store.gitdir, "objects", "pack", p)
            for p in os.listdir(os.path.join(disk_store.gitdir, "objects", "pack"))
            if p.endswith(".idx")
        ],
    )
    assert " delta " in verify or "chain length" in verify  # git did store deltas
    with Store.open(disk_store.path) as reopened:
        history = reopened.branch().history("big/config")
        assert [h.value for h in history] == list(reversed(versions))


def test_roll_up_includes_packs_with_deltas_written_by_git(disk_store, run_git):
    main = disk_store.branch()
    for i in range(20):
        text = "".join(f"line {n} {'x' * (n == i)}\n" for n in range(300)).encode()
        commit(main, {"big": text, f"k/{i}": b"v"})
    run_git(disk_store.gitdir, "repack", "-adq")  # one pack, with deltas
    for i in range(40):
        commit(main, {f"more/{i}": b"v"})  # then many small packs of our own
    pack_dir = os.path.join(disk_store.gitdir, "objects", "pack")
    objects = disk_store.backend.objects
    assert disk_store.backend.wait_for_maintenance()  # a background roll-up would race this one
    objects._roll_up([name for name, _ in objects._list_packs()])  # all of them
    assert len([p for p in os.listdir(pack_dir) if p.endswith(".pack")]) == 1
    run_git(disk_store.gitdir, "fsck", "--full")
    assert main.get("more/39") == b"v" and main.get("k/0") == b"v"


def test_roll_up_of_own_packs_concatenates_their_bodies_into_a_pack_git_verifies(disk_store, run_git):
    main = disk_store.branch()
    for i in range(30):
        commit(main, {f"k/{i}": b"v%d" % i, "big": b"x" * (1000 + i)})
    backend = disk_store.backend
    assert backend.wait_for_maintenance()
    pack_dir = os.path.join(disk_store.gitdir, "objects", "pack")
    objects = backend.objects
    objects._roll_up([name for name, _ in objects._list_packs()])  # all of them, by concatenation
    (pack,) = [p for p in os.listdir(pack_dir) if p.endswith(".pack")]
    run_git(disk_store.gitdir, "verify-pack", os.path.join(pack_dir, pack[: -len(".pack")] + ".idx"))
    run_git(disk_store.gitdir, "fsck", "--full")
    with Store.open(disk_store.path) as reopened:
        assert reopened.branch().get("k/29") == b"v29" and reopened.branch().get("big") == b"x" * 1029


def test_packs_sharing_an_object_are_rolled_up_into_one_listing_it_once(disk_store, run_git):
    from store.objects import BLOB, object_id

    backend = disk_store.backend
    pack_dir = os.path.join(disk_store.gitdir, "objects", "pack")
    shared = (object_id(BLOB, b"shared"), BLOB, b"shared")
    backend.write_objects([shared, (object_id(BLOB, b"one"), BLOB, b"one")])
    backend.write_objects([shared, (object_id(BLOB, b"two"), BLOB, b"two")])
    backend.write_objects([(object_id(BLOB, b"three"), BLOB, b"three"), shared])
    backend.objects._roll_up([name for name, _ in backend.objects._list_packs()])
    run_git(disk_store.gitdir, "fsck", "--full")
    (index,) = [p for p in os.listdir(pack_dir) if p.endswith(".idx")]
    verified = run_git(disk_store.gitdir, "verify-pack", "-v", os.path.join(pack_dir, index))
    assert verified.count(object_id(BLOB, b"shared").decode()) == 1
    for value in (b"shared", b"one", b"two", b"three"):
        assert backend.get_raw(object_id(BLOB, value)) == (BLOB, value)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.lists(st.integers(min_value=0, max_value=40), min_size=1, max_size=12, unique=True),
        min_size=1,
        max_size=6,
    )
)
def test_concatenated_packs_hold_every_object_of_their_sources_once(tmp_path_factory, picks):
    """Packs drawn from one pool of objects, so that they share some: the concatenation lists each object
    once, at an offset where it reads back whole, and git verifies the pack."""
    from store.objects import BLOB, object_id
    from store.packfile import concatenate_packs, encode_pack, read_whole_object_pack
    from store.packs import PackView

    directory = tmp_path_factory.mktemp("packs")
    pool = [b"object %d " % n * (1 + n * 7) for n in range(41)]  # small and large, compressible or not
    sources = []
    for i, chosen in enumerate(picks):
        pack, index, _ = encode_pack([(object_id(BLOB, pool[n]), BLOB, pool[n]) for n in chosen])
        base = str(directory / f"source-{i}")
        with open(base + ".pack", "wb") as f:
            f.write(pack)
        with open(base + ".idx", "wb") as f:
            f.write(index)
        read = read_whole_object_pack(base)
        assert read is not None
        sources.append(read)
    parts, index, checksum = concatenate_packs(sources)
    base = str(directory / f"pack-{checksum.hex()}")
    with open(base + ".pack", "wb") as f:
        f.write(b"".join(parts))
    with open(base + ".idx", "wb") as f:
        f.write(index)
    wanted = {n for chosen in picks for n in chosen}
    view = PackView(base)
    assert view._count == len(wanted)
    for n in wanted:
        offset = view.offset(bytes.fromhex(object_id(BLOB, pool[n]).decode()))
        assert offset is not None and view.read(offset) == (BLOB, pool[n])
    view.close()
    subprocess.run(["git", "verify-pack", base + ".idx"], check=True, capture_output=True)
