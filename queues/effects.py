"""What the routing engine hands back, as values: an operation's effects and a queue's stats.

Every mutating operation of `queues.base.RoutingEngine` returns the effects it caused, in order
(offers, revocations, presence changes); a backend produces them as raw rows (docs/routing.md,
"Effects") and `decode_effect` turns each into one of the dataclasses here. `QueueStats` is one
row of the ops view. Frozen values and their one decoder: imports nothing of omniroute, so the
router, the tests and the tools name them without the contract's machinery.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

RawEffect = Sequence[Any]
PresenceState = Literal["offline", "available", "away", "busy", "wrapup"]


@dataclass(frozen=True)
class Offer:
    """The task was reserved for the agent until `expires_at`; it must accept or reject."""

    reservation: str
    task: str
    agent: str
    channel: str
    expires_at: float


@dataclass(frozen=True)
class OfferRevoked:
    """A reservation ended without acceptance: `timeout`, `reclassified` or `withdrawn`."""

    reservation: str
    task: str
    agent: str
    reason: str


@dataclass(frozen=True)
class Assigned:
    """The agent accepted the task (or was handed it); it now counts against its capacity."""

    task: str
    agent: str
    channel: str


@dataclass(frozen=True)
class AssignmentRevoked:
    """The agent lost an assigned task: `reclassified`, `transferred` or `released`."""

    task: str
    agent: str
    reason: str


@dataclass(frozen=True)
class PresenceChanged:
    """The agent's shown state changed (offline, available, away, busy, wrapup)."""

    agent: str
    state: str


@dataclass(frozen=True)
class TaskEnded:
    """The task left the engine: `completed` (wrap-up over) or `abandoned` (withdrawn)."""

    task: str
    agent: str | None
    reason: str


Effect = Offer | OfferRevoked | Assigned | AssignmentRevoked | PresenceChanged | TaskEnded


def decode_effect(raw: RawEffect) -> Effect:
    """Turn an engine's raw effect row (see docs/routing.md, "Effects") into a dataclass."""
    kind = raw[0]
    if kind == "offer":
        return Offer(str(raw[1]), str(raw[2]), str(raw[3]), str(raw[4]), raw[5] / 1000)
    if kind == "offer.revoked":
        return OfferRevoked(str(raw[1]), str(raw[2]), str(raw[3]), str(raw[4]))
    if kind == "assigned":
        return Assigned(str(raw[1]), str(raw[2]), str(raw[3]))
    if kind == "assignment.revoked":
        return AssignmentRevoked(str(raw[1]), str(raw[2]), str(raw[3]))
    if kind == "presence":
        return PresenceChanged(str(raw[1]), str(raw[2]))
    if kind == "ended":
        return TaskEnded(str(raw[1]), str(raw[2]) or None, str(raw[3]))
    raise ValueError(f"unknown effect {kind!r}")


@dataclass(frozen=True)
class QueueStats:
    """One queue (= one channel) as ops see it."""

    name: str
    waiting: int
    longest_wait_s: float
    offered: int
    answered: int
    answered_in_threshold: int
    abandoned: int
    agents: Mapping[str, Mapping[str, int]]
    answer_wait_s: float = 0.0  # the waiting time of every answered task, summed

    @property
    def average_speed_of_answer_s(self) -> float | None:
        """Mean wait from arrival to the accept, of the answered; None before any."""
        return self.answer_wait_s / self.answered if self.answered else None

    @property
    def service_level(self) -> float | None:
        """Share answered within the threshold, of all answered or abandoned; None before any."""
        handled = self.answered + self.abandoned
        return self.answered_in_threshold / handled if handled else None
