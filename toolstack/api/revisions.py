"""Revisions a client may name (a commit id, an abbreviation, a branch, with ``~N``/``^N``), checked before
they reach the store.

``Store.resolve`` reads loose refs by file name: a name with ``..`` would read outside the repository and a
very long one raises ``OSError``. Revisions from the network are therefore held to git's ref-name rules here,
and refused with 422 naming the field.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

_REVISION = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9._/@-]{0,199})(?P<suffix>(?:~\d{0,6}|\^\d?){0,20})")


def check_revision(rev: str) -> str:
    """``rev`` if it is a plausible revision, else ValueError saying why."""
    match = _REVISION.fullmatch(rev)
    name = match.group("name") if match else ""
    if (
        match is None
        or ".." in name
        or "//" in name
        or "/." in name
        or "@{" in name
        or name.endswith(("/", ".", ".lock"))
    ):
        raise ValueError(
            f"{rev[:64]!r} is not a revision: expected a commit id, a branch name or main~N (at most 200 "
            "characters of letters, digits, '.', '_', '-', '/', no '..')"
        )
    return rev


Revision = Annotated[str, AfterValidator(check_revision)]
