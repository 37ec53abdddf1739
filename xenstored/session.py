"""What the request handlers need to know about a client connection, apart from its socket."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from xenstored.perms import Caller
from xenstored.transactions import Transaction


class Outcome(NamedTuple):
    """The result of one request (a named tuple: one is made per request).

    Attributes:
        payload: The reply payload.
        seq: The state change it made (durable mode waits for it to be committed), if any.
        events: Watch events to send right after the reply (a new watch's first firing).
    """

    payload: bytes
    seq: int | None = None
    events: tuple[tuple[str, bytes], ...] = ()


class Session(Protocol):
    """A client connection, as the request handlers see it."""

    caller: Caller
    transactions: dict[int, Transaction]

    def send_event(self, path: str, token: bytes) -> None: ...

    def close(self) -> None: ...


class DomainHooks(Protocol):
    """What the server does when domains come and go (domain sockets, closing connections)."""

    def domain_introduced(self, domid: int) -> None: ...

    def domain_released(self, domid: int) -> None: ...

    def domain_retargeted(self, domid: int, target: int | None) -> None: ...


@dataclass
class NoHooks:
    """Hooks that do nothing (for handlers used without a server)."""

    calls: list[tuple[str, int]] = field(default_factory=list)

    def domain_introduced(self, domid: int) -> None:
        self.calls.append(("introduced", domid))

    def domain_released(self, domid: int) -> None:
        self.calls.append(("released", domid))

    def domain_retargeted(self, domid: int, target: int | None) -> None:
        self.calls.append(("retargeted", domid))
