"""The routing policy: who may take what, in which order, with how much capacity.

Everything here is data read from `config/omniroute.toml` (see `router.settings`), never code:
priority rules are (field, operator, value, points) rows evaluated by `priority_of`, not `eval`.

Two tier layers that are never mixed:

* `eligibility` — the hard filter per client group. Nothing relaxes it: not waiting time, not a
  transfer, not the last-agent preference. `allowed()` is the one question every path asks.
* `levels` — preference levels inside that set, opening with waiting time (the bullseye).

Skills (`queues.skills`) filter inside what both layers let through, never beside them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

TIERS: Final = ("TRN", "CCS", "PAM", "SAM")
GROUPS: Final = ("normal", "SIC", "CSC")
CHANNELS: Final = ("chat", "sms", "email", "voice")
OPERATORS: Final = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "truthy")
PRIORITY_BOUND: Final = 100


def holds(field: str, op: str, value: Any, attrs: Mapping[str, Any]) -> bool:
    """Does `attrs[field] <op> value` hold? A missing field, or a value of the wrong kind for
    the operator, never matches."""
    if field not in attrs:
        return False
    have = attrs[field]
    try:
        if op == "eq":
            return bool(have == value)
        if op == "ne":
            return bool(have != value)
        if op == "truthy":
            return bool(have) is bool(value)
        if op == "in":
            return have in value
        number = float(have)
        if isinstance(have, bool) or math.isnan(number):
            return False
        limit = float(value)
        if op == "gt":
            return number > limit
        if op == "gte":
            return number >= limit
        if op == "lt":
            return number < limit
        if op == "lte":
            return number <= limit
    except (TypeError, ValueError):
        return False
    return False


@dataclass(frozen=True)
class PriorityRule:
    """Adds `points` to a task's priority when `attrs[field] <op> value` holds."""

    field: str
    op: str
    value: Any
    points: int

    def matches(self, attrs: Mapping[str, Any]) -> bool:
        return holds(self.field, self.op, self.value, attrs)


@dataclass(frozen=True)
class SkillRule:
    """Asks for `skill` at `min` proficiency when `attrs[field] <op> value` holds (e.g. the
    customer's country → a language)."""

    field: str
    op: str
    value: Any
    skill: str
    min: int = 1

    def matches(self, attrs: Mapping[str, Any]) -> bool:
        return holds(self.field, self.op, self.value, attrs)


def _default_eligibility() -> dict[str, tuple[str, ...]]:
    return {"normal": TIERS, "SIC": ("PAM", "SAM"), "CSC": ("SAM",)}


def _default_levels() -> dict[str, dict[str, float]]:
    return {
        "normal": {"TRN": 0.0, "CCS": 0.0, "PAM": 60.0, "SAM": 120.0},
        "SIC": {"PAM": 0.0, "SAM": 0.0},
        "CSC": {"SAM": 0.0},
    }


def _default_capacity() -> dict[str, int]:
    return {"chat": 3, "sms": 3, "email": 5, "voice": 1}


def _default_wrapup() -> dict[str, float]:
    return {"chat": 30.0, "sms": 30.0, "email": 60.0, "voice": 60.0}


def _default_rules() -> tuple[PriorityRule, ...]:
    return (
        PriorityRule("top_up", "truthy", True, 2),
        PriorityRule("hot", "truthy", True, 1),
        PriorityRule("coins", "gte", 100, 1),
    )


