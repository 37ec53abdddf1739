"""Revisions a client may name (a commit id, an abbreviation, a branch, with ``~N``/``^N``), checked before
they reach the store.

``Store.resolve`` reads loose refs by file name: a name with ``..`` would read outside the repository and a
very long one raises ``OSError``. Revisions from the network are therefore held to git's ref-name rules here,
and refused with 422 naming the field.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field

# One source for the check below and for the OpenAPI schema: a name of git ref characters, then ~N / ^N.
REVISION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._/@-]{0,199}(?:~[0-9]{0,6}|\^[0-9]?){0,20}$"
# ...and what git's ref-name rules forbid in the name: '..', '//', '/.', '@{', or ending in '/', '.', '.lock'.
REVISION_FORBIDDEN = r"\.\.|//|/\.|@\{|(?:/|\.|\.lock)(?:[~^]|$)"
_REVISION = re.compile(REVISION_PATTERN)
_FORBIDDEN = re.compile(REVISION_FORBIDDEN)


def check_revision(rev: str) -> str:
    """``rev`` if it is a plausible revision, else ValueError saying why."""
    if _REVISION.match(rev) is None or _FORBIDDEN.search(rev) is not None:
        raise ValueError(
            f"{rev[:64]!r} is not a revision: expected a commit id, a branch name or main~N (at most 200 "
            "characters of letters, digits, '.', '_', '-', '/', no '..')"
        )
    return rev


Revision = Annotated[
    str,
    AfterValidator(check_revision),
    Field(json_schema_extra={"pattern": REVISION_PATTERN, "not": {"pattern": REVISION_FORBIDDEN}}),
]
