"""Clone a repository from a dumb-HTTP mirror into a store: any static web server will do (issue 22).

A dumb mirror is a bare repository after ``git update-server-info``: ``info/refs`` lists the refs,
``objects/info/packs`` the packs, and every other object is a loose file under ``objects/``. dulwich has no
client for it, so this module reads those files itself, through a function the caller gives: in a browser it
is ``fetch`` (Pyodide's ``pyfetch``), on CPython anything that can GET a URL. Everything here is pure Python,
and async because the browser's ``fetch`` is.

Every pack the mirror lists is downloaded whole (a mirror's packs hold the repository's objects, and there is
no asking a static server for less); then the commits are walked from the branch tips, and any object the
packs lacked is read loose. A packed object's closure is taken as present: a pack written by git or by the
store holds whole commits, and what an older object refers to is older still.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from store.backend import ObjectReader
from store.errors import StoreError
from store.objects import BLOB, COMMIT, TREE, ObjectId, commit_links

if TYPE_CHECKING:
    from store.store import Store

# GET a URL: its body, or None when the server has no such file (404).
Getter = Callable[[str], Awaitable[bytes | None]]

_TYPES = {b"commit": COMMIT, b"tree": TREE, b"blob": BLOB}


class MirrorError(StoreError):
    """The mirror is missing a file it must have, or holds something that is not git's."""


def parse_info_refs(text: bytes) -> dict[str, ObjectId]:
    """``info/refs``: one ``<id>\\t<ref>`` a line; peeled tags (``^{}``) are left out."""
    refs: dict[str, ObjectId] = {}
    for line in text.splitlines():
        oid, _, name = line.partition(b"\t")
        if name and not name.endswith(b"^{}"):
            refs[name.decode()] = oid.strip()
    return refs


def parse_info_packs(text: bytes) -> list[str]:
    """``objects/info/packs``: ``P pack-<id>.pack`` lines."""
    return [line[2:].decode().strip() for line in text.splitlines() if line.startswith(b"P ")]


def read_pack(data: bytes, bases: ObjectReader | None = None) -> list[tuple[ObjectId, int, bytes]]:
    """Every object of a pack, deltas resolved: (id, type number, raw bytes); tags are left out.

    Args:
        bases: Where the bases of a thin pack's deltas are (objects the pack refers to but lacks).
    """
    # Imported here: dulwich's pack module is the one part of dulwich this needs, and it needs mmap, which a
    # store kept in memory on CPython does not otherwise load.
    from dulwich.object_format import DEFAULT_OBJECT_FORMAT
    from dulwich.pack import PackData, UnpackedObjectIterator

    def external(sha: bytes) -> tuple[int, list[bytes]]:
        if bases is None:
            raise KeyError(sha)
        type_num, raw = bases.get_raw(sha.hex().encode("ascii") if len(sha) == 20 else sha)
        return type_num, [raw]

    pack = PackData.from_file(io.BytesIO(data), DEFAULT_OBJECT_FORMAT, len(data))
    objects = []
    for unpacked in UnpackedObjectIterator.for_pack_data(pack, resolve_ext_ref=external):
        if unpacked.obj_type_num in (COMMIT, TREE, BLOB):
            raw = b"".join(unpacked.obj_chunks)
            objects.append((unpacked.sha().hex().encode("ascii"), unpacked.obj_type_num, raw))
    return objects


def decode_loose(oid: ObjectId, data: bytes) -> tuple[int, bytes]:
    """A loose object file: zlib over ``<type> <size>\\0<raw>``."""
    try:
        whole = zlib.decompress(data)
    except zlib.error as err:
        raise MirrorError(f"loose object {oid.decode()} is not zlib data: {err}") from None
    header, _, raw = whole.partition(b"\0")
    kind, _, size = header.partition(b" ")
    if kind not in _TYPES or not size.isdigit() or int(size) != len(raw):
        raise MirrorError(f"loose object {oid.decode()} has a bad header {header[:40]!r}")
    return _TYPES[kind], raw


def _tree_children(raw: bytes) -> list[ObjectId]:
    from store.backend import parse_tree_entries

    return [oid for _, oid in parse_tree_entries(raw).values()]


async def fetch(store: Store, url: str, get: Getter, packs_read: set[str] | None = None) -> dict[str, str]:
    """Copy every branch's objects from the mirror at ``url`` into ``store``; returns {branch: commit}.

    Refs are not moved: the caller publishes the branches it wants (see :func:`clone`).

    Args:
        packs_read: The packs a previous fetch from this mirror read, which are not downloaded again (a
            pack's name is its content's hash); the packs read now are added to it.

    Raises:
        MirrorError: ``info/refs`` is missing (``git update-server-info`` was not run), or an object is.
    """
    base = url.rstrip("/") + "/"
    listing = await get(base + "info/refs")
    if listing is None:
        raise MirrorError(f"{base}info/refs is missing: run `git update-server-info` in the mirror")
    branches = {
        ref[len("refs/heads/") :]: oid
        for ref, oid in parse_info_refs(listing).items()
        if ref.startswith("refs/heads/")
    }
    objects = store.objects
    packs = await get(base + "objects/info/packs")
    for name in parse_info_packs(packs or b""):
        if packs_read is not None and name in packs_read:
            continue
        data = await get(base + "objects/pack/" + name)
        if data is None:
            raise MirrorError(f"{base}objects/pack/{name} is listed in objects/info/packs but missing")
        objects.write_objects(read_pack(data))
        if packs_read is not None:
            packs_read.add(name)
    # The walk: whatever the packs lacked, from the tips down, read loose.
    todo = [oid.encode() if isinstance(oid, str) else oid for oid in branches.values()]
    seen: set[ObjectId] = set()
    while todo:
        oid = todo.pop()
        if oid in seen:
            continue
        seen.add(oid)
        if objects.contains(oid):
            type_num, raw = objects.get_raw(oid)
            if type_num == COMMIT:
                # Parents may still be loose (a commit made by git after the last repack).
                todo.extend(p.encode() for p in commit_links(raw)[1])
            continue
        hexid = oid.decode()
        data = await get(f"{base}objects/{hexid[:2]}/{hexid[2:]}")
        if data is None:
            raise MirrorError(f"object {hexid} is in neither a pack nor a loose file of {base}")
        type_num, raw = decode_loose(oid, data)
        objects.write_objects([(oid, type_num, raw)])
        if type_num == COMMIT:
            tree, parents, _ = commit_links(raw)
            todo.append(tree)
            todo.extend(p.encode() for p in parents)
        elif type_num == TREE:
            todo.extend(_tree_children(raw))
    return {branch: oid.decode() for branch, oid in branches.items()}


async def clone(url: str, get: Getter, store: Store | None = None) -> Store:
    """A store in memory (or ``store``) holding every branch of the mirror at ``url``, at the mirror's
    commits."""
    from store.store import Store

    target = store if store is not None else Store.memory()
    for branch, commit in (await fetch(target, url, get)).items():
        target.set_branch(branch, commit, None)
    return target
