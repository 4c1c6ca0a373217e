"""The Redis engine: any number of router processes share one routing domain. See `queues.base`.

Why it looks the way it does:

* **One operation, one function call.** Every decision of `docs/routing.md` runs inside one
  Lua function (FCALL) of one library — the helpers once (`LIB`: `queues/lua/lib_*.lua`, in
  order, as one chunk), then each operation's file as a function (`LIBRARY`, a
  `queues.runtime.FunctionLibrary`) — so two routers can never
  hand one task to two agents. Loaded once, the helpers and the decoded policy live between
  calls: a call pays for its own work. Concurrent calls ride one pipeline (`queues.pipeline`):
  under load a round trip carries many decisions.
* **One hash tag per domain.** Every key is `omniroute:{DOMAIN}:…`; KEYS[1] is the domain's
  reservation counter, which routes the call to the node that holds the whole domain, so it
  runs on Redis Cluster too. The scripts build the other keys from the same prefix.
* **Time is an argument.** The scripts never call `TIME`: `now_ms` comes from the caller, so
  every node and every test sees the same decisions as the memory engine.
* **msgpack both ways.** The policy is packed once per engine; arguments, records and results
  are msgpack. A refused operation returns `{err, msg}` having changed nothing; it is raised
  here as the matching `queues.errors` class (`REFUSALS`).
* **The runtime is shared.** Keys, the connection pool, registering the library and the
  automatic pipeline are `queues.runtime`'s, the same the store stands on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgpack
import redis.asyncio as aioredis

from queues.base import RoutingEngine
from queues.effects import RawEffect
from queues.errors import BY_CODE, Invalid, RoutingError
from queues.policy import Policy
from queues.runtime import FunctionLibrary, Namespace, Refusals, Runtime

OPS = (
    "login",
    "presence",
    "heartbeat",
    "logout",
    "enqueue",
    "accept",
    "reject",
    "complete",
    "wrapup_done",
    "withdraw",
    "transfer",
    "reclassify",
    "release",
    "tick",
)
VIEWS = ("stats", "agent", "agents", "task", "dump", "why")
# The helpers every operation starts with, in the order they are concatenated (a Lua local
# must be defined before it is used): the call, the rules, the notes, the steps, the views.
LIB = ("core", "lib_core", "lib_rules", "lib_trace", "lib_steps", "lib_match", "lib_views")
LIBRARY = FunctionLibrary("queues", "omniroute_engine", OPS + VIEWS, LIB)  # one FCALL library
REFUSALS = Refusals(BY_CODE, RoutingError)


class RedisEngine(RoutingEngine):
    """See `queues.base.RoutingEngine`; the algorithm is `docs/routing.md`."""

    def __init__(
        self,
        policy: Policy,
        url: str | None = None,
        *,
        client: aioredis.Redis[bytes] | None = None,
        clock: Callable[[], float] = time.time,
        domain: str = "default",
    ) -> None:
        super().__init__(policy, clock=clock, domain=domain)
        if url is None and client is None:
            raise Invalid("the Redis engine needs a redis:// URL or a client", "redis.url")
        self._rt = Runtime(Namespace(self.domain), LIBRARY, "seq", url=url, client=client)
        self._key = self._rt.namespace.key  # the one key builder; lib_core.lua's `key()` mirrors it
        self._policy = msgpack.packb(policy.to_wire())

    # -- lifecycle: `queues.runtime` -----------------------------------------------------------

    async def start(self) -> None:
        """Connect (when given a URL) and register the functions once for this client."""
        await self._rt.start()

    async def close(self) -> None:
        """Close the client only if this engine created it."""
        await self._rt.close()

    async def ping(self) -> bool:
        """One PING: is Redis reachable? Errors of the connection count as not ready."""
        return await self._rt.ping()

    async def purge(self) -> None:
        """Delete every key of this domain (SCAN + UNLINK in batches; never KEYS)."""
        await self._rt.purge()

    # -- backend hooks -----------------------------------------------------------------------

    async def _eval(self, name: str, now_ms: int, args: Mapping[str, Any]) -> Any:
        raw = await self._rt.call(name, now_ms, self._policy, msgpack.packb(dict(args)))
        return msgpack.unpackb(raw, raw=False)

    async def _call(self, op: str, now_ms: int, args: Mapping[str, Any]) -> list[RawEffect]:
        [result] = await self._call_many(op, now_ms, [args])
        if isinstance(result, RoutingError):
            raise result
        return result

    async def _call_many(
        self, op: str, now_ms: int, argss: Sequence[Mapping[str, Any]]
    ) -> list[list[RawEffect] | RoutingError]:
        if op not in OPS:
            raise ValueError(f"unknown operation {op!r}")
        argvs = [(now_ms, self._policy, msgpack.packb(dict(a))) for a in argss]
        out: list[list[RawEffect] | RoutingError] = []
        for raw in await self._rt.many(op, argvs):
            if isinstance(raw, Exception):
                raise raw
            result = msgpack.unpackb(raw, raw=False)
            refused = REFUSALS.of(result)
            out.append(result if refused is None else refused)
        return out

    async def _read(self, op: str, now_ms: int, args: Mapping[str, Any]) -> Any:
        if op not in VIEWS:
            raise ValueError(f"unknown view {op!r}")
        result = await self._eval(op, now_ms, args)
        if op == "stats":
            for row in result:
                row["agents"] = _as_map(row["agents"])
        elif op == "dump":
            result = {
                kind: dict(sorted(_as_map(result[kind]).items())) for kind in ("tasks", "agents")
            }
            for views in result.values():
                for view in views.values():
                    _skills_map(view)
        elif op in ("agent", "task") and result:
            _skills_map(result)
        elif op == "agents":
            for view in result:
                _skills_map(view)
        return result


def _skills_map(view: dict[str, Any]) -> None:
    """A view names `skills` only when there are any (as the memory engine's do)."""
    skills = view.pop("skills", None)
    if skills:
        view["skills"] = dict(skills)


def _as_map(value: Any) -> dict[str, Any]:
    """Lua's cmsgpack packs an empty table as an empty array; the views mean an empty map."""
    return dict(value) if value else {}
