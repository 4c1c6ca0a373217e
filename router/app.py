"""The aiohttp application: the engine's lifecycle, its tick loop and the health endpoints.

This milestone serves only `GET /healthz` (the process answers) and `GET /readyz` (the engine
answers). Ingest, the agent and customer sockets and the ops views come in a later milestone;
they will hang their routes and startup/cleanup steps here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog
from aiohttp import web

from queues.base import RoutingEngine
from router.settings import Settings

log = structlog.get_logger("omniroute.app")

TICK_INTERVAL_S = 0.25
TICK_ROUNDS = 20  # back-to-back ticks while work is due, before sleeping again
READY_TIMEOUT_S = 2.0

SETTINGS_KEY = web.AppKey("settings", Settings)
ENGINE_KEY = web.AppKey("engine", RoutingEngine)


def create_app(settings: Settings, engine: RoutingEngine) -> web.Application:
    """The application around a not-yet-started engine; it starts and closes the engine."""
    app = web.Application()
    app[SETTINGS_KEY] = settings
    app[ENGINE_KEY] = engine
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.cleanup_ctx.append(_run_engine)
    return app


async def _run_engine(app: web.Application) -> AsyncIterator[None]:
    engine = app[ENGINE_KEY]
    await engine.start()
    ticker = asyncio.create_task(tick_forever(engine), name="omniroute.tick")
    log.info("engine.started", engine=type(engine).__name__, domain=engine.domain)
    try:
        yield
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        await engine.close()
        log.info("engine.closed")


async def tick_forever(engine: RoutingEngine, interval: float = TICK_INTERVAL_S) -> None:
    """Fire due timers (offer time-outs, presence expiry, wrap-up ends) until cancelled.

    Any node may tick; a failed tick is logged and retried on the next interval. Until the
    outbox exists (next milestone) the effects are only counted in the log.
    """
    while True:
        try:
            for _ in range(TICK_ROUNDS):
                effects = await engine.tick()
                if not effects:
                    break
                log.debug("tick.effects", count=len(effects))
        except Exception as exc:
            log.warning("tick.failed", error=type(exc).__name__, detail=str(exc)[:200])
        await asyncio.sleep(interval)


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process is up and its event loop answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: the engine answers a read (on Redis one round trip) within a deadline."""
    engine = request.app[ENGINE_KEY]
    kind = request.app[SETTINGS_KEY].redis.engine
    error = "no answer"
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            ready = await engine.ping()
    except Exception as exc:
        ready, error = False, type(exc).__name__
    if not ready:
        log.warning("readyz.failed", engine=kind, error=error)
        return web.json_response({"status": "unavailable", "engine": kind}, status=503)
    return web.json_response({"status": "ready", "engine": kind})


def new_event_loop() -> tuple[asyncio.AbstractEventLoop, str]:
    """uvloop where it is installed (p99 of socket pushes is far lower), else asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop(), "asyncio"
    return uvloop.new_event_loop(), "uvloop"


def serve(app: web.Application, host: str, port: int, loop: asyncio.AbstractEventLoop) -> None:
    """Run until SIGINT or SIGTERM, then run the cleanup steps (engine close) and return."""
    web.run_app(
        app,
        host=host,
        port=port,
        loop=loop,
        print=None,  # our first log line already says where we listen
        access_log=None,  # ids only in logs; request lines would carry query strings
        shutdown_timeout=10.0,
        handle_signals=True,
    )
