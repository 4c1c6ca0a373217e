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

from queues.policy import (
    CHANNELS,
    GROUPS,
    OPERATORS,
    PRIORITY_BOUND,
    TIERS,
    Policy,
    PriorityRule,
    SkillRule,
)
from queues.skills import PROFICIENCY, SKILL_RE
from router.settings_keys import SettingsError, Value, env_name, listing, show

_RULE_KEYS = ("field", "op", "value", "points")
_SKILL_RULE_KEYS = ("field", "op", "value", "skill", "min")


def rule_rows(table: Any, section: str, most: int | None = None) -> list[Any]:
    """The rows of a `[section]` table that holds only `rules` (`[[section.rules]]`), each
    still to be checked by the caller; at most `most` of them."""
    if not isinstance(table, dict):
        raise SettingsError(f"[{section}]: must be a table, got {show(table)}")
    for key in table:
        if key != "rules":
            raise SettingsError(f"[{section}] {key}: unknown key (known: rules)")
    rows = table.get("rules", [])
    if not isinstance(rows, list):
        raise SettingsError(f"[{section}] rules: must be a list of rules, got {show(rows)}")
    if most is not None and len(rows) > most:
        raise SettingsError(f"[{section}] rules: at most {most} rules, got {len(rows)}")
    return rows


def priority_rules(table: Any) -> tuple[PriorityRule, ...]:
    """The `[priority]` table of one file: its `rules`, each checked (see `_rule`)."""
    rows = rule_rows(table, "priority")
    return tuple(_rule(row, f"[[priority.rules]] #{n}") for n, row in enumerate(rows, 1))


def skill_tables(table: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split `[skills]` into its plain keys (checked by the schema) and the tables read from
    files only: `[skills.widen_by]` (skill → seconds) and `[[skills.rules]]`."""
    plain = {k: v for k, v in table.items() if k not in ("widen_by", "rules")}
    extras: dict[str, Any] = {}
    if "widen_by" in table:
        extras["skills.widen_by"] = _widen_by(table["widen_by"])
    if "rules" in table:
        rows = table["rules"]
        if not isinstance(rows, list):
            raise SettingsError(f"[skills] rules: must be a list of rules, got {show(rows)}")
        extras["skills.rules"] = tuple(
            _skill_rule(row, f"[[skills.rules]] #{n}") for n, row in enumerate(rows, 1)
        )
    return plain, extras


def _skill_name(value: Any, label: str) -> str:
    if not isinstance(value, str) or not SKILL_RE.fullmatch(value):
        raise SettingsError(
            f"{label}: must be a skill name (1-64 letters, digits, _ . : -), got {show(value)}"
        )
    return value


def _widen_by(table: Any) -> dict[str, float]:
    if not isinstance(table, dict):
        raise SettingsError(
            f"[skills.widen_by]: must be a table skill = seconds, got {show(table)}"
        )
    out: dict[str, float] = {}
    for name, seconds in table.items():
        label = f"[skills.widen_by] {name}"
        _skill_name(name, label)
        ok = isinstance(seconds, int | float) and not isinstance(seconds, bool)
        if not ok or not math.isfinite(seconds) or seconds < 0:
            raise SettingsError(f"{label}: must be a number of seconds >= 0, got {show(seconds)}")
        out[name] = float(seconds)
    return out


def _skill_rule(row: Any, label: str) -> SkillRule:
    """One `[[skills.rules]]` row: a condition as in `[[priority.rules]]`, the skill it asks
    for and its minimum (default 1)."""
    row = table_row(row, label, _SKILL_RULE_KEYS, required=("field", "op", "value", "skill"))
    name, op, value = condition(row, label)
    skill = _skill_name(row["skill"], f"{label} skill")
    level = row.get("min", 1)
    if isinstance(level, bool) or not isinstance(level, int) or level not in PROFICIENCY:
        raise SettingsError(f"{label} min: must be an integer from 1 to 5, got {show(level)}")
    return SkillRule(name, op, value, skill, level)


def _rule(row: Any, label: str) -> PriorityRule:
    """One `[[priority.rules]]` row; its value must suit its operator, its points the bound."""
    row = table_row(row, label, _RULE_KEYS, required=_RULE_KEYS)
    name, op, value = condition(row, label)
    points = row["points"]
    bound = PRIORITY_BOUND
    if not isinstance(points, int) or isinstance(points, bool) or abs(points) > bound:
        raise SettingsError(
            f"{label} points: must be an integer from -{bound} to {bound}, got {show(points)}"
        )
    return PriorityRule(name, op, value, points)


def table_row(
    row: Any, label: str, keys: tuple[str, ...], required: tuple[str, ...] = ()
) -> dict[str, Any]:
    """One row of a rules table: a table of no other `keys`, holding every `required` one;
    priority, skill and guidance rules share it."""
    if not isinstance(row, dict):
        raise SettingsError(f"{label}: must be a table of {listing(keys)}, got {show(row)}")
    for key in row:
        if key not in keys:
            raise SettingsError(f"{label} {key}: unknown key (known: {listing(keys)})")
    for key in required:
        if key not in row:
            raise SettingsError(f"{label} {key}: missing")
    return row


def condition(row: dict[str, Any], label: str) -> tuple[str, str, Any]:
    """A rule's (field, op, value), its value suited to its operator (lists become tuples);
    priority, skill and guidance rules share it."""
    name, op, value = row["field"], row["op"], row["value"]
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
    return name, op, tuple(value) if isinstance(value, list) else value


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


def build_policy(values: Mapping[tuple[str, str], Value], tables: Mapping[str, Any]) -> Policy:
    """The `Policy` of checked `values` (every key present) and the winning file-only tables
    (`priority.rules`, `skills.widen_by`, `skills.rules`)."""

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
        priority_rules=tables.get("priority.rules", ()),
        service_level_threshold_s=get("service_level", "threshold_s"),
        explain_decisions=get("explain", "decisions"),
        explain_retention_s=get("explain", "retention_s"),
        recording_retention_s=get("recording", "retention_s"),
        skills_hard=tuple(get("skills", "hard")),
        skills_widen_s=get("skills", "widen_s"),
        skills_widen_by=tables.get("skills.widen_by", {}),
        skill_rules=tables.get("skills.rules", ()),
    )
