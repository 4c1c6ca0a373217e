"""The Redis engine's index of partition heads (`heads:C:STEP`, docs/routing.md "Redis
layout"): an agent looking for work walks it in rank order. A domain written before the index
existed, or under another `priority_step_s`, has no complete index; the first agent to look
rebuilds it from the partitions and takes the same task it would have taken anyway."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

import queues
from queues.args import Enqueue
from queues.effects import Offer
from queues.policy import Policy
from tests.conformance.helpers import agent
from tests.conftest import EngineFactory


async def line_up(engine: Any, clock: Any) -> None:
    """Four waiting chat tasks in three partitions, nobody logged in (so every level is open to
    a SAM agent); t-hot's priority point (30 s) puts it before t-old."""
    await engine.enqueue("t-old", "c1", "chat")
    clock.advance(5)
    await engine.enqueue("t-sic", "c2", "chat", group="SIC")
    clock.advance(5)
    await engine.enqueue("t-hot", "c3", "chat", attrs={"hot": True})
    clock.advance(5)
    await engine.enqueue("t-new", "c4", "chat")


async def first_offer(engine: Any, name: str) -> str:
    effects = await agent(engine, name, "SAM", {"chat": 1})
    (offer,) = [e for e in effects if isinstance(e, Offer)]
    return offer.task


async def test_a_missing_index_is_rebuilt_and_decides_the_same(
    make_engine: EngineFactory, redis_url: str, clock: Any
) -> None:
    policy = Policy(priority_step_s=30.0)
    engine = await make_engine("redis", policy)
    await line_up(engine, clock)
    client = aioredis.Redis.from_url(redis_url)
    try:
        heads = engine._key("heads", "chat", "30000")
        assert await client.exists(heads)  # kept up by every enqueue, but not marked yet
        await client.delete(heads)  # as a domain from before the index holds it
        await client.zadd(heads, {"normal||0": 1})  # and an entry at a wrong rank, no mark
        assert await first_offer(engine, "sam1") == "t-hot"
        rebuilt = await client.zrange(heads, 0, -1, withscores=True)
        assert rebuilt[0] == (b"", float("-inf"))
        # t-hot's partition emptied by its offer and left the index
        assert {member for member, _ in rebuilt[1:]} == {b"normal||0", b"SIC||0"}
    finally:
        await client.aclose()
    assert await first_offer(engine, "sam2") == "t-old"
    assert await first_offer(engine, "sam3") == "t-sic"
    assert await first_offer(engine, "sam4") == "t-new"


async def test_another_priority_step_gets_its_own_index(
    make_engine: EngineFactory, redis_url: str, clock: Any
) -> None:
    """Under a step of 1 s, t-hot's point buys one second: t-old (10 s earlier) goes first."""
    engine = await make_engine("redis", Policy(priority_step_s=30.0))
    await line_up(engine, clock)
    assert await first_offer(engine, "sam1") == "t-hot"  # the 30-s index, complete now
    other = queues.create_engine(
        Policy(priority_step_s=1.0), redis_url, clock=clock, domain=engine.domain
    )
    await other.start()
    try:
        assert await first_offer(other, "sam2") == "t-old"  # the same domain, another step
    finally:
        await other.close()


async def test_waiting_outbound_work_is_found_under_another_step(
    make_engine: EngineFactory, redis_url: str, clock: Any
) -> None:
    """A campaign contact filed under one `priority_step_s` waits in `oheads:voice:30000`; a
    node with another step reads `oheads:voice:60000`, finds it unmarked and builds it from
    `oparts:voice`, so the contact is not stranded."""
    engine = await make_engine("redis", Policy(priority_step_s=30.0))
    item = Enqueue("o1", "c-o1", "voice", outbound=("CCS",))
    [decided] = await engine.enqueue_many([item])  # nobody there: it waits
    assert decided == []
    other = queues.create_engine(
        Policy(priority_step_s=60.0), redis_url, clock=clock, domain=engine.domain
    )
    await other.start()
    try:
        effects = await agent(other, "ccs1", "CCS", {"voice": 1})
        assert [e.task for e in effects if isinstance(e, Offer)] == ["o1"]
    finally:
        await other.close()
