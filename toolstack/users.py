"""Named API users: who may call the API, with which role, under which git identity.

The users file lives beside the repository (``toolstack.git`` -> ``toolstack.api-users``), mode 0600, one
JSON document. It holds each user's name, role (``operator`` or ``read-only``), optional email and the
SHA-256 of its token, never the token: ``toolstack token add`` prints the token once. A revoked user stays
in the file (marked with the time it was revoked) so that its token is refused as revoked, not unknown, and
``toolstack token list`` shows who had access.

The file is read like the API's token file: opened ``O_NOFOLLOW``, checked on the open descriptor (a regular
file, ours, no access for group or others). Writes take a lock beside it, write a temporary file, fsync it
and rename it over the old one, so a reader sees the old file or the new one, never half of one, and a
server notices the change by the file's inode.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
import stat
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from toolstack.errors import ToolstackError

OPERATOR = "operator"
READ_ONLY = "read-only"
ROLES = (OPERATOR, READ_ONLY)  # toolstack/cli/tokens.py repeats them (its import stays light)
# A name goes into a git author line and a log field: nothing that could break either.
_NAME = re.compile(r"[a-z_][a-z0-9_.-]{0,63}\Z")
_EMAIL = re.compile(r"[^\s<>@]+@[^\s<>@]+\Z")
FORMAT_VERSION = 1


class UsersFileError(ToolstackError):
    """The users file cannot be used, or a user cannot be added or revoked.

    Attributes:
        path: The users file.
    """

    def __init__(self, path: str, detail: str) -> None:
        self.path = path
        super().__init__(f"{path}: {detail}")


@dataclass(frozen=True)
class User:
    """One API user.

    Attributes:
        name: Login name (lower case letters, digits, ``_.-``).
        role: ``operator`` (may change things) or ``read-only``.
        token_sha256: Hex SHA-256 of the user's token.
        email: The email of the user's commits (None: ``name@<host>``).
        created: When the token was issued (seconds since the epoch).
        revoked: When it was revoked (None: it is valid).
    """

    name: str
    role: str
    token_sha256: str
    email: str | None = None
    created: float = 0.0
    revoked: float | None = None

    @property
    def may_write(self) -> bool:
        return self.role == OPERATOR

    def author(self, host: str) -> str:
        """The git author of this user's commits: ``name <email>``, the email ``name@host`` by default."""
        return f"{self.name} <{self.email or f'{self.name}@{host}'}>"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def default_users_file(repo: str) -> str:
    """Beside the repository: ``toolstack.git`` -> ``toolstack.api-users``."""
    return os.path.splitext(os.path.abspath(repo))[0] + ".api-users"


def read_users(path: str) -> dict[str, User]:
    """The users in ``path``, by name (revoked ones included).

    Raises:
        FileNotFoundError: There is no users file.
        UsersFileError: The file is a symbolic link or not a regular file, not ours, accessible by group or
            others, or not a users file.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise UsersFileError(path, "is a symbolic link: give the users file's real path") from None
        raise UsersFileError(path, f"cannot be read: {err.strerror}") from None
    with os.fdopen(fd, encoding="utf-8") as handle:
        check_private(path, os.fstat(fd))
        text = handle.read()
    return _parse(path, text)


def check_private(path: str, info: os.stat_result) -> None:
    """Refuse a file that is not a regular file of ours that only we can access."""
    if not stat.S_ISREG(info.st_mode):
        raise UsersFileError(path, "is not a regular file")
    if info.st_uid != os.getuid():
        raise UsersFileError(path, f"is owned by uid {info.st_uid}, not by this user")
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UsersFileError(
            path, f"is accessible by other users (mode {stat.S_IMODE(info.st_mode):o}): chmod 600 it"
        )


def _parse(path: str, text: str) -> dict[str, User]:
    try:
        document = json.loads(text)
        if document.get("version") != FORMAT_VERSION:
            raise ValueError(f"unknown version {document.get('version')!r}")
        users = [User(**entry) for entry in document["users"]]
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        raise UsersFileError(path, f"is not a users file ({err})") from None
    for user in users:
        if user.role not in ROLES or not _NAME.match(user.name) or len(user.token_sha256) != 64:
            raise UsersFileError(path, f"holds an invalid entry for {user.name!r}")
    return {user.name: user for user in users}


def validate(name: str, role: str, email: str | None) -> None:
    """Check a new user's fields.

    Raises:
        ValueError: Naming the field that is wrong and why.
    """
    if not _NAME.match(name):
        raise ValueError(
            f"invalid user name {name!r}: lower case letters, digits, '_', '.', '-', starting with a letter"
        )
    if role not in ROLES:
        raise ValueError(f"invalid role {role!r}: expected one of {', '.join(ROLES)}")
    if email is not None and not _EMAIL.match(email):
        raise ValueError(f"invalid email {email!r}")


@contextlib.contextmanager
def _locked(path: str) -> Iterator[dict[str, User]]:
    """The users, under an exclusive lock beside the file (two ``token add`` at once both count)."""
    lock = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            users = read_users(path)
        except FileNotFoundError:
            users = {}
        yield users
    finally:
        os.close(lock)


def _write(path: str, users: dict[str, User]) -> None:
    from drivers.files import atomic_write  # the drivers package loads its models: only when writing

    document = {"version": FORMAT_VERSION, "users": [asdict(user) for user in users.values()]}
    data = (json.dumps(document, indent=1) + "\n").encode("utf-8")
    # Owner-only (it holds token hashes); the rename itself must survive a crash before we say "added".
    atomic_write(Path(os.path.abspath(path)), data, durable=True, mode=0o600, sync_directory=True)


def add_user(path: str, name: str, role: str = OPERATOR, email: str | None = None) -> str:
    """Add ``name`` with a new token; returns the token (shown once: only its hash is kept).

    A revoked user's name may be given again: it gets a new token.

    Raises:
        ValueError: A bad name, role or email.
        UsersFileError: The name has a valid token already, or the file cannot be used.
    """
    validate(name, role, email)
    with _locked(path) as users:
        existing = users.get(name)
        if existing is not None and existing.revoked is None:
            raise UsersFileError(path, f"user {name!r} exists: revoke it first to issue a new token")
        token = secrets.token_urlsafe(32)
        users[name] = User(name, role, token_hash(token), email, time.time())
        _write(path, users)
    return token


def revoke_user(path: str, name: str) -> User:
    """Revoke ``name``'s token (a running server refuses it from its next request); returns the user.

    Raises:
        UsersFileError: No such user, or already revoked, or the file cannot be used.
    """
    with _locked(path) as users:
        user = users.get(name)
        if user is None:
            raise UsersFileError(path, f"no user {name!r}")
        if user.revoked is not None:
            raise UsersFileError(path, f"user {name!r} is revoked already")
        users[name] = revoked = User(**{**asdict(user), "revoked": time.time()})
        _write(path, users)
    return revoked
