"""The toolstack context: what every service below the :class:`~toolstack.ops.Toolstack` facade works with.

One object holds the state repository, its main branch, the hypervisor (behind the pool's ownership guard),
this host's name, the pool and the operator recorded as the author of every commit. The facade assembles it
once; the task runner, reconcile, history, task records and the operations take it (and nothing else of the
facade), so that none of them reaches into another through a toolstack object.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import TYPE_CHECKING

from toolstack import layout
from toolstack.vmsource import ParsedVMs, vm_cache

if TYPE_CHECKING:
    from drivers import Driver
    from store import Branch, Store
    from toolstack.pool import Pool

# The author of the commits made in this thread or task now, over the context's own (an API request's user).
_acting_author: contextvars.ContextVar[str | None] = contextvars.ContextVar("toolstack_author", default=None)


@contextlib.contextmanager
def acting_as(author: str | None) -> Iterator[None]:
    """Record the commits made in this block (and in the threads it hands a copy of its context) as
    ``author``'s, whatever the toolstack's own author is. None: the toolstack's author.

    One toolstack serves many API users at once: each request acts as its own user, without a toolstack
    of its own and without the services below the facade taking an author argument each.
    """
    token = _acting_author.set(author)
    try:
        yield
    finally:
        _acting_author.reset(token)


class Context:
    """The store, driver, host, pool and author one toolstack works with.

    Fixed once assembled, but for :attr:`author`: a long-lived toolstack (a test, a script) may record later
    commits under another operator, and every service must then see the new one; and a block run
    :func:`acting_as` another author (an API request) sees that one.

    Args:
        store: The state repository.
        driver: The hypervisor, behind the pool's ownership guard (:class:`toolstack.ownership.OwnedDriver`).
        host: This host's name (observed state lives under ``hosts/<host>/``).
        pool: The pool the repository belongs to.
        author: The operator, recorded as the author of every commit (None: the store's default).
    """

    __slots__ = ("_author", "_driver", "_host", "_main", "_pool", "_store", "_vms")

    def __init__(
        self, store: Store, driver: Driver, host: str, pool: Pool, author: str | None = None
    ) -> None:
        self._store = store
        self._driver = driver
        self._host = host
        self._pool = pool
        self._main = store.branch(layout.MAIN)
        self._vms = ParsedVMs(vm_cache(store.gitdir))
        self._author = author

    @property
    def author(self) -> str | None:
        """The author of commits made now: the one :func:`acting_as` set here, else the toolstack's."""
        return _acting_author.get() or self._author

    @author.setter
    def author(self, author: str | None) -> None:
        self._author = author

    @property
    def store(self) -> Store:
        return self._store

    @property
    def main(self) -> Branch:
        """Main: the desired state, and every operation's merge commit."""
        return self._main

    @property
    def driver(self) -> Driver:
        return self._driver

    @property
    def host(self) -> str:
        return self._host

    @property
    def pool(self) -> Pool:
        return self._pool

    @property
    def vms(self) -> ParsedVMs:
        """The VMs parsed so far, kept by the ids of their files: the inventory and reconcile read VMs
        through it, so that an unchanged VM is parsed once per toolstack."""
        return self._vms

    def __repr__(self) -> str:
        return f"Context(store={self._store.path!r}, host={self._host!r}, pool={self._pool.id})"
