"""The memory engine: one process, nothing to install. See `queues.base` for the contract.

It follows `docs/routing.md` step by step, as the Redis scripts do; every operation runs
without awaiting, so on one event loop each one is atomic. Queues are sorted lists keyed the
way the Redis sorted sets are scored, so both engines break ties the same way.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sortedcontainers import SortedList

from agent_state.base import free_capacity, shown_state
from queues import skills
from queues.base import RoutingEngine
from queues.effects import RawEffect
from queues.errors import Conflict, Expired, Forbidden, NotFound
from queues.policy import CHANNELS, TIERS, Policy
from queues.trace import Retained, Row, add_row
from queues.why_memory import why_view

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
    reqs: list[tuple[str, int]] = field(default_factory=list)  # the same, parsed


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


class MemoryEngine(RoutingEngine):
    """See `queues.base.RoutingEngine`; the algorithm is `docs/routing.md`."""

    def __init__(
        self, policy: Policy, *, clock: Callable[[], float] = time.time, domain: str = "default"
    ) -> None:
        super().__init__(policy, clock=clock, domain=domain)
        self._wire = policy.to_wire()
        self._agents: dict[str, _Agent] = {}
        self._tasks: dict[str, _Task] = {}
        self._res: dict[str, _Reservation] = {}
        self._res_seq = 0
        self._customers: dict[str, set[str]] = {}
        self._parts: dict[str, dict[str, SortedList]] = {c: {} for c in CHANNELS}
        # per channel, (rank of its first task, partition): walked in order by an agent
        # looking for work, as lib_steps.lua walks heads:C (the partitions' number sets no cost)
        self._heads: dict[str, SortedList] = {c: SortedList() for c in CHANNELS}
        self._head_of: dict[tuple[str, str], int] = {}
        self._waiting: dict[str, SortedList] = {c: SortedList() for c in CHANNELS}
        self._ready: dict[tuple[str, str], SortedList] = {
            (c, t): SortedList() for c in CHANNELS for t in TIERS
        }
        self._holds: dict[str, SortedList] = {}
        self._due = {kind: _Due() for kind in DUE_KINDS}
        self._logged_in: Counter[str] = Counter()
        self._opens: dict[tuple[str, str], int] = {}  # (group, tier) → level opening, cached
        self._sigs: dict[str, list[tuple[str, int]]] = {}  # skills signature → requirements
        self._stats = {c: dict.fromkeys(STATS_KEYS, 0) for c in CHANNELS}
        self._now = 0
        self._fx: list[RawEffect] = []
        self._kept = Retained()  # finished tasks' decisions and agent actions (queues.trace)

    # -- backend hooks -----------------------------------------------------------------------

    async def _call(self, op: str, now_ms: int, args: Mapping[str, Any]) -> list[RawEffect]:
        self._now = now_ms
        self._fx = []
        getattr(self, f"_op_{op}")(args)
        fx, self._fx = self._fx, []
        return fx

    async def _read(self, op: str, now_ms: int, args: Mapping[str, Any]) -> Any:
        self._now = now_ms
        if op == "stats":
            return [self._stats_row(c) for c in CHANNELS]
        if op == "agent":
            agent = self._agents.get(args["agent"])
            return self._agent_view(agent) if agent else None
        if op == "task":
            task = self._tasks.get(args["task"])
            return self._task_view(task) if task else None
        if op == "agents":
            return [self._agent_view(a) for _, a in sorted(self._agents.items())]
        if op == "why":
            return why_view(self, args["conversation"], args["customer"])
        if op == "recording":
            return {"actions": list(self._kept.actions), "traces": self._recorded_traces()}
        if op == "dump":
            return {
                "tasks": {k: self._task_view(t) for k, t in sorted(self._tasks.items())},
                "agents": {k: self._agent_view(a) for k, a in sorted(self._agents.items())},
            }
        raise ValueError(f"unknown view {op!r}")

    def next_due_ms(self, skip: tuple[str, ...] = ()) -> int | None:
        """The earliest timer (level, reservation, wrap-up, …; not the kinds in `skip`), or
        None: when a simulation in virtual time (`replay`) ticks next."""
        heads = [d.order[0][0] for k, d in self._due.items() if d.order and k not in skip]
        return min(heads) if heads else None

    # -- derived values ------------------------------------------------------------------------

    def _free(self, a: _Agent, channel: str) -> int:
        return free_capacity(a.cap, a.load, channel, self.policy.voice_blocks)

    def _routable(self, a: _Agent) -> bool:
        return a.chosen == "available" and a.exp > self._now

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

    # -- internal steps ------------------------------------------------------------------------

    def _touch(self, a: _Agent) -> None:
        for key in a.ready_in:
            self._ready[key].remove((a.ready_idle, a.id))
        a.ready_in = set()
        if a.chosen == "available":
            a.ready_idle = a.idle
            for channel in CHANNELS:
                if self._free(a, channel) > 0:
                    key = (channel, a.tier)
                    self._ready[key].add((a.idle, a.id))
                    a.ready_in.add(key)
        shown = shown_state(a.chosen, sum(a.load.values()), a.wrapups)
        if shown != a.shown:
            a.shown = shown
            self._fx.append(["presence", a.id, shown])

    def _line(self, t: _Task) -> None:
        t.state, t.agent, t.res, t.held_for = "queued", "", "", ""
        t.part = f"{t.group}|{t.restrict}|{t.prio}" + (f"|{t.sk}" if t.sk else "")
        part = self._parts[t.channel].setdefault(t.part, SortedList())
        part.add((t.enq, t.id))
        self._refile_head(t.channel, t.part, part, t.prio)
        self._waiting[t.channel].add((t.enq, t.id))

    def _refile_head(self, channel: str, key: str, part: SortedList | None, prio: int) -> None:
        """Keep the partition's entry in `_heads` at the rank of its first task."""
        old = self._head_of.pop((channel, key), None)
        if old is not None:
            self._heads[channel].remove((old, key))
        if part:
            rank = part[0][0] - prio * int(self._wire["step_ms"])
            self._head_of[(channel, key)] = rank
            self._heads[channel].add((rank, key))

    def _unline(self, t: _Task) -> None:
        """Take a queued task out of its partition or hold, and off its level/pref timers."""
        if t.held_for:
            self._holds[t.held_for].discard((t.enq, t.id))
            t.held_for = ""
        elif t.part:
            part = self._parts[t.channel].get(t.part)
            if part is not None:
                part.discard((t.enq, t.id))
                self._refile_head(t.channel, t.part, part, t.prio)
                if not part:
                    del self._parts[t.channel][t.part]
        t.part = ""
        self._waiting[t.channel].discard((t.enq, t.id))
        self._due["level"].drop(t.id)
        self._due["pref"].drop(t.id)

    def _offer(self, t: _Task, a: _Agent, why: str) -> None:
        self._note(t, "offered", a.id, f"{why}|{a.tier}")
        self._unline(t)
        self._res_seq += 1
        res = _Reservation(f"R{self._res_seq}", t.id, a.id, self._now + self._wire["res_ms"])
        self._res[res.id] = res
        self._due["res"].set(res.id, res.deadline)
        t.state, t.agent, t.res = "reserved", a.id, res.id
        a.load[t.channel] += 1
        a.tasks.add(t.id)
        a.idle = self._now
        self._stats[t.channel]["offered"] += 1
        self._fx.append(["offer", res.id, t.id, a.id, t.channel, res.deadline])
        self._touch(a)

    def _free_holder(self, t: _Task) -> _Agent:
        a = self._agents[t.agent]
        a.load[t.channel] -= 1
        if t.state == "wrapup":
            a.wrapups -= 1
        a.tasks.discard(t.id)
        if t.res:
            self._due["res"].drop(t.res)
            del self._res[t.res]
        t.agent, t.res = "", ""
        self._touch(a)
        return a

    def _hold(self, t: _Task, agent: _Agent, note: bool = True) -> None:
        if note:
            why = "busy" if self._routable(agent) else "away"
            self._note(t, "held", agent.id, f"{why}|{t.pref_until}")
        self._unline(t)
        t.held_for = agent.id
        self._holds.setdefault(agent.id, SortedList()).add((t.enq, t.id))
        self._waiting[t.channel].add((t.enq, t.id))
        self._due["pref"].set(t.id, t.pref_until)

    def _match_task(self, t: _Task) -> None:
        if t.last and self._now < t.pref_until and not t.restrict:
            pref = self._agents.get(t.last)
            if (
                pref is not None
                and pref.chosen != "offline"
                and self.policy.allowed(t.group, pref.tier)
                and pref.id not in t.excluded
                and skills.hard_ok(self._wire, pref.skills, t.reqs)
            ):
                if self._routable(pref) and self._free(pref, t.channel) > 0:
                    self._offer(t, pref, "last_agent")
                else:
                    self._hold(t, pref)
                return
            t.last = ""
        best: tuple[int, str] | None = None
        for tier in self._eligible_tiers(t):
            for idle, agent_id in self._ready[(t.channel, tier)]:
                if best is not None and (idle, agent_id) >= best:
                    break
                candidate = self._agents[agent_id]
                if (
                    agent_id not in t.excluded
                    and self._routable(candidate)
                    and self._fits(candidate, t)
                ):
                    best = (idle, agent_id)
                    break
        if best is not None:
            self._offer(t, self._agents[best[1]], "longest_idle")
            return
        self._schedule_level(t)

    def _sig(self, sig: str) -> list[tuple[str, int]]:
        """A partition's skills, parsed once."""
        reqs = self._sigs.get(sig)
        if reqs is None:
            reqs = self._sigs[sig] = skills.parse(sig)
        return reqs

    def _fits(self, a: _Agent, t: _Task) -> bool:
        """Do the agent's skills let it take `t` now (queues.skills)?"""
        if not t.reqs:
            return True
        cut = skills.cutoff(self._wire, a.skills, t.reqs, self._now)
        return cut is not None and t.enq <= cut

    def _schedule_level(self, t: _Task) -> None:
        moments = (
            []
            if t.restrict
            else [
                t.enq + lvl
                for tier, lvl in self._wire["lvl"].get(t.group, {}).items()
                if self.policy.allowed(t.group, tier)
            ]
        )
        moments += skills.widen_moments(self._wire, t.reqs, t.enq)
        upcoming = [at for at in moments if at > self._now]
        if upcoming:
            self._due["level"].set(t.id, min(upcoming))
        else:
            self._due["level"].drop(t.id)

    def _best_task_for(self, a: _Agent) -> tuple[_Task, str] | None:
        for _enq, task_id in self._holds.get(a.id, ()):
            held = self._tasks[task_id]
            if (
                self._free(a, held.channel) > 0
                and self.policy.allowed(held.group, a.tier)
                and skills.hard_ok(self._wire, a.skills, held.reqs)
            ):
                return held, "last_agent"
        best: tuple[int, int, str] | None = None
        for channel in CHANNELS:
            if self._free(a, channel) <= 0:
                continue
            for head_rank, part_key in self._heads[channel]:
                if best is not None and head_rank > best[0]:
                    break  # every later partition's first task ranks after the best
                part = self._parts[channel][part_key]
                group, restrict, _prio, *sig = part_key.split("|", 3)
                if restrict:
                    if restrict != a.tier or not self.policy.allowed(group, restrict):
                        continue
                    cutoff = self._now
                elif self.policy.allowed(group, a.tier):
                    cutoff = self._now - self._open_ms(group, a.tier)
                else:
                    continue
                if sig:
                    skill_cut = skills.cutoff(self._wire, a.skills, self._sig(sig[0]), self._now)
                    if skill_cut is None:
                        continue
                    cutoff = min(cutoff, skill_cut)
                for enq, task_id in part:
                    if enq > cutoff:
                        break
                    candidate = self._tasks[task_id]
                    if a.id not in candidate.excluded:
                        rank = self._rank(candidate)
                        if best is None or rank < best:
                            best = rank
                        break
        return (self._tasks[best[2]], "next_in_line") if best else None

    def _match_agent(self, a: _Agent) -> None:
        while self._routable(a):
            found = self._best_task_for(a)
            if found is None:
                return
            self._offer(found[0], a, found[1])

    def _release_holds(self, a: _Agent) -> None:
        for _enq, task_id in list(self._holds.get(a.id, ())):
            t = self._tasks[task_id]
            self._note(t, "requeued", a.id, "last_agent_left")
            self._unline(t)
            t.last = ""
            self._line(t)
            self._match_task(t)

    def _go_offline(self, a: _Agent, reason: str) -> None:
        if a.chosen == "offline":
            return
        a.chosen = "offline"
        self._logged_in[a.tier] -= 1
        self._opens.clear()
        a.exp = 0
        self._due["alive"].drop(a.id)
        self._touch(a)
        for task_id in sorted(a.tasks):
            t = self._tasks[task_id]
            if t.state != "reserved":
                continue
            self._fx.append(["offer.revoked", t.res, t.id, a.id, reason])
            self._note(t, "requeued", a.id, reason)
            self._free_holder(t)
            self._line(t)
            self._match_task(t)
        self._release_holds(a)
        if self._logged_in[a.tier] == 0 and self.policy.open_empty_levels:
            for other in sorted(self._agents.values(), key=lambda x: (x.idle, x.id)):
                if self._routable(other):
                    self._match_agent(other)

    def _finish(self, t: _Task) -> None:
        self._note(t, "ended", t.agent, "completed")
        a = self._free_holder(t)
        self._delete(t)
        self._fx.append(["ended", t.id, a.id, "completed"])
        self._match_agent(a)

    def _delete(self, t: _Task) -> None:
        for kind in ("wrap", "pref", "level"):
            self._due[kind].drop(t.id)
        del self._tasks[t.id]
        self._kept.keep(t.id, t.enq, t.trace, self._now, int(self._wire["why_ms"]))
        owned = self._customers[t.customer]
        owned.discard(t.id)
        if not owned:
            del self._customers[t.customer]

    def _requeue(self, t: _Task) -> None:
        self._line(t)
        self._match_task(t)

    # -- lookups that refuse -------------------------------------------------------------------

    def _agent(self, agent_id: str) -> _Agent:
        a = self._agents.get(agent_id)
        if a is None:
            raise NotFound(f"agent {agent_id} is not known", "agent")
        return a

    def _logged_in_agent(self, agent_id: str) -> _Agent:
        a = self._agent(agent_id)
        if a.chosen == "offline":
            raise Conflict(f"agent {agent_id} is offline; log in first", "agent")
        return a

    def _task(self, task_id: str) -> _Task:
        t = self._tasks.get(task_id)
        if t is None:
            raise NotFound(f"task {task_id} is not known", "task")
        return t

    def _reservation(self, res_id: str, agent_id: str) -> _Reservation:
        res = self._res.get(res_id)
        if res is None:
            raise NotFound(f"reservation {res_id} is not known", "reservation")
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

    # -- operations ----------------------------------------------------------------------------

    def _op_login(self, args: Mapping[str, Any]) -> None:
        agent_id, tier = args["agent"], args["tier"]
        a = self._agents.get(agent_id)
        if (
            a is not None
            and a.tier != tier
            and any(self._tasks[t].state in ("reserved", "assigned") for t in a.tasks)
        ):
            raise Conflict(f"agent {agent_id} holds work; its tier cannot change now", "tier")
        if a is None:
            a = self._agents[agent_id] = _Agent(agent_id, tier, dict(args["cap"]), self._now)
        if a.chosen != "offline" and a.tier != tier:
            self._logged_in[a.tier] -= 1
            self._logged_in[tier] += 1
            self._opens.clear()
        a.tier = tier
        a.cap = dict(args["cap"])
        a.skills = dict(args.get("sk") or {})
        if a.chosen == "offline":
            a.chosen = "away"
            self._logged_in[tier] += 1
            self._opens.clear()
        self._keep_alive(a)
        self._touch(a)
        self._act("login", a.id, f"{tier}|" + ",".join(f"{c}={a.cap.get(c, 0)}" for c in CHANNELS))

    def _keep_alive(self, a: _Agent) -> None:
        a.exp = self._now + int(self._wire["ttl_ms"])
        self._due["alive"].set(a.id, a.exp)

    def _op_presence(self, args: Mapping[str, Any]) -> None:
        a = self._logged_in_agent(args["agent"])
        state = args["state"]
        self._keep_alive(a)
        if state == "available" and a.chosen != "available":
            a.idle = self._now
        a.chosen = state
        self._touch(a)
        self._act("presence", a.id, state)
        if state == "available":
            self._match_agent(a)

    def _op_heartbeat(self, args: Mapping[str, Any]) -> None:
        self._keep_alive(self._logged_in_agent(args["agent"]))

    def _op_logout(self, args: Mapping[str, Any]) -> None:
        a = self._agent(args["agent"])
        if a.chosen != "offline":
            self._act("logout", a.id)
        self._go_offline(a, "withdrawn")

    def _op_enqueue(self, args: Mapping[str, Any]) -> None:
        task_id = args["task"]
        if task_id in self._tasks:
            raise Conflict(f"task {task_id} already exists", "task")
        last = args["last"] if self._wire["last_ms"] > 0 else ""
        t = _Task(
            id=task_id,
            customer=args["customer"],
            channel=args["channel"],
            group=args["group"],
            prio=int(args["prio"]),
            enq=self._now,
            last=last,
            pref_until=self._now + int(self._wire["last_ms"]) if last else 0,
            sk=str(args.get("sk") or ""),
        )
        t.reqs = self._sig(t.sk)
        self._tasks[task_id] = t
        self._customers.setdefault(t.customer, set()).add(task_id)
        detail: dict[str, Any] = {"ch": t.channel, "grp": t.group, "prio": t.prio}
        if t.sk:
            detail["sk"] = t.sk
        detail.update(rules=list(args.get("why") or []), attrs=dict(args.get("attrs") or {}))
        self._note(t, "enqueued", last, detail)
        self._requeue(t)

    def _op_accept(self, args: Mapping[str, Any]) -> None:
        res = self._reservation(args["res"], args["agent"])
        t = self._tasks[res.task]
        del self._res[res.id]
        self._due["res"].drop(res.id)
        t.state, t.res = "assigned", ""
        self._note(t, "assigned", res.agent)
        if not t.answered:
            t.answered = True
            stats = self._stats[t.channel]
            stats["answered"] += 1
            stats["answer_ms"] += self._now - t.enq
            if self._now - t.enq <= self._wire["sl_ms"]:
                stats["answered_sl"] += 1
        self._fx.append(["assigned", t.id, res.agent, t.channel])
        self._touch(self._agents[res.agent])

    def _op_reject(self, args: Mapping[str, Any]) -> None:
        res = self._reservation(args["res"], args["agent"])
        t = self._tasks[res.task]
        self._note(t, "rejected", res.agent)
        t.excluded.add(res.agent)
        a = self._free_holder(t)
        self._requeue(t)
        self._match_agent(a)

    def _op_complete(self, args: Mapping[str, Any]) -> None:
        t = self._held_task(args["task"], args["agent"], "assigned")
        self._note(t, "completed", t.agent)
        wrap = int(self._wire["wrap_ms"].get(t.channel, 0))
        if wrap <= 0:
            self._finish(t)
            return
        a = self._agents[t.agent]
        t.state = "wrapup"
        a.wrapups += 1
        self._due["wrap"].set(t.id, self._now + wrap)
        self._touch(a)

    def _op_wrapup_done(self, args: Mapping[str, Any]) -> None:
        self._finish(self._held_task(args["task"], args["agent"], "wrapup"))

    def _op_withdraw(self, args: Mapping[str, Any]) -> None:
        t = self._task(args["task"])
        if t.state in ("assigned", "wrapup"):
            raise Conflict(f"task {t.id} was answered; complete it instead", "task")
        holder: _Agent | None = None
        self._note(t, "ended", t.agent, "abandoned")
        if t.state == "reserved":
            self._fx.append(["offer.revoked", t.res, t.id, t.agent, "withdrawn"])
            holder = self._free_holder(t)
        else:
            self._unline(t)
        if not t.answered:
            self._stats[t.channel]["abandoned"] += 1
        self._delete(t)
        self._fx.append(["ended", t.id, holder.id if holder else "", "abandoned"])
        if holder is not None:
            self._match_agent(holder)

    def _op_transfer(self, args: Mapping[str, Any]) -> None:
        t = self._held_task(args["task"], args["agent"], "assigned")
        target: _Agent | None = None
        if args["to_agent"]:
            target = self._agent(args["to_agent"])
            if target.id == t.agent:
                raise Conflict("a task cannot be transferred to its own holder", "to_agent")
            if not self.policy.allowed(t.group, target.tier):
                raise Forbidden(f"tier {target.tier} may not take {t.group} work", "to_agent")
            if not skills.hard_ok(self._wire, target.skills, t.reqs):
                raise Forbidden(f"agent {target.id} lacks a skill {t.id} requires", "to_agent")
            if not self._routable(target) or self._free(target, t.channel) <= 0:
                raise Conflict(f"agent {target.id} cannot take {t.channel} work now", "to_agent")
        elif not self.policy.allowed(t.group, args["to_tier"]):
            raise Forbidden(f"tier {args['to_tier']} may not take {t.group} work", "to_tier")
        self._fx.append(["assignment.revoked", t.id, t.agent, "transferred"])
        to = f"agent:{target.id}" if target is not None else f"tier:{args['to_tier']}"
        self._note(t, "transferred", t.agent, to)
        source = self._free_holder(t)
        t.last = ""
        if target is not None:
            t.restrict = ""
            t.excluded.discard(target.id)
            self._offer(t, target, "transfer")
        else:
            t.restrict = args["to_tier"]
            t.excluded.add(source.id)
            self._requeue(t)
        self._match_agent(source)

    def _op_release(self, args: Mapping[str, Any]) -> None:
        t = self._held_task(args["task"], args["agent"], "assigned")
        self._fx.append(["assignment.revoked", t.id, t.agent, "released"])
        self._note(t, "requeued", t.agent, "released")
        holder = self._free_holder(t)
        self._requeue(t)
        self._match_agent(holder)

    def _op_reclassify(self, args: Mapping[str, Any]) -> None:
        group = args["group"]
        allowed = self.policy.allowed
        freed: list[_Agent] = []
        for task_id in sorted(self._customers.get(args["customer"], ())):
            t = self._tasks[task_id]
            if t.group != group:
                self._note(t, "reclassified", "", f"{t.group}>{group}")
            if t.state == "queued":
                held = self._agents[t.held_for] if t.held_for else None
                self._unline(t)
                t.group = group
                if t.restrict and not allowed(group, t.restrict):
                    t.restrict = ""
                if held is not None and allowed(group, held.tier):
                    self._hold(t, held, note=False)
                    continue
                if held is not None:
                    self._note(t, "requeued", held.id, "reclassified")
                t.last = "" if held is not None else t.last
                self._requeue(t)
                continue
            t.group = group
            if t.restrict and not allowed(group, t.restrict):
                t.restrict = ""
            if t.state == "wrapup" or allowed(group, self._agents[t.agent].tier):
                continue
            if t.state == "reserved":
                self._fx.append(["offer.revoked", t.res, t.id, t.agent, "reclassified"])
            else:
                self._fx.append(["assignment.revoked", t.id, t.agent, "reclassified"])
            self._note(t, "requeued", t.agent, "reclassified")
            freed.append(self._free_holder(t))
            self._requeue(t)
        for a in freed:
            self._match_agent(a)

    def _op_tick(self, args: Mapping[str, Any]) -> None:
        limit = int(args["limit"])
        for agent_id in self._due["alive"].due(self._now, limit):
            self._act("expired", agent_id)
            self._go_offline(self._agents[agent_id], "withdrawn")
        for res_id in self._due["res"].due(self._now, limit):
            if res_id not in self._res:
                continue
            res = self._res[res_id]
            t, a = self._tasks[res.task], self._agents[res.agent]
            self._fx.append(["offer.revoked", res.id, t.id, a.id, "timeout"])
            self._note(t, "timed_out", a.id)
            t.excluded.add(a.id)
            a.chosen = "away"
            self._free_holder(t)
            self._requeue(t)
        for task_id in self._due["wrap"].due(self._now, limit):
            if task_id in self._tasks:
                self._finish(self._tasks[task_id])
        for task_id in self._due["pref"].due(self._now, limit):
            held = self._tasks.get(task_id)
            if held is not None and held.held_for:
                self._note(held, "requeued", held.held_for, "preference_ended")
                self._unline(held)
                held.last = ""
                self._requeue(held)
        for task_id in self._due["level"].due(self._now, limit):
            self._due["level"].drop(task_id)
            lined = self._tasks.get(task_id)
            if lined is not None and lined.state == "queued" and not lined.held_for:
                self._match_task(lined)

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
            **until,
        }
