"""Priority queues and atomic task ↔ agent matching, on the memory or the Redis engine."""

from __future__ import annotations

import time
from collections.abc import Callable

from queues.base import RoutingEngine
from queues.errors import Invalid
from queues.policy import Policy

__all__ = ["Policy", "RoutingEngine", "create_engine"]


def create_engine(
    policy: Policy,
    url: str | None = None,
    *,
    clock: Callable[[], float] = time.time,
    domain: str = "default",
) -> RoutingEngine:
    """The one switch: no URL or "memory" → the memory engine; "redis://…" → the Redis engine."""
    if not url or url == "memory":
        from queues.memory import MemoryEngine

        return MemoryEngine(policy, clock=clock, domain=domain)
    if url.startswith(
        ("redis://", "rediss://", "unix://", "redis+sentinel://", "rediss+sentinel://")
    ):
        from queues.redis import RedisEngine

        engine: RoutingEngine = RedisEngine(policy, url, clock=clock, domain=domain)
        return engine
    raise Invalid(f"engine URL must be empty, 'memory' or redis://…, not {url!r}", "redis.url")
