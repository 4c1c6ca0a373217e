"""The Redis engine: any number of router processes share one routing domain. See `queues.base`.

Why it looks the way it does:

* **One operation, one function call.** Every decision of `docs/routing.md` runs inside one
  Lua function (FCALL) of one library — `queues/lua/lib.lua` once, then each operation's file
  as a function (`library()`) — so two routers can never hand one task to two agents. Loaded
  once, the helpers and the decoded policy live between calls: a call pays for its own work.
  Concurrent calls ride one pipeline (`queues.pipeline`): under load a round trip carries
  many decisions.
* **One hash tag per domain.** Every key is `omniroute:{DOMAIN}:…`; KEYS[1] is the domain's
  reservation counter, which routes the call to the node that holds the whole domain, so it
  runs on Redis Cluster too. The scripts build the other keys from the same prefix.
* **Time is an argument.** The scripts never call `TIME`: `now_ms` comes from the caller, so
  every node and every test sees the same decisions as the memory engine.
* **msgpack both ways.** The policy is packed once per engine; arguments, records and results
  are msgpack. A refused operation returns `{err, msg}` having changed nothing; it is raised
  here as the matching `queues.errors` class.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from importlib import resources
from typing import Any

import msgpack
import redis.asyncio as aioredis

from queues import clients
from queues.base import RawEffect, RoutingEngine
from queues.errors import Invalid, RoutingError, from_code
from queues.pipeline import Function, ScriptPipeline
from queues.policy import Policy

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
PURGE_BATCH = 500
_GLOB_SPECIAL = "\\*?[]"


@cache
def library() -> tuple[str, str]:
    """(name, code) of the engine's Redis function library: lib.lua once, then every operation
    and view as a function `<name>_<op>`. The name carries a digest of the code, so nodes of
    two versions (a rolling upgrade) each call their own. lib.lua's top level (its helpers and
    the decoded policies) is built once per load instead of once per call."""
    lua = resources.files("queues") / "lua"
    lib = (lua / "lib.lua").read_text("utf-8")
    ops = {name: (lua / f"{name}.lua").read_text("utf-8") for name in OPS + VIEWS}
    digest = hashlib.sha1("\0".join([lib, *ops.values()]).encode()).hexdigest()[:12]
    name = f"omniroute_engine_{digest}"
    parts = [f"#!lua name={name}", lib]
    for op, text in ops.items():
        parts.append(
            f"redis.register_function('{name}_{op}', function(KEYS, ARGV)\n"
            f"begin(KEYS, ARGV)\n{text}\nend)"
        )
    return name, "\n".join(parts) + "\n"


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in _GLOB_SPECIAL else ch for ch in text)


POOL_SIZE = clients.POOL_SIZE  # connections per client; more callers wait for one
POOL_WAIT_S = clients.POOL_WAIT_S


def connect(url: str) -> aioredis.Redis[bytes]:
    """A client whose pool makes callers wait for a free connection when all are busy (the
    default pool raises MaxConnectionsError: hundreds of desktops heartbeating at once would
    see refusals under load); a `redis+sentinel://` URL follows the primary
    (`queues.clients`)."""
    return clients.connect(url, max_connections=POOL_SIZE, timeout=POOL_WAIT_S)


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
        self._url = url
        self._client = client
        self._owned = False
        self._prefix = f"omniroute:{{{self.domain}}}:"
        self._anchor = self._key("seq")
        self._policy = msgpack.packb(policy.to_wire())
        self._functions: dict[str, Function] = {}
        self._pipeline: ScriptPipeline | None = None

    def _key(self, *parts: str) -> str:
        """The one place key names are made; `key()` in lib.lua mirrors it."""
        return self._prefix + ":".join(parts)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect (when given a URL) and register the scripts once for this client."""
        if self._client is None:
            assert self._url is not None
            self._client = connect(self._url)
            self._owned = True
        if not self._functions:
            name, code = library()
            self._functions = {op: Function(f"{name}_{op}", code) for op in OPS + VIEWS}
            self._pipeline = ScriptPipeline(self._client)

    async def close(self) -> None:
        """Close the client only if this engine created it."""
        if self._owned and self._client is not None:
            await self._client.connection_pool.disconnect()
            self._client = None
            self._owned = False
            self._functions = {}
            self._pipeline = None

    async def ping(self) -> bool:
        """One PING: is Redis reachable? Errors of the connection count as not ready."""
        await self.start()
        assert self._client is not None
        try:
            return bool(await self._client.ping())
        except (aioredis.ConnectionError, aioredis.TimeoutError, OSError):
            return False

    async def purge(self) -> None:
        """Delete every key of this domain (SCAN + UNLINK in batches; never KEYS)."""
        await self.start()
        assert self._client is not None
        batch: list[bytes] = []
        async for name in self._client.scan_iter(
            match=_glob_escape(self._prefix) + "*", count=PURGE_BATCH
        ):
            batch.append(name)
            if len(batch) >= PURGE_BATCH:
                await self._client.unlink(*batch)
                batch = []
        if batch:
            await self._client.unlink(*batch)

    # -- backend hooks -----------------------------------------------------------------------

    async def _eval(self, name: str, now_ms: int, args: Mapping[str, Any]) -> Any:
        if self._pipeline is None:
            await self.start()
        assert self._pipeline is not None
        packed = msgpack.packb(dict(args))
        raw = await self._pipeline.call(
            self._functions[name], self._anchor, self._prefix, now_ms, self._policy, packed
        )
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
        if self._pipeline is None:
            await self.start()
        assert self._pipeline is not None
        function = self._functions[op]
        calls = [
            (function, (self._anchor, self._prefix, now_ms, self._policy, msgpack.packb(dict(a))))
            for a in argss
        ]
        out: list[list[RawEffect] | RoutingError] = []
        for raw in await self._pipeline.many(calls):
            if isinstance(raw, Exception):
                raise raw
            result = msgpack.unpackb(raw, raw=False)
            if isinstance(result, dict):
                out.append(from_code(str(result["err"]), str(result["msg"])))
            else:
                out.append(result)
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
