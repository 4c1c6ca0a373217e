"""The decision workload of bench.match_bench: W waiting chat tasks, a pool of one-chat agents
that complete → are offered the best waiting task → accept, one enqueue per cycle keeping W
constant, and a pool of one-sms agents for enqueue-with-immediate-match.

It drives any RoutingEngine (memory or Redis) through the public engine API only, and can
bracket single calls with INFO snapshots (bench.redis_probe) to count what each one costs on
the server. Imports queues and bench.loops, bench.redis_probe.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio as aioredis

from bench.loops import timed_loop
from bench.redis_probe import CallCount, Delta, bracketed
from queues.base import RoutingEngine
from queues.effects import Effect, Offer
from queues.policy import CHANNELS, Policy

ONE_CHAT = {"chat": 1, "sms": 0, "email": 0, "voice": 0}
ONE_SMS = {"chat": 0, "sms": 1, "email": 0, "voice": 0}
CALLS_PER_CYCLE = 3  # complete (decides) + accept + enqueue (keeps W constant)
SAMPLED = 40  # single calls bracketed by INFO to count round trips and inner commands
IMMEDIATE_AGENTS = 4


class BenchError(RuntimeError):
    """The engine did not do what the workload relies on (e.g. no offer after complete)."""


def bench_policy() -> Policy:
    """The default policy with wrap-up 0 s (complete frees at once) and long timeouts."""
    return Policy(
        wrapup_s=dict.fromkeys(CHANNELS, 0.0),
        presence_ttl_s=3600.0,
        reservation_timeout_s=600.0,
        last_agent_s=0.0,
    )


def offer_for(effects: Sequence[Effect], agent: str | None = None) -> Offer | None:
    for effect in effects:
        if isinstance(effect, Offer) and (agent is None or effect.agent == agent):
            return effect
    return None


class Workload:
    """W waiting chat tasks, a pool of one-chat agents, and a pool of one-sms agents."""

    GROUPS = (("normal", 80), ("SIC", 15), ("CSC", 5))
    ATTRS: tuple[tuple[dict[str, Any], int], ...] = (
        ({}, 70),
        ({"hot": True}, 20),
        ({"top_up": True}, 10),
    )

    def __init__(
        self,
        engine: RoutingEngine,
        label: str,
        mixed_priorities: bool = False,
        seed: int = 7,
        skills: int = 0,
    ) -> None:
        self.engine = engine
        self.label = label
        # with skills: each waiting task asks for one of them (preferred, minimum 1-3) and
        # every agent has all of them at 5, so every decision still finds work; what it
        # measures is the cost of that many partitions per group and priority
        self.skills = [f"s{k:02d}" for k in range(skills)]
        self.attrs = self.ATTRS if mixed_priorities else (({}, 1),)
        self.rng = random.Random(seed)
        self.seq = 0
        self.agents: list[str] = []
        self.holding: dict[str, str] = {}
        self.immediate: list[str] = []
        self.lat: dict[str, list[int]] = {}
        self.counts: dict[str, CallCount] = {}
        self.probe: aioredis.Redis[str] | None = None
        self.base: Delta | None = None
        self.sampling = False

    def _pick(self, table: Sequence[tuple[Any, int]]) -> Any:
        return self.rng.choices([v for v, _ in table], [w for _, w in table])[0]

    def _new_task(self) -> tuple[str, str]:
        self.seq += 1
        return f"{self.label}-t{self.seq:07d}", f"c{self.seq % 20011}"

    async def _timed(self, name: str, call: Awaitable[list[Effect]]) -> list[Effect]:
        if self.sampling:
            return await bracketed(  # type: ignore[no-any-return]
                self.probe, self.base, self.counts.setdefault(name, CallCount()), call
            )
        t0 = time.perf_counter_ns()
        effects = await call
        self.lat.setdefault(name, []).append(time.perf_counter_ns() - t0)
        return effects

    def reset_latencies(self) -> None:
        self.lat = {}

    async def enqueue_waiting(self, timed: bool = True) -> None:
        task, customer = self._new_task()
        asks = {self.rng.choice(self.skills): self.rng.randint(1, 3)} if self.skills else None
        call = self.engine.enqueue(
            task, customer, "chat", self._pick(self.GROUPS), self._pick(self.attrs), skills=asks
        )
        effects = await (self._timed("enqueue_wait", call) if timed else call)
        if offer_for(effects) is not None:
            raise BenchError(f"enqueue of {task} was offered although no chat agent is free")

    async def fill(self, waiting: int, workers: int, seconds: float) -> tuple[int, float]:
        return await timed_loop(
            workers, seconds, waiting, lambda _i: self.enqueue_waiting(timed=False)
        )

    async def login_pool(self, size: int) -> None:
        """Log in `size` chat agents; each takes (and accepts) one task; W is topped up."""
        for i in range(size):
            agent = f"{self.label}-a{i:04d}"
            await self.engine.login(agent, "SAM", ONE_CHAT, skills=dict.fromkeys(self.skills, 5))
            offer = offer_for(await self.engine.set_presence(agent, "available"), agent)
            if offer is None:
                raise BenchError(f"{agent} became available but was offered nothing")
            await self.engine.accept(offer.reservation, agent)
            self.holding[agent] = offer.task
            self.agents.append(agent)
            await self.enqueue_waiting(timed=False)
        for j in range(IMMEDIATE_AGENTS):
            agent = f"{self.label}-i{j}"
            await self.engine.login(agent, "SAM", ONE_SMS, skills=dict.fromkeys(self.skills, 5))
            if offer_for(await self.engine.set_presence(agent, "available")) is not None:
                raise BenchError("an sms agent was offered work before any sms task existed")
            self.immediate.append(agent)

    async def decide(self, agent: str) -> None:
        """One cycle: complete (the decision: offers the next task) → accept → enqueue."""
        effects = await self._timed("decide", self.engine.complete(self.holding[agent], agent))
        offer = offer_for(effects, agent)
        if offer is None:
            raise BenchError(f"complete by {agent} offered nothing: {effects}")
        await self._timed("accept", self.engine.accept(offer.reservation, agent))
        self.holding[agent] = offer.task
        await self.enqueue_waiting()

    def decide_step(self, workers: int) -> Callable[[int], Awaitable[None]]:
        """Worker i rotates over agents i, i+workers, …; no two workers share an agent."""
        turns = [0] * workers
        mine = [self.agents[i::workers] for i in range(workers)]

        def step(i: int) -> Awaitable[None]:
            turns[i] += 1
            return self.decide(mine[i][turns[i] % len(mine[i])])

        return step

    def immediate_step(self) -> Callable[[int], Awaitable[None]]:
        def step(_i: int) -> Awaitable[None]:
            return self.enqueue_immediate()

        return step

    async def enqueue_immediate(self) -> None:
        """A free sms agent exists: the enqueue call itself offers; then accept and complete."""
        task, customer = self._new_task()
        effects = await self._timed("enqueue_match", self.engine.enqueue(task, customer, "sms"))
        offer = offer_for(effects)
        if offer is None:
            raise BenchError(f"enqueue of {task} with a free sms agent offered nothing")
        await self.engine.accept(offer.reservation, offer.agent)
        await self.engine.complete(task, offer.agent)
