"""Node permissions: an owner and per-domain access letters, as xenstored defines them.

A permission list is written ``n0 r5 w7``: the first entry names the owner (who has full access) and its
letter is the access of every domain not listed; later entries give listed domains their access. Letters
are ``n`` (none), ``r`` (read), ``w`` (write) and ``b`` (both). Privileged callers (dom0) pass every check.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntFlag

from xenstored.errors import InvalidRequest

DOMID_MAX = 0xFFFF
_ENTRY = re.compile(r"([nrwb])(\d{1,5})")


class Access(IntFlag):
    """What a caller may do to a node."""

    NONE = 0
    READ = 1
    WRITE = 2
    OWNER = 4


_LETTERS = {"n": Access.NONE, "r": Access.READ, "w": Access.WRITE, "b": Access.READ | Access.WRITE}


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking: a domain, and optionally the domain it is a device model for (SET_TARGET)."""

    domid: int
    target: int | None = None

    @property
    def privileged(self) -> bool:
        return self.domid == 0

    def is_(self, domid: int) -> bool:
        return domid == self.domid or domid == self.target


@dataclass(frozen=True, slots=True)
class Perm:
    """One entry of a permission list."""

    letter: str
    domid: int

    def __str__(self) -> str:
        return f"{self.letter}{self.domid}"


@dataclass(frozen=True, slots=True)
class Permissions:
    """A node's permission list; never empty (the first entry is the owner)."""

    entries: tuple[Perm, ...]

    @property
    def owner(self) -> int:
        return self.entries[0].domid

    @classmethod
    def parse(cls, items: list[str]) -> Permissions:
        """From entries like ``["n0", "r5"]``.

        Raises:
            InvalidRequest: No entry, or an entry that is not a letter of n/r/w/b and a domain id.
        """
        if not items:
            raise InvalidRequest("a permission list needs at least an owner")
        entries = []
        for item in items:
            match = _ENTRY.fullmatch(item)
            if match is None or int(match.group(2)) > DOMID_MAX:
                raise InvalidRequest(f"invalid permission {item[:16]!r}: expected n|r|w|b and a domain id")
            entries.append(Perm(match.group(1), int(match.group(2))))
        return cls(tuple(entries))

    @classmethod
    def decode(cls, stored: bytes) -> Permissions | None:
        """From the stored form (one entry per line), or None if it is not one (foreign data)."""
        try:
            return cls.parse(stored.decode("ascii").split())
        except (UnicodeDecodeError, InvalidRequest):
            return None

    def encode(self) -> bytes:
        """The stored form: one entry per line, readable with ``git show``."""
        return "".join(f"{entry}\n" for entry in self.entries).encode("ascii")

    def wire(self) -> list[bytes]:
        return [str(entry).encode("ascii") for entry in self.entries]

    def access(self, caller: Caller) -> Access:
        """What ``caller`` may do, following C xenstored's perm_for_conn."""
        if caller.privileged or caller.is_(self.owner):
            return Access.READ | Access.WRITE | Access.OWNER
        for entry in self.entries[1:]:
            if caller.is_(entry.domid):
                return _LETTERS[entry.letter]
        return _LETTERS[self.entries[0].letter]

    def for_new_child(self, creator: Caller) -> Permissions:
        """A new node inherits its parent's list; an unprivileged creator becomes its owner."""
        if creator.privileged or creator.domid == self.owner:
            return self
        first = Perm(self.entries[0].letter, creator.domid)
        rest = tuple(entry for entry in self.entries[1:] if entry.domid != creator.domid)
        return Permissions((first, *rest))

    def __str__(self) -> str:
        return " ".join(str(entry) for entry in self.entries)


DEFAULT_PERMISSIONS = Permissions((Perm("n", 0),))
