"""Seat counts on the Redis engine across the change of their layout: agents used to be counted
in one hash per channel (`seats:C`, field `tier|shown`) and are now counted in one hash
(`seats`, field `tier|shown|channels`). An agent filed the earlier way, as a running domain
holds it after an upgrade, is still counted by the queue view, and its next change moves it
to the new layout without counting it twice or leaving it behind."""

from __future__ import annotations

from typing import Any

import msgpack
import redis.asyncio as aioredis

from queues.policy import CHANNELS
from tests.conformance.helpers import agent, agent_counts, stats_row
from tests.conftest import EngineFactory


async def file_the_earlier_way(engine: Any, url: str, agent_id: str) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        key = engine._key("agent", agent_id)
        record = msgpack.unpackb(await client.get(key))
        tier, shown, chans = record["csig"].split("|")
        record.update(cc=chans.split(","), ct=tier, cs=shown)
        await client.hincrby(engine._key("seats"), record["csig"], -1)
        for c in record["cc"]:
            await client.hincrby(engine._key("seats", c), f"{tier}|{shown}", 1)
        await client.set(key, msgpack.packb(record))
    finally:
        await client.aclose()


async def counts(engine: Any) -> list[dict[str, dict[str, int]]]:
    rows = await engine.queue_stats()
    return [agent_counts(stats_row(rows, c)) for c in CHANNELS]


async def test_an_agent_counted_the_earlier_way_is_moved_at_its_next_change(
    make_engine: EngineFactory, redis_url: str
) -> None:
    engine = await make_engine("redis")
    await agent(engine, "old", "CCS", {"voice": 0})
    await agent(engine, "new", "CCS", {"voice": 0})
    await file_the_earlier_way(engine, redis_url, "old")
    two = {"CCS": {"available": 2}}
    assert await counts(engine) == [two, two, two, {}]

    await engine.set_presence("old", "away")
    mixed = {"CCS": {"available": 1, "away": 1}}
    assert await counts(engine) == [mixed, mixed, mixed, {}]
    client = aioredis.Redis.from_url(redis_url)
    try:
        for c in CHANNELS:
            assert await client.hgetall(engine._key("seats", c)) == {}
    finally:
        await client.aclose()

    await engine.logout("old")
    await engine.logout("new")
    assert await counts(engine) == [{}, {}, {}, {}]
