"""The Redis engine leaves nothing behind: work matched at once is never filed in its line
(`line(t, defer)` in lib_steps.lua, `requeue` in lib_match.lua), a task's level timer and
exclusions are removed only when it has them (`lt`, `nx`), and yet no timer, partition, heads
entry or exclusion set outlives the work it belonged to. A stale `due:level` entry would
re-match a task that is no longer in line; a stale partition would be walked by every agent
looking for work."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from queues.effects import Offer
from queues.policy import Policy
from tests.conformance.helpers import agent
from tests.conftest import EngineFactory


def offers(effects: list[Any]) -> dict[str, Offer]:
    return {e.task: e for e in effects if isinstance(e, Offer)}


async def members(client: Any, engine: Any, *parts: str) -> list[bytes]:
    return list(await client.zrange(engine._key(*parts), 0, -1))


async def test_every_path_leaves_no_timer_partition_or_exclusion(
    make_engine: EngineFactory, redis_url: str, clock: Any
) -> None:
    engine = await make_engine("redis", Policy(priority_step_s=30.0))
    client = aioredis.Redis.from_url(redis_url)
    try:
        # nobody there: t-wait is filed in line with a level timer (PAM opens after 60 s)
        await engine.enqueue("t-wait", "c1", "chat")
        assert await members(client, engine, "due", "level") == [b"t-wait"]
        assert await members(client, engine, "wait", "chat") == [b"t-wait"]
        # a CCS agent takes it from the line: its timer and partition go with it
        ccs = offers(await agent(engine, "ccs1", "CCS", {"chat": 2}))["t-wait"]
        await engine.accept(ccs.reservation, "ccs1")
        assert await members(client, engine, "due", "level") == []
        assert await members(client, engine, "wait", "chat") == []
        # matched at once: never filed, so nothing to take back
        fast = offers(await engine.enqueue("t-fast", "c2", "chat"))["t-fast"]
        assert await members(client, engine, "wait", "chat") == []
        # refused, then timed out: both exclusions are recorded, the task waits again
        await engine.reject(fast.reservation, "ccs1")
        assert await client.sismember(engine._key("excl", "t-fast"), "ccs1")
        other = offers(await agent(engine, "ccs2", "CCS", {"chat": 1}))["t-fast"]
        clock.advance(21)  # past the reservation timeout
        await engine.tick()
        assert set(await client.smembers(engine._key("excl", "t-fast"))) == {b"ccs1", b"ccs2"}
        assert other.agent == "ccs2"
        # the level timer of the re-lined task fires (PAM opens) and a PAM agent takes it
        clock.advance(60)
        await engine.tick()
        pam = offers(await agent(engine, "pam1", "PAM", {"chat": 1}))["t-fast"]
        await engine.accept(pam.reservation, "pam1")
        for holder, task in (("ccs1", "t-wait"), ("pam1", "t-fast")):
            await engine.complete(task, holder)
            await engine.wrapup_done(task, holder)
        for kind in ("level", "pref", "res", "wrap"):
            assert await members(client, engine, "due", kind) == [], kind
        assert await members(client, engine, "wait", "chat") == []
        assert await client.smembers(engine._key("parts", "chat")) == set()
        heads = await client.zrange(engine._key("heads", "chat", "30000"), 0, -1)
        assert heads in ([], [b""])  # at most the index's completeness mark
        assert not await client.exists(engine._key("excl", "t-fast"))
        assert not await client.exists(engine._key("task", "t-fast"))
        assert (await engine.dump())["tasks"] == {}
    finally:
        await client.aclose()
