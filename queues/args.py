"""What a call of the routing engine may carry, checked before a backend sees it.

The bound on ids (`MAX_ID`: what the engine takes is what `router` accepts at the edge, and
`channels.base` repeats it), the form of a routing domain, one-of choices, and one item of work
(`Enqueue`) with the arguments it becomes: checked, its priority, skills and outbound tiers
decided by the policy. `queues.base.RoutingEngine` calls these in every public method.

May import `queues.errors`, `queues.policy` and `queues.skills`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from queues.errors import Invalid
from queues.policy import CHANNELS, GROUPS, TIERS, Policy
from queues.skills import check_skills, signature

MAX_ID = 200
DOMAIN_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")


def check_id(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_ID:
        raise Invalid(f"{field} must be a non-empty string of at most {MAX_ID} characters", field)
    return value


def check_choice(value: Any, choices: Sequence[str], field: str) -> str:
    if value not in choices:
        raise Invalid(f"{field} must be one of {', '.join(choices)}", field)
    return str(value)


@dataclass(frozen=True)
class Enqueue:
    """One task to put in line (`RoutingEngine.enqueue_many`); as `enqueue`'s arguments."""

    task: str
    customer: str
    channel: str
    group: str = "normal"
    attrs: Mapping[str, Any] | None = None
    last_agent: str | None = None
    skills: Mapping[str, int] | None = None  # name → minimum proficiency (queues.skills)
    outbound: Sequence[str] | None = None  # a campaign contact: the tiers that may work it


def enqueue_args(policy: Policy, item: Enqueue) -> dict[str, Any]:
    """The checked item as the backends' `enqueue` arguments (docs/routing.md)."""
    check_id(item.task, "task")
    check_id(item.customer, "customer")
    check_choice(item.channel, CHANNELS, "channel")
    check_choice(item.group, GROUPS, "group")
    if item.last_agent is not None:
        check_id(item.last_agent, "last_agent")
    rules, fields = policy.priority_why(item.attrs or {})
    outbound = _outbound(item)
    return {
        "task": item.task,
        "customer": item.customer,
        "channel": item.channel,
        "group": item.group,
        "prio": policy.priority_of(item.attrs or {}),
        "last": "" if outbound else item.last_agent or "",
        "sk": "" if outbound else signature(_skills_of(policy, item)),
        **({"ob": outbound} if outbound else {}),  # inbound calls carry nothing more
        "why": rules,  # recorded with the arrival (queues.trace): explain and replay
        "attrs": fields,
    }


def _skills_of(policy: Policy, item: Enqueue) -> dict[str, int]:
    """The work's own skills and those the policy's skill rules ask for by its attributes;
    the higher minimum wins where both name a skill."""
    asked = check_skills(item.skills)
    for name, level in policy.skills_of(item.attrs or {}).items():
        asked[name] = max(asked.get(name, 0), level)
    return check_skills(asked)


def _outbound(item: Enqueue) -> str:
    """An outbound task's tiers as the engines keep them ("CCS,PAM": TIERS order), or "".
    Outbound work is a call on channel voice; no last agent, no skills (docs/routing.md)."""
    if item.outbound is None:
        return ""
    tiers = [t for t in TIERS if t in set(item.outbound)]
    if not tiers or len(tiers) != len(set(item.outbound)) or item.channel != "voice":
        raise Invalid("outbound work is voice work for a non-empty list of tiers", "outbound")
    return ",".join(tiers)
