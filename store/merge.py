"""Merging is a property of the content type.

A merge function takes (base, ours, theirs) decoded values, ``None`` standing for an absent value, and
returns the merged value (``None`` to delete) or a :class:`Conflicted`. A :class:`Schema` maps path globs to
a merge function and a codec; :func:`merge_trees` merges whole trees path by path, descending only into
subtrees that differ on both sides.

Every built-in obeys the merge laws: ``f(b, x, b) == x``, ``f(b, b, y) == y``, and changes to disjoint parts
commute.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from store.backend import ObjectReader
from store.codec import BYTES, JSON, Codec
from store.errors import ConflictEntry
from store.leaf import Leaf, Node, ident
from store.paths import Key, join, parse
from store.tree import Tree


@dataclass(frozen=True)
class Conflicted:
    """The result of a merge function that cannot reconcile the two sides."""

    reason: str


MergeFunction = Callable[[Any, Any, Any], Any]


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def merge_function(
    codec: Codec = JSON, idempotent: bool = True, reads_commute: bool | None = None
) -> Callable[[Callable[[Any, Any, Any], Any]], MergeFunction]:
    """Declare a merge function: settle the cases that need no merge before it runs, and record its codec.

    Args:
        codec: How the values it merges are stored.
        idempotent: Whether the same change on both sides counts once. Counters and queues say no: two
            increments of one, or two pushes of the same item, are two operations.
        reads_commute: Whether a transaction that read a value of this type and wrote a new one may be
            merged with a concurrent change of it rather than conflict (see
            :class:`store.transaction.Strategy`). True when the merge replays each side's change as an
            operation on the other's value (a counter adds both deltas, a queue keeps both pushes): a
            read-modify-write then loses nothing. Defaults to ``not idempotent``.
    """

    def decorate(function: Callable[[Any, Any, Any], Any]) -> MergeFunction:
        @functools.wraps(function)
        def merge(base: Any, ours: Any, theirs: Any) -> Any:
            if idempotent and ours == theirs:
                return ours
            if base == ours:
                return theirs
            if base == theirs:
                return ours
            return function(base, ours, theirs)

        merge.codec = codec  # type: ignore[attr-defined]
        merge.idempotent = idempotent  # type: ignore[attr-defined]
        merge.reads_commute = (not idempotent) if reads_commute is None else reads_commute  # type: ignore[attr-defined]
        return merge

    return decorate


@merge_function(codec=BYTES)
def default(base: Any, ours: Any, theirs: Any) -> Any:
    """Take the side that changed; the same change on both sides is fine; anything else conflicts."""
    if ours is None:
        return Conflicted("deleted on one side, changed on the other")
    if theirs is None:
        return Conflicted("changed on one side, deleted on the other")
    return Conflicted("changed on both sides")


@merge_function(codec=BYTES)
def theirs(base: Any, ours: Any, theirs: Any) -> Any:
    """The side being merged in wins wherever both changed (what ``Strategy.SET`` merges a transaction with:
    ``theirs`` is the transaction, ``ours`` the branch it is merged into)."""
    return theirs


_MISSING = object()


def _merge_json(base: Any, ours: Any, theirs: Any, field: tuple[str, ...], conflicts: list[str]) -> Any:
    if ours == theirs:
        return ours
    if base == ours:
        return theirs
    if base == theirs:
        return ours
    if isinstance(ours, dict) and isinstance(theirs, dict) and (isinstance(base, dict) or base is _MISSING):
        base_fields = base if isinstance(base, dict) else {}
        merged = {}
        for name in sorted(set(base_fields) | set(ours) | set(theirs)):
            value = _merge_json(
                base_fields.get(name, _MISSING),
                ours.get(name, _MISSING),
                theirs.get(name, _MISSING),
                (*field, name),
                conflicts,
            )
            if value is not _MISSING:
                merged[name] = value
        return merged
    where = ".".join(field) or "(whole value)"
    show = lambda v: "<absent>" if v is _MISSING else _canonical(v)  # noqa: E731
    conflicts.append(f"{where}: ours={show(ours)} theirs={show(theirs)} base={show(base)}")
    return ours


@merge_function()
def json_object(base: Any, ours: Any, theirs: Any) -> Any:
    """Field-level merge of JSON objects, recursively; each field that both sides changed differently is
    reported."""
    conflicts: list[str] = []
    missing = lambda v: _MISSING if v is None else v  # noqa: E731
    merged = _merge_json(missing(base), missing(ours), missing(theirs), (), conflicts)
    if conflicts:
        return Conflicted("conflicting fields: " + "; ".join(conflicts))
    return None if merged is _MISSING else merged


@merge_function(idempotent=False)
def counter(base: Any, ours: Any, theirs: Any) -> Any:
    """Integers: base + (ours - base) + (theirs - base). An absent base counts as 0."""
    if ours is None or theirs is None:
        return default(base, ours, theirs)
    numbers = (base or 0, ours, theirs)
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in numbers):
        return Conflicted(f"counter values must be integers, got {numbers!r}")
    b, o, t = numbers
    return o + t - b


@merge_function()
def set_(base: Any, ours: Any, theirs: Any) -> Any:
    """A JSON array treated as a set: additions and removals from both sides apply. The result is sorted."""
    if ours is None or theirs is None:
        return default(base, ours, theirs)
    lists = (base or [], ours, theirs)
    if not all(isinstance(v, list) for v in lists):
        return Conflicted("set values must be JSON arrays")
    b, o, t = ({_canonical(x): x for x in v} for v in lists)
    keys = (set(b) | set(o) | set(t)) - (set(b) - set(o)) - (set(b) - set(t))
    every = {**b, **o, **t}
    return [every[k] for k in sorted(keys)]


def _timestamp(value: Any, field: str) -> Any:
    if isinstance(value, dict):
        return value.get(field, 0)
    return 0


def make_lww(field: str = "timestamp") -> MergeFunction:
    """Last writer wins, by the numeric or ISO-8601 ``field`` of JSON objects; ties break by content.

    A deletion loses to a concurrent write (there is no timestamp on an absence).
    """

    @merge_function()
    def lww(base: Any, ours: Any, theirs: Any) -> Any:
        if ours is None:
            return theirs
        if theirs is None:
            return ours
        key_ours = (_timestamp(ours, field), _canonical(ours))
        key_theirs = (_timestamp(theirs, field), _canonical(theirs))
        try:
            return ours if key_ours >= key_theirs else theirs
        except TypeError:
            return Conflicted(f"lww: timestamps in field {field!r} are not comparable")

    return lww


lww = make_lww()


def make_log(field: str = "time") -> MergeFunction:
    """Append-only logs (JSON arrays): the union of entries, ordered by ``field`` then content."""

    @merge_function()
    def log(base: Any, ours: Any, theirs: Any) -> Any:
        lists = (base or [], ours or [], theirs or [])
        if not all(isinstance(v, list) for v in lists):
            return Conflicted("log values must be JSON arrays")
        union: dict[str, Any] = {}
        for entries in lists:
            for entry in entries:
                union.setdefault(_canonical(entry), entry)
        try:
            return [union[k] for k in sorted(union, key=lambda k: (_timestamp(union[k], field), k))]
        except TypeError:
            return Conflicted(f"log: times in field {field!r} are not comparable")

    return log


log = make_log()


def _queue_ops(base: list[Any], side: list[Any]) -> tuple[int, list[Any]] | None:
    # side == base[pops:] + pushes, with the fewest pops.
    for pops in range(len(base) + 1):
        kept = len(base) - pops
        if side[:kept] == base[pops:]:
            return pops, side[kept:]
    return None


@merge_function(idempotent=False)
def queue(base: Any, ours: Any, theirs: Any) -> Any:
    """A FIFO queue (JSON array): pushes from both sides are kept, and each pop is applied once."""
    lists = (base or [], ours or [], theirs or [])
    if not all(isinstance(v, list) for v in lists):
        return Conflicted("queue values must be JSON arrays")
    b, o, t = lists
    ops_ours, ops_theirs = _queue_ops(b, o), _queue_ops(b, t)
    if ops_ours is None or ops_theirs is None:
        return Conflicted("queue changed other than by pops at the front and pushes at the back")
    (pops_o, pushes_o), (pops_t, pushes_t) = ops_ours, ops_theirs
    first, second = sorted((pushes_o, pushes_t), key=_canonical)
    return b[max(pops_o, pops_t) :] + first + second


BUILTINS: dict[str, MergeFunction] = {
    "default": default,
    "json_object": json_object,
    "counter": counter,
    "set": set_,
    "lww": lww,
    "log": log,
    "queue": queue,
}


@dataclass(frozen=True)
class Rule:
    """Paths matching ``pattern`` merge with ``merge`` on values decoded by ``codec``.

    Patterns are "/"-separated globs matched segment by segment (``*`` never crosses "/"); a ``**``
    segment matches any number of segments.
    """

    pattern: str
    merge: MergeFunction
    codec: Codec

    def matches(self, key: Key) -> bool:
        return _match(tuple(self.pattern.split("/")), key)


def _match(pattern: tuple[str, ...], key: Key) -> bool:
    if not pattern:
        return not key
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(_match(rest, key[i:]) for i in range(len(key) + 1))
    return bool(key) and fnmatchcase(key[0], head) and _match(rest, key[1:])


_CACHED_DEPTH = 64  # the deepest path whose rule Schema.rule_for remembers


class Schema:
    """Maps path globs to merge functions and codecs; the first matching rule wins.

    Args:
        rules: Initial rules, as :class:`Rule` or (pattern, merge function[, codec]) tuples.
        fallback: The rule for paths no pattern matches (default: ``default`` on bytes).
    """

    def __init__(
        self,
        rules: Iterable[Rule | tuple[Any, ...]] = (),
        fallback: MergeFunction = default,
    ) -> None:
        self._rules: list[Rule] = []
        self._fallback = Rule("**", fallback, getattr(fallback, "codec", BYTES))
        self._cache: dict[Key, Rule] = {}
        for rule in rules:
            if isinstance(rule, Rule):
                self.add(rule.pattern, rule.merge, rule.codec)
            else:
                self.add(*rule)

    def add(self, pattern: str, merge: MergeFunction | str, codec: Codec | None = None) -> Schema:
        """Register a rule; ``merge`` may name a built-in ("json_object", "counter", …)."""
        parse(pattern.replace("**", "x").replace("*", "x").replace("?", "x").replace("[", "x"))
        if isinstance(merge, str):
            if merge not in BUILTINS:
                raise ValueError(f"unknown merge function {merge!r}; built-ins: {', '.join(BUILTINS)}")
            merge = BUILTINS[merge]
        self._rules.append(Rule(pattern, merge, codec or getattr(merge, "codec", BYTES)))
        self._cache.clear()
        return self

    def reads_commute(self, key: Key) -> bool:
        """Whether a read of the value at ``key`` commutes with a concurrent change of it (see
        :func:`merge_function`), so that a transaction that read it need not be validated there."""
        return bool(getattr(self.rule_for(key).merge, "reads_commute", False))

    def rule_for(self, path: str | Key) -> Rule:
        key = parse(path) if isinstance(path, str) else path
        rule = self._cache.get(key)
        if rule is None:
            rule = next((r for r in self._rules if r.matches(key)), self._fallback)
            # Bounded in count and in size: a client's deep path is matched, not kept.
            if len(self._cache) < 100_000 and len(key) <= _CACHED_DEPTH:
                self._cache[key] = rule
        return rule

    @property
    def rules(self) -> list[Rule]:
        return list(self._rules)

    @property
    def idempotent(self) -> bool:
        """Whether every rule treats the same change on both sides as one change."""
        return all(getattr(r.merge, "idempotent", True) for r in [*self._rules, self._fallback])


DEFAULT_SCHEMA = Schema()
SET_SCHEMA = Schema(fallback=theirs)  # every path: the transaction's own value wins
_GLOB = re.compile(r"[*?\[]")


def merge_values(rule: Rule, path: str, base: bytes | None, ours: bytes | None, theirs: bytes | None) -> Any:
    """Merge three encoded values with a rule; returns bytes, None (deleted) or a ConflictEntry."""
    if ours == theirs and getattr(rule.merge, "idempotent", True):
        return ours
    if base == ours:
        return theirs
    if base == theirs:
        return ours
    try:
        decoded = [None if v is None else rule.codec.decode(v) for v in (base, ours, theirs)]
    except (ValueError, RecursionError) as err:  # json's decoder refuses values nested too deeply
        return ConflictEntry(path, f"cannot decode as {rule.codec.name}: {err}", base, ours, theirs)
    try:
        result = rule.merge(*decoded)
    except Exception as err:  # a user merge function failing is a conflict, not a crash
        return ConflictEntry(path, f"merge function failed: {err!r}", base, ours, theirs)
    if isinstance(result, Conflicted):
        return ConflictEntry(path, result.reason, base, ours, theirs)
    return None if result is None else rule.codec.encode(result)


def merge_trees(
    backend: ObjectReader, base: Tree, ours: Tree, theirs: Tree, schema: Schema = DEFAULT_SCHEMA
) -> tuple[Tree, list[ConflictEntry]]:
    """3-way merge of trees, path by path.

    Returns:
        The merged tree (with ours kept at conflicting paths) and every conflict found.
    """
    conflicts: list[ConflictEntry] = []
    merged = _run(_merge_node(backend, base, ours, theirs, (), schema, conflicts))
    if merged is None:
        return Tree.empty(backend), conflicts
    if isinstance(merged, Leaf):  # cannot happen at the root
        raise AssertionError("root merged into a value")
    return merged, conflicts


def _same(a: Node | None, b: Node | None) -> bool:
    if a is None or b is None:
        return a is b
    return type(a) is type(b) and a.oid == b.oid


# A merge step: a generator that yields the merge of a child directory it needs (another step) and is sent
# back its result, then returns its own.
_Step = Generator["_Step", "Node | None", "Node | None"]


def _run(step: _Step) -> Node | None:
    """Drive nested merge steps with an explicit stack of generators rather than recursion: a tree is as
    deep as its writers made it, and Python's stack is not."""
    stack = [step]
    result: Node | None = None
    while stack:
        try:
            child = stack[-1].send(result)
        except StopIteration as done:
            stack.pop()
            result = done.value
            continue
        stack.append(child)
        result = None  # a new generator must be started with None
    return result


