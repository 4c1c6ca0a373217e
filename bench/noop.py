"""The ceiling of one engine call: EVALSHA of `return 0` with one key and the four arguments an
engine call sends (prefix, now, packed policy, packed args), on its own connection pool.

Whatever an engine call costs above this is the engine's; bench.match_bench rotates it with the
engines, and bench.ceiling drives it alone. Imports queues.policy only.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable

import msgpack  # type: ignore[import-untyped,unused-ignore]
import redis.asyncio as aioredis

from queues.policy import Policy


class Noop:
    """The ceiling: EVALSHA of `return 0`, 1 key, the 4 argument shapes of an engine call."""

    kind = "noop"
    name = "no-op"
    waiting = 0

    def __init__(self, url: str, policy: Policy) -> None:
        self.client: aioredis.Redis[bytes] = aioredis.from_url(url, decode_responses=False)
        self.sha = ""
        prefix = f"omniroute:{{bench-noop-{os.getpid()}}}:"
        self.keys = [prefix + "seq"]
        self.policy = msgpack.packb(policy.to_wire())
        self.args = msgpack.packb({"task": "w100000-t0000001", "agent": "w100000-a0001"})
        self.prefix = prefix
        self.lat: dict[str, list[int]] = {}

    async def start(self) -> None:
        self.sha = await self.client.script_load("return 0")  # type: ignore[no-untyped-call]
        for _ in range(200):
            await self.call()

    async def close(self) -> None:
        await self.client.connection_pool.disconnect()

    async def call(self) -> None:
        now = int(time.time() * 1000)
        await self.client.evalsha(  # type: ignore[no-untyped-call]
            self.sha, 1, *self.keys, self.prefix, now, self.policy, self.args
        )

    def argv_bytes(self) -> int:
        return len(self.prefix) + 13 + len(self.policy) + len(self.args)

    def reset_latencies(self) -> None:
        self.lat = {}

    def decide_step(self, _workers: int) -> Callable[[int], Awaitable[None]]:
        lat = self.lat.setdefault("decide", [])

        async def step(_i: int) -> None:
            t0 = time.perf_counter_ns()
            await self.call()
            lat.append(time.perf_counter_ns() - t0)

        return step
