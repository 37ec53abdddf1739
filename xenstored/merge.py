"""The three-way merge of xenstore trees: a transaction's tree (theirs) onto the state now (ours).

Only the children the transaction changed are visited, and subtrees shared between versions are compared by
identity, so that a transaction touching a few nodes of a large tree merges in time proportional to what it
touched. Deep trees are merged over an explicit stack: a client chooses how deep a tree goes.
"""

from __future__ import annotations

from xenstored.mutations import LeafChange, Mutation, leaves
from xenstored.paths import Key
from xenstored.tree import EMPTY, NO_NAMES, PERMS, VALUE, Extra, Node


def merge(base: Node, ours: Node, theirs: Node) -> Mutation:
    """Three-way merge, node by node: ``theirs`` (a transaction forked at ``base``) onto ``ours`` (the state
    now).

    Every field a side left as it was at ``base`` takes the other side's version; a field both changed
    takes theirs (the transaction writes last, as in C xenstored, where nodes only written are last-writer-
    wins; nodes it read were checked unchanged before). Subtrees shared with ``base`` are not visited.

    Returns:
        The merged tree, and the changes from ``ours`` to it.
    """
    changes: list[LeafChange] = []
    merged = _merge(base, ours, theirs, (), changes)
    return Mutation(merged if merged is not None else EMPTY, changes)


def _diff(old: Node | None, new: Node | None, key: Key, changes: list[LeafChange]) -> None:
    """The blob changes that turn subtree ``old`` into ``new`` (parents before their children; an explicit
    stack, as the depth is the client's)."""
    stack = [(old, new, key)]
    while stack:
        old, new, key = stack.pop()
        if old is new:
            continue
        if new is None:
            changes.extend(leaves(old, key, removed=True))  # type: ignore[arg-type]
            continue
        if old is None:
            changes.extend(leaves(new, key))
            continue
        if old.perms != new.perms:
            changes.append(LeafChange((*key, PERMS), old.perms, new.perms))
        if old.value != new.value:
            changes.append(LeafChange((*key, VALUE), old.value, new.value))
        differing = {name for name, _ in new.children.items() - old.children.items()}
        differing.update(old.children.keys() - new.children.keys())
        for name in differing:
            stack.append((old.children.get(name), new.children.get(name), (*key, name)))


class _MergeFrame:
    """A node of a three-way merge whose changed children are still being merged (see :func:`_merge`)."""

    __slots__ = (
        "changed",
        "children",
        "extra",
        "key",
        "name",
        "ours",
        "pending",
        "perms",
        "start",
        "theirs",
        "value",
    )

    def __init__(
        self,
        ours: Node,
        start: Node,
        theirs: Node,
        key: Key,
        fields: tuple[bytes | None, bytes | None, tuple[Extra, ...]],
        changed: set[str],
    ) -> None:
        self.ours, self.start, self.theirs, self.key = ours, start, theirs, key
        self.value, self.perms, self.extra = fields
        self.changed = changed
        self.pending = list(changed)
        self.children = ours.children
        self.name = ""  # its name under its parent frame

    def adopt(self, name: str, child: Node | None) -> None:
        """Take the merged version of child ``name``."""
        if child is self.ours.children.get(name):
            return
        if self.children is self.ours.children:
            self.children = dict(self.ours.children)
        if child is None:
            self.children.pop(name, None)
        else:
            self.children[name] = child

    def result(self) -> Node | None:
        ours = self.ours
        if (self.value, self.perms, self.extra) == (ours.value, ours.perms, ours.extra) and (
            self.children is ours.children
        ):
            return None if ours.is_empty() else ours
        touched = NO_NAMES if self.children is ours.children else frozenset(self.changed)
        merged = Node(self.value, self.perms, self.children, self.extra, origin=ours, touched=touched)
        return None if merged.is_empty() else merged


def _merge_node(
    base: Node | None, ours: Node | None, theirs: Node | None, key: Key, changes: list[LeafChange]
) -> tuple[Node | None, _MergeFrame | None]:
    """Merge one node's own fields: the merged node if that settles it, else a frame whose changed
    children are left to merge."""
    if theirs is base or theirs is ours:
        return ours, None
    if ours is base:
        _diff(ours, theirs, key, changes)
        return theirs, None
    if theirs is None:
        _diff(ours, None, key, changes)  # the transaction removed it: it read the whole subtree to do so
        return None, None
    if ours is None:
        # Removed meanwhile and changed by the transaction: its changes come back (and create the node),
        # but what it did not touch stays removed.
        ours = EMPTY
    start = base if base is not None else EMPTY
    value = theirs.value if theirs.value != start.value else ours.value
    perms = theirs.perms if theirs.perms != start.perms else ours.perms
    extra = theirs.extra if theirs.extra != start.extra else ours.extra
    if perms != ours.perms:
        changes.append(LeafChange((*key, PERMS), ours.perms, perms))
    if value != ours.value:
        changes.append(LeafChange((*key, VALUE), ours.value, value))
    # Only the children the transaction changed: the rest of a directory of hundreds is not visited.
    changed = {name for name, _ in theirs.children.items() - start.children.items()}
    changed.update(start.children.keys() - theirs.children.keys())
    return None, _MergeFrame(ours, start, theirs, key, (value, perms, extra), changed)


def _merge(
    base: Node | None, ours: Node | None, theirs: Node | None, key: Key, changes: list[LeafChange]
) -> Node | None:
    """The three-way merge of one subtree, depth first over an explicit stack of frames (a client chooses
    how deep the tree goes: recursion would let it overflow the interpreter's stack)."""
    merged, frame = _merge_node(base, ours, theirs, key, changes)
    if frame is None:
        return merged
    stack = [frame]
    while True:
        top = stack[-1]
        if top.pending:
            name = top.pending.pop()
            child, child_frame = _merge_node(
                top.start.children.get(name),
                top.ours.children.get(name),
                top.theirs.children.get(name),
                (*top.key, name),
                changes,
            )
            if child_frame is None:
                top.adopt(name, child)
            else:
                child_frame.name = name
                stack.append(child_frame)
            continue
        stack.pop()
        merged = top.result()
        if not stack:
            return merged
        stack[-1].adopt(top.name, merged)
