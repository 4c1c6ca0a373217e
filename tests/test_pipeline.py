"""queues.pipeline: concurrent script calls share round trips, each keeps its own answer."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from queues.pipeline import GroupCommit, Script, ScriptPipeline

# INCR the key and return its value with ARGV[1]; error when ARGV[1] is "boom"
SCRIPT = """
if ARGV[1] == 'boom' then return redis.error_reply('refused ' .. ARGV[1]) end
return {redis.call('INCR', KEYS[1]), ARGV[1]}
"""


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis[bytes]]:
    redis: aioredis.Redis[bytes] = aioredis.Redis.from_url(redis_url)
    yield redis
    await redis.aclose()


@dataclass
class Scripted:
    """The INCR script, a pipeline on `client` and a fresh key (deleted afterwards)."""

    client: aioredis.Redis[bytes]
    key: str
    pipeline: ScriptPipeline
    script: Script


@pytest.fixture
async def scripted(client: aioredis.Redis[bytes]) -> AsyncIterator[Scripted]:
    key = f"t-{uuid.uuid4().hex}"
    yield Scripted(client, key, ScriptPipeline(client), Script(client, SCRIPT))


async def reads(client: aioredis.Redis[bytes]) -> int:
    return int((await client.info("stats"))["total_reads_processed"])


async def test_concurrent_calls_ride_few_round_trips_in_order_of_arrival(
    scripted: Scripted,
) -> None:
    await scripted.pipeline.call(scripted.script, scripted.key, "warm")  # loads the script
    before = await reads(scripted.client)
    answers = await asyncio.gather(
        *(scripted.pipeline.call(scripted.script, scripted.key, str(n)) for n in range(200))
    )
    used = await reads(scripted.client) - before - 1  # the INFO itself is one read
    assert [a[1] for a in answers] == [str(n).encode() for n in range(200)]
    assert sorted(a[0] for a in answers) == list(range(2, 202))  # each INCR exactly once
    assert used <= 20, f"{used} reads for 200 calls: they did not share round trips"


async def test_an_error_reply_is_raised_to_its_own_caller_only(scripted: Scripted) -> None:
    results = await asyncio.gather(
        *(scripted.pipeline.call(scripted.script, scripted.key, arg) for arg in ("a", "boom", "b")),
        return_exceptions=True,
    )
    assert isinstance(results[1], ResponseError) and "refused boom" in str(results[1])
    assert [r[1] for r in (results[0], results[2])] == [b"a", b"b"]  # type: ignore[index]


async def test_a_lost_script_cache_is_reloaded_and_every_call_runs_once(scripted: Scripted) -> None:
    await scripted.pipeline.call(scripted.script, scripted.key, "first")
    await scripted.client.script_flush()  # as after a restart without persistence
    replies = await scripted.pipeline.many(
        [(scripted.script, (scripted.key, str(n))) for n in range(5)]
    )
    assert [r[0] for r in replies] == [2, 3, 4, 5, 6]
    assert int(await scripted.client.get(scripted.key) or 0) == 6


async def test_group_commit_gives_each_caller_its_slice_and_shares_failures() -> None:
    runs: list[list[int]] = []

    async def run(items: list[int]) -> list[int]:
        runs.append(items)
        await asyncio.sleep(0.01)  # while this one is in flight, the others queue up
        if -1 in items:
            raise RuntimeError("backend down")
        return [n * 10 for n in items]

    commit: GroupCommit[int, int] = GroupCommit(run)
    answers = await asyncio.gather(*(commit.submit([n, n + 100]) for n in range(10)))
    assert answers == [[n * 10, (n + 100) * 10] for n in range(10)]
    assert len(runs) < 10  # batches rode together
    results = await asyncio.gather(
        commit.submit([1]), commit.submit([-1]), return_exceptions=True
    )  # both queued before the run: they ride together and share its failure
    assert all(isinstance(r, RuntimeError) for r in results)
    assert await commit.submit([2]) == [20]  # and the next call goes ahead
