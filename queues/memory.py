"""The memory engine: one process, nothing to install. See `queues.base` for the contract.

It follows `docs/routing.md` step by step, as the Redis scripts do; every operation runs
without awaiting, so on one event loop each one is atomic. Queues are sorted lists keyed the
way the Redis sorted sets are scored, so both engines break ties the same way.

Three layers, one concept each: `queues.memory_state` (records, indexes, timers and their
reads), `queues.memory_steps` (the internal steps) and here the engine itself — the backend
hooks of `queues.base.RoutingEngine` and one `_op_*` method per operation. They are mixins of
one object rather than separate objects because the steps and operations touch the same
records at every line, as the Lua does; `queues.why_memory` reads the same attributes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from queues import skills
from queues.base import RoutingEngine
from queues.effects import RawEffect
from queues.errors import Conflict, Forbidden
from queues.memory_state import _Agent, _Task
from queues.memory_steps import MemorySteps
from queues.policy import CHANNELS, Policy
from queues.why_memory import why_view


class MemoryEngine(MemorySteps, RoutingEngine):
    """See `queues.base.RoutingEngine`; the algorithm is `docs/routing.md`."""

    def __init__(
        self, policy: Policy, *, clock: Callable[[], float] = time.time, domain: str = "default"
    ) -> None:
        super().__init__(policy, clock=clock, domain=domain)
        self._init_state()

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
            ob=str(args.get("ob") or ""),
        )
        t.reqs = skills.parse(t.sk)
        self._tasks[task_id] = t
        self._customers.setdefault(t.customer, set()).add(task_id)
        detail: dict[str, Any] = {"ch": t.channel, "grp": t.group, "prio": t.prio}
        if t.sk:
            detail["sk"] = t.sk
        if t.ob:
            detail["ob"] = t.ob
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
        if not t.answered and not t.ob:  # the queue counters are the inbound lines'
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
        if not t.answered and not t.ob:
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
            if allowed(group, self._agents[t.agent].tier):
                continue
            if t.state == "reserved":
                self._fx.append(["offer.revoked", t.res, t.id, t.agent, "reclassified"])
            else:
                self._fx.append(["assignment.revoked", t.id, t.agent, "reclassified"])
            if t.state == "wrapup":
                self._finish(t, freed)  # answered already: its wrap-up ends here
                continue
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