def _merge_node(
    backend: ObjectReader,
    base: Node | None,
    ours: Node | None,
    theirs: Node | None,
    key: Key,
    schema: Schema,
    conflicts: list[ConflictEntry],
) -> _Step:
    """Merge one node (a step for :func:`_run`: subdirectories that differ on both sides are yielded)."""
    if _same(ours, theirs) and (
        schema.idempotent
        or ours is None
        or (isinstance(ours, Leaf) and getattr(schema.rule_for(key).merge, "idempotent", True))
    ):
        return ours
    if _same(base, ours):
        return theirs
    if _same(base, theirs):
        return ours
    if (
        isinstance(ours, Tree | None)
        and isinstance(theirs, Tree | None)
        and not (ours is None and theirs is None)
    ):
        base_tree = base if isinstance(base, Tree) else None
        if ours is None or theirs is None:
            # A directory deleted on one side and changed on the other: merge per path against empty.
            ours = ours or Tree.empty(backend)
            theirs = theirs or Tree.empty(backend)
        # Start from ours and visit only the entries that differ: a directory of thousands of children with
        # one change costs one merge, and the result is spliced from ours' bytes rather than re-encoded.
        ours_entries, theirs_entries = ours._entries(), theirs._entries()
        base_entries = base_tree._entries() if base_tree is not None else {}
        children: dict[str, Any] = dict(ours_entries)
        changed: set[str] = set()
        idempotent = schema.idempotent
        # Only names that theirs changed since base can change ours. One C-level set operation finds them
        # (a superset, as entries built in memory compare by identity; the loop then compares ids), so a
        # batch merging into directories of thousands of names does not visit every name in Python.
        candidates = {name for name, _ in theirs_entries.items() ^ base_entries.items()}
        for name in sorted(candidates):
            mine, other, common = (ident(e.get(name)) for e in (ours_entries, theirs_entries, base_entries))
            if (mine == other and idempotent) or common == other:
                continue  # the same on both sides, or unchanged on theirs: ours stands
            if common == mine:
                merged_child: Any = theirs_entries.get(name)  # unchanged on ours: theirs stands
            else:
                merged_child = yield _merge_node(
                    backend,
                    base_tree._node(name) if base_tree is not None else None,
                    ours._node(name),
                    theirs._node(name),
                    (*key, name),
                    schema,
                    conflicts,
                )
                if isinstance(merged_child, Tree) and merged_child.is_empty():
                    merged_child = None
            if merged_child is None:
                children.pop(name, None)
            else:
                children[name] = merged_child
            changed.add(name)
        if not children:
            return None
        return ours.derived(children, frozenset(changed)) if changed else ours
    if isinstance(ours, Tree) or isinstance(theirs, Tree) or isinstance(base, Tree):
        path = join(key)
        value = lambda n: n.value if isinstance(n, Leaf) else None  # noqa: E731
        conflicts.append(
            ConflictEntry(
                path, "a value on one side, a directory on the other", value(base), value(ours), value(theirs)
            )
        )
        return ours
    path = join(key)
    value = lambda n: None if n is None else n.value  # noqa: E731
    result = merge_values(schema.rule_for(key), path, value(base), value(ours), value(theirs))
    if isinstance(result, ConflictEntry):
        conflicts.append(result)
        return ours
    if result is None:
        return None
    return Leaf(backend, None, result)
