"""Push a branch over git's smart HTTP protocol (receive-pack), with nothing but an async request function
(issue 22: the browser's ``fetch``; on CPython anything that can send a POST).

Protocol v0, stateless as git's HTTP transport is: ``GET info/refs?service=git-receive-pack`` advertises the
server's refs and capabilities; ``POST git-receive-pack`` sends one ``<old> <new> <ref>`` command and a pack
of the objects the server lacks, and the server answers with ``report-status`` lines. The pack is written
whole, without deltas: a browser's change is a few small objects. Pure Python, like :mod:`store.dumbhttp`.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from store.errors import StoreError
from store.objects import TREE, ObjectId, commit_links

if TYPE_CHECKING:
    from store.store import Store

ZERO = "0" * 40
FLUSH = b"0000"

# (method, url, body or None, headers) -> (HTTP status, body)
Requester = Callable[[str, str, bytes | None, dict[str, str]], Awaitable[tuple[int, bytes]]]


class PushRejected(StoreError):
    """The server refused the push; ``reason`` is its own words (a GitOps validation error, for
    ``toolstack serve``)."""

    def __init__(self, ref: str, reason: str) -> None:
        self.ref = ref
        self.reason = reason
        super().__init__(f"push of {ref} refused: {reason}")


# -- pkt-lines -----------------------------------------------------------------------------------------------
def pkt_line(data: bytes) -> bytes:
    """One pkt-line: four hex digits of length (their own included), then the data."""
    return b"%04x" % (len(data) + 4) + data


def read_pkt_lines(data: bytes, offset: int = 0) -> Iterator[tuple[bytes | None, int]]:
    """(payload, offset after it) for each pkt-line from ``offset``; a flush-pkt gives None."""
    while offset + 4 <= len(data):
        size = int(data[offset : offset + 4], 16)
        if size == 0:
            offset += 4
            yield None, offset
            continue
        yield data[offset + 4 : offset + size], offset + size
        offset += size


def parse_advertisement(body: bytes) -> tuple[dict[str, str], set[bytes]]:
    """The refs and capabilities of an ``info/refs?service=...`` answer (its ``# service=`` line skipped)."""
    refs: dict[str, str] = {}
    capabilities: set[bytes] = set()
    for line, _ in read_pkt_lines(body):
        if line is None or line.startswith(b"# service="):
            continue
        line = line.rstrip(b"\n")
        line, _, caps = line.partition(b"\0")
        if caps:
            capabilities.update(caps.split())
        oid, _, name = line.partition(b" ")
        if name != b"capabilities^{}":
            refs[name.decode()] = oid.decode()
    return refs, capabilities


# -- packs ---------------------------------------------------------------------------------------------------
def encode_pack(objects: Iterable[tuple[ObjectId, int, bytes]]) -> bytes:
    """A version 2 pack of whole (undeltified) objects, with its SHA-1 trailer."""
    items = list(objects)
    parts = [b"PACK" + struct.pack(">II", 2, len(items))]
    for _, type_num, raw in items:
        size = len(raw)
        header = bytearray([(type_num << 4) | (size & 0x0F)])
        size >>= 4
        while size:
            header[-1] |= 0x80
            header.append(size & 0x7F)
            size >>= 7
        parts.append(bytes(header) + zlib.compress(raw))
    body = b"".join(parts)
    return body + hashlib.sha1(body).digest()


def missing_objects(store: Store, new: str, known: Iterable[str]) -> list[tuple[ObjectId, int, bytes]]:
    """The objects of ``new``'s history that a server holding the commits ``known`` (and their history)
    lacks: the new commits, and the trees and blobs they add over their parents'."""
    objects = store.objects
    have: set[str] = set()
    for commit in known:
        if store.graph.exists(commit):
            have.update(store.graph.walk([commit]))
    # The trees the server has: the new commits' parents' that it holds, whole.
    old_trees: set[ObjectId] = set()
    out: list[tuple[ObjectId, int, bytes]] = []
    commits: list[str] = []
    todo = [new]
    seen: set[str] = set()
    while todo:
        commit = todo.pop()
        if commit in seen or commit in have:
            continue
        seen.add(commit)
        commits.append(commit)
        for parent in store.graph.parents(commit):
            if parent in have:
                tree = store.graph.tree_of(parent)
                if tree is not None:
                    old_trees.add(tree)
            todo.append(parent)
    held = _tree_closure(store, old_trees)
    for commit in commits:
        oid = commit.encode()
        type_num, raw = objects.get_raw(oid)
        out.append((oid, type_num, raw))
        _collect_tree(store, commit_links(raw)[0], held, out)
    return out


def _tree_closure(store: Store, roots: set[ObjectId]) -> set[ObjectId]:
    """Every tree and blob id under ``roots``, without reading a subtree twice."""
    held: set[ObjectId] = set()
    todo = list(roots)
    while todo:
        oid = todo.pop()
        if oid in held:
            continue
        held.add(oid)
        for is_dir, child in store.objects.tree_entries(oid).values():
            if is_dir:
                todo.append(child)
            else:
                held.add(child)
    return held


def _collect_tree(store: Store, root: ObjectId, held: set[ObjectId], out: list) -> None:
    todo = [root]
    while todo:
        oid = todo.pop()
        if oid in held:
            continue
        held.add(oid)
        type_num, raw = store.objects.get_raw(oid)
        out.append((oid, type_num, raw))
        if type_num == TREE:
            for is_dir, child in store.objects.tree_entries(oid).values():
                if is_dir:
                    todo.append(child)
                elif child not in held:
                    held.add(child)
                    out.append((child, *store.objects.get_raw(child)))


def parse_report(body: bytes) -> dict[str, str | None]:
    """``report-status``: {ref: None when accepted, else the server's reason}; ``unpack`` errors raise."""
    results: dict[str, str | None] = {}
    for line, _ in read_pkt_lines(body):
        if line is None:
            continue
        text = line.rstrip(b"\n").decode("utf-8", "replace")
        if text.startswith("unpack ") and text != "unpack ok":
            raise StoreError(f"the server could not unpack the push: {text[7:]}")
        if text.startswith("ok "):
            results[text[3:]] = None
        elif text.startswith("ng "):
            ref, _, reason = text[3:].partition(" ")
            results[ref] = reason
    return results


async def push(
    store: Store,
    url: str,
    branch: str,
    request: Requester,
    headers: dict[str, str] | None = None,
    remote_branch: str | None = None,
    known: Iterable[str] = (),
) -> str:
    """Push ``branch`` of ``store`` to ``remote_branch`` (default: the same name) at ``url``; returns the
    pushed commit.

    The server's branch may have moved past what this store has fetched: the command then names a commit
    this store lacks, and a server that merges pushes (``toolstack serve``) merges it; git's own would refuse
    it. The pack leaves out what the server is known to hold: its refs this store has, and ``known`` (the
    commit a clone was made at, earlier pushes).

    Raises:
        PushRejected: the server refused the ref (its reason is kept).
        StoreError: the server could not be reached or answered with something that is not git's.
    """
    base = url.rstrip("/")
    headers = dict(headers or {})
    ref = f"refs/heads/{remote_branch or branch}"
    new = store.branch(branch).head
    if new is None:
        raise StoreError(f"branch {branch!r} has no commit to push")
    status, body = await request("GET", f"{base}/info/refs?service=git-receive-pack", None, headers)
    if status != 200:
        raise StoreError(f"{base}: info/refs answered {status}: {body[:200].decode('utf-8', 'replace')}")
    refs, capabilities = parse_advertisement(body)
    old = refs.get(ref, ZERO)
    if old == new:
        return new
    caps = b" report-status" if b"report-status" in capabilities else b""
    command = pkt_line(f"{old} {new} {ref}".encode() + b"\0" + caps.strip() + b"\n")
    held = [c for c in [*refs.values(), *known] if c != ZERO and store.graph.exists(c)]
    pack = encode_pack(missing_objects(store, new, held))
    status, answer = await request(
        "POST",
        f"{base}/git-receive-pack",
        command + FLUSH + pack,
        {**headers, "Content-Type": "application/x-git-receive-pack-request"},
    )
    if status != 200:
        raise StoreError(
            f"{base}: git-receive-pack answered {status}: {answer[:300].decode('utf-8', 'replace')}"
        )
    reason = parse_report(answer).get(ref)
    if reason is not None:
        raise PushRejected(ref, reason)
    return new
