"""A versioned store of structured state kept as a real git repository.

In the spirit of Irmin: immutable lazy trees, merges as a property of the content type, and transactions
that snapshot a branch, run a function, and compare-and-swap the ref with bounded retries.

    >>> from store import Store
    >>> s = Store.memory()
    >>> with s.branch("main").transaction(message="hello", author="me") as tx:
    ...     tx.set("greeting", b"hi")
    >>> s.branch("main").get("greeting")
    b'hi'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from store import merge
from store.branch import Branch, ChangeEvent
from store.codec import BYTES, JSON, Codec, JsonCodec
from store.errors import (
    BranchExists,
    Conflict,
    ConflictEntry,
    CorruptObject,
    HistoryLost,
    InvalidPath,
    IsADirectory,
    LockTimeout,
    MissingObject,
    NonFastForward,
    NotADirectory,
    NotARepository,
    NotFound,
    ReadConflict,
    RemoteError,
    StoreError,
    TooManyRetries,
    UnknownBranch,
    UnknownCommit,
    UnrelatedHistories,
)
from store.history import HistoryEntry, LogEntry
from store.merge import Conflicted, Rule, Schema
from store.objects import CommitInfo
from store.store import Diff, Snapshot, Store
from store.transaction import Strategy, Transaction, TransactionOptions
from store.tree import Change, Tree
from store.watch import Watch

if TYPE_CHECKING:
    from store.remote import Remote

# Imported on first use, not here: store.remote brings dulwich's client and subprocess, which a store in
# memory (in a browser under Pyodide, issue 22) neither needs nor always has.
_LAZY = {"Remote": "store.remote"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'store' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "BYTES",
    "JSON",
    "Branch",
    "BranchExists",
    "Change",
    "ChangeEvent",
    "Codec",
    "CommitInfo",
    "Conflict",
    "ConflictEntry",
    "Conflicted",
    "CorruptObject",
    "Diff",
    "HistoryEntry",
    "HistoryLost",
    "InvalidPath",
    "IsADirectory",
    "JsonCodec",
    "LockTimeout",
    "LogEntry",
    "MissingObject",
    "NonFastForward",
    "NotADirectory",
    "NotARepository",
    "NotFound",
    "ReadConflict",
    "Remote",
    "RemoteError",
    "Rule",
    "Schema",
    "Snapshot",
    "Store",
    "StoreError",
    "Strategy",
    "TooManyRetries",
    "Transaction",
    "TransactionOptions",
    "Tree",
    "UnknownBranch",
    "UnknownCommit",
    "UnrelatedHistories",
    "Watch",
    "merge",
]
