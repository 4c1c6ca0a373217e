"""The routing engine contract: tasks, agents, reservations and the one atomic match.

Two engines implement it: `queues.memory` (one process, the embedded default) and
`queues.redis` (Redis 7.0+, any number of router processes). `docs/routing.md` states the
algorithm both follow step by step; `tests/conformance/` holds them to it.

What every engine guarantees:

* **Atomic operations.** Every public mutating method is one indivisible state transition.
  On Redis it is one script call (one round trip); in memory it runs without awaiting. Two
  routers calling at once can never hand one task to two agents or overfill an agent.
* **The hard filter holds everywhere.** No offer, assignment or transfer ever pairs a task with
  an agent whose tier `Policy.allowed()` refuses for the task's client group.
* **Capacity is never exceeded.** Reserved, assigned and wrapping-up work all count against an
  agent's capacity on that channel; an active voice call blocks the channels in `voice_blocks`.
* **Nothing is lost.** A task leaves the engine only by `withdraw` (abandoned) or by the end of
  its wrap-up (completed); a revoked, rejected or timed-out reservation puts it back in line
  with its original waiting time.
* **Inbound work first.** Outbound work (`Enqueue.outbound`: a campaign contact) goes only to
  a routable agent with no work at all, of a tier its tiers and its group allow, for whom no
  inbound work is eligible (docs/routing.md, "Outbound work").
* **Effects, not callbacks.** Each method returns the effects it caused (offers, revocations,
  presence changes), in order, as the values of `queues.effects`; the router turns them into
  frames. The engine never sees a socket.

Time is passed in (`now`, seconds since the epoch; default: the engine's clock), so that every
node and every test sees the same decisions. Router nodes need NTP-synchronised clocks.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog

from queues.args import DOMAIN_RE, Enqueue, check_choice, check_id, enqueue_args
from queues.effects import Effect, QueueStats, RawEffect, decode_effect
from queues.errors import Invalid, RoutingError, in_place
from queues.policy import CHANNELS, GROUPS, TIERS, Policy
from queues.skills import check_skills
from queues.views import AgentView, Dump, TaskView

log = structlog.get_logger("omniroute.queues")


class RoutingEngine(ABC):
    """Validates, computes what is policy (priority, capacity), then calls the backend's `_call`.

    Backends implement `_call(op, now_ms, args)` — one atomic transition returning raw effect
    rows — and `_read(op, now_ms, args)` for the ops views. The names of `op` and the keys of
    `args` are listed in docs/routing.md; they are the same for every backend.
    """

    def __init__(
        self, policy: Policy, *, clock: Callable[[], float] = time.time, domain: str = "default"
    ) -> None:
        self.policy = policy
        self.clock = clock
        if not isinstance(domain, str) or not DOMAIN_RE.fullmatch(domain):
            # The domain becomes the Redis Cluster hash tag: braces would break it.
            raise Invalid("domain must be 1-64 of A-Z a-z 0-9 _ . : - (no braces)", "domain")
        self.domain = domain

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:  # noqa: B027 - a backend without resources needs no start
        """Prepare the backend (connect, load scripts). Idempotent."""

    async def close(self) -> None:  # noqa: B027
        """Release the backend's resources."""

    async def ping(self) -> bool:
        """True when the backend answers (readiness); the memory engine always does."""
        return True

    # -- backend hooks -----------------------------------------------------------------------

    @abstractmethod
    async def _call(self, op: str, now_ms: int, args: Mapping[str, Any]) -> list[RawEffect]:
        """Run one atomic transition; raise a RoutingError subclass to refuse it."""

    async def _call_many(
        self, op: str, now_ms: int, argss: Sequence[Mapping[str, Any]]
    ) -> list[list[RawEffect] | RoutingError]:
        """Run `op` once per argument map, in order, each atomic on its own; a refused one
        gives its RoutingError in its place. Redis sends them in one round trip."""
        return await in_place((self._call(op, now_ms, args) for args in argss), RoutingError)

    @abstractmethod
    async def _read(self, op: str, now_ms: int, args: Mapping[str, Any]) -> Any:
        """Read a view (`stats`, `agents`, `task`, `dump`) without changing anything."""

    # -- bookkeeping ---------------------------------------------------------------------------

    def _now_ms(self, now: float | None) -> int:
        return round((self.clock() if now is None else now) * 1000)

    async def _run(self, op: str, now: float | None, args: dict[str, Any]) -> list[Effect]:
        try:
            raw = await self._call(op, self._now_ms(now), args)
        except RoutingError as exc:
            log.info("routing.refused", op=op, code=exc.code, **_ids(args))
            raise
        return [decode_effect(row) for row in raw]

    async def _run_many(
        self, op: str, now: float | None, argss: Sequence[dict[str, Any]]
    ) -> list[list[Effect] | RoutingError]:
        """`_run` for each argument map, in order, one round trip on Redis; a refusal is
        logged as `_run` logs it and given in its place."""
        results = await self._call_many(op, self._now_ms(now), argss) if argss else []
        out: list[list[Effect] | RoutingError] = []
        for args, result in zip(argss, results, strict=True):
            if isinstance(result, RoutingError):
                log.info("routing.refused", op=op, code=result.code, **_ids(args))
                out.append(result)
            else:
                out.append([decode_effect(row) for row in result])
        return out

    # -- agents --------------------------------------------------------------------------------

    async def login(
        self,
        agent: str,
        tier: str,
        capacity: Mapping[str, int] | None = None,
        now: float | None = None,
        skills: Mapping[str, int] | Sequence[str] | None = None,
    ) -> list[Effect]:
        """Register the agent (tier, capacity, skills) as logged in and `away`; idempotent per
        agent.

        A second login of a logged-in agent (another desktop) keeps its state. A changed tier is
        refused (`Conflict`) while the agent holds reserved or assigned work, so no tier change
        can ever carry work past the hard filter. Skills (names, or name → proficiency 1-5) are
        replaced by each login; work it already holds stays with it.
        """
        check_id(agent, "agent")
        check_choice(tier, TIERS, "tier")
        if capacity is not None:
            for channel, value in capacity.items():
                check_choice(channel, CHANNELS, "capacity")
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    raise Invalid("capacity values must be integers >= 0", "capacity")
        caps = self.policy.capacity_for(capacity)
        args = {"agent": agent, "tier": tier, "cap": caps, "sk": check_skills(skills)}
        return await self._run("login", now, args)

    async def set_presence(self, agent: str, state: str, now: float | None = None) -> list[Effect]:
        """The agent's own choice: `available` (routable, matched at once) or `away`."""
        check_id(agent, "agent")
        check_choice(state, ("available", "away"), "state")
        return await self._run("presence", now, {"agent": agent, "state": state})

    async def heartbeat(self, agent: str, now: float | None = None) -> list[Effect]:
        """Keep the agent logged in for another `presence_ttl_s`."""
        check_id(agent, "agent")
        return await self._run("heartbeat", now, {"agent": agent})

    async def heartbeat_many(
        self, agents: Sequence[str], now: float | None = None
    ) -> list[list[Effect] | RoutingError]:
        """`heartbeat` for each agent, in one round trip on Redis (a node beats for all of its
        desktops at once); an agent that is not logged in gives its error in its place."""
        for agent in agents:
            check_id(agent, "agent")
        return await self._run_many("heartbeat", now, [{"agent": agent} for agent in agents])

    async def logout(self, agent: str, now: float | None = None) -> list[Effect]:
        """Offline: its offers are revoked and re-queued; assigned work stays with it."""
        check_id(agent, "agent")
        return await self._run("logout", now, {"agent": agent})

    # -- tasks ---------------------------------------------------------------------------------

    async def enqueue_many(
        self, items: Sequence[Enqueue], now: float | None = None
    ) -> list[list[Effect] | RoutingError]:
        """`enqueue` for each item, in order, at one `now` (one round trip on Redis). Each item
        is its own atomic step; one that is refused (e.g. `Conflict`: already in line) gives its
        error in its place and changes nothing, the others go ahead."""
        argss: list[dict[str, Any]] = []
        checked: list[RoutingError | None] = []
        for item in items:
            try:
                argss.append(enqueue_args(self.policy, item))
                checked.append(None)
            except RoutingError as exc:
                checked.append(exc)
        results = iter(await self._run_many("enqueue", now, argss))
        return [refused if refused is not None else next(results) for refused in checked]

    async def enqueue(
        self,
        task: str,
        customer: str,
        channel: str,
        group: str = "normal",
        attrs: Mapping[str, Any] | None = None,
        last_agent: str | None = None,
        now: float | None = None,
        skills: Mapping[str, int] | None = None,
    ) -> list[Effect]:
        """Put work in line and try to match it at once. Priority comes from `attrs` by policy;
        `skills` (name → minimum proficiency) narrow who may take it (`queues.skills`)."""
        item = Enqueue(task, customer, channel, group, attrs, last_agent, skills)
        return await self._run("enqueue", now, enqueue_args(self.policy, item))

    async def accept(self, reservation: str, agent: str, now: float | None = None) -> list[Effect]:
        """The agent takes the offered task; `expired` once the deadline has passed."""
        check_id(reservation, "reservation")
        check_id(agent, "agent")
        return await self._run("accept", now, {"res": reservation, "agent": agent})

    async def reject(self, reservation: str, agent: str, now: float | None = None) -> list[Effect]:
        """The agent declines; the task goes back to its place and is never offered to it again."""
        check_id(reservation, "reservation")
        check_id(agent, "agent")
        return await self._run("reject", now, {"res": reservation, "agent": agent})

    async def complete(self, task: str, agent: str, now: float | None = None) -> list[Effect]:
        """The agent finished; wrap-up holds the capacity for the channel's wrap-up seconds."""
        check_id(task, "task")
        check_id(agent, "agent")
        return await self._run("complete", now, {"task": task, "agent": agent})

    async def wrapup_done(self, task: str, agent: str, now: float | None = None) -> list[Effect]:
        """End wrap-up early and free the capacity."""
        check_id(task, "task")
        check_id(agent, "agent")
        return await self._run("wrapup_done", now, {"task": task, "agent": agent})

    async def withdraw(self, task: str, now: float | None = None) -> list[Effect]:
        """The customer left before an agent took it (e.g. hung up): abandoned."""
        check_id(task, "task")
        return await self._run("withdraw", now, {"task": task})

    async def transfer(
        self,
        task: str,
        agent: str,
        to_agent: str | None = None,
        to_tier: str | None = None,
        now: float | None = None,
    ) -> list[Effect]:
        """Hand an assigned task to one agent (offered at once) or to a tier (queued for it)."""
        check_id(task, "task")
        check_id(agent, "agent")
        if (to_agent is None) == (to_tier is None):
            raise Invalid("give exactly one of to_agent and to_tier", "to_agent")
        if to_agent is not None:
            check_id(to_agent, "to_agent")
        if to_tier is not None:
            check_choice(to_tier, TIERS, "to_tier")
        args = {"task": task, "agent": agent, "to_agent": to_agent or "", "to_tier": to_tier or ""}
        return await self._run("transfer", now, args)

    async def release(self, task: str, agent: str, now: float | None = None) -> list[Effect]:
        """The agent gives an assigned task back (e.g. its desktop stayed away too long): the
        task goes back in line with its waiting time; `assignment.revoked` reason `released`."""
        check_id(task, "task")
        check_id(agent, "agent")
        return await self._run("release", now, {"task": task, "agent": agent})

    async def reclassify(self, customer: str, group: str, now: float | None = None) -> list[Effect]:
        """Change the customer's client group; ineligible holders lose its work at once."""
        check_id(customer, "customer")
        check_choice(group, GROUPS, "group")
        return await self._run("reclassify", now, {"customer": customer, "group": group})

    async def tick(self, now: float | None = None, limit: int = 500) -> list[Effect]:
        """Fire what is due: presence expiry, offer timeouts, wrap-up ends, widening levels.

        Handles at most `limit` due items per kind; call again while it returns effects.
        Any node may tick at any time; concurrent ticks are safe.
        """
        return await self._run("tick", now, {"limit": int(limit)})

    # -- views -----------------------------------------------------------------------------------

    async def queue_stats(self, now: float | None = None) -> list[QueueStats]:
        """One row per channel: waiting, longest wait, counters, agents per tier and state."""
        rows = await self._read("stats", self._now_ms(now), {})
        return [
            QueueStats(
                name=row["name"],
                waiting=int(row["waiting"]),
                longest_wait_s=row["longest_ms"] / 1000,
                offered=int(row["offered"]),
                answered=int(row["answered"]),
                answered_in_threshold=int(row["answered_sl"]),
                abandoned=int(row["abandoned"]),
                agents={t: dict(row["agents"].get(t) or {}) for t in TIERS},
                answer_wait_s=row.get("answer_ms", 0) / 1000,
            )
            for row in rows
        ]

    async def agent_view(self, agent: str) -> AgentView | None:
        """One agent's state: tier, chosen and shown state, capacity and load per channel, and
        the tasks it holds (reserved, assigned or in wrap-up)."""
        view: AgentView | None = await self._read("agent", self._now_ms(None), {"agent": agent})
        return view

    async def agents(self) -> list[AgentView]:
        """Every agent's view (as `agent_view`), by id — for ops; one round trip."""
        views: list[AgentView] = await self._read("agents", self._now_ms(None), {})
        return views

    async def task_view(self, task: str) -> TaskView | None:
        """One task's state: channel, group, priority, state, agent, reservation."""
        view: TaskView | None = await self._read("task", self._now_ms(None), {"task": task})
        return view

    async def why_raw(
        self, conversation: str, customer: str, now: float | None = None
    ) -> dict[str, Any]:
        """The routing decisions of the conversation's tasks (live and kept, `queues.trace`)
        and, for each of them in line, what it waits for — raw; `queues.explain` reads it.
        Only agents of tiers allowed for the task's client group are ever read out."""
        check_id(conversation, "conversation")
        check_id(customer, "customer")
        args = {"conversation": conversation, "customer": customer}
        result: dict[str, Any] = await self._read("why", self._now_ms(now), args)
        return result

    async def dump(self) -> Dump:
        """Every task and agent, normalised — for tests and debugging, not for hot paths."""
        result: Dump = await self._read("dump", self._now_ms(None), {})
        return result


def _ids(args: Mapping[str, Any]) -> dict[str, Any]:
    """The identifiers of an operation, for logs (never bodies or customer data)."""
    keys = ("task", "agent", "res", "customer", "to_agent")
    return {k: args[k] for k in keys if args.get(k)}
