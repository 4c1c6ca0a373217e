"""The memory engine's internal steps: how a task or an agent changes its place.

The steps of `docs/routing.md` (touch, line/unline with the partition heads, offer, hold, match
a task, match an agent, go offline, finish) that `queues.memory.MemoryEngine`'s operations are
made of; `queues/lua/lib_steps.lua` is the same on Redis. A layer over `queues.memory_state`
(the state they change), so that the operations read as the sequence of steps they are. May
import `queues.memory_state` and what it may, and `queues.skills`; never an engine.
"""

from __future__ import annotations

from sortedcontainers import SortedList

from agent_state.base import shown_state
from queues import skills
from queues.memory_state import MemoryState, _Agent, _Reservation, _Task
from queues.policy import CHANNELS


class MemorySteps(MemoryState):
    """The steps over `MemoryState`; `queues.memory.MemoryEngine` runs them per operation."""

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
        if t.ob:
            self._line_outbound(t)
            return
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
        elif t.ob and t.part:
            self._unline_outbound(t)
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
        if not t.ob:  # the queue counters are the inbound lines' (campaigns count their own)
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
        if t.ob:
            self._match_outbound(t)
            return
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
                    skill_cut = skills.cutoff(self._wire, a.skills, skills.parse(sig[0]), self._now)
                    if skill_cut is None:
                        continue
                    cutoff = min(cutoff, skill_cut)
                rank = self._first_rank(a, part, cutoff)
                if rank is not None and (best is None or rank < best):
                    best = rank
        return (self._tasks[best[2]], "next_in_line") if best else None

    def _first_rank(
        self, a: _Agent, part: SortedList, cutoff: int | None = None
    ) -> tuple[int, int, str] | None:
        """The rank of the partition's first task (in line by `cutoff`, if given) that `a` has
        not refused: the one of this partition `a` would take."""
        for enq, task_id in part:
            if cutoff is not None and enq > cutoff:
                return None
            candidate = self._tasks[task_id]
            if a.id not in candidate.excluded:
                return self._rank(candidate)
        return None

    def _match_agent(self, a: _Agent) -> None:
        while self._routable(a):
            found = self._best_task_for(a)
            if found is None and self._oheads and self._may_dial(a):
                found = self._best_outbound_for(a)  # inbound found nothing: a campaign's turn
            if found is None:
                return
            self._offer(found[0], a, found[1])

    # -- outbound work: campaign contacts (docs/routing.md, "Outbound work") -------------------

    def _line_outbound(self, t: _Task) -> None:
        t.part = f"{t.group}|{t.ob}|{t.prio}"
        part = self._oparts.setdefault(t.part, SortedList())
        part.add((t.enq, t.id))
        self._refile_ohead(t.part, part, t.prio)

    def _refile_ohead(self, key: str, part: SortedList | None, prio: int) -> None:
        old = self._ohead_of.pop(key, None)
        if old is not None:
            self._oheads.remove((old, key))
        if part:
            rank = part[0][0] - prio * int(self._wire["step_ms"])
            self._ohead_of[key] = rank
            self._oheads.add((rank, key))

    def _unline_outbound(self, t: _Task) -> None:
        part = self._oparts.get(t.part)
        if part is not None:
            part.discard((t.enq, t.id))
            self._refile_ohead(t.part, part, t.prio)
            if not part:
                del self._oparts[t.part]

    def _match_outbound(self, t: _Task) -> None:
        """Task-side: the first agent by (idle, id) of the tiers both the campaign and the
        group allow that may dial (routable, no work at all) is matched agent-side — its
        inbound search first, so inbound work that waits for it goes to it instead; repeated
        while `t` waits and such an agent is found (each one leaves with work)."""
        tiers = [tier for tier in t.ob.split(",") if self.policy.allowed(t.group, tier)]
        while t.state == "queued":
            best: tuple[int, str] | None = None
            for tier in tiers:
                for idle, agent_id in self._ready[(t.channel, tier)]:
                    if best is not None and (idle, agent_id) >= best:
                        break
                    if agent_id not in t.excluded and self._may_dial(self._agents[agent_id]):
                        best = (idle, agent_id)
                        break
            if best is None:
                return
            self._match_agent(self._agents[best[1]])

    def _best_outbound_for(self, a: _Agent) -> tuple[_Task, str] | None:
        """Agent-side, once its inbound search found nothing: the smallest (rank, enq, id)
        first task of the outbound partitions its tier may work, walked by their heads."""
        best: tuple[int, int, str] | None = None
        for head_rank, key in self._oheads:
            if best is not None and head_rank > best[0]:
                break
            group, tiers, _prio = key.split("|")
            if a.tier not in tiers.split(",") or not self.policy.allowed(group, a.tier):
                continue
            rank = self._first_rank(a, self._oparts[key])
            if rank is not None and (best is None or rank < best):
                best = rank
        return (self._tasks[best[2]], "outbound") if best else None

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

    def _finish(self, t: _Task, later: list[_Agent] | None = None) -> None:
        """End a task whose work is done; its holder looks for work now, or is added to
        `later` for the caller to match once its own step is over."""
        self._note(t, "ended", t.agent, "completed")
        a = self._free_holder(t)
        self._delete(t)
        self._fx.append(["ended", t.id, a.id, "completed"])
        if later is None:
            self._match_agent(a)
        else:
            later.append(a)

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
