"""The aiohttp application: one `Service` over the engine and the store, and every route.

`create_app` wires ingest (`/v1/events`), the agent desktop socket (`/v1/agent/ws`), the
ops views (`/v1/queues`, `/v1/agents`, `/v1/ops/stream`, `/metrics`, health) and the two web
pages (`/desktop`, `/ops`, see `router/web`) around a `Service`, and runs its two loops: the
event-log consumer and the engine's ticker. On SIGTERM it drains: desktops are closed with
4000 ("reconnect", to any node), the loops finish the batch in hand, and the engine and store
are closed last.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import AsyncIterator

import structlog
from aiohttp import web

from channels.base import OutboundPort
from queues.base import RoutingEngine
from router import agent_ws
from router.body import HANDLER_ARGS
from router.campaign_api import add_campaign_routes
from router.channel_chat import ChatSocket, add_chat
from router.channel_email import add_email
from router.channel_sms import add_sms
from router.channel_voice import VOICE_KEY, add_voice
from router.connections import (
    BurstLog,
    ConnectionGuard,
    GuardedSite,
    connection_cap,
    quiet_accept_errors,
)
from router.engines import create_campaigns, create_store
from router.ingest import IngestHandler
from router.limits import AgentLimits, ChatLimits
from router.logs import AccessLogger
from router.metrics import Metrics
from router.ops import add_ops_routes
from router.recording import add_recording_route
from router.service import Service
from router.settings import Settings
from router.web import add_web
from router.why import add_why_routes
from store.base import Store

log = structlog.get_logger("omniroute.app")

SETTINGS_KEY = web.AppKey("settings", Settings)
ENGINE_KEY = web.AppKey("engine", RoutingEngine)
SERVICE_KEY = web.AppKey("service", Service)
METRICS_KEY = web.AppKey("metrics", Metrics)
CHAT_KEY = web.AppKey("chat", ChatSocket)


def node_name(settings: Settings) -> str:
    """This node's consumer name in the event log: the setting, else host name and pid."""
    return settings.server.node or f"{socket.gethostname()}-{os.getpid()}"


def create_app(
    settings: Settings,
    engine: RoutingEngine,
    store: Store | None = None,
    *,
    outbound: OutboundPort | None = None,
    snapshot_interval_s: float = 1.0,
    chat_limits: ChatLimits | None = None,
) -> web.Application:
    """The application around a not-yet-started engine and store (`router.engines`); it starts
    and closes them. Without a store, the one the settings name beside `engine`."""
    store = store or create_store(settings)
    service = Service(
        engine,
        store,
        outbound=outbound,
        node=node_name(settings),
        offline_grace_s=settings.agent.offline_grace_s,
        release_after_s=settings.agent.release_after_s,
        history_limit=settings.agent.history_limit,
        max_backlog_s=settings.events.max_backlog_s,
        lease_s=settings.events.lease_s,
        guidance=settings.guidance,
        campaigns=create_campaigns(settings),
        campaign_settings=settings.campaigns,
    )
    metrics = Metrics()
    service.metrics = metrics
    app = web.Application(client_max_size=settings.server.max_body_bytes, handler_args=HANDLER_ARGS)
    app[SETTINGS_KEY] = settings
    app[ENGINE_KEY] = engine
    app[SERVICE_KEY] = service
    app[METRICS_KEY] = metrics
    app.add_routes(
        IngestHandler(
            service.ingest,
            settings.webhook_secret,
            settings.server.max_body_bytes,
            on_result=metrics.ingested,
            body_timeout_s=settings.connections.body_timeout_s,
            admit=service.admit,
        ).routes()
    )
    # Registers its drain on shutdown: desktops get 4000 before the service below is closed.
    # Heartbeats well inside the presence TTL, or a connected desktop would expire.
    limits = AgentLimits(heartbeat_s=min(5.0, settings.policy.presence_ttl_s / 3))
    origins = settings.server.allowed_origins
    socket = agent_ws.AgentSocket(service, store, settings.jwt_secret, origins, limits)
    agent_ws.add_agent_ws(app, socket)
    add_ops_routes(
        app,
        engine,
        settings.jwt_secret,
        metrics=metrics,
        snapshot_interval_s=snapshot_interval_s,
        engine_kind=settings.redis.engine,
    )
    app[CHAT_KEY] = add_chat(
        app, service, settings, limits=chat_limits, visitor_secret=settings.visitor_secret
    )
    add_campaign_routes(app, service, settings)  # /v1/campaigns: outbound call lists
    add_why_routes(app, service, settings.jwt_secret)  # explain: GET /v1/conversations/{id}/why
    add_recording_route(app, engine, settings)  # replay: GET /v1/recording (omniroute export)
    add_web(app, settings)  # /desktop and /ops: the browser pages over the same endpoints
    add_voice(app, service, settings)
    add_email(app, service, settings)  # no [email] addresses: no listener
    app.cleanup_ctx.append(_run_service)
    app.cleanup_ctx.append(app[VOICE_KEY].settle)  # after the service: connects end before it
    add_sms(app, service, settings)  # after the service: its deliveries drain before it closes
    return app


async def _run_service(app: web.Application) -> AsyncIterator[None]:
    service = app[SERVICE_KEY]
    await service.start()
    service.run()
    log.info("service.started", node=service.node, domain=service.engine.domain)
    try:
        yield
    finally:
        await service.close()
        log.info("service.closed", node=service.node)


def new_event_loop() -> tuple[asyncio.AbstractEventLoop, str]:
    """uvloop where it is installed (p99 of socket pushes is far lower), else asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop(), "asyncio"
    return uvloop.new_event_loop(), "uvloop"


def serve(
    app: web.Application,
    host: str,
    port: int,
    loop: asyncio.AbstractEventLoop,
    *,
    reuse_port: bool = False,
) -> None:
    """Run until SIGINT or SIGTERM, then run the cleanup steps (engine close) and return.
    `reuse_port`: one of several workers on the same port (SO_REUSEPORT; the kernel spreads
    the connections over them). Connections go through a `ConnectionGuard` (head deadline,
    cap; `[connections]`), which is why this is aiohttp's `run_app` spelled out."""
    limits = app[SETTINGS_KEY].connections
    cap = connection_cap(limits.max_connections)
    if limits.max_connections and cap < limits.max_connections:
        log.warning("connections.cap_lowered", configured=limits.max_connections, cap=cap)
    guard = ConnectionGuard(cap, limits.idle_timeout_s)
    app.middlewares.insert(0, guard.middleware)  # outermost: marks the head as arrived
    runner = web.AppRunner(
        app,
        handle_signals=True,  # SIGINT/SIGTERM raise GracefulExit in the loop
        access_log=logging.getLogger("aiohttp.access"),
        access_log_class=AccessLogger,  # method, route template, status, duration
        shutdown_timeout=10.0,
        keepalive_timeout=limits.idle_timeout_s,  # idle between requests
    )

    accept_failed: list[BurstLog] = []

    async def run() -> None:
        accept_failed.append(quiet_accept_errors(asyncio.get_running_loop()))
        await runner.setup()
        await GuardedSite(runner, host, port, guard, reuse_port=reuse_port).start()
        log.info("connections.limits", cap=cap, head_timeout_s=limits.idle_timeout_s)
        await asyncio.Event().wait()  # until a signal

    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(run())
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        guard.flush()
        for burst in accept_failed:
            burst.flush()
        try:
            loop.run_until_complete(runner.cleanup())
        finally:
            _cancel_all(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            asyncio.set_event_loop(None)


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is still running after cleanup and let it finish its `finally` blocks."""
    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
