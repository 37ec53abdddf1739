"""Paths: "a/b/c" strings or tuples of segments, validated once at the edge."""

from __future__ import annotations

from collections.abc import Sequence

from store.errors import InvalidPath

Path = str | Sequence[str]
Key = tuple[str, ...]

_FORBIDDEN_SEGMENTS = {".", ".."}


def parse(path: Path, *, allow_root: bool = False) -> Key:
    """Turn a path into a tuple of validated segments.

    Args:
        path: "a/b/c" or ("a", "b", "c").
        allow_root: Accept "" or () as the root (for listing and subtrees).

    Returns:
        The segments.

    Raises:
        InvalidPath: The path has empty segments, ".", "..", NUL, a leading or trailing "/", or is empty
            where the root is not allowed.
    """
    if isinstance(path, str):
        if path == "":
            segments: tuple[str, ...] = ()
        else:
            if path.startswith("/"):
                raise InvalidPath(path, "leading '/'")
            if path.endswith("/"):
                raise InvalidPath(path, "trailing '/'")
            segments = tuple(path.split("/"))
    elif isinstance(path, Sequence) and not isinstance(path, bytes | bytearray):
        segments = tuple(path)
        for segment in segments:
            if not isinstance(segment, str):
                raise InvalidPath(path, f"segment {segment!r} is not a string")
            if "/" in segment:
                raise InvalidPath(path, f"segment {segment!r} contains '/'")
    else:
        raise InvalidPath(path, "a path is a str or a sequence of str")
    if not segments and not allow_root:
        raise InvalidPath(path, "empty path")
    for segment in segments:
        if segment == "":
            raise InvalidPath(path, "empty segment")
        if segment in _FORBIDDEN_SEGMENTS:
            raise InvalidPath(path, f"segment {segment!r} is not allowed")
        if "\0" in segment:
            raise InvalidPath(path, "NUL character")
    return segments


def join(key: Key) -> str:
    """Render segments as an "a/b/c" string."""
    return "/".join(key)
