"""Redis clients from one URL: a server, or the primary that Redis Sentinel names.

Every client the node makes (the engine's, the store's, the store's blocking reader) comes
from here, through `queues.runtime.connect` (the pool settings), so one setting
(`[redis] url`) decides for all of them:

- `redis://…`, `rediss://…`, `unix://…` — that server (redis-py's URL syntax).
- `redis+sentinel://[user:password@]host:port[,host:port…]/SERVICE[/DB]` — the primary of
  SERVICE as the listed Sentinels report it (`rediss+sentinel://` for TLS to Redis). The
  password, if any, is Redis's; `?sentinel_password=…` gives one for the Sentinels.
  redis-py's `SentinelConnectionPool` asks a Sentinel for the primary's address whenever it
  opens a connection, drops idle connections when the address changed, and treats a
  `READONLY` answer (an old primary, now a replica) as a broken connection: after a
  failover the node follows the new primary by itself, and requests in between fail as
  with Redis down (503, `/readyz` not ready). Functions and scripts need nothing more: a
  FUNCTION LOAD replicates, and a missing one is loaded again on its first `Function not
  found`/`NOSCRIPT` (`queues.pipeline`).

Pools block a caller for a free connection instead of failing (`BlockingConnectionPool`);
`BlockingSentinelPool` is that behaviour on Sentinel's pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

SCHEMES: Final = ("redis+sentinel", "rediss+sentinel")
SENTINEL_TIMEOUT_S: Final = 1.0  # one question to one Sentinel; the next is asked after it


class BlockingSentinelPool(SentinelConnectionPool, aioredis.BlockingConnectionPool):  # type: ignore[type-arg]
    """Sentinel's pool (the primary's address asked of the Sentinels) with the blocking
    pool's wait for a free connection."""


@dataclass(frozen=True)
class SentinelUrl:
    """A parsed `redis+sentinel://` URL."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None
    ssl: bool = False


def is_sentinel(url: str) -> bool:
    return url.split("://", 1)[0] in SCHEMES


def parse_sentinel_url(url: str) -> SentinelUrl:
    """The parts of a `redis+sentinel://` URL; `ValueError` saying what is wrong."""
    scheme, _, rest = url.partition("://")
    if scheme not in SCHEMES:
        raise ValueError(f"not a {SCHEMES[0]}:// URL")
    parts = urlsplit(f"redis://{rest}")
    hosts = parts.netloc.rpartition("@")[2]
    sentinels: list[tuple[str, int]] = []
    for item in hosts.split(","):
        host, sep, port = item.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("each Sentinel must be host:port")
        sentinels.append((host.strip("[]"), int(port)))
    path = [p for p in parts.path.split("/") if p]
    if not path or len(path) > 2:
        raise ValueError("the path must be /SERVICE or /SERVICE/DB")
    if len(path) == 2 and not path[1].isdigit():
        raise ValueError("the database must be a number")
    query = dict(parse_qsl(parts.query))
    unknown = set(query) - {"sentinel_password"}
    if unknown:
        raise ValueError(f"unknown query field {sorted(unknown)[0]!r}")
    userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
    user, _, password = userinfo.partition(":")
    return SentinelUrl(
        sentinels=tuple(sentinels),
        service=unquote(path[0]),
        db=int(path[1]) if len(path) == 2 else 0,
        username=unquote(user) or None,
        password=unquote(password) or None,
        sentinel_password=query.get("sentinel_password"),
        ssl=scheme.startswith("rediss"),
    )


def connect(
    url: str, *, max_connections: int, timeout: float, **kwargs: Any
) -> aioredis.Redis[bytes]:
    """A client of `url` (see the module docstring) with a blocking pool of
    `max_connections`; `kwargs` go to every connection (e.g. `socket_timeout`)."""
    if not is_sentinel(url):
        pool: aioredis.BlockingConnectionPool[Any] = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=timeout, decode_responses=False, **kwargs
        )
        return aioredis.Redis(connection_pool=pool)
    spec = parse_sentinel_url(url)
    sentinel_kwargs: dict[str, Any] = {"socket_timeout": SENTINEL_TIMEOUT_S}
    if spec.sentinel_password:
        sentinel_kwargs["password"] = spec.sentinel_password
    sentinel = Sentinel(list(spec.sentinels), sentinel_kwargs=sentinel_kwargs)
    client: aioredis.Redis[bytes] = sentinel.master_for(
        spec.service,
        connection_pool_class=BlockingSentinelPool,
        max_connections=max_connections,
        timeout=timeout,
        db=spec.db,
        username=spec.username,
        password=spec.password,
        ssl=spec.ssl,
        decode_responses=False,
        **kwargs,
    )
    return client


def companion(client: aioredis.Redis[bytes], **overrides: Any) -> aioredis.Redis[bytes]:
    """A client with its own pool to the same server (or Sentinel service) as `client`,
    its connections made with `overrides` (e.g. `socket_timeout=None` for blocking reads)."""
    pool = client.connection_pool
    kwargs = {k: v for k, v in pool.connection_kwargs.items() if k != "connection_pool"}
    kwargs.update(overrides)
    if isinstance(pool, SentinelConnectionPool):
        twin: Any = BlockingSentinelPool(
            pool.service_name,
            pool.sentinel_manager,
            connection_class=pool.connection_class,
            **kwargs,
        )
    else:
        twin = pool.__class__(connection_class=pool.connection_class, **kwargs)
    return aioredis.Redis(connection_pool=twin)
