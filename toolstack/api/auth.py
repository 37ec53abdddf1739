"""Bearer tokens: the legacy token file (generated on first start, only its owner can read it), or the
named users of the users file (:mod:`toolstack.users`), checked on every route.

No token gets 401 (with ``WWW-Authenticate: Bearer``), a revoked one 401, a wrong one 403, and a read-only
user's write (any method but GET, HEAD and OPTIONS) 403. Tokens are compared by their hashes in constant time
and are never logged: the server only ever prints the files' paths.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from typing import Annotated

from fastapi import HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from toolstack.api.identity import Resolved
from toolstack.users import User

MIN_TOKEN_CHARS = 16


class TokenFileError(Exception):
    """The token file cannot be used (a symlink, readable by others, not ours, empty...)."""


def default_token_file(repo: str) -> str:
    """Beside the repository: ``toolstack.git`` -> ``toolstack.api-token``."""
    return os.path.splitext(os.path.abspath(repo))[0] + ".api-token"


def load_or_create_token(path: str) -> tuple[str, bool]:
    """The token in ``path``, created (mode 0600) if the file does not exist; returns (token, created).

    Raises:
        TokenFileError: the file is a symbolic link or not a regular file, is readable or writable by group
            or others, is not owned by this user, or holds no usable token.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_token(path), False
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return token, True


def _read_token(path: str) -> str:
    # Opened without following a symlink, and checked on the open descriptor, so that what is checked is
    # what is read: a link could point at another user's file, or be swapped between a check and the read.
    # O_NONBLOCK: opening a FIFO planted there must not hang the server (it is refused below).
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise TokenFileError(f"{path} is a symbolic link: give the token file's real path") from None
        raise TokenFileError(f"{path} cannot be read: {err.strerror}") from None
    with os.fdopen(fd, encoding="utf-8") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise TokenFileError(f"{path} is not a regular file")
        if info.st_uid != os.getuid():
            raise TokenFileError(f"{path} is owned by uid {info.st_uid}, not by this user")
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise TokenFileError(
                f"{path} is accessible by other users (mode {stat.S_IMODE(info.st_mode):o}): chmod 600 it"
            )
        token = handle.read().strip()
    if len(token) < MIN_TOKEN_CHARS or any(c.isspace() for c in token):
        raise TokenFileError(f"{path} holds no usable token (at least {MIN_TOKEN_CHARS} characters)")
    return token


bearer_scheme = HTTPBearer(
    auto_error=False,
    description="A user's token (`toolstack token add`), or the one the server wrote to its --token-file.",
)


READS = frozenset({"GET", "HEAD", "OPTIONS"})
# git's smart HTTP reads with a POST: a fetch or clone (upload-pack) is a read, a push (receive-pack) a write.
READ_POSTS = frozenset({"/git/git-upload-pack"})
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


async def require_token(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)]
) -> User:
    """The dependency every route but /health and the page's files has: the request's user, or a refusal.

    The user was resolved by :class:`toolstack.api.identity.Identify` (which also acts for it).
    """
    resolved: Resolved | None = getattr(request.state, "identity", None)
    if resolved is None:  # an app without the middleware (cannot happen in create_app's): resolve here
        resolved = request.app.state.api.directory.resolve(credentials.credentials if credentials else None)
    method = "GET" if request.method == "POST" and request.url.path in READ_POSTS else request.method
    return admit(resolved, method)


def admit(resolved: Resolved, method: str) -> User:
    """The user of ``resolved`` if it may make a ``method`` request.

    Raises:
        HTTPException: 401 without a token or with a revoked one, 403 with a wrong one or for a read-only
            user's write, 503 when the users file cannot be used.
    """
    if resolved.error is not None:
        raise HTTPException(503, f"the users file cannot be used: {resolved.error}")
    if not resolved.presented:
        raise HTTPException(401, "a bearer token is required", headers=_CHALLENGE)
    user = resolved.user
    if user is None:
        raise HTTPException(403, "the bearer token is wrong", headers=_CHALLENGE)
    if user.revoked is not None:
        raise HTTPException(401, f"the token of user {user.name!r} was revoked", headers=_CHALLENGE)
    if method not in READS and not user.may_write:
        raise HTTPException(403, f"user {user.name!r} is read-only: it cannot {method} here")
    return user
