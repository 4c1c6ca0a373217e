"""The engine's views, typed: what `agent_view`, `agents`, `task_view` and `dump` return.

Both engines build them (`queues/memory_state.py`, `queues/lua/lib_views.lua`; the Redis
engine's `_read` gives empty maps their shape) and `docs/routing.md` ("Views") lists the keys.
They stay plain dicts at run time — JSON-ready for the ops views — and are typed here so that
every caller's key is checked by mypy.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict


class AgentView(TypedDict):
    """One agent: tier, the state it chose and the one it is shown, capacity and load per
    channel, wrap-ups, idle and presence expiry (ms), the tasks it holds."""

    id: str
    tier: str
    chosen: str
    state: str
    cap: dict[str, int]
    load: dict[str, int]
    wrapups: int
    idle_ms: int
    exp_ms: int
    tasks: list[str]
    skills: NotRequired[dict[str, int]]  # only when it has any


class TaskView(TypedDict):
    """One task: its customer, channel, group and priority, arrival, state and holder."""

    id: str
    customer: str
    channel: str
    group: str
    prio: int
    enq_ms: int
    state: str
    agent: str  # "" for none
    res: str
    restrict: str
    last: str
    held_for: str
    excluded: list[str]
    res_until: NotRequired[int]  # ms, while reserved
    skills: NotRequired[dict[str, int]]  # only when it asks for any
    outbound: NotRequired[list[str]]  # outbound work only: the tiers that may work it


class Dump(TypedDict):
    """Every task and agent, by id."""

    tasks: dict[str, TaskView]
    agents: dict[str, AgentView]
