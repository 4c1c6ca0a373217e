"""A real race: four OS processes route against one Redis domain at once.

Each process (multiprocessing, `spawn`) has its own connection and its own `RedisEngine` on
the same URL and domain. All of them enqueue, accept or reject the offers they see, complete,
end wrap-ups, withdraw and reclassify each other's tasks, flip agents away and back, log them
out and in, transfer, and tick - concurrently, on real wall-clock time, until together they
made at least `TARGET_ASSIGNMENTS` assignments (or a hard deadline passes: the test fails).

How the check is exact, not statistical: every engine call is sent as `MULTI; FCALL; INCR
stamp; EXEC`, so each atomic operation gets its position in the one global order Redis ran
them in (the reservation counter `R<n>` must agree with it). The main process replays every
call and its effects in that order through `tests.model.Model`, which fails on any offer of
a task that is already held, any offer over an agent's capacity (voice blocking included),
any hard-filter breach, any call refused (or allowed) against what the spec says for the
replayed state, and which at the end must agree with the final `dump()`: every task ended or
still there in the state the replay says, loads equal to the held tasks.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import multiprocessing
import pickle
import random
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
import structlog

from queues.effects import Assigned, Effect, Offer, TaskEnded
from queues.errors import RoutingError
from queues.policy import CHANNELS, GROUPS, TIERS, Policy
from queues.redis import LIBRARY, RedisEngine
from tests.model import Model

WORKERS = 4
TARGET_ASSIGNMENTS = 3000
RUN_SECONDS = 45.0  # the workers stop here at the latest; the test then fails on the count
JOIN_GRACE = 30.0
AGENTS = tuple(f"ag{n:02d}" for n in range(40))
CUSTOMERS = tuple(f"cu{n:03d}" for n in range(120))
# long time-outs: no reservation times out and no wrap-up ends by itself during the run, so
# every reservation ends by an answer or a revocation someone saw
POLICY = Policy(
    reservation_timeout_s=600.0,
    presence_ttl_s=600.0,
    wrapup_s=dict.fromkeys(CHANNELS, 600.0),
    last_agent_s=2.0,
)


class StampingRedis(aioredis.Redis):  # type: ignore[type-arg]
    """Runs every function or script call in MULTI/EXEC with an INCR: its place in Redis'
    global order."""

    stamp_key = ""
    last_stamp = 0

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        if args and args[0] in ("FCALL", "EVALSHA", "EVAL"):
            async with self.pipeline(transaction=True) as pipe:
                pipe.execute_command(*args, **options)
                pipe.incr(self.stamp_key)
                result, stamp = await pipe.execute(raise_on_error=False)
            if isinstance(result, BaseException):
                raise result
            self.last_stamp = int(stamp)
            return result
        return await super().execute_command(*args, **options)


def stamping_client(url: str, domain: str) -> StampingRedis:
    client = StampingRedis.from_url(url, decode_responses=False)
    client.stamp_key = f"omniroute:{{{domain}}}:test-stamp"
    return client


@dataclass
class Call:
    """One operation as made by one process: its global stamp, args, time and outcome."""

    stamp: int
    worker: int
    op: str
    args: dict[str, Any]
    now_ms: int
    refused: str = ""
    effects: list[Effect] = field(default_factory=list)


class Worker:
    """One router process: reacts to the effects it sees, and makes trouble for the others."""

    def __init__(self, index: int, engine: RedisEngine, client: StampingRedis, seed: int):
        self.index = index
        self.engine = engine
        self.client = client
        self.rng = random.Random(seed)
        self.calls: list[Call] = []
        self.offers: dict[str, tuple[str, str]] = {}  # res -> (task, agent)
        self.assigned: dict[str, str] = {}  # task -> agent
        self.wrapups: dict[str, str] = {}
        self.enqueued = 0
        self.assignments = 0

    async def call(self, op: str, **args: Any) -> list[Effect] | None:
        now = time.time()
        method = getattr(self.engine, op)
        record = Call(0, self.index, op, args, round(now * 1000))
        try:
            record.effects = await method(**args, now=now)
        except RoutingError as exc:
            record.refused = exc.code
        record.stamp = self.client.last_stamp
        self.client.last_stamp = 0
        self.calls.append(record)
        if record.refused:
            return None
        for fx in record.effects:
            if isinstance(fx, Offer):
                self.offers[fx.reservation] = (fx.task, fx.agent)
            elif isinstance(fx, Assigned):
                self.assignments += 1
        return record.effects

    async def step(self) -> None:
        rng = self.rng
        choices: list[tuple[float, str]] = [
            (30.0 if len(self.offers) + len(self.assigned) < 12 else 4.0, "enqueue"),
            (3.0, "tick"),
            (1.5, "withdraw"),
            (2.0, "available"),
            (0.7, "away"),
            (0.3, "relogin"),
            (0.5, "heartbeat"),
            (0.8, "reclassify"),
        ]
        if self.offers:
            choices += [(40.0, "accept"), (4.0, "reject")]
        if self.assigned:
            choices += [(25.0, "complete"), (1.5, "transfer"), (0.5, "release")]
        if self.wrapups:
            choices.append((25.0, "wrapup_done"))
        action = rng.choices([c for _, c in choices], [w for w, _ in choices])[0]
        if action == "enqueue":
            self.enqueued += 1
            await self.call(
                "enqueue",
                task=f"w{self.index}-t{self.enqueued}",
                customer=rng.choice(CUSTOMERS),
                channel=rng.choice(("chat", "chat", "sms", "email", "voice")),
                group=rng.choice(("normal", "normal", "normal", "SIC", "CSC")),
                attrs=rng.choice((None, None, {"hot": True}, {"top_up": True})),
                last_agent=rng.choice(AGENTS) if rng.random() < 0.1 else None,
            )
        elif action in ("accept", "reject"):
            res = rng.choice(sorted(self.offers))
            task, agent = self.offers.pop(res)
            answered = await self.call(action, reservation=res, agent=agent)
            if answered is not None and action == "accept":
                self.assigned[task] = agent
        elif action == "complete":
            task = rng.choice(sorted(self.assigned))
            agent = self.assigned.pop(task)
            if await self.call("complete", task=task, agent=agent) is not None:
                self.wrapups[task] = agent
        elif action == "wrapup_done":
            task = rng.choice(sorted(self.wrapups))
            await self.call("wrapup_done", task=task, agent=self.wrapups.pop(task))
        elif action == "transfer":
            task = rng.choice(sorted(self.assigned))
            agent = self.assigned.pop(task)
            if rng.random() < 0.5:
                await self.call("transfer", task=task, agent=agent, to_agent=rng.choice(AGENTS))
            else:
                tier = rng.choice(TIERS)
                await self.call("transfer", task=task, agent=agent, to_tier=tier)
            if self.calls[-1].refused:  # still ours to finish, unless revoked meanwhile
                self.assigned[task] = agent
        elif action == "release":
            task = rng.choice(sorted(self.assigned))
            await self.call("release", task=task, agent=self.assigned.pop(task))
        elif action == "withdraw":
            other = rng.randrange(WORKERS)
            await self.call("withdraw", task=f"w{other}-t{rng.randint(1, self.enqueued + 1)}")
        elif action == "tick":
            await self.call("tick", limit=rng.choice((500, 3)))
        elif action == "available":
            await self.call("set_presence", agent=rng.choice(AGENTS), state="available")
        elif action == "away":
            await self.call("set_presence", agent=rng.choice(AGENTS), state="away")
        elif action == "heartbeat":
            await self.call("heartbeat", agent=rng.choice(AGENTS))
        elif action == "relogin":
            agent = rng.choice(AGENTS)
            await self.call("logout", agent=agent)
            await self.call("login", agent=agent, tier=tier_of(agent), capacity=None)
            await self.call("set_presence", agent=agent, state="available")
        elif action == "reclassify":
            group = rng.choice(GROUPS)
            await self.call("reclassify", customer=rng.choice(CUSTOMERS), group=group)


def tier_of(agent: str) -> str:
    return TIERS[int(agent[2:]) % len(TIERS)]


async def _work(
    index: int, url: str, domain: str, seed: int, quota: int, stop_at: float, barrier: Any
) -> tuple[list[Call], str]:
    client = stamping_client(url, domain)
    try:
        engine = RedisEngine(POLICY, client=client, domain=domain)
        await engine.start()
        worker = Worker(index, engine, client, seed)
        await asyncio.to_thread(barrier.wait, 60)
        try:
            while worker.assignments < quota and time.time() < stop_at:
                await worker.step()
        except Exception as exc:  # a script error: keep what was seen, report it, stop
            return worker.calls, f"worker {index} after {len(worker.calls)} calls: {exc!r}"
        return worker.calls, ""
    finally:
        await client.aclose()


def worker_main(
    index: int, url: str, domain: str, seed: int, quota: int, stop_at: float, barrier: Any, out: str
) -> None:
    """The body of one spawned process: race, then leave every call it made in `out`."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    result = asyncio.run(_work(index, url, domain, seed, quota, stop_at, barrier))
    Path(out).write_bytes(pickle.dumps(result))


