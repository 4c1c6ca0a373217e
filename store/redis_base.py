"""The Redis store's connections, scripts and keys: what `start` opens and `close` releases,
the one place key names are made, and the one way a script is called. `RedisLog` and
`RedisWakes` build on `RedisBase`, and `RedisStore` on both; `store.redis` documents the keys
and round trips.

May import `queues`' Redis helpers, `store.base`, `store.common`, `store.model`, `store.errors`
and `store.redis_codec`; never `router`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from functools import cache
from importlib import resources
from typing import Any

import msgpack
import redis.asyncio as aioredis
from redis.asyncio.client import PubSub

from queues.clients import companion
from queues.pipeline import Script, ScriptPipeline
from queues.redis import connect
from store.base import Store
from store.common import THREAD_S
from store.errors import StoreError
from store.model import Wake
from store.redis_codec import pack_args, script_reply

SCRIPTS = (
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
)
GROUP = "router"
SEND_GROUP = "send"  # the consumer group of the outgoing jobs (stream `out`)
PURGE_BATCH = 500
_GLOB_SPECIAL = "\\*?[]"


@cache
def script_source(name: str) -> str:
    """The full text of one script: the shared helpers, then the operation."""
    lua = resources.files("store") / "lua"
    return (lua / "lib.lua").read_text("utf-8") + "\n" + (lua / f"{name}.lua").read_text("utf-8")


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in _GLOB_SPECIAL else ch for ch in text)


class RedisBase(Store):
    """The connection half of `store.redis.RedisStore` (see `store.base.Store`)."""

    def __init__(
        self,
        url: str | None = None,
        *,
        client: aioredis.Redis[bytes] | None = None,
        domain: str = "default",
        clock: Callable[[], float] = time.time,
        dedupe_s: int | None = None,
        claim_idle_ms: int | None = None,
        outbox_keep: int | None = None,
    ) -> None:
        if url is None and client is None:
            raise StoreError("the Redis store needs a redis:// URL or a client")
        self.domain = domain
        self._url = url
        self._client = client
        self._owned = False
        self._clock = clock
        if dedupe_s is not None:
            self.dedupe_s = dedupe_s
        if claim_idle_ms is not None:
            self.claim_idle_ms = claim_idle_ms
        if outbox_keep is not None:
            self.outbox_keep = outbox_keep
        self.thread_s = THREAD_S
        self._prefix = f"omniroute:{{{domain}}}:"
        self._anchor = self._key("ids")
        self._log = self._key("log")
        self._scripts: dict[str, Script] = {}
        self._pipeline: ScriptPipeline | None = None
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

    def _key(self, *parts: str) -> str:
        """The one place key names are made; `key()` in store/lua/lib.lua mirrors it."""
        return self._prefix + ":".join(parts)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, register the scripts, create the consumer group (all idempotent)."""
        if self._client is None:
            assert self._url is not None
            self._client = connect(self._url)
            self._owned = True
        if self._blocking is None:
            # a blocking read may wait longer than any timeout; same server or Sentinel service
            self._blocking = companion(self._client, socket_timeout=None)
        if not self._scripts:
            client = self._client
            self._scripts = {name: Script(client, script_source(name)) for name in SCRIPTS}
            self._pipeline = ScriptPipeline(client)
        if not self._group_ready:
            # Retried by every start() until it succeeds: Redis may be down when a node boots.
            for stream, group in ((self._log, GROUP), (self._key("out"), SEND_GROUP)):
                try:
                    await self._client.xgroup_create(stream, group, id="0", mkstream=True)
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
        if self._owned and self._client is not None:
            await self._client.connection_pool.disconnect()
            self._client = None
            self._owned = False
        self._scripts = {}
        self._pipeline = None
        self._group_ready = False

    async def purge(self) -> None:
        """Delete every key of this domain (SCAN + UNLINK in batches; never KEYS). For tests."""
        redis = await self._redis()
        batch: list[bytes] = []
        async for name in redis.scan_iter(
            match=_glob_escape(self._prefix) + "*", count=PURGE_BATCH
        ):
            batch.append(name)
            if len(batch) >= PURGE_BATCH:
                await redis.unlink(*batch)
                batch = []
        if batch:
            await redis.unlink(*batch)

    async def _redis(self) -> aioredis.Redis[bytes]:
        if self._client is None or not self._scripts:
            await self.start()
        assert self._client is not None
        return self._client

    async def _eval(self, name: str, args: Mapping[str, Any]) -> Any:
        """One script call; a refusal becomes the matching `store.errors` error."""
        await self._redis()
        assert self._pipeline is not None
        raw = await self._pipeline.call(
            self._scripts[name], self._anchor, self._prefix, pack_args(args)
        )
        return script_reply(msgpack.unpackb(raw, raw=False))
