"""The store: the durable event log, customers, conversations, history, outgoing jobs and
per-agent outboxes — the second engine beside `queues`, on memory or on Redis.

`store.base` states the contract (`Store`, what each call does atomically); `store.model` and
`store.errors` the shapes and refusals every caller speaks; `store.common` what both backends
compute the same way. `store.memory` (with `memory_log`, `memory_records`) and `store.redis`
(with `redis_base`, `redis_log`, `redis_wakes`, `redis_codec`, and the scripts in `lua/`)
implement it; neither backend imports the other. Beside it, campaign state — the durable
call lists of outbound campaigns — has its own small contract, `store.campaigns`, with
`store.campaigns_memory` and `store.campaigns_redis` (scripts `lua/cp_*.lua`).

May import `queues`' Redis runtime (`queues.runtime`, `queues.clients`, `queues.pipeline`),
its vocabulary (`queues.policy`) and `queues.errors.in_place`; never `router` — the server
builds on the store, not the other way round.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Unpack

from queues.runtime import engine_kind
from store.base import Store, Tuning
from store.errors import StoreError

__all__ = ["Store", "create_store"]


def create_store(
    url: str | None = None,
    *,
    domain: str = "default",
    clock: Callable[[], float] = time.time,
    **tuning: Unpack[Tuning],
) -> Store:
    """The store half of the switch (`router.engines.create_engines` makes both halves from
    the settings), like `queues.create_engine`: no URL or "memory" → the memory store; a
    Redis URL → the Redis store at that URL. Not started: `start()` connects."""
    kind = engine_kind(url)
    if kind == "memory":
        from store.memory import MemoryStore

        return MemoryStore(domain, clock=clock, **tuning)
    if kind == "redis":
        from store.redis import RedisStore

        return RedisStore(url, domain=domain, clock=clock, **tuning)
    raise StoreError(f"store URL must be empty, 'memory' or redis://…, not {url!r}")
