"""The memory engine's state: its records, indexes and timers, and what is read off them.

`MemoryState` is the first of the three layers of `queues.memory.MemoryEngine`: the records
(`_Agent`, `_Task`, `_Reservation`), the indexes they are filed in (partitions, heads, ready
sets, holds — sorted lists keyed the way the Redis sorted sets are scored) and the due wheels;
then what is derived from them (free capacity, level openings, ranks, the trace notes), the
lookups that refuse an operation before it changes anything, and the views. Nothing here
moves a record; `queues.memory_steps` does. May import `agent_state` and, of `queues`, the
values, errors, policy and trace (`effects`, `errors`, `policy`, `trace`); never an engine.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sortedcontainers import SortedList

from agent_state.base import free_capacity
from queues import skills
from queues.effects import RawEffect
from queues.errors import Conflict, Expired, Forbidden, NotFound
from queues.policy import CHANNELS, TIERS, Policy
from queues.trace import Retained, Row, add_row

V = TypeVar("V")

STATS_KEYS = ("offered", "answered", "answered_sl", "answer_ms", "abandoned")
DUE_KINDS = ("alive", "res", "wrap", "pref", "level")


@dataclass
class _Agent:
    id: str
    tier: str
    cap: dict[str, int]
    idle: int
    chosen: str = "offline"
    shown: str = "offline"
    load: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CHANNELS, 0))
    wrapups: int = 0
    exp: int = 0
    tasks: set[str] = field(default_factory=set)
    ready_in: set[tuple[str, str]] = field(default_factory=set)
    ready_idle: int = 0
    skills: dict[str, int] = field(default_factory=dict)


@dataclass
class _Task:
    id: str
    customer: str
    channel: str
    group: str
    prio: int
    enq: int
    last: str
    pref_until: int
    state: str = "queued"
    agent: str = ""
    res: str = ""
    restrict: str = ""
    held_for: str = ""
    part: str = ""
    answered: bool = False
    excluded: set[str] = field(default_factory=set)
    trace: list[Row] = field(default_factory=list)
    sk: str = ""  # its skills' signature (queues.skills)
    reqs: skills.Reqs = ()  # the same, parsed
    ob: str = ""  # outbound (a campaign contact): the tiers that may work it, "CCS,PAM"


@dataclass
class _Reservation:
    id: str
    task: str
    agent: str
    deadline: int


class _Due:
    """A timer wheel ordered like a Redis sorted set: by (due, member)."""

    def __init__(self) -> None:
        self.order: SortedList = SortedList()
        self.at: dict[str, int] = {}

    def set(self, member: str, due: int) -> None:
        self.drop(member)
        self.at[member] = due
        self.order.add((due, member))

    def drop(self, member: str) -> None:
        due = self.at.pop(member, None)
        if due is not None:
            self.order.remove((due, member))

    def due(self, now: int, limit: int) -> list[str]:
        out: list[str] = []
        for when, member in self.order:
            if when > now or len(out) >= limit:
                break
            out.append(member)
        return out


class MemoryState:
    """The state of one memory engine and its reads; see the module's docstring. The engine
    (`queues.memory.MemoryEngine`) builds it with `_init_state` once its policy is set."""

    policy: Policy  # set by queues.base.RoutingEngine.__init__

    def _init_state(self) -> None:
        self._wire = self.policy.to_wire()
        self._agents: dict[str, _Agent] = {}
        self._tasks: dict[str, _Task] = {}
        self._res: dict[str, _Reservation] = {}
        self._res_seq = 0
        self._customers: dict[str, set[str]] = {}
        self._parts: dict[str, dict[str, SortedList]] = {c: {} for c in CHANNELS}
        # per channel, (rank of its first task, partition): walked in order by an agent
        # looking for work, as lib_match.lua walks heads:C (the partitions' number sets no cost)
        self._heads: dict[str, SortedList] = {c: SortedList() for c in CHANNELS}
        self._head_of: dict[tuple[str, str], int] = {}
        # outbound work (campaign contacts) in partitions and heads of its own, "G|TIERS|P":
        # an inbound search never walks them (docs/routing.md, "Outbound work")
        self._oparts: dict[str, SortedList] = {}
        self._oheads: SortedList = SortedList()
        self._ohead_of: dict[str, int] = {}
        self._waiting: dict[str, SortedList] = {c: SortedList() for c in CHANNELS}
        self._ready: dict[tuple[str, str], SortedList] = {
            (c, t): SortedList() for c in CHANNELS for t in TIERS
        }
        self._holds: dict[str, SortedList] = {}
        self._due = {kind: _Due() for kind in DUE_KINDS}
        self._logged_in: Counter[str] = Counter()
        self._opens: dict[tuple[str, str], int] = {}  # (group, tier) → level opening, cached
        self._stats = {c: dict.fromkeys(STATS_KEYS, 0) for c in CHANNELS}
        self._now = 0
        self._fx: list[RawEffect] = []
        self._kept = Retained()  # finished tasks' decisions and agent actions (queues.trace)

    # -- derived values ------------------------------------------------------------------------

    def _free(self, a: _Agent, channel: str) -> int:
        return free_capacity(a.cap, a.load, channel, self.policy.voice_blocks)

    def _routable(self, a: _Agent) -> bool:
        return a.chosen == "available" and a.exp > self._now

    def _may_dial(self, a: _Agent) -> bool:
        """May the agent be offered outbound work now: routable, no work at all (no load on
        any channel) and room for a call."""
        return self._routable(a) and not any(a.load.values()) and a.cap.get("voice", 0) > 0

    def _open_ms(self, group: str, tier: str) -> int:
        """When, after a task's arrival, `tier` may take it; cached until who is logged in
        changes (the only thing besides the policy it depends on)."""
        key = (group, tier)
        cached = self._opens.get(key)
        if cached is None:
            cached = self._opens[key] = self._compute_open_ms(group, tier)
        return cached

    def _compute_open_ms(self, group: str, tier: str) -> int:
        levels: Mapping[str, int] = self._wire["lvl"].get(group, {})
        mine = levels.get(tier, 0)
        if self.policy.open_empty_levels and not any(
            self._logged_in[other] > 0 for other, lvl in levels.items() if lvl < mine
        ):
            return 0
        return int(mine)

    def _eligible_tiers(self, t: _Task) -> list[str]:
        allowed = self.policy.allowed
        if t.restrict:
            return [t.restrict] if allowed(t.group, t.restrict) else []
        return [
            tier
            for tier in TIERS
            if allowed(t.group, tier) and t.enq + self._open_ms(t.group, tier) <= self._now
        ]

    def _rank(self, t: _Task) -> tuple[int, int, str]:
        return (t.enq - t.prio * int(self._wire["step_ms"]), t.enq, t.id)

    def _note(self, t: _Task, kind: str, agent: str = "", detail: Any = "") -> None:
        """One routing decision of `t` (queues.trace); lib_trace.lua's note() mirrors it."""
        add_row(t.trace, [self._now, kind, agent, detail], int(self._wire["why_n"]))

    def _act(self, kind: str, agent: str, detail: str = "") -> None:
        """One agent action for replay (queues.trace); lib_trace.lua's act() mirrors it."""
        self._kept.act([self._now, kind, agent, detail], int(self._wire["rec_ms"]))

    def _recorded_traces(self) -> dict[str, list[Row]]:
        out: dict[str, list[Row]] = {}
        for rows in self._kept.traces.values():
            out.update(rows)
        for t in self._tasks.values():
            out[f"{t.id}@{t.enq}"] = t.trace
        return out

    # -- lookups that refuse -------------------------------------------------------------------

    def _agent(self, agent_id: str) -> _Agent:
        return _known(self._agents, agent_id, "agent")

    def _logged_in_agent(self, agent_id: str) -> _Agent:
        a = self._agent(agent_id)
        if a.chosen == "offline":
            raise Conflict(f"agent {agent_id} is offline; log in first", "agent")
        return a

    def _task(self, task_id: str) -> _Task:
        return _known(self._tasks, task_id, "task")

    def _reservation(self, res_id: str, agent_id: str) -> _Reservation:
        res = _known(self._res, res_id, "reservation")
        if res.agent != agent_id:
            raise Forbidden(f"reservation {res_id} is not yours", "reservation")
        if self._now >= res.deadline:
            raise Expired(f"reservation {res_id} has expired", "reservation")
        return res

    def _held_task(self, task_id: str, agent_id: str, state: str) -> _Task:
        t = self._task(task_id)
        if t.agent != agent_id:
            raise Forbidden(f"task {task_id} is not held by you", "task")
        if t.state != state:
            raise Conflict(f"task {task_id} is {t.state}, not {state}", "task")
        return t

    # -- views ---------------------------------------------------------------------------------

    def _stats_row(self, channel: str) -> dict[str, Any]:
        waiting = self._waiting[channel]
        agents: dict[str, dict[str, int]] = {}
        for a in self._agents.values():
            if a.shown != "offline" and a.cap.get(channel, 0) > 0:
                by_state = agents.setdefault(a.tier, {})
                by_state[a.shown] = by_state.get(a.shown, 0) + 1
        return {
            "name": channel,
            "waiting": len(waiting),
            "longest_ms": self._now - waiting[0][0] if waiting else 0,
            **self._stats[channel],
            "agents": agents,
        }

    @staticmethod
    def _agent_view(a: _Agent) -> dict[str, Any]:
        return {
            "id": a.id,
            "tier": a.tier,
            "chosen": a.chosen,
            "state": a.shown,
            "cap": dict(a.cap),
            "load": dict(a.load),
            "wrapups": a.wrapups,
            "idle_ms": a.idle,
            "exp_ms": a.exp,
            "tasks": sorted(a.tasks),
            **({"skills": dict(sorted(a.skills.items()))} if a.skills else {}),
        }

    def _task_view(self, t: _Task) -> dict[str, Any]:
        res = self._res.get(t.res) if t.state == "reserved" else None
        until = {"res_until": res.deadline} if res is not None else {}  # ms, while reserved
        return {
            "id": t.id,
            "customer": t.customer,
            "channel": t.channel,
            "group": t.group,
            "prio": t.prio,
            "enq_ms": t.enq,
            "state": t.state,
            "agent": t.agent,
            "res": t.res,
            "restrict": t.restrict,
            "last": t.last,
            "held_for": t.held_for,
            "excluded": sorted(t.excluded),
            **({"skills": dict(t.reqs)} if t.reqs else {}),
            **({"outbound": t.ob.split(",")} if t.ob else {}),
            **until,
        }


def _known(table: Mapping[str, V], key: str, what: str) -> V:
    """The `what` (agent, task, reservation) of this id, or `NotFound`."""
    found = table.get(key)
    if found is None:
        raise NotFound(f"{what} {key} is not known", what)
    return found
