"""Who a request acts for: its bearer token looked up among the API's users, once per request.

Two sources of users, one at a time:

- the users file (``toolstack token add``), once it exists: each user has a token, a role and an identity;
- else the single token of ``--token-file``: one operator named after the server's author, as before users
  existed.

The users file is re-read when it changes (its inode, size or modification time: ``token`` commands replace
it by a rename), checked with one ``stat`` per request, so a revoked token is refused from the next request
on without a restart.

The :class:`Identify` middleware resolves the user and, for the request's whole life, binds it to the logs
(``user=``) and, for a user that may write, makes its identity the author of the commits the request makes
(:func:`toolstack.context.acting_as`); :func:`toolstack.api.auth.require_token` then refuses or admits it.
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from toolstack import logs
from toolstack.context import acting_as
from toolstack.users import OPERATOR, User, UsersFileError, read_users, token_hash

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resolved:
    """A request's identity: the user whose token it sent (None: no or unknown token), or why not."""

    user: User | None
    presented: bool
    error: str | None = None


class Directory:
    """The API's users: the users file if it exists, else the one legacy token.

    Args:
        users_file: The users file's path (None: the legacy token only).
        legacy_token: The ``--token-file`` token, valid while there is no users file (None: none).
        legacy_author: The server's author (``Name <email>``), the legacy token's identity.
        host: The default email domain of users without one.
    """

    def __init__(
        self,
        users_file: str | None,
        legacy_token: str | None,
        legacy_author: str | None = None,
        host: str = "localhost",
    ) -> None:
        self.users_file = users_file
        self.host = host
        self._legacy: User | None = None
        if legacy_token is not None:
            name, _, email = (legacy_author or "operator").partition("<")
            name = name.strip() or "operator"
            self._legacy = User(name, OPERATOR, token_hash(legacy_token), email.rstrip(">").strip() or None)
            self._legacy_author = legacy_author
        self._mutex = threading.Lock()
        self._signature: tuple[int, int, int, int] | None = None
        self._users: Mapping[str, User] = {}
        self._error: str | None = None
        self.refresh()

    @property
    def legacy(self) -> bool:
        """Whether the single token is in force (there is no users file)."""
        return self._signature is None

    def refresh(self) -> None:
        """Re-read the users file if it changed since the last read (one ``stat`` when it did not)."""
        if self.users_file is None:
            return
        try:
            info = os.stat(self.users_file, follow_symlinks=False)
        except FileNotFoundError:
            with self._mutex:
                self._signature, self._users, self._error = None, {}, None
            return
        signature = (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
        if signature == self._signature:
            return
        with self._mutex:
            try:
                users, error = read_users(self.users_file), None
            except FileNotFoundError:  # removed between the stat and the read: the next request sees it
                return
            except UsersFileError as err:
                # Refuse everyone rather than keep trusting an old list (a revoked token must not work).
                users, error = {}, str(err)
                log.error("refusing every token: %s", err)
            self._signature, self._users, self._error = signature, users, error

    def resolve(self, presented: str | None) -> Resolved:
        """The user whose token is ``presented``: hashes compared in constant time, against every user."""
        if presented is None:
            return Resolved(None, False)
        self.refresh()
        if self.legacy:
            candidates: list[User] = [self._legacy] if self._legacy is not None else []
        else:
            candidates = list(self._users.values())
            if self._error is not None:
                return Resolved(None, True, self._error)
        digest = token_hash(presented).encode()
        found: User | None = None
        for user in candidates:  # no early exit: the time taken does not tell which user matched
            if hmac.compare_digest(digest, user.token_sha256.encode()):
                found = user
        return Resolved(found, True)

    def author_of(self, user: User) -> str | None:
        """The git author of ``user``'s commits (the server's own for the legacy token)."""
        if user is self._legacy:
            return self._legacy_author
        return user.author(self.host)


def bearer(headers: Mapping[bytes, bytes] | list[tuple[bytes, bytes]]) -> str | None:
    """The token of an ``Authorization: Bearer`` header among raw ASGI headers, if any."""
    for name, value in headers if isinstance(headers, list) else headers.items():
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return None


class Identify:
    """Resolve each HTTP request's user (into ``request.state.identity``) and act for it while it runs."""

    def __init__(self, app: ASGIApp, directory: Directory) -> None:
        self.app = app
        self.directory = directory

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        resolved = self.directory.resolve(bearer(scope.get("headers", [])))
        scope.setdefault("state", {})["identity"] = resolved
        user = resolved.user
        if user is None or user.revoked is not None:
            await self.app(scope, receive, send)
            return
        author = self.directory.author_of(user) if user.may_write else None
        # The context variables go with the request into its worker threads (jobs.py copies the context),
        # so the task runner commits as this user and logs under its name.
        with logs.bound(user=user.name), acting_as(author):
            await self.app(scope, receive, send)
