"""A burst of callers on one Redis client waits for connections instead of failing.

Hundreds of desktops log in or heartbeat at the same moment after a node restart; redis-py's
default pool raises MaxConnectionsError past 100 connections in use."""

from __future__ import annotations

import asyncio
import uuid

from queues import Policy
from queues.redis import RedisEngine
from queues.runtime import POOL_SIZE
from store.redis import RedisStore

BURST = 3 * POOL_SIZE + 100  # well past both our pool and redis-py's default of 100


async def test_a_burst_of_logins_and_outbox_reads_all_succeed(redis_url: str) -> None:
    domain = f"pool-{uuid.uuid4().hex[:10]}"
    engine = RedisEngine(Policy(), redis_url, domain=domain)
    store = RedisStore(redis_url, domain=domain)
    await engine.start()
    await store.start()
    try:
        logins = [engine.login(f"a{i}", "CCS") for i in range(BURST)]
        reads = [store.since(f"a{i}", 0) for i in range(BURST)]
        results = await asyncio.wait_for(asyncio.gather(*logins, *reads), 60)
        assert len(results) == 2 * BURST
        assert len(await engine.agents()) == BURST
    finally:
        await engine.purge()
        await store.purge()
        await engine.close()
        await store.close()
