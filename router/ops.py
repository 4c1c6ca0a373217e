"""Ops: `/v1/queues`, `/v1/agents`, the `/v1/ops/stream` socket, `/metrics` and health.

Everything here reads the engine's views (`queue_stats()`, `agents()`) and returns ids, states
and counts — never customer content. The queue and agent endpoints and the stream need a token
with role `ops` or `supervisor` (`Authorization: Bearer`, or `?token=` on the stream, since a
browser cannot set headers on a WebSocket); `/metrics`, `/healthz` and `/readyz` are open, for
scrapers and load balancers, and carry nothing but counts.

The stream has one producer per app (`router.ops_views.OpsHub`, beside the rows it reads); a
subscriber that falls behind is dropped (close 4029, "reconnect after a back-off").
`/metrics` serves what `router.metrics` counts and renders; the counting lives there.

Wiring (in `create_app`)::

    metrics = Metrics()  # router.metrics
    add_ops_routes(app, engine, settings.jwt_secret, metrics=metrics,
                   engine_kind=settings.redis.engine)   # also registers close_all on shutdown
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import structlog
from aiohttp import WSMsgType, web

from queues.base import RoutingEngine
from queues.effects import QueueStats
from router.auth import AuthError, subprotocol_token, verify_token
from router.codec import JSON
from router.errors import CLOSE_DRAINING, CLOSE_RATE_LIMITED, error_body, http_status
from router.identity import AgentIdentity
from router.metrics import METRICS_CONTENT_TYPE, Metrics
from router.ops_views import BACKLOG, READ_TIMEOUT_S, OpsHub, Subscriber, read_views

log = structlog.get_logger("omniroute.ops")

OPS_ROLES = ("ops", "supervisor")
READY_TIMEOUT_S = 2.0
CLOSE_WAIT_S = 1.0  # a close handshake on shutdown or drop waits this long, then aborts


# -- handlers ------------------------------------------------------------------------------------


class Ops:
    """The ops handlers, bound to one engine, secret, hub and metrics."""

    def __init__(
        self,
        engine: RoutingEngine,
        jwt_secret: str,
        *,
        metrics: Metrics,
        snapshot_interval_s: float = 1.0,
        engine_kind: str | None = None,
    ) -> None:
        self.engine = engine
        self.jwt_secret = jwt_secret
        self.metrics = metrics
        self.hub = OpsHub(engine, snapshot_interval_s, metrics)
        self.engine_kind = engine_kind or type(engine).__name__.removesuffix("Engine").lower()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/v1/queues", self.queues),
            web.get("/v1/agents", self.agents),
            web.get("/v1/ops/stream", self.stream),
            web.get("/metrics", self.scrape),
            web.get("/healthz", healthz),
            web.get("/readyz", self.readyz),
        ]

    def authorize(self, request: web.Request, *, query_token: bool = False) -> AgentIdentity:
        """The caller's identity if it may see ops views; AuthError otherwise."""
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if header and scheme.lower() != "bearer":
            raise AuthError("unauthorized", "Authorization must be 'Bearer <token>'")
        token = token.strip()
        if not token and query_token:  # the stream: a browser offers `bearer.<JWT>` instead
            token = subprotocol_token(request.headers) or request.query.get("token", "")
        if not token:
            raise AuthError("unauthorized", "an ops or supervisor token is required")
        identity = verify_token(token, self.jwt_secret)
        if identity.role not in OPS_ROLES:
            raise AuthError("forbidden", "this needs a token with role ops or supervisor")
        return identity

    def _refuse(self, request: web.Request, exc: AuthError) -> web.Response:
        log.info("ops.refused", path=request.path, code=exc.code)
        body = error_body(exc.code, exc.message, "token")
        return web.json_response(body, status=http_status(exc.code))

    async def _read(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        try:
            return await read_views(self.engine)
        except Exception as exc:
            log.warning("ops.read_failed", error=type(exc).__name__)
            raise web.HTTPServiceUnavailable(
                text=json.dumps(error_body("unavailable", "the engine did not answer")),
                content_type="application/json",
            ) from None

    async def queues(self, request: web.Request) -> web.Response:
        try:
            self.authorize(request)
        except AuthError as exc:
            return self._refuse(request, exc)
        queues, _ = await self._read()
        return web.json_response({"queues": queues})

    async def agents(self, request: web.Request) -> web.Response:
        try:
            self.authorize(request)
        except AuthError as exc:
            return self._refuse(request, exc)
        _, agents = await self._read()
        return web.json_response({"agents": agents})

    async def stream(self, request: web.Request) -> web.StreamResponse:
        try:
            identity = self.authorize(request, query_token=True)
        except AuthError as exc:
            return self._refuse(request, exc)
        if self.hub.closed:
            body = error_body("unavailable", "the node is shutting down")
            return web.json_response(body, status=503)
        # A browser that offered `bearer.<JWT>` needs a protocol chosen back, or it fails.
        ws = web.WebSocketResponse(
            protocols=(JSON.subprotocol,),
            heartbeat=30.0,
            max_msg_size=4096,
            timeout=CLOSE_WAIT_S,
        )
        await ws.prepare(request)
        sub = self.hub.subscribe()
        log.info("ops.stream_opened", user=identity.id, role=identity.role)
        with self.metrics.session("ops"):
            writer = asyncio.create_task(self._pump(ws, sub, request))
            try:
                async for msg in ws:  # the stream is one-way; client frames are ignored
                    if msg.type == WSMsgType.ERROR:
                        break
            finally:
                self.hub.unsubscribe(sub)
                if not writer.done():
                    writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writer
        log.info("ops.stream_closed", user=identity.id, code=ws.close_code)
        return ws

    async def _pump(self, ws: web.WebSocketResponse, sub: Subscriber, request: web.Request) -> None:
        """Write snapshots as they come; a send that outlasts the backlog drops the socket."""
        code = CLOSE_DRAINING
        try:
            while (frame := await sub.queue.get()) is not None:
                async with asyncio.timeout(self.hub.interval_s * BACKLOG):
                    await ws.send_str(frame)
                self.metrics.sent("ops")
            code = sub.close_code
        except TimeoutError:
            code = CLOSE_RATE_LIMITED
            self.hub.unsubscribe(sub)
            self.metrics.dropped("ops")
            log.info("ops.stream_dropped", reason="send_timeout")
        except ConnectionError:
            return
        message = b"too slow" if code == CLOSE_RATE_LIMITED else b"shutting down"
        try:
            async with asyncio.timeout(CLOSE_WAIT_S):
                await ws.close(code=code, message=message)
        except (TimeoutError, ConnectionError):
            if request.transport is not None:
                request.transport.abort()

    async def scrape(self, request: web.Request) -> web.Response:
        """Prometheus text: the app's counters plus queue gauges read now."""
        stats: list[QueueStats] | None
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                stats = await self.engine.queue_stats()
        except Exception as exc:
            log.warning("metrics.read_failed", error=type(exc).__name__)
            stats = None
        body = self.metrics.exposition(stats)
        return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})

    async def readyz(self, request: web.Request) -> web.Response:
        """Readiness: the engine answers a read (on Redis one round trip) within a deadline."""
        error = "no answer"
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                ready = await self.engine.ping()
        except Exception as exc:
            ready, error = False, type(exc).__name__
        if not ready:
            log.warning("readyz.failed", engine=self.engine_kind, error=error)
            body = {"status": "unavailable", "engine": self.engine_kind}
            return web.json_response(body, status=503)
        return web.json_response({"status": "ready", "engine": self.engine_kind})


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process is up and its event loop answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """`/readyz` for an app set up by `add_ops_routes` (the old `router.app.readyz` name)."""
    return await request.app[OPS_KEY].readyz(request)


OPS_KEY = web.AppKey("omniroute.ops", Ops)


def add_ops_routes(
    app: web.Application,
    engine: RoutingEngine,
    jwt_secret: str,
    *,
    metrics: Metrics,
    snapshot_interval_s: float = 1.0,
    engine_kind: str | None = None,
) -> Ops:
    """Add the ops routes (health included) to `app` and close the streams on its shutdown."""
    ops = Ops(
        engine,
        jwt_secret,
        metrics=metrics,
        snapshot_interval_s=snapshot_interval_s,
        engine_kind=engine_kind,
    )
    app[OPS_KEY] = ops
    app.add_routes(ops.routes())
    app.on_shutdown.append(close_all)
    return ops


async def close_all(app: web.Application) -> None:
    """Shutdown step: close every ops stream with 4000 and stop the snapshot producer."""
    ops = app.get(OPS_KEY)
    if ops is not None:
        await ops.hub.close()
