"""The Redis store's hold on Redis: what `start` opens and `close` releases, and the one way
a script is called. Keys, the connection pool, registering the scripts and the automatic
pipeline are `queues.runtime`'s, the same the routing engine stands on; this module adds what
only the store has (the blocking reader's connections, the consumer groups, the refusal
table). `RedisLog` and `RedisWakes` build on `RedisBase`, and `RedisStore` on both;
`store.redis` documents the keys and round trips.

May import `queues`' Redis runtime (`queues.runtime`, `queues.clients`, `queues.pipeline`),
`store.base`, `store.common`, `store.model`, `store.errors` and `store.redis_codec`; never
`router`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from typing import Any, Unpack

import msgpack
import redis.asyncio as aioredis
from redis.asyncio.client import PubSub

from queues.clients import companion
from queues.runtime import Namespace, Runtime, ScriptSet
from store.base import Store, Tuning
from store.common import THREAD_S
from store.errors import StoreError
from store.model import Wake
from store.redis_codec import REFUSALS, pack_args

SCRIPTS = ScriptSet(
    "store",
    (
        "ingest",
        "apply",
        "outbound",
        "state",
        "customer",
        "push",
        "read",
        "link",
        "annotate",
        "view",
        "nodes",
        "desk",
    ),
    ("queues:core", "lib"),
)  # one EVALSHA script each: queues/lua/core.lua and store/lua/lib.lua, then the operation
GROUP = "router"
SEND_GROUP = "send"  # the consumer group of the outgoing jobs (stream `out`)


class RedisBase(Store):
    """The connection half of `store.redis.RedisStore` (see `store.base.Store`)."""

    def __init__(
        self,
        url: str | None = None,
        *,
        client: aioredis.Redis[bytes] | None = None,
        domain: str = "default",
        clock: Callable[[], float] = time.time,
        **tuning: Unpack[Tuning],
    ) -> None:
        if url is None and client is None:
            raise StoreError("the Redis store needs a redis:// URL or a client")
        self.domain = domain
        self._rt = Runtime(Namespace(domain), SCRIPTS, "ids", url=url, client=client)
        self._key = self._rt.namespace.key  # the one key builder; `key()` in lib.lua mirrors it
        self._clock = clock
        self._tune(tuning)
        self.thread_s = THREAD_S
        self._log = self._key("log")
        self._group_ready = False
        self._own: set[tuple[str, str]] = set()  # (stream, consumer): next read starts with own
        self._subscribing = asyncio.Lock()
        self._blocking: aioredis.Redis[bytes] | None = None
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._wakes: dict[str, list[Wake]] = {}
        self._confirmed: dict[str, asyncio.Future[None]] = {}
        self._groups: dict[str, tuple[int, str]] = {}  # customer → (version, group)
        self._groups_live = False  # subscribed to `groups`: the cache is kept true

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, register the scripts, create the consumer group (all idempotent)."""
        client = await self._rt.start()
        if self._blocking is None:
            # a blocking read may wait longer than any timeout; same server or Sentinel service
            self._blocking = companion(client, socket_timeout=None)
        if not self._group_ready:
            # Retried by every start() until it succeeds: Redis may be down when a node boots.
            for stream, group in ((self._log, GROUP), (self._key("out"), SEND_GROUP)):
                try:
                    await client.xgroup_create(stream, group, id="0", mkstream=True)
                except aioredis.ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise
            self._group_ready = True

    async def close(self) -> None:
        """Stop the wake reader; close what this store opened."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        if self._pubsub is not None:
            await self._pubsub.aclose()  # type: ignore[attr-defined]  # stubs predate aclose
            self._pubsub = None
        self._wakes.clear()
        self._confirmed.clear()
        self._groups.clear()
        self._groups_live = False
        if self._blocking is not None:
            await self._blocking.connection_pool.disconnect()
            self._blocking = None
        await self._rt.close()
        self._group_ready = False

    async def purge(self) -> None:
        """Delete every key of this domain (SCAN + UNLINK in batches; never KEYS). For tests."""
        await self._redis()
        await self._rt.purge()

    async def _redis(self) -> aioredis.Redis[bytes]:
        """The client, started (scripts, groups) if it was not."""
        if not self._rt.started:
            await self.start()
        return self._rt.client

    async def _eval(self, name: str, args: Mapping[str, Any]) -> Any:
        """One script call; a refusal becomes the matching `store.errors` error."""
        await self._redis()
        raw = await self._rt.call(name, pack_args(args))
        return REFUSALS.check(msgpack.unpackb(raw, raw=False))
