"""Connections at the edge: a deadline for the request head, a cap, one log line per burst.

Slow clients (slowloris) and a flood of connections must neither hold the node nor starve its
health checks, and a node out of file descriptors must say so once, not fifty thousand times.

- **Head deadline** (`[connections] idle_timeout_s`): a connection that has not sent a complete
  request head within that time of opening is closed — the HTTP request and the WebSocket
  upgrade alike (the upgrade *is* the handshake: the token travels in it). Between requests
  aiohttp's own `keepalive_timeout`, set to the same value, closes an idle connection.
- **Body deadline** (`[connections] body_timeout_s`): `router.body.read_raw`.
- **Cap** (`[connections] max_connections`, 0 = the open-files limit less a reserve for
  Redis, SMTP and logs): at the cap a new connection takes the place of the oldest one that
  has not sent a request head yet — so a health check gets in while slow clients hold every
  slot; only when every open connection is a real one is the newcomer closed at once.
- **Bursts** (`BurstLog`): refusals, deadline closes and failed `accept()`s (EMFILE) are logged
  as one line when a burst starts and one per `every_s` after, each with the count.

`GuardedSite` is aiohttp's TCP site with the guard in front of aiohttp's protocol factory; the
`middleware` marks a connection's first request head as arrived.
"""

from __future__ import annotations

import asyncio
import errno
import resource
import socket
from collections.abc import Awaitable, Callable
from typing import Any, Final

import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

log = structlog.get_logger("omniroute.connections")

MIN_CAP: Final = 16
RESERVE_MAX: Final = 256  # descriptors kept for Redis pools, SMTP, files, logs
RESOURCE_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def connection_cap(configured: int, soft_limit: int | None = None) -> int:
    """The cap in force: `configured` (0 = automatic), never above what the open-files limit
    leaves after a reserve (a quarter of it, at most `RESERVE_MAX`)."""
    if soft_limit is None:
        soft_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft_limit == resource.RLIM_INFINITY or soft_limit <= 0:
        soft_limit = 1 << 20
    ceiling = max(MIN_CAP, soft_limit - min(RESERVE_MAX, soft_limit // 4))
    return ceiling if configured == 0 else min(configured, ceiling)


class BurstLog:
    """One warning when a burst of `event` starts, then at most one per `every_s` with the
    count of the window; a burst's tail is logged when its window closes."""

    def __init__(self, event: str, every_s: float = 10.0, logger: Any = None) -> None:
        self.event = event
        self._log = log if logger is None else logger
        self.every_s = every_s
        self.total = 0
        self._count = 0
        self._timer: asyncio.TimerHandle | None = None
        self._fields: dict[str, Any] = {}

    def note(self, **fields: Any) -> None:
        self.total += 1
        self._fields = fields
        if self._timer is not None:  # inside a window: count only
            self._count += 1
            return
        self._log.warning(self.event, count=1, window_s=0, **fields)
        self._arm()

    def _arm(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # outside a loop (tests): every note is its own line
            return
        self._timer = loop.call_later(self.every_s, self._flush)

    def flush(self) -> None:
        """Log what the open window has counted now (on shutdown) and close the window."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._count:
            self._log.warning(self.event, count=self._count, window_s=self.every_s, **self._fields)
            self._count = 0

    def _flush(self) -> None:
        self._timer = None
        if self._count:
            self._log.warning(self.event, count=self._count, window_s=self.every_s, **self._fields)
            self._count = 0
            self._arm()  # the burst goes on: keep one line per window


class _Refused(asyncio.Protocol):
    """The protocol of a connection over the cap: closed as soon as it is made."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.abort()  # type: ignore[attr-defined]  # a stream transport


class ConnectionGuard:
    """The cap and the head deadline (see the module docstring)."""

    def __init__(self, cap: int, head_timeout_s: float) -> None:
        self.cap = cap
        self.head_timeout_s = head_timeout_s
        self._headless: dict[RequestHandler, asyncio.TimerHandle] = {}  # oldest first
        self.refused = BurstLog("connections.refused")
        self.evicted = BurstLog("connections.evicted")
        self.timed_out = BurstLog("connections.head_timeout")

    def factory(self, server: web.Server) -> Callable[[], asyncio.Protocol]:
        """aiohttp's protocol factory with the cap and the deadline in front of it."""

        def make() -> asyncio.Protocol:
            if len(server.connections) >= self.cap and not self._evict():
                self.refused.note(cap=self.cap)
                return _Refused()
            handler = server()
            timer = asyncio.get_running_loop().call_later(
                self.head_timeout_s, self._expire, handler
            )
            self._headless[handler] = timer
            return handler

        return make

    def flush(self) -> None:
        """Log the counts of open windows (the node is stopping)."""
        for burst in (self.refused, self.evicted, self.timed_out):
            burst.flush()

    @property
    def headless(self) -> int:
        """Connections open now that have not sent a request head (closed ones may linger
        here until their deadline)."""
        return len(self._headless)

    def _evict(self) -> bool:
        """Close the oldest open connection without a request head; False if there is none."""
        while self._headless:
            handler = next(iter(self._headless))
            self._headless.pop(handler).cancel()
            if handler.transport is not None and not handler.transport.is_closing():
                handler.force_close()
                self.evicted.note(cap=self.cap)
                return True
        return False

    def _expire(self, handler: RequestHandler) -> None:
        if self._headless.pop(handler, None) is None:
            return
        if handler.transport is not None and not handler.transport.is_closing():
            handler.force_close()
            self.timed_out.note(timeout_s=self.head_timeout_s)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """The connection has sent a complete request head: its deadline is off."""
        timer = self._headless.pop(request.protocol, None)
        if timer is not None:
            timer.cancel()
        return await handler(request)


def quiet_accept_errors(loop: asyncio.AbstractEventLoop) -> BurstLog:
    """Failed `accept()`s for lack of descriptors or memory go to one `BurstLog` instead of a
    traceback each (asyncio logs one per attempt, thousands a second); the rest go on to the
    handler that was there."""
    burst = BurstLog("connections.accept_failed")
    previous = loop.get_exception_handler()

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in RESOURCE_ERRNOS:
            burst.note(error=errno.errorcode.get(exc.errno or 0, "OSError"))
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handle)
    return burst


class GuardedSite(web.BaseSite):
    """aiohttp's TCP site, its protocol factory behind a `ConnectionGuard`."""

    __slots__ = ("_guard", "_host", "_port", "_reuse_port")

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        guard: ConnectionGuard,
        *,
        reuse_port: bool = False,
        backlog: int = 512,
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self._guard = guard
        self._host = host
        self._port = port
        self._reuse_port = reuse_port

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert isinstance(server, web.Server)
        self._server = await asyncio.get_running_loop().create_server(
            self._guard.factory(server),
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=True,
            reuse_port=self._reuse_port or None,
            family=socket.AF_UNSPEC,
        )
