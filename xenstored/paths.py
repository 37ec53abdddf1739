"""Xenstore paths: validation, resolution of relative paths, and the mapping to store keys.

A path starting with ``@`` names a node at the root (``@foo`` is ``/@foo``), as in oxenstored; as a
watch path it is a special watch (``@introduceDomain``, ``@releaseDomain``). A valid path uses only
``[A-Za-z0-9-/_@]``, has no empty segment (no ``//``, no trailing ``/`` except the root) and fits the
length limits. A relative path resolves under ``/local/domain/<domid>`` of the caller.
A node's key is the tuple of its segments: ``"/local/domain/3"`` is ``("local", "domain", "3")`` and the
root ``"/"`` is ``()``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from xenstored.errors import InvalidRequest

Key = tuple[str, ...]

ABS_PATH_MAX = 3072
REL_PATH_MAX = 2048
INTRODUCE_DOMAIN = "@introduceDomain"
RELEASE_DOMAIN = "@releaseDomain"
SPECIAL_WATCHES = frozenset({INTRODUCE_DOMAIN, RELEASE_DOMAIN})

_VALID = re.compile(rb"[A-Za-z0-9\-/_@]+")


_HOME = re.compile(r"/local/domain/[0-9]{1,5}/")


def length_below_home(path: str) -> int:
    """The length C xenstored's ``path-max`` quota measures: below ``/local/domain/<domid>/`` (any domain's
    home, as C xenstored's ``is_valid_nodename`` strips it), else the whole path."""
    home = _HOME.match(path)
    return len(path) - home.end() if home else len(path)


def domain_path(domid: int) -> str:
    """The home of a domain: ``/local/domain/<domid>``."""
    return f"/local/domain/{domid}"


def resolve(raw: bytes, domid: int) -> str:
    """The absolute path a request names.

    Raises:
        InvalidRequest: The path is empty, too long, or has invalid characters or empty segments.
    """
    if not raw:
        raise InvalidRequest("empty path")
    relative = not raw.startswith(b"/")
    limit = REL_PATH_MAX if relative else ABS_PATH_MAX
    if len(raw) > limit:
        raise InvalidRequest(f"path of {len(raw)} bytes is longer than {limit}")
    if not _VALID.fullmatch(raw):
        raise InvalidRequest("path has characters outside [A-Za-z0-9-/_@]", _printable(raw))
    path = raw.decode("ascii")
    if path != "/" and (path.endswith("/") or "//" in path):
        raise InvalidRequest("empty path segment", path)
    if path.startswith("@"):
        # As oxenstored (Utils.path_complete): a path starting with "@" is not relative to the home; it
        # names the node "/@..." at the root. (C xenstored refuses it with EINVAL.)
        path = "/" + path
    elif relative:
        path = f"{domain_path(domid)}/{path}"
        if len(path) > ABS_PATH_MAX:
            raise InvalidRequest(f"resolved path is longer than {ABS_PATH_MAX}", path)
    return path


@dataclass(frozen=True, slots=True)
class WatchPath:
    """A watch's path as registered and as matched.

    Attributes:
        absolute: The resolved path ("/local/domain/3/device"), or the special name ("@releaseDomain").
        prefix: What to strip from event paths for a relative watch ("/local/domain/3/"), else "".
    """

    absolute: str
    prefix: str

    @property
    def special(self) -> bool:
        return self.absolute.startswith("@")

    def shown(self, event_path: str) -> str:
        """The event path as the watcher registered it: relative watches get relative events."""
        if self.prefix and event_path.startswith(self.prefix):
            return event_path[len(self.prefix) :]
        return event_path


def resolve_watch(raw: bytes, domid: int) -> WatchPath:
    """The path of a WATCH or UNWATCH request: a node path or ``@introduceDomain``/``@releaseDomain``."""
    if raw.startswith(b"@"):
        # Any "@name" is a special watch, as in oxenstored; only @introduceDomain and @releaseDomain fire.
        if len(raw) > REL_PATH_MAX or not _VALID.fullmatch(raw):
            raise InvalidRequest("invalid special watch path", _printable(raw))
        return WatchPath(raw.decode("ascii"), "")
    path = resolve(raw, domid)
    prefix = "" if raw.startswith(b"/") else domain_path(domid) + "/"
    return WatchPath(path, prefix)


def to_key(path: str) -> Key:
    """``"/a/b"`` → ``("a", "b")``; ``"/"`` → ``()``."""
    return () if path == "/" else tuple(path[1:].split("/"))


def from_key(key: Key) -> str:
    """``("a", "b")`` → ``"/a/b"``; ``()`` → ``"/"``."""
    return "/" + "/".join(key)


def is_under(key: Key, ancestor: Key) -> bool:
    """Whether ``key`` is ``ancestor`` or below it."""
    return key[: len(ancestor)] == ancestor


def _printable(raw: bytes) -> str:
    return raw[:64].decode("ascii", "backslashreplace")
