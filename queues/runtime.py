"""The Redis runtime both engines stand on: the routing engine (`queues.redis`) and the store
(`store.redis*`) each hold one `Runtime` and differ only in their Lua and their keys.

One concept: how an engine of this project talks to Redis.

- **Which engine.** `engine_kind(url)` is the one reading of `[redis] url`: `memory` or
  `redis`; every switch (`router.engines`, `queues.create_engine`, `store.create_store`)
  asks it.
- **Keys.** `Namespace` builds every key, `omniroute:{DOMAIN}:part:part…`. The braces are
  Redis Cluster's hash tag: every key of a domain lands on one slot, so one Lua call may
  touch any of them. `key()` in each engine's Lua helpers builds the same names from the
  prefix the call passes as ARGV[1].
- **Connection.** `connect(url)` is the one pool both engines use (`POOL_SIZE` connections,
  callers wait `POOL_WAIT_S` for a free one); `queues.clients` reads the URL (Sentinel too).
- **Lua.** An engine's Lua is its helpers (`lib.lua`, or several files read in order as one
  chunk: `Registry.lib`) plus one file per operation, loaded
  with `importlib.resources`: as one function library (`FunctionLibrary`, FCALL: the
  helpers load once per library) or as scripts with the helpers in front
  (`ScriptSet`, EVALSHA). The code is read once; the procedures are registered once per
  client, when the engine starts.
- **Refusals.** A refused call returns `{err = code, msg = text}` having changed nothing;
  `Refusals` turns it into the engine's exception, by one table of codes per engine.

May import `queues.clients` and `queues.pipeline`; never an engine, `store` or `router`
(the store imports this module, and `store` may import `queues`, never the reverse).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from typing import Any, Final, Generic, Literal, TypeVar

import redis.asyncio as aioredis

from queues import clients
from queues.pipeline import Call, Function, Procedure, Script, ScriptPipeline

REDIS_SCHEMES: Final = (
    "redis://",
    "rediss://",
    "unix://",
    "redis+sentinel://",
    "rediss+sentinel://",
)
POOL_SIZE: Final = 64  # connections per client; more callers wait for one
POOL_WAIT_S: Final = 10.0  # how long a caller waits for a free connection
PURGE_BATCH: Final = 500
_GLOB_SPECIAL = "\\*?[]"

Refused = TypeVar("Refused", bound=Exception)


def engine_kind(url: str | None) -> Literal["memory", "redis"] | None:
    """`memory` for no URL or "memory", `redis` for a Redis URL (see `queues.clients`),
    None for anything else (each switch says so in its own error)."""
    if not url or url == "memory":
        return "memory"
    if url.startswith(REDIS_SCHEMES):
        return "redis"
    return None


class Namespace:
    """Every key of one routing domain, under the domain's hash tag."""

    def __init__(self, domain: str) -> None:
        self.domain = domain
        self.prefix = f"omniroute:{{{domain}}}:"

    def key(self, *parts: str) -> str:
        """The one place key names are made (ids always last, so no id forges another key)."""
        return self.prefix + ":".join(parts)

    def pattern(self) -> str:
        """A SCAN pattern matching every key of the domain and no other."""
        escaped = "".join("\\" + ch if ch in _GLOB_SPECIAL else ch for ch in self.prefix)
        return escaped + "*"


def connect(url: str, **kwargs: Any) -> aioredis.Redis[bytes]:
    """A client whose pool makes callers wait for a free connection when all are busy (the
    default pool raises MaxConnectionsError: hundreds of desktops heartbeating at once would
    see refusals under load); a `redis+sentinel://` URL follows the primary. `kwargs` go to
    every connection."""
    return clients.connect(url, max_connections=POOL_SIZE, timeout=POOL_WAIT_S, **kwargs)


# -- Lua -------------------------------------------------------------------------------------


def lua_text(package: str, name: str) -> str:
    """`<package>/lua/<name>.lua`, as shipped with the package."""
    return (resources.files(package) / "lua" / f"{name}.lua").read_text("utf-8")


class Registry(ABC):
    """An engine's Lua procedures by name. The code is read once per process; the procedures
    are made once per client, when its `Runtime` starts, and kept until it closes. Redis
    itself is given the code lazily: the first call that finds it missing (a fresh server, a
    flushed script cache, a failover) loads it and is sent again (`queues.pipeline`)."""

    def __init__(self, package: str, ops: Sequence[str], lib: Sequence[str] = ("lib",)) -> None:
        self.package = package
        self.ops = tuple(ops)
        self.lib = tuple(lib)

    def helpers(self) -> str:
        """The helpers every operation starts with: the `lib` files, in order, one after the
        other as one text (one Lua chunk, so a local of one file is seen by the next). A name
        `package:file` is another package's (the store opens with `queues:core`)."""
        parts = []
        for name in self.lib:
            package, _, file = name.rpartition(":")
            parts.append(lua_text(package or self.package, file))
        return "".join(parts)

    @abstractmethod
    def procedures(self, client: aioredis.Redis[bytes]) -> dict[str, Procedure]:
        """The procedures for calls on `client`."""


