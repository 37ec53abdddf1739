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
    NotADirectory,
    NotARepository,
    NotFound,
    ReadConflict,
    StoreError,
    TooManyRetries,
    UnknownBranch,
    UnknownCommit,
)
from store.history import HistoryEntry, LogEntry
from store.merge import Conflicted, Rule, Schema
from store.objects import CommitInfo
from store.remote import NonFastForward, Remote, RemoteError
from store.store import Diff, Snapshot, Store
from store.transaction import Strategy, Transaction, TransactionOptions
from store.tree import Change, Tree
from store.watch import Watch

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
    "Watch",
    "merge",
]