@dataclass(frozen=True)
class Policy:
    """The routing policy. Build it with `router.settings`, which validates every key."""

    eligibility: Mapping[str, tuple[str, ...]] = field(default_factory=_default_eligibility)
    levels: Mapping[str, Mapping[str, float]] = field(default_factory=_default_levels)
    open_empty_levels: bool = True
    capacity: Mapping[str, int] = field(default_factory=_default_capacity)
    voice_blocks: tuple[str, ...] = ("chat",)
    reservation_timeout_s: float = 20.0
    wrapup_s: Mapping[str, float] = field(default_factory=_default_wrapup)
    presence_ttl_s: float = 60.0
    last_agent_s: float = 5.0
    priority_step_s: float = 30.0
    priority_rules: tuple[PriorityRule, ...] = field(default_factory=_default_rules)
    service_level_threshold_s: float = 20.0
    explain_decisions: int = 64  # routing decisions kept per task (the first, then the latest)
    explain_retention_s: float = 86_400.0  # how long a finished task's decisions are kept
    recording_retention_s: float = 172_800.0  # how long agent actions are kept for replay
    skills_hard: tuple[str, ...] = ()  # skills work requires at any wait (queues.skills)
    skills_widen_s: float = 60.0  # a preferred skill is asked for this long after arrival
    skills_widen_by: Mapping[str, float] = field(default_factory=dict)  # per skill
    skill_rules: tuple[SkillRule, ...] = ()  # skills work asks for by its profile and channel

    def allowed(self, group: str, tier: str) -> bool:
        """The hard filter: may an agent of `tier` ever hold work of client group `group`?"""
        return tier in self.eligibility.get(group, ())

    def priority_of(self, attrs: Mapping[str, Any]) -> int:
        """Sum of the points of every matching rule, clamped to ±PRIORITY_BOUND."""
        total = sum(rule.points for rule in self.priority_rules if rule.matches(attrs))
        return max(-PRIORITY_BOUND, min(PRIORITY_BOUND, total))

    def priority_why(self, attrs: Mapping[str, Any]) -> tuple[list[str], dict[str, Any]]:
        """Which rules set the priority (`"top_up truthy True +2"`), and the values of the
        fields the rules name (what replay needs to price the task under another policy)."""
        rules = [
            f"{r.field} {r.op} {r.value} {r.points:+d}"
            for r in self.priority_rules
            if r.matches(attrs)
        ]
        fields = {r.field: attrs[r.field] for r in self.priority_rules if r.field in attrs}
        return rules, {k: v for k, v in fields.items() if isinstance(v, bool | int | float | str)}

    def skills_of(self, attrs: Mapping[str, Any]) -> dict[str, int]:
        """The skills the matching skill rules ask for (the highest minimum per skill)."""
        out: dict[str, int] = {}
        for rule in self.skill_rules:
            if rule.matches(attrs) and rule.min > out.get(rule.skill, 0):
                out[rule.skill] = rule.min
        return out

    def capacity_for(self, override: Mapping[str, int] | None) -> dict[str, int]:
        """Per-channel capacity of one agent: the policy default, overridden per channel."""
        caps = {channel: int(self.capacity.get(channel, 0)) for channel in CHANNELS}
        for channel, value in (override or {}).items():
            if channel in caps:
                caps[channel] = max(0, int(value))
        return caps

    def to_wire(self) -> dict[str, Any]:
        """The compact form the Redis scripts receive (msgpack); times in milliseconds."""
        return {
            "elig": {g: list(t) for g, t in self.eligibility.items()},
            "lvl": {g: {t: int(s * 1000) for t, s in m.items()} for g, m in self.levels.items()},
            "empty": self.open_empty_levels,
            "blocks": list(self.voice_blocks),
            "res_ms": int(self.reservation_timeout_s * 1000),
            "wrap_ms": {c: int(s * 1000) for c, s in self.wrapup_s.items()},
            "ttl_ms": int(self.presence_ttl_s * 1000),
            "last_ms": int(self.last_agent_s * 1000),
            "step_ms": int(self.priority_step_s * 1000),
            "sl_ms": int(self.service_level_threshold_s * 1000),
            "why_n": int(self.explain_decisions),
            "why_ms": int(self.explain_retention_s * 1000),
            "rec_ms": int(self.recording_retention_s * 1000),
            "sk_hard": sorted(self.skills_hard),
            "sk_ms": int(self.skills_widen_s * 1000),
            "sk_by": {k: int(s * 1000) for k, s in self.skills_widen_by.items()},
            "tiers": list(TIERS),
            "channels": list(CHANNELS),
        }
