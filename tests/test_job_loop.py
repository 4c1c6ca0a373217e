"""The job loop (`router.replies.Replies.run`) on the Redis store: jobs run side by side, and a
new one is taken while slow ones are in hand, also once the store rereads this consumer's own
pending jobs first (after a failed read, a takeover or a restart)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest

from router.replies import BATCH, Replies
from store.redis import RedisStore
from tests.support import WAIT, eventually


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisStore]:
    made = RedisStore(redis_url, domain=f"jobs-{uuid.uuid4().hex}")
    await made.start()
    yield made
    await made.purge()
    await made.close()


async def test_a_new_job_runs_while_slow_ones_are_in_hand_and_own_jobs_are_reread(
    store: RedisStore,
) -> None:
    slow = BATCH // 2 + 2  # more than a read of the free slots would return: it sees only them
    release, started, fast_ran = asyncio.Event(), asyncio.Semaphore(0), asyncio.Event()

    async def slow_job(job_id: str, fields: Any) -> None:
        started.release()
        await release.wait()

    async def fast_job(job_id: str, fields: Any) -> None:
        fast_ran.set()

    reads = 0
    read_jobs = store.read_jobs

    async def counted(consumer: str, count: int, block_ms: int) -> Any:
        nonlocal reads
        reads += 1
        return await read_jobs(consumer, count, block_ms)

    async def read_twice_more(since: int) -> bool:
        return reads >= since + 2  # one whole read after the one in progress

    store.read_jobs = counted  # type: ignore[method-assign]
    replies = Replies(SimpleNamespace(store=store, node="n1"))  # type: ignore[arg-type]
    replies.handle("slow", slow_job)
    replies.handle("fast", fast_job)
    for _ in range(slow):
        await store.add_job({"kind": "slow"})
    stopping = asyncio.Event()
    loop = asyncio.create_task(replies.run(stopping, block_ms=100))
    try:
        for _ in range(slow):
            await asyncio.wait_for(started.acquire(), WAIT)
        await store.beat("n1", "restart", 10_000, first=True)  # as a restart: own jobs first
        since = reads
        await eventually(lambda: read_twice_more(since))  # the loop has read with that mark
        await store.add_job({"kind": "fast"})
        await asyncio.wait_for(fast_ran.wait(), WAIT)
    finally:
        stopping.set()
        release.set()
        await asyncio.wait_for(loop, WAIT)
