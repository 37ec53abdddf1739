"""Request handlers for the node operations, transactions and watches.

Each handler takes the session and the request packet and returns an :class:`Outcome`, or raises a
:class:`RequestError` that becomes an ERROR reply. Handlers run on the event loop thread, one request at a
time per connection; changes outside a transaction go through :meth:`State.mutate`, which computes them on
the latest state under its lock.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable

from xenstored import nodes
from xenstored.errors import (
    AccessDenied,
    Busy,
    InvalidRequest,
    NoSuchNode,
    NotPermitted,
    QuotaExceeded,
    TooBig,
    TransactionConflict,
)
from xenstored.nodes import Mutation, Node, Writer
from xenstored.paths import (
    Key,
    WatchPath,
    from_key,
    length_below_home,
    resolve,
    resolve_watch,
    to_key,
)
from xenstored.perms import Access, Caller, Permissions
from xenstored.protocol import (
    OK,
    PAYLOAD_MAX,
    Packet,
    decimal,
    join_strings,
    path_and_value,
    string_list,
    strings,
)
from xenstored.quotas import owner_deltas
from xenstored.session import Outcome, Session
from xenstored.state import State
from xenstored.transactions import Transaction

VALUE_SHOWN = 64
_PRINTABLE = re.compile(rb"[\x20-\x7e]+")


def describe_value(value: bytes) -> str:
    """A value as a commit message shows it: printable text as is (shortened), anything else by size."""
    if not value:
        return '""'
    head = value[: VALUE_SHOWN + 1]
    if not _PRINTABLE.fullmatch(head):
        return f"<{len(value)} bytes>"
    text = head.decode("ascii")
    return text if len(value) <= VALUE_SHOWN else f"{text[:VALUE_SHOWN]}... ({len(value)} bytes)"


def _check_access(perms: Permissions, caller: Caller, access: Access, key: Key) -> None:
    if not perms.access(caller) & access == access:
        raise AccessDenied(f"dom{caller.domid} lacks {access!r}", from_key(key))


class NodeRequests:
    """READ, WRITE, MKDIR, RM, DIRECTORY, DIRECTORY_PART, GET_PERMS, SET_PERMS, WATCH, UNWATCH,
    TRANSACTION_START, TRANSACTION_END and RESET_WATCHES."""

    def __init__(self, state: State) -> None:
        self.state = state
        self._tx_ids = itertools.count(1)

    # -- helpers -------------------------------------------------------------------------------------------
    def _transaction(self, session: Session, packet: Packet) -> Transaction | None:
        if packet.tx_id == 0:
            return None
        tx = session.transactions.get(packet.tx_id)
        if tx is None:
            raise NoSuchNode(f"no transaction {packet.tx_id} on this connection")
        return tx

    def _resolve(self, session: Session, raw: bytes) -> str:
        """The absolute path a request names, within the caller's ``path-max`` quota."""
        path = resolve(raw, session.caller.domid)
        self._check_path_quota(session.caller, path)
        return path

    def _resolve_watch(self, session: Session, raw: bytes) -> WatchPath:
        watch_path = resolve_watch(raw, session.caller.domid)
        if not watch_path.special:
            self._check_path_quota(session.caller, watch_path.absolute)
        return watch_path

    def _check_path_quota(self, caller: Caller, path: str) -> None:
        # As C xenstored (is_valid_nodename): unprivileged domains only, measured below the home, EINVAL.
        limit = self.state.quotas.path_max
        if not caller.privileged and length_below_home(path) > limit:
            raise InvalidRequest(
                f"path of {length_below_home(path)} bytes below the home exceeds path_max {limit}", path
            )

    def _view(self, tx: Transaction | None) -> Node:
        return tx.tree if tx is not None else self.state.tree

    @staticmethod
    def _require(tree: Node, key: Key, caller: Caller, access: Access) -> None:
        if not caller.privileged:
            _check_access(nodes.permissions(tree, key), caller, access, key)

    def _readable(self, tree: Node, key: Key, caller: Caller) -> None:
        if not nodes.exists(tree, key):
            raise NoSuchNode("no such node", from_key(key))
        self._require(tree, key, caller, Access.READ)

    def _change(
        self,
        session: Session,
        tx: Transaction | None,
        description: str,
        build: Callable[[Node, Writer | None], Mutation],
    ) -> Outcome:
        """Apply a change in the transaction, or to the latest state (checked and built under its lock).

        A privileged caller's transaction changes its own nodes in place (its tree is private); an
        unprivileged caller's change is built on a copy, since the node quota may still refuse it.
        """
        caller = session.caller
        self.state.check_writable()
        if tx is not None:
            mutation = build(tx.tree, tx.writer if caller.privileged else None)
            self._check_node_quota(caller, mutation, tx.owned_delta)
            tx.record(mutation, description)
            return Outcome(OK)

        def checked(tree: Node) -> Mutation:
            mutation = build(tree, None)
            self._check_node_quota(caller, mutation, 0)
            return mutation

        seq = self.state.mutate(caller, [description], checked)
        return Outcome(OK, seq)

    def _check_node_quota(self, caller: Caller, mutation: Mutation, pending: int) -> None:
        if caller.privileged:
            return
        gained = owner_deltas(mutation.changes).get(caller.domid, 0)
        if gained > 0 and self.state.counts[caller.domid] + pending + gained > self.state.quotas.nodes:
            raise QuotaExceeded(f"dom{caller.domid} owns {self.state.quotas.nodes} nodes (quota)")

    def _writable_for_create(self, tree: Node, key: Key, caller: Caller) -> None:
        """Writing a node needs write access to it, or, to create it, to its nearest existing ancestor."""
        if not caller.privileged:
            depth, perms = nodes.nearest(tree, key)
            _check_access(perms, caller, Access.WRITE, key[:depth])

    def _read_node(self, session: Session, packet: Packet) -> tuple[Key, Node]:
        """The node a read request names and the tree to read it in, recorded as read by its transaction
        and checked readable by the caller."""
        (raw,) = strings(packet.payload, 1)
        key = to_key(self._resolve(session, raw))
        tx = self._transaction(session, packet)
        if tx is not None:
            tx.read(key)
        tree = self._view(tx)
        self._readable(tree, key, session.caller)
        return key, tree

    # -- reads ---------------------------------------------------------------------------------------------
    def read(self, session: Session, packet: Packet) -> Outcome:
        key, tree = self._read_node(session, packet)
        return Outcome(nodes.value(tree, key) or b"")

    def directory(self, session: Session, packet: Packet) -> Outcome:
        key, tree = self._read_node(session, packet)
        payload = join_strings([name.encode("ascii") for name in nodes.children(tree, key)])
        if len(payload) > PAYLOAD_MAX:
            raise TooBig("the listing does not fit in one packet: use DIRECTORY_PART", from_key(key))
        return Outcome(payload)

    def directory_part(self, session: Session, packet: Packet) -> Outcome:
        raw, raw_offset = strings(packet.payload, 2)
        key = to_key(self._resolve(session, raw))
        offset = decimal(raw_offset, "offset")
        tx = self._transaction(session, packet)
        if tx is not None:
            tx.read(key)
        tree = self._view(tx)
        self._readable(tree, key, session.caller)
        gen = str(nodes.generation(tree, key)).encode("ascii") + b"\0"
        names = join_strings([name.encode("ascii") for name in nodes.children(tree, key)])
        if offset >= len(names):
            return Outcome(gen + b"\0")
        room = PAYLOAD_MAX - len(gen) - 1
        end = offset
        while end < len(names):
            following = names.index(b"\0", end) + 1
            if following - offset > room:
                break
            end = following
        if end == offset:
            raise TooBig("offset is not at the start of a name", from_key(key))
        chunk = names[offset:end]
        return Outcome(gen + chunk + (b"\0" if end == len(names) else b""))

    def get_perms(self, session: Session, packet: Packet) -> Outcome:
        key, tree = self._read_node(session, packet)
        return Outcome(join_strings(nodes.permissions(tree, key).wire()))

    # -- changes -------------------------------------------------------------------------------------------
    def write(self, session: Session, packet: Packet) -> Outcome:
        raw, data = path_and_value(packet.payload)
        path = self._resolve(session, raw)
        key = to_key(path)
        caller = session.caller
        if not caller.privileged and len(data) > self.state.quotas.value_size:
            raise QuotaExceeded(f"value of {len(data)} bytes (quota {self.state.quotas.value_size})", path)
        tx = self._transaction(session, packet)

        def build(tree: Node, writer: Writer | None) -> Mutation:
            self._writable_for_create(tree, key, caller)
            mutation = nodes.write(tree, key, data, caller, writer)
            mutation.touched.append(key)
            return mutation

        return self._change(session, tx, f"write {path} = {describe_value(data)}", build)

    def mkdir(self, session: Session, packet: Packet) -> Outcome:
        (raw,) = strings(packet.payload, 1)
        path = self._resolve(session, raw)
        key = to_key(path)
        caller = session.caller
        tx = self._transaction(session, packet)

        def build(tree: Node, writer: Writer | None) -> Mutation:
            self._writable_for_create(tree, key, caller)
            return nodes.mkdir(tree, key, caller, writer)

        return self._change(session, tx, f"mkdir {path}", build)

    def rm(self, session: Session, packet: Packet) -> Outcome:
        (raw,) = strings(packet.payload, 1)
        path = self._resolve(session, raw)
        key = to_key(path)
        if not key:
            raise InvalidRequest("the root node cannot be removed", path)
        caller = session.caller
        tx = self._transaction(session, packet)
        if tx is not None:
            tx.read(key, "subtree")

        def build(tree: Node, writer: Writer | None) -> Mutation:
            if not nodes.exists(tree, key):
                if nodes.exists(tree, key[:-1]):
                    return Mutation(tree)  # already gone: fine, as in C xenstored, if the parent exists
                raise NoSuchNode("no such node", path)
            self._require(tree, key, caller, Access.WRITE)
            # A privileged caller's transaction has no node quota: nothing reads what it removed until
            # the merge, which lists it.
            return nodes.remove(tree, key, writer, listed=tx is None or not caller.privileged)

        return self._change(session, tx, f"rm {path}", build)

    def set_perms(self, session: Session, packet: Packet) -> Outcome:
        items = string_list(packet.payload)
        if len(items) < 2:
            raise InvalidRequest("SET_PERMS needs a path and at least one permission")
        path = self._resolve(session, items[0])
        key = to_key(path)
        try:
            perms = Permissions.parse([item.decode("ascii") for item in items[1:]])
        except UnicodeDecodeError:
            raise InvalidRequest("permissions must be ASCII", path) from None
        caller = session.caller
        tx = self._transaction(session, packet)

        def build(tree: Node, writer: Writer | None) -> Mutation:
            if not nodes.exists(tree, key):
                raise NoSuchNode("no such node", path)
            current = nodes.permissions(tree, key)
            self._require(tree, key, caller, Access.WRITE | Access.OWNER)
            if not caller.privileged and perms.owner != current.owner:
                raise NotPermitted("an unprivileged domain cannot change a node's owner", path)
            mutation = nodes.set_permissions(tree, key, perms, writer)
            mutation.touched.append(key)
            return mutation

        return self._change(session, tx, f"setperms {path} = {perms}", build)

    # -- watches -------------------------------------------------------------------------------------------
    def watch(self, session: Session, packet: Packet) -> Outcome:
        raw, token = strings(packet.payload, 2)
        path = self._resolve_watch(session, raw)
        with self.state.lock:  # the journal thread fires watches too
            self.state.watches.add(session, path, token)  # type: ignore[arg-type]
        return Outcome(OK, events=((raw.decode("ascii"), token),))

    def unwatch(self, session: Session, packet: Packet) -> Outcome:
        raw, token = strings(packet.payload, 2)
        path = self._resolve_watch(session, raw)
        with self.state.lock:
            self.state.watches.remove(session, path, token)  # type: ignore[arg-type]
        return Outcome(OK)

    def reset_watches(self, session: Session, packet: Packet) -> Outcome:
        with self.state.lock:
            self.state.watches.remove_all(session)  # type: ignore[arg-type]
        session.transactions.clear()
        return Outcome(OK)

    # -- transactions --------------------------------------------------------------------------------------
    def transaction_start(self, session: Session, packet: Packet) -> Outcome:
        if packet.tx_id != 0:
            raise Busy("a transaction cannot start inside a transaction")
        caller = session.caller
        quotas = self.state.quotas
        open_now = len(session.transactions)
        if (
            not caller.privileged and open_now >= quotas.transactions
        ) or open_now >= quotas.hard_transactions:
            raise QuotaExceeded(f"{open_now} transactions open on this connection (quota)")
        fork, tree = self.state.fork()
        tx = Transaction(next(self._tx_ids), caller, fork, tree)
        session.transactions[tx.id] = tx
        return Outcome(str(tx.id).encode("ascii") + b"\0")

    def transaction_end(self, session: Session, packet: Packet) -> Outcome:
        tx = self._transaction(session, packet)
        if tx is None:
            raise NoSuchNode("TRANSACTION_END needs a transaction id")
        (verdict,) = strings(packet.payload, 1)
        if verdict not in (b"T", b"F"):
            raise InvalidRequest(f"TRANSACTION_END takes T or F, not {verdict[:8]!r}")
        del session.transactions[tx.id]
        if verdict == b"F" or not (tx.changed or tx.touched):
            if verdict == b"T" and tx.stale_reads(self.state.tree):
                raise TransactionConflict(f"transaction {tx.id}: a node it read has changed")
            return Outcome(OK)

        def merge(current: Node) -> Mutation:
            stale = tx.stale_reads(current)
            if stale:
                raise TransactionConflict(
                    f"transaction {tx.id}: {len(stale)} node(s) it read changed", from_key(stale[0])
                )
            mutation = tx.merge_into(current)
            self._check_node_quota(tx.caller, mutation, 0)
            return mutation

        seq = self.state.mutate(tx.caller, [f"merge {tx.summary()[0]}"], merge, tx.tip)
        return Outcome(OK, seq)
