"""The routing engine: priority queues and atomic task ↔ agent matching, on the memory or the
Redis engine.

`base.py` is the contract, `args.py` what its calls carry (checked) and `effects.py` the
values it returns, `memory.py` (on `memory_state.py` and `memory_steps.py`) and `redis.py`
(+ `lua/`) the two engines, `policy.py` and `skills.py` the rules they decide by,
`runtime.py` the Redis runtime the store shares, `errors.py` the refusals,
`trace.py`/`explain.py`/`why_memory.py` the routing story. May import `agent_state`
(the presence rules) and nothing else of omniroute; `store` uses its Redis helpers and
vocabulary, `router` all of it (`tests/test_layout.py` checks the arrows).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from queues.base import RoutingEngine
from queues.errors import Invalid
from queues.policy import Policy
from queues.runtime import engine_kind

__all__ = ["Policy", "RoutingEngine", "create_engine"]


def create_engine(
    policy: Policy,
    url: str | None = None,
    *,
    clock: Callable[[], float] = time.time,
    domain: str = "default",
) -> RoutingEngine:
    """The routing half of the switch (`router.engines.create_engines` makes both halves from
    the settings; tests and tools make one engine with their own clock): no URL or "memory" →
    the memory engine; "redis://…" → the Redis engine (`queues.runtime.engine_kind`)."""
    kind = engine_kind(url)
    if kind == "memory":
        from queues.memory import MemoryEngine

        return MemoryEngine(policy, clock=clock, domain=domain)
    if kind == "redis":
        from queues.redis import RedisEngine

        engine: RoutingEngine = RedisEngine(policy, url, clock=clock, domain=domain)
        return engine
    raise Invalid(f"engine URL must be empty, 'memory' or redis://…, not {url!r}", "redis.url")