async def _setup(url: str, domain: str) -> tuple[list[Call], StampingRedis, RedisEngine]:
    client = stamping_client(url, domain)
    engine = RedisEngine(POLICY, client=client, domain=domain)
    await engine.start()
    # loaded first, so no "function not found" round inside a transaction
    await client.function_load(LIBRARY.library()[1], replace=True)
    main = Worker(-1, engine, client, 0)
    for agent in AGENTS:
        await main.call("login", agent=agent, tier=tier_of(agent), capacity=None)
        await main.call("set_presence", agent=agent, state="available")
    return main.calls, client, engine


def replay(calls: list[Call]) -> Model:
    """Follow every call in the global order; the model raises on the first broken guarantee."""
    model = Model(POLICY)
    stamps = [c.stamp for c in calls]
    assert all(stamps), "a call carried no stamp: the engine did not go through FCALL"
    assert len(set(stamps)) == len(stamps), "two calls share one stamp"
    last_res = 0
    for call in sorted(calls, key=lambda c: c.stamp):
        for fx in call.effects:
            if isinstance(fx, Offer):
                number = int(fx.reservation[1:])
                assert number > last_res, (
                    f"reservation {fx.reservation} after R{last_res} in the global order"
                )
                last_res = number
        if call.refused:
            model.refused(call.op, call.args, call.refused, call.now_ms)
        else:
            model.apply(call.op, call.args, call.effects, call.now_ms)
    return model


