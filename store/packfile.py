"""The pack codec: version-2 packs and indexes of whole (undeltified) objects, written and read back.

This is the format layer only (bytes in, bytes out): :mod:`store.disk_objects` decides when packs are written,
read and rolled up, and :mod:`store.packs` looks objects up in them on the hot path.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Iterable

from store.objects import TREE, ObjectId

STORED_BELOW = 512  # objects smaller than this are written uncompressed (git gc recompresses them)


def _pack_object_header(type_num: int, size: int) -> bytes:
    byte = (type_num << 4) | (size & 0x0F)
    size >>= 4
    out = bytearray()
    while size:
        out.append(byte | 0x80)
        byte = size & 0x7F
        size >>= 7
    out.append(byte)
    return bytes(out)


def _deflate(raw: bytes) -> bytes:
    if len(raw) > 65536:
        return zlib.compress(raw, 1)
    # A small memLevel makes zlib's per-stream set-up, which dominates for small objects, ~2.5x cheaper.
    stream = zlib.compressobj(1, zlib.DEFLATED, 15, 1)
    return stream.compress(raw) + stream.flush()


def _zlib_stored(raw: bytes) -> bytes:
    """A valid zlib stream of uncompressed ("stored") deflate blocks, built without zlib's set-up cost.

    Trees are mostly 20-byte ids, which do not compress; `git gc` recompresses them anyway.
    """
    out = bytearray(b"\x78\x01")
    view = memoryview(raw)
    position = 0
    while True:
        block = view[position : position + 65535]
        position += len(block)
        final = position >= len(raw)
        out += struct.pack("<BHH", 1 if final else 0, len(block), len(block) ^ 0xFFFF)
        out += block
        if final:
            break
    out += struct.pack(">L", zlib.adler32(raw))
    return bytes(out)


def encode_pack(
    objects: Iterable[tuple[ObjectId, int, bytes]],
    chunks: Iterable[tuple[bytes, bytes, int]] = (),
) -> tuple[bytes, bytes, bytes]:
    """Build a version-2 pack and its version-2 index from whole (undeltified) objects.

    Args:
        objects: (hex id, type number, raw bytes) to compress.
        chunks: (binary id, pack entry bytes, crc32) copied verbatim from another pack.

    Returns:
        (pack bytes, index bytes, pack checksum).
    """
    entries_by_sha: dict[bytes, bytes | tuple[bytes, int]] = {}
    for sha, chunk, crc in chunks:
        entries_by_sha[sha] = (chunk, crc)
    for oid, type_num, raw in objects:
        sha = bytes.fromhex(oid.decode("ascii"))
        if len(sha) != 20:
            raise ValueError(f"not an object id: {oid!r}")  # never write an index git cannot read
        if sha not in entries_by_sha:
            # Trees are mostly ids, and small objects barely shrink: zlib's set-up costs more than it saves.
            body = _zlib_stored(raw) if type_num == TREE or len(raw) < STORED_BELOW else _deflate(raw)
            entries_by_sha[sha] = _pack_object_header(type_num, len(raw)) + body
    body = bytearray(b"PACK" + struct.pack(">II", 2, len(entries_by_sha)))
    entries: list[tuple[bytes, int, int]] = []
    for sha, entry in entries_by_sha.items():
        chunk, crc = entry if isinstance(entry, tuple) else (entry, zlib.crc32(entry))
        entries.append((sha, len(body), crc))
        body += chunk
    checksum = hashlib.sha1(body).digest()
    body += checksum
    return bytes(body), encode_index(entries, checksum), checksum


def encode_index(entries: list[tuple[bytes, int, int]], checksum: bytes) -> bytes:
    """A version-2 pack index of (binary id, offset, crc32) entries, for the pack with this checksum."""
    entries.sort()
    fanout = [0] * 256
    for sha, _, _ in entries:
        fanout[sha[0]] += 1
    running = 0
    for i in range(256):
        running += fanout[i]
        fanout[i] = running
    index = bytearray(b"\377tOc" + struct.pack(">L", 2))
    index += struct.pack(">256L", *fanout)
    index += b"".join(sha for sha, _, _ in entries)
    index += struct.pack(f">{len(entries)}L", *[crc for _, _, crc in entries])
    large: list[int] = []
    small: list[int] = []
    for _, offset, _ in entries:
        if offset < 0x80000000:
            small.append(offset)
        else:
            small.append(0x80000000 | len(large))
            large.append(offset)
    index += struct.pack(f">{len(small)}L", *small)
    index += struct.pack(f">{len(large)}Q", *large)
    index += checksum
    index += hashlib.sha1(index).digest()
    return bytes(index)


def read_whole_object_pack(base: str) -> tuple[bytes, list[tuple[bytes, int, int]]] | None:
    """A pack's bytes and its entries as (binary id, offset, crc32), if none of them is a delta.

    Returns None for packs with deltas (e.g. written by `git gc`), or an index that is not v2.
    """
    with open(base + ".idx", "rb") as f:
        index = f.read()
    with open(base + ".pack", "rb") as f:
        pack = f.read()
    if index[:8] != b"\377tOc" + struct.pack(">L", 2):
        return None
    count = struct.unpack_from(">L", index, 8 + 255 * 4)[0]
    shas_at = 8 + 1024
    crcs_at = shas_at + 20 * count
    offsets_at = crcs_at + 4 * count
    large_at = offsets_at + 4 * count
    crcs = struct.unpack_from(f">{count}L", index, crcs_at)
    offsets = list(struct.unpack_from(f">{count}L", index, offsets_at))
    entries = []
    for i, offset in enumerate(offsets):
        if offset & 0x80000000:
            offset = struct.unpack_from(">Q", index, large_at + 8 * (offset & 0x7FFFFFFF))[0]
        if (pack[offset] >> 4) & 7 not in (1, 2, 3, 4):  # 6 and 7 are deltas
            return None
        entries.append((index[shas_at + 20 * i : shas_at + 20 * (i + 1)], offset, crcs[i]))
    return pack, entries


def concatenate_packs(
    packs: list[tuple[bytes, list[tuple[bytes, int, int]]]],
) -> tuple[list[bytes | memoryview], bytes, bytes]:
    """One pack holding the objects of whole-object packs, made by concatenating their bodies.

    Nothing is inflated or re-encoded: the parts are views of runs of entries in the source packs, hashed
    (outside the GIL, for big buffers) and written as they are. An object already taken from an earlier pack
    (small blobs such as "running" are written again and again) ends a run, so that the index lists it once.

    Returns:
        (pack parts, index, checksum).
    """
    seen: set[bytes] = set()
    runs: list[memoryview] = []
    located: list[tuple[bytes, int, int]] = []
    position = 12  # after the header
    for pack, entries in packs:
        view = memoryview(pack)
        end_of_data = len(pack) - 20
        ordered = sorted(entries, key=lambda entry: entry[1])
        run_start = None
        for index, (sha, offset, crc) in enumerate(ordered):
            end = ordered[index + 1][1] if index + 1 < len(ordered) else end_of_data
            if sha in seen:
                if run_start is not None:
                    runs.append(view[run_start:offset])
                    run_start = None
                continue
            seen.add(sha)
            if run_start is None:
                run_start = offset
            located.append((sha, position, crc))
            position += end - offset
        if run_start is not None:
            runs.append(view[run_start:end_of_data])
    header = b"PACK" + struct.pack(">II", 2, len(located))
    hasher = hashlib.sha1(header)
    for run in runs:
        hasher.update(run)
    checksum = hasher.digest()
    return [header, *runs, checksum], encode_index(located, checksum), checksum


def read_whole_object_chunks(base: str) -> list[tuple[bytes, bytes, int]] | None:
    """The entries of a pack as (binary id, entry bytes, crc32), if none of them is a delta.

    Rolling up packs this library wrote then copies compressed bytes instead of inflating and deflating
    every object. Returns None for packs with deltas (e.g. written by `git gc`), or an index that is not v2.
    """
    read = read_whole_object_pack(base)
    if read is None:
        return None
    pack, entries = read
    ordered = sorted(entries, key=lambda entry: entry[1])
    end_of_data = len(pack) - 20
    return [
        (sha, pack[offset : ordered[i + 1][1] if i + 1 < len(ordered) else end_of_data], crc)
        for i, (sha, offset, crc) in enumerate(ordered)
    ]