class FunctionLibrary(Registry):
    """The helpers once, then every operation as the function `<name>_<op>` of one library
    (FUNCTION LOAD, FCALL). The helpers' top level (their functions, what they cache) is built
    once per load instead of once per call. The name carries a digest of the code, so nodes of
    two versions (a rolling upgrade) each call their own."""

    def __init__(
        self, package: str, stem: str, ops: Sequence[str], lib: Sequence[str] = ("lib",)
    ) -> None:
        super().__init__(package, ops, lib)
        self.stem = stem
        self._library: tuple[str, str] | None = None

    def library(self) -> tuple[str, str]:
        """(name, code) of the library, read once."""
        if self._library is None:
            self._library = self._build()
        return self._library

    def _build(self) -> tuple[str, str]:
        lib = self.helpers()
        ops = {op: lua_text(self.package, op) for op in self.ops}
        digest = hashlib.sha1("\0".join([lib, *ops.values()]).encode()).hexdigest()[:12]
        name = f"{self.stem}_{digest}"
        parts = [f"#!lua name={name}", lib]
        for op, text in ops.items():
            parts.append(
                f"redis.register_function('{name}_{op}', function(KEYS, ARGV)\n"
                f"begin(KEYS, ARGV)\n{text}\nend)"
            )
        return name, "\n".join(parts) + "\n"

    def procedures(self, client: aioredis.Redis[bytes]) -> dict[str, Procedure]:
        name, code = self.library()
        return {op: Function(f"{name}_{op}", code) for op in self.ops}


class ScriptSet(Registry):
    """One script per operation, each the helpers + "\\n" + `<op>.lua` (EVALSHA)."""

    def __init__(self, package: str, ops: Sequence[str], lib: Sequence[str] = ("lib",)) -> None:
        super().__init__(package, ops, lib)
        self._sources: dict[str, str] = {}

    def source(self, op: str) -> str:
        """The full text of one script, read once: the shared helpers, then the operation."""
        if op not in self._sources:
            self._sources[op] = self.helpers() + "\n" + lua_text(self.package, op)
        return self._sources[op]

    def procedures(self, client: aioredis.Redis[bytes]) -> dict[str, Procedure]:
        return {op: Script(client, self.source(op)) for op in self.ops}


class Refusals(Generic[Refused]):
    """An engine's table of refusal codes → exceptions (the message their argument); a code
    not in the table gets `default`."""

    def __init__(
        self, table: Mapping[str, Callable[[str], Refused]], default: Callable[[str], Refused]
    ) -> None:
        self.table = dict(table)
        self.default = default

    def of(self, reply: Any) -> Refused | None:
        """The exception a decoded reply stands for, or None when it is a result."""
        if isinstance(reply, dict) and "err" in reply:
            return self.table.get(str(reply["err"]), self.default)(str(reply["msg"]))
        return None

    def check(self, reply: Any) -> Any:
        """The reply, or its refusal raised."""
        refused = self.of(reply)
        if refused is not None:
            raise refused
        return reply


# -- one engine's hold on Redis --------------------------------------------------------------


class Runtime:
    """A client (made from a URL and owned, or given and left open), the engine's procedures
    on it and the automatic pipeline (`queues.pipeline`) its calls ride. Every call passes
    the engine's anchor as KEYS[1] and the namespace's prefix as ARGV[1]: the anchor routes
    the call to the node of the domain's hash tag."""

    def __init__(
        self,
        namespace: Namespace,
        registry: Registry,
        anchor: str,
        *,
        url: str | None = None,
        client: aioredis.Redis[bytes] | None = None,
    ) -> None:
        self.namespace = namespace
        self.registry = registry
        self.anchor = namespace.key(anchor)
        self._url = url
        self._client = client
        self._owned = False
        self.procedures: dict[str, Procedure] = {}
        self._pipeline: ScriptPipeline | None = None

    @property
    def started(self) -> bool:
        return self._pipeline is not None

    @property
    def client(self) -> aioredis.Redis[bytes]:
        """The client; `start()` first."""
        assert self._client is not None, "Runtime.start() first"
        return self._client

    @property
    def pipeline(self) -> ScriptPipeline:
        assert self._pipeline is not None, "Runtime.start() first"
        return self._pipeline

    async def start(self) -> aioredis.Redis[bytes]:
        """Connect (when given a URL) and register the procedures once for this client."""
        if self._client is None:
            assert self._url is not None
            self._client = connect(self._url)
            self._owned = True
        if self._pipeline is None:
            self.procedures = self.registry.procedures(self._client)
            self._pipeline = ScriptPipeline(self._client)
        return self._client

    async def close(self) -> None:
        """Close the client only if this runtime made it."""
        if self._owned and self._client is not None:
            await self._client.connection_pool.disconnect()
            self._client = None
            self._owned = False
        self.procedures = {}
        self._pipeline = None

    async def ping(self) -> bool:
        """One PING: is Redis reachable? Errors of the connection count as not ready."""
        client = await self.start()
        try:
            return bool(await client.ping())
        except (aioredis.ConnectionError, aioredis.TimeoutError, OSError):
            return False

    async def purge(self) -> None:
        """Delete every key of the namespace (SCAN + UNLINK in batches; never KEYS)."""
        client = await self.start()
        batch: list[bytes] = []
        async for name in client.scan_iter(match=self.namespace.pattern(), count=PURGE_BATCH):
            batch.append(name)
            if len(batch) >= PURGE_BATCH:
                await client.unlink(*batch)
                batch = []
        if batch:
            await client.unlink(*batch)

    def args(self, *argv: Any) -> tuple[Any, ...]:
        """KEYS[1] and ARGV of a call: the anchor, the prefix, then `argv`."""
        return (self.anchor, self.namespace.prefix, *argv)

    async def call(self, name: str, *argv: Any) -> Any:
        """One call of procedure `name`; its raw reply, or its error reply raised."""
        if self._pipeline is None:
            await self.start()
        return await self.pipeline.call(self.procedures[name], *self.args(*argv))

    async def many(self, name: str, argvs: Sequence[Sequence[Any]]) -> list[Any]:
        """Calls of procedure `name`, in order, riding together; each raw reply or error
        reply (an exception) in its place."""
        if self._pipeline is None:
            await self.start()
        procedure = self.procedures[name]
        calls: list[Call] = [(procedure, self.args(*argv)) for argv in argvs]
        return await self.pipeline.many(calls)
