"""Plans: what reconciling the hypervisor with main would do, and what it found (:mod:`toolstack.reconcile`
makes and applies them).

A plan that would stop or undefine domains is destructive (:attr:`Plan.destructive`): the operations that
apply plans take a ``confirm`` (:data:`Confirm`) and refuse such a plan unless it says yes
(:func:`toolstack.reconcile.confirm_plan`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

DESTRUCTIVE = frozenset({"stop", "undefine"})  # a stop is only planned for an active domain: it destroys it


@dataclass(frozen=True)
class Action:
    """One step of a plan."""

    kind: str  # define, update, set-memory, set-vcpus, start, stop, pause, resume, undefine, adopt, claim
    uuid: str
    name: str
    reason: str

    def describe(self) -> str:
        return f"{self.kind} {self.name} ({self.uuid[:8]}): {self.reason}"


@dataclass
class Plan:
    """What reconciling would do, and what it found."""

    actions: list[Action] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    withheld: list[Action] = field(default_factory=list)
    applied: bool = False

    def __bool__(self) -> bool:
        return bool(self.actions or self.drift)

    @property
    def destructive(self) -> list[Action]:
        """The actions that take domains down: each stop (of a running domain) and each undefine."""
        return [a for a in self.actions if a.kind in DESTRUCTIVE]

    def withhold(self, uuids: set[str]) -> list[Action]:
        """Take every action on ``uuids`` out of the plan (into :attr:`withheld`); returns them."""
        taken = [a for a in self.actions if a.uuid in uuids]
        self.actions = [a for a in self.actions if a.uuid not in uuids]
        self.withheld.extend(taken)
        return taken

    def to_dict(self) -> dict[str, object]:
        return {
            "actions": [a.__dict__ for a in self.actions],
            "drift": self.drift,
            "unknown": self.unknown,
            "foreign": self.foreign,
            "invalid": self.invalid,
            "busy": self.busy,
            "waiting": self.waiting,
            "errors": self.errors,
            "withheld": [a.__dict__ for a in self.withheld],
            "applied": self.applied,
        }


Progress = Callable[[Action, Plan], None]
"""Called after each action of a plan is carried out, with the plan (whose actions size a progress bar)."""

Confirm = bool | Callable[[Plan], bool]
"""Whether a destructive plan may be applied: True (``--yes``), False (nobody to ask: refuse), or a function
asked with the plan (a terminal's prompt; the agent's removal limit, which may :meth:`Plan.withhold` actions
before it answers yes)."""
