"""A fault scenario's own cluster: one throw-away redis-server and the `omniroute serve` nodes
started on it, with the short timers of the scenarios; `close` stops them all.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from chaos.harness import Node, timers
from chaos.processes import start_redis, stop_redis

# A node's lease, short enough to see a takeover in a test, long enough for a shared machine.
LEASE_S = 1.0
# Reservations last long here: a conversation re-offered fast was re-offered by the takeover,
# not by a time-out.
RESERVATION_S = 20.0


@dataclass
class Cluster:
    """One Redis and the nodes started on it; `close` stops them all."""

    workdir: Path
    aof: bool = False
    redis_url: str = ""
    nodes: list[Node] = field(default_factory=list)
    http: aiohttp.ClientSession | None = None
    _redis: Any = None

    async def start_redis(self, port: int | None = None) -> None:
        self._redis, self.redis_url = await asyncio.to_thread(
            start_redis, self.workdir / "redis", 10.0, self.aof, port
        )

    def kill_redis(self) -> None:
        self._redis.kill()
        self._redis.wait(5)

    async def node(
        self, name: str, extra: dict[str, str] | None = None, **overrides: float
    ) -> Node:
        assert self.http is not None
        env = timers(
            **{
                "events_lease_s": LEASE_S,
                "reservation_timeout_s": RESERVATION_S,
                "agent_offline_grace_s": 1.0,
                "agent_release_after_s": 30.0,
                **overrides,
            }
        )
        node = Node(name, self.redis_url, self.workdir, {**env, **(extra or {})})
        self.nodes.append(node)
        await node.start(self.http)
        return node

    async def close(self) -> None:
        await asyncio.gather(*(n.stop() for n in self.nodes), return_exceptions=True)
        if self.http is not None:
            await self.http.close()
        if self._redis is not None:
            await asyncio.to_thread(stop_redis, self._redis)


@contextlib.asynccontextmanager
async def cluster(workdir: Path, aof: bool = False) -> AsyncIterator[Cluster]:
    made = Cluster(workdir, aof)
    try:
        await made.start_redis()
        made.http = aiohttp.ClientSession()
        yield made
    finally:
        await made.close()
