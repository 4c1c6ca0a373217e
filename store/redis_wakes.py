"""The Redis store's pub/sub connection: wakes for the agents listened to on this node, and the
client-group cache kept true by the group changes every node hears. `RedisStore` builds on
`RedisWakes` (beside `RedisLog`); `store.redis` lists the channels.

**Wakes.** One pub/sub connection per store and one reader task call the registered callbacks
(subscribe on an agent's first listener, unsubscribe on its last); callbacks should be quick.
A wake carries the pushed frames, so an up-to-date session writes them without reading the
outbox. After the pub/sub connection was lost, every listener is woken with its agent's head
and no frames, since pushes in between were not heard.

**Client groups.** The send-time tier filter asks `client_group` for every frame with customer
content. The same pub/sub connection hears every group change (`groups`), so while it is
subscribed the store answers from a cache of (version, group) per customer, filled from every
customer record a script returns; a higher version always wins, so a reply that raced a change
never undoes it. Without the subscription (not yet, or lost) it reads Redis.

May import `store.redis_base` and below; never `router`.
"""

from __future__ import annotations

import asyncio

import msgpack
import redis.asyncio as aioredis
import structlog

from store.common import call_wake
from store.model import Customer, Wake
from store.redis_base import RedisBase
from store.redis_codec import as_text, wake_frames

CONFIRM_S = 5.0
GROUP_CACHE = 100_000  # customers whose client group a node keeps in memory

log = structlog.get_logger(__name__)


class RedisWakes(RedisBase):
    """Wakes and client groups of `store.redis.RedisStore` (see `store.base.Store`)."""

    def _seen(self, customer: Customer) -> Customer:
        """Every customer record a reply carries refreshes the client-group cache."""
        if self._groups_live:
            self._remember_group(customer.id, customer.version, customer.client_group)
        return customer

    def _remember_group(self, customer: str, version: int, group: str) -> None:
        """Keep the group of the higher version (a reply that raced a change never undoes
        it); at `GROUP_CACHE` customers the oldest entry makes room."""
        cached = self._groups.get(customer)
        if cached is None or cached[0] < version:
            if cached is None and len(self._groups) >= GROUP_CACHE:
                self._groups.pop(next(iter(self._groups)))
            self._groups[customer] = (version, group)

    async def client_group(self, customer_id: str) -> str | None:
        if self._groups_live:
            cached = self._groups.get(customer_id)
            if cached is not None:
                return cached[1]
        customer = await self.customer(customer_id)
        return customer.client_group if customer is not None else None

    async def listen(self, agent: str, wake: Wake) -> None:
        self._wakes.setdefault(agent, []).append(wake)
        confirmed = self._confirmed.get(agent)
        if confirmed is None:
            confirmed = self._confirmed[agent] = asyncio.get_running_loop().create_future()
            # One at a time: concurrent first subscribes on a PubSub without a connection yet
            # would each open one, and all but the last would be orphaned (never woken).
            async with self._subscribing:
                if self._pubsub is None:
                    pubsub = (await self._redis()).pubsub()
                    await pubsub.connect()  # type: ignore[attr-defined]  # stubs predate it
                    self._pubsub = pubsub
                    await pubsub.subscribe(self._key("groups"))
                await self._pubsub.subscribe(self._key("wake", agent))
                if self._reader is None:
                    self._reader = asyncio.create_task(self._read_wakes())
        try:
            await asyncio.wait_for(asyncio.shield(confirmed), CONFIRM_S)
        except TimeoutError:
            log.warning("store.subscribe_unconfirmed", agent=agent)

    async def unlisten(self, agent: str, wake: Wake) -> None:
        wakes = self._wakes.get(agent, [])
        if wake in wakes:
            wakes.remove(wake)
        if wakes or agent not in self._wakes:
            return
        del self._wakes[agent]
        confirmed = self._confirmed.pop(agent, None)
        if confirmed is not None and not confirmed.done():
            confirmed.cancel()
        if self._pubsub is not None:
            await self._pubsub.unsubscribe(self._key("wake", agent))

    async def _read_wakes(self) -> None:
        """The one reader of this store's pub/sub connection: dispatch wakes to callbacks and
        keep the client-group cache true."""
        assert self._pubsub is not None
        channel_prefix = len(self._key("wake", ""))
        groups = self._key("groups").encode()
        lost = False
        while True:
            try:
                message = await self._pubsub.get_message(timeout=1.0)
            except (aioredis.ConnectionError, aioredis.TimeoutError, OSError) as exc:
                log.warning("store.wakes_lost", error=type(exc).__name__)
                lost = True
                self._groups_live = False  # changes may go unheard: read Redis until back
                self._groups.clear()
                await asyncio.sleep(0.5)
                continue
            if lost:
                lost = False
                await self._wake_all()
            if message is None:
                continue
            channel = message["channel"]
            if channel == groups:
                if message["type"] == "subscribe":
                    self._groups.clear()
                    self._groups_live = True
                elif message["type"] == "message":
                    self._group_changed(message["data"])
                continue
            agent = as_text(channel)[channel_prefix:]
            if message["type"] == "subscribe":
                confirmed = self._confirmed.get(agent)
                if confirmed is not None and not confirmed.done():
                    confirmed.set_result(None)
            elif message["type"] == "message":
                frames = wake_frames(message["data"])
                if not frames:
                    continue
                for wake in list(self._wakes.get(agent, ())):
                    await call_wake(wake, agent, frames[-1][0], frames)

    def _group_changed(self, data: bytes) -> None:
        customer, version, group = msgpack.unpackb(data, raw=False)
        self._remember_group(str(customer), int(version), str(group))

    async def _wake_all(self) -> None:
        for agent, wakes in list(self._wakes.items()):
            try:
                seq = await self.head(agent)
            except (aioredis.ConnectionError, aioredis.TimeoutError, OSError):
                return
            for wake in list(wakes):
                await call_wake(wake, agent, seq, [])