def test_four_processes_never_double_assign_or_overfill(redis_url: str, tmp_path: Path) -> None:
    domain = f"race-{uuid.uuid4().hex}"
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WORKERS + 1)
    quota = TARGET_ASSIGNMENTS // WORKERS + 1
    outs = [tmp_path / f"worker{n}.pickle" for n in range(WORKERS)]
    started = time.monotonic()

    async def setup() -> list[Call]:
        calls, client, _engine = await _setup(redis_url, domain)
        await client.aclose()
        return calls

    async def final_dump() -> dict[str, Any]:
        client = stamping_client(redis_url, domain)
        try:
            engine = RedisEngine(POLICY, client=client, domain=domain)
            dump: dict[str, Any] = await engine.dump()
            return dump
        finally:
            await client.aclose()

    async def purge() -> None:
        engine = RedisEngine(POLICY, redis_url, domain=domain)
        try:
            await engine.purge()
        finally:
            await engine.close()

    processes: list[Any] = []
    try:
        setup_calls = asyncio.run(setup())
        stop_at = time.time() + RUN_SECONDS
        for n in range(WORKERS):
            args = (n, redis_url, domain, 1000 + n, quota, stop_at, barrier, str(outs[n]))
            process = ctx.Process(target=worker_main, args=args, name=f"race-worker-{n}")
            process.start()
            processes.append(process)
        barrier.wait(60)
        for process in processes:
            process.join(max(0.0, stop_at + JOIN_GRACE - time.time()))
        hung = [p.name for p in processes if p.is_alive()]
        assert not hung, f"workers still running after the deadline: {hung}"
        assert [p.exitcode for p in processes] == [0] * WORKERS, "a worker failed"
        results = [pickle.loads(out.read_bytes()) for out in outs]
        calls = setup_calls + [c for worker_calls, _error in results for c in worker_calls]
        errors = [error for _calls, error in results if error]
        race_seconds = time.monotonic() - started

        model = replay(calls)  # first: a broken guarantee explains an error better
        assert not errors, f"engine errors during the race: {errors}"
        model.check_dump(asyncio.run(final_dump()), "final dump()")

        assigned = sum(isinstance(fx, Assigned) for c in calls for fx in c.effects)
        ended = sum(isinstance(fx, TaskEnded) for c in calls for fx in c.effects)
        assert assigned == model.assignments
        assert assigned >= TARGET_ASSIGNMENTS, (
            f"only {assigned} assignments in {race_seconds:.1f} s (deadline {RUN_SECONDS} s)"
        )
        # the race really interleaved: consecutive operations came from different processes
        order = [c.worker for c in sorted(calls, key=lambda c: c.stamp) if c.worker >= 0]
        switches = sum(a != b for a, b in itertools.pairwise(order))
        assert switches > len(order) // 10, f"only {switches} switches in {len(order)} calls"
        print(
            f"race: {len(calls)} calls, {model.offers} offers, {assigned} assignments, "
            f"{ended} ended, {len(model.tasks)} left, {switches} switches, {race_seconds:.1f} s"
        )
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
                process.join(5)
            if process.is_alive():
                process.kill()
                process.join(5)
        asyncio.run(purge())
