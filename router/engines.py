"""The one switch from the settings to the two engines: the routing engine (`queues`) and the
store (`store`, with its campaign state, `store.campaigns`), all on memory or all on the Redis
at `[redis] url`, in the same domain.

Which it is, is read once (`queues.runtime.engine_kind`); a Redis pair shares the runtime
of `queues.runtime` (keys, pool, scripts, refusals), each with its own client. Neither engine
is started here: `create_app` starts and closes them.

May import `queues`, `store` and `router.settings`; nothing that imports aiohttp.
"""

from __future__ import annotations

from typing import NamedTuple

import queues
import store
from queues.base import RoutingEngine
from queues.errors import Invalid
from queues.runtime import engine_kind
from router.settings import Settings
from store.base import Store
from store.campaigns import CampaignStore, create_campaign_store


class Engines(NamedTuple):
    """What one node routes and stores with."""

    routing: RoutingEngine
    store: Store


def create_engines(settings: Settings) -> Engines:
    """Both engines from `[redis] url` and `domain`; `Invalid` (field `redis.url`) for a URL
    that names neither."""
    url = settings.redis.url
    if engine_kind(url) is None:
        raise Invalid(f"engine URL must be empty, 'memory' or redis://…, not {url!r}", "redis.url")
    routing = queues.create_engine(settings.policy, url, domain=settings.domain)
    return Engines(routing, create_store(settings))


def create_store(settings: Settings) -> Store:
    """The store half alone, beside an engine made elsewhere (tests, with their own clock):
    memory, or Redis at the same URL and domain."""
    return store.create_store(
        settings.redis.url,
        domain=settings.domain,
        claim_idle_ms=round(settings.events.claim_idle_s * 1000),
        dedupe_s=round(settings.events.dedupe_s),
    )


def create_campaigns(settings: Settings) -> CampaignStore:
    """The campaign state (`store.campaigns`) beside the store: memory, or Redis at the same URL
    and domain."""
    return create_campaign_store(settings.redis.url, domain=settings.domain)
