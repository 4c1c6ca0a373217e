"""The memory engine's `why` view: a conversation's decisions and what its work waits for.

Raw, as `queues/lua/why.lua` returns it on Redis (`queues.explain` turns it into the endpoint's
answer); it reads the engine's state and changes nothing. Shape::

    {"live": [{"view": task view, "trace": rows}],     # the conversation's tasks now
     "kept": {"<task>@<enq_ms>": rows},                 # its finished tasks (queues.trace)
     "waiting": [{"task", "channel", "group", "restrict", "enq_ms", "prio", "held_for",
                  "pref_until", "eligible": [tier], "opens": {tier: at_ms},
                  "agents": [[id, tier, chosen, shown, free, on_voice, exp_ms, excluded,
                              fits_at_ms]],
                  "position": n or None}]}

`agents` holds only logged-in agents of tiers the task's client group allows: the view never
reads out anyone a customer's tier rule keeps away from it. `position` counts the tasks in line
on the same channel that an agent of an eligible tier would take first (smaller
`(rank, enq, id)`), plus one; a task held for its last agent has none. `fits_at_ms` is when
the agent's skills let it take the task (`queues.skills.fits_at`; -1: it lacks a hard one).
`position` goes by tiers and ranks only, not by the skills of the work ahead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from queues import skills
from queues.policy import TIERS
from queues.trace import conversation_of

if TYPE_CHECKING:
    from queues.memory import MemoryEngine
    from queues.memory_state import _Agent, _Task


def why_view(engine: MemoryEngine, conversation: str, customer: str) -> dict[str, Any]:
    live: list[dict[str, Any]] = []
    waiting: list[dict[str, Any]] = []
    for task_id in sorted(engine._customers.get(customer, ())):
        if conversation_of(task_id) != conversation:
            continue
        t = engine._tasks[task_id]
        live.append({"view": engine._task_view(t), "trace": [list(r) for r in t.trace]})
        if t.state == "queued":
            waiting.append(_waiting(engine, t))
    return {"live": live, "kept": engine._kept.of(conversation), "waiting": waiting}


def _waiting(engine: MemoryEngine, t: _Task) -> dict[str, Any]:
    allowed = engine.policy.allowed
    tiers = [tier for tier in TIERS if allowed(t.group, tier)]
    if t.restrict:
        tiers = [t.restrict] if allowed(t.group, t.restrict) else []
    opens = {tier: t.enq + engine._open_ms(t.group, tier) for tier in tiers if not t.restrict}
    agents = []
    for a in sorted(engine._agents.values(), key=lambda x: x.id):
        if a.chosen == "offline" or a.tier not in tiers:
            continue
        agents.append(
            [
                a.id,
                a.tier,
                a.chosen,
                a.shown,
                engine._free(a, t.channel),
                a.load.get("voice", 0) > 0,
                a.exp,
                a.id in t.excluded,
                _fits_at(engine, a, t),
            ]
        )
    eligible = [] if t.held_for else engine._eligible_tiers(t)
    return {
        "task": t.id,
        "channel": t.channel,
        "group": t.group,
        "restrict": t.restrict,
        "enq_ms": t.enq,
        "prio": t.prio,
        "held_for": t.held_for,
        "pref_until": t.pref_until,
        "eligible": eligible,
        "opens": opens,
        "agents": agents,
        "position": None if t.held_for else _position(engine, t, eligible or tiers),
    }


def _fits_at(engine: MemoryEngine, a: _Agent, t: _Task) -> int:
    at = skills.fits_at(engine._wire, a.skills, t.reqs, t.enq)
    return -1 if at is None else at


def _position(engine: MemoryEngine, t: _Task, tiers: list[str]) -> int:
    """1 + the tasks in line on t's channel an agent of `tiers` would take before t."""
    step = int(engine._wire["step_ms"])
    mine = t.enq - t.prio * step
    ahead = 0
    for part_key, part in engine._parts[t.channel].items():
        group, restrict, prio, *_skills = part_key.split("|", 3)
        cutoff = _cutoff(engine, group, restrict, tiers)
        if cutoff is None:
            continue
        bound = mine + int(prio) * step  # enq of that partition with t's rank
        if bound <= cutoff:
            ahead += part.bisect_left((bound, t.id))
        else:
            ahead += part.bisect_left((cutoff + 1, ""))
    return ahead + 1


def _cutoff(engine: MemoryEngine, group: str, restrict: str, tiers: list[str]) -> int | None:
    """The latest enq an agent of one of `tiers` takes from partition (group, restrict)."""
    best: int | None = None
    for tier in tiers:
        if restrict:
            if restrict != tier or not engine.policy.allowed(group, restrict):
                continue
            cut = engine._now
        elif engine.policy.allowed(group, tier):
            cut = engine._now - engine._open_ms(group, tier)
        else:
            continue
        best = cut if best is None else max(best, cut)
    return best
