"""Whole-history reads (store/scan.py): raw trees compared and searched as the store's parser reads them, a
reader that returns every object the store does, and a commit summary that agrees with decode_commit."""

from __future__ import annotations

import subprocess

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from store import Store, scan
from store.backend import parse_tree_entries
from store.objects import decode_commit, encode_commit
from store.scan import RawTree, ScanReader, commit_summary

MODES = [b"40000", b"100644", b"100755"]


def encode_tree(entries: dict[bytes, tuple[bytes, bytes]]) -> bytes:
    """A raw tree in git's order (a directory sorts as its name and a slash)."""

    def key(name: bytes) -> bytes:
        return name + b"/" if entries[name][0] == b"40000" else name

    return b"".join(
        mode + b" " + name + b"\0" + oid for name in sorted(entries, key=key) for mode, oid in [entries[name]]
    )


# Names of one length (the shards of vms/) or of any; ids that may hold spaces, NULs and the names' bytes.
names = st.one_of(
    st.binary(min_size=2, max_size=2).map(lambda b: bytes(48 + c % 10 for c in b)),
    st.text("ab0 9-", min_size=1, max_size=4).map(str.encode),
)
ids = st.one_of(
    st.binary(min_size=20, max_size=20),
    st.sampled_from([b"\0" * 20, b" 00\0" * 5, b"40000 ab" * 2 + b"\0" * 4]),
)
entries = st.dictionaries(names, st.tuples(st.sampled_from(MODES), ids), max_size=40)


@st.composite
def two_versions(
    draw: st.DrawFn,
) -> tuple[dict[bytes, tuple[bytes, bytes]], dict[bytes, tuple[bytes, bytes]]]:
    old = draw(entries)
    new = dict(old)
    for _ in range(draw(st.integers(0, 4))):
        action = draw(st.sampled_from(["id", "mode", "remove", "add"]))
        if action == "add" or not new:
            new[draw(names)] = (draw(st.sampled_from(MODES)), draw(ids))
            continue
        name = draw(st.sampled_from(sorted(new)))
        mode, oid = new[name]
        if action == "id":
            new[name] = (mode, draw(ids))
        elif action == "mode":
            new[name] = (draw(st.sampled_from(MODES)), oid)
        else:
            del new[name]
    return old, new


def parsed_changes(old: bytes, new: bytes) -> set[bytes]:
    """What Tree.changed_names says: the names whose (is_dir, id) differ, by the store's own parser."""
    return {name.encode() for name, _ in parse_tree_entries(old).items() ^ parse_tree_entries(new).items()}


@settings(max_examples=400, deadline=None)
@given(two_versions())
def test_raw_trees_differ_in_the_entries_the_parser_finds_different(versions):
    old, new = (encode_tree(v) for v in versions)
    assert RawTree(new).changed(RawTree(old)) == parsed_changes(old, new)
    assert RawTree(old).changed(RawTree(new)) == parsed_changes(new, old)


@settings(max_examples=400, deadline=None)
@given(entries, names)
def test_an_entry_of_a_raw_tree_is_found_as_the_parser_reads_it(tree, name):
    raw = encode_tree(tree)
    parsed = parse_tree_entries(raw)
    for candidate in [name, *tree]:
        assert RawTree(raw).lookup(candidate) == parsed.get(candidate.decode())


def test_the_vms_directory_of_two_versions_compares_by_the_shards_that_differ():
    shards = {f"{n:02x}".encode(): (b"40000", bytes([n]) * 20) for n in range(256)}
    changed = {**shards, b"7f": (b"40000", b"\1" * 20), b"a0": (b"40000", b"\2" * 20)}
    assert RawTree(encode_tree(changed)).changed(RawTree(encode_tree(shards))) == {b"7f", b"a0"}
    assert RawTree(encode_tree(changed)).lookup(b"a0") == (True, (b"\2" * 20).hex().encode())


def git(repo, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def every_object(repo) -> list[bytes]:
    out = git(repo, "cat-file", "--batch-all-objects", "--batch-check=%(objectname)")
    return [line.encode() for line in out.split()]


def test_the_scan_reader_returns_every_object_the_store_does_whole_packed_delta_or_loose(tmp_path):
    repo = tmp_path / "repo"
    with Store.open(repo) as store:
        main = store.branch("main")
        for n in range(30):
            with main.transaction(message=f"change {n}") as tx:
                tx.set(f"dir/{n % 7}/value", f"{n}\n".encode() * 50)
    subprocess.run(["git", "-C", str(repo), "repack", "-q", "-d"], check=True)  # git's pack: deltas
    loose = subprocess.run(
        ["git", "-C", str(repo), "hash-object", "-w", "--stdin"],
        input=b"loose\n",
        check=True,
        capture_output=True,
    ).stdout.strip()
    with Store.open(repo) as store:
        main = store.branch("main")
        for n in range(5):  # and packs of the store's own, beside git's
            with main.transaction(message=f"more {n}") as tx:
                tx.set(f"more/{n}", b"x")
        objects = every_object(repo)
        assert loose in objects
        with ScanReader(store.objects) as reader:
            for oid in objects:
                assert reader.get_raw(oid) == store.objects.get_raw(oid)


def test_a_warm_scan_reader_reads_through_the_store_then_opens_the_packs_and_returns_the_same(
    tmp_path, monkeypatch
):
    with Store.open(tmp_path / "repo") as store:
        main = store.branch("main")
        for n in range(12):
            with main.transaction(message=f"change {n}") as tx:
                tx.set(f"dir/{n % 5}/value", f"{n}\n".encode() * 40)
        objects = every_object(tmp_path / "repo")
        opened: list[str] = []
        real_pack = scan._Pack
        monkeypatch.setattr(scan, "_Pack", lambda base: opened.append(base) or real_pack(base))
        with ScanReader(store.objects, warm=5) as reader:
            for n, oid in enumerate(objects):
                assert reader.get_raw(oid) == store.objects.get_raw(oid)
                assert bool(opened) == (n >= 4)  # the packs are opened once the warm reads are spent


authors = st.text(
    st.characters(blacklist_characters="<>\n", blacklist_categories=["Cs"]), min_size=1, max_size=12
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    authors,
    st.lists(st.binary(min_size=20, max_size=20).map(bytes.hex), max_size=3),
    st.text(max_size=40),
    st.integers(0, 2**33),
)
def test_a_commit_summary_agrees_with_the_decoded_commit(author, parents, message, when):
    raw = encode_commit(b"0" * 40, parents, f"{author.strip() or 'a'} <a@b>", "c <c@d>", message, when)
    info = decode_commit("0" * 40, raw)
    parent, who, at, text = commit_summary(raw)
    assert (parent, who, at, text) == (
        info.parents[0] if info.parents else None,
        info.author,
        info.author_time,
        info.message,
    )
