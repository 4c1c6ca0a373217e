"""The routing policy from checked settings: `[[priority.rules]]`, levels, and the `Policy`.

What `router/settings.py` has read and `router/settings_keys.py` has checked key by key becomes
a `queues.policy.Policy` here, with the checks that span keys: a priority rule's fields
together, and each group's levels against the tiers its eligibility allows. Errors are
`SettingsError`s naming the key as the user wrote it.

Imports `queues.policy` (the policy it builds) and `router.settings_keys`; nothing else of
`router`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from queues.policy import CHANNELS, GROUPS, OPERATORS, PRIORITY_BOUND, TIERS, Policy, PriorityRule
from router.settings_keys import SettingsError, Value, env_name, listing, show

_RULE_KEYS = ("field", "op", "value", "points")


def priority_rules(table: Any) -> tuple[PriorityRule, ...]:
    """The `[priority]` table of one file: its `rules`, each checked (see `_rule`)."""
    if not isinstance(table, dict):
        raise SettingsError(f"[priority]: must be a table, got {show(table)}")
    for key in table:
        if key != "rules":
            raise SettingsError(f"[priority] {key}: unknown key (known: rules)")
    rows = table.get("rules", [])
    if not isinstance(rows, list):
        raise SettingsError(f"[priority] rules: must be a list of rules, got {show(rows)}")
    return tuple(_rule(row, f"[[priority.rules]] #{n}") for n, row in enumerate(rows, 1))


def _rule(row: Any, label: str) -> PriorityRule:
    """One `[[priority.rules]]` row; its value must suit its operator, its points the bound."""
    if not isinstance(row, dict):
        raise SettingsError(f"{label}: must be a table of {listing(_RULE_KEYS)}, got {show(row)}")
    for key in row:
        if key not in _RULE_KEYS:
            raise SettingsError(f"{label} {key}: unknown key (known: {listing(_RULE_KEYS)})")
    for key in _RULE_KEYS:
        if key not in row:
            raise SettingsError(f"{label} {key}: missing")
    name, op, value, points = (row[k] for k in _RULE_KEYS)
    if not isinstance(name, str) or not name:
        raise SettingsError(f"{label} field: must be a non-empty string, got {show(name)}")
    if op not in OPERATORS:
        raise SettingsError(f"{label} op: must be one of {listing(OPERATORS)}, got {show(op)}")
    scalar = (str, int, float, bool)
    if op in ("gt", "gte", "lt", "lte"):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        need = "a number"
    elif op == "in":
        ok = isinstance(value, list) and all(isinstance(x, scalar) for x in value)
        need = "a list of strings, numbers or booleans"
    elif op == "truthy":
        ok, need = isinstance(value, bool), "true or false"
    else:
        ok, need = isinstance(value, scalar), "a string, number or boolean"
    if not ok or (isinstance(value, float) and not math.isfinite(value)):
        raise SettingsError(f"{label} value: must be {need} for op {op!r}, got {show(value)}")
    bound = PRIORITY_BOUND
    if not isinstance(points, int) or isinstance(points, bool) or abs(points) > bound:
        raise SettingsError(
            f"{label} points: must be an integer from -{bound} to {bound}, got {show(points)}"
        )
    return PriorityRule(name, op, tuple(value) if isinstance(value, list) else value, points)


def _levels(values: Mapping[tuple[str, str], Value]) -> dict[str, dict[str, float]]:
    """The bullseye per group, checked against the hard filter it lives inside."""
    levels: dict[str, dict[str, float]] = {}
    for group in GROUPS:
        allowed = values[("eligibility", group)]
        levels[group] = {}
        for tier in TIERS:
            level = values.get((f"levels.{group}", tier))
            if tier in allowed.value and level is None:
                raise SettingsError(
                    f"{allowed.label}: tier {tier} has no level; set [levels.{group}] {tier}"
                    f" (or {env_name(f'levels.{group}', tier)})"
                )
            if level is None:
                continue
            if tier in allowed.value:
                levels[group][tier] = level.value
            elif level.origin != "default":  # a shipped level of a tier the user excluded: drop
                raise SettingsError(
                    f"{level.label}: tier {tier} is not eligible for {group} "
                    f"({allowed.label} allows {listing(allowed.value)})"
                )
    return levels


def build_policy(
    values: Mapping[tuple[str, str], Value], rules: tuple[PriorityRule, ...]
) -> Policy:
    """The `Policy` of checked `values` (every key present) and the winning priority rules."""

    def get(section: str, key: str) -> Any:
        return values[(section, key)].value

    def per_channel(section: str) -> dict[str, Any]:
        return {c: get(section, c) for c in CHANNELS}

    return Policy(
        eligibility={g: tuple(t for t in TIERS if t in get("eligibility", g)) for g in GROUPS},
        levels=_levels(values),
        open_empty_levels=get("routing", "open_empty_levels"),
        capacity=per_channel("capacity"),
        voice_blocks=tuple(c for c in CHANNELS if c in get("capacity", "voice_blocks")),
        reservation_timeout_s=get("reservation", "timeout_s"),
        wrapup_s=per_channel("wrapup"),
        presence_ttl_s=get("presence", "ttl_s"),
        last_agent_s=get("routing", "last_agent_s"),
        priority_step_s=get("routing", "priority_step_s"),
        priority_rules=rules,
        service_level_threshold_s=get("service_level", "threshold_s"),
        explain_decisions=get("explain", "decisions"),
        explain_retention_s=get("explain", "retention_s"),
        recording_retention_s=get("recording", "retention_s"),
    )
