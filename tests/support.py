"""Test support: a fake clock, a served app, a bounded wait for another component's state,
and (from `chaos.processes`) a free port and a throw-away redis-server on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

from chaos.processes import free_port, start_redis, stop_redis

__all__ = [
    "EPOCH",
    "WAIT",
    "FakeClock",
    "eventually",
    "free_port",
    "serve_app",
    "start_redis",
    "stop_redis",
]

EPOCH = 1_800_000_000.0
WAIT = 5.0  # the bound on every wait for the server


class FakeClock:
    """Time that only moves when a test says so (seconds since the epoch, as a float)."""

    def __init__(self, start: float = EPOCH) -> None:
        self.now = float(start)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


async def serve_app(app: web.Application) -> tuple[web.AppRunner, str]:
    """Run `app` on 127.0.0.1 and a free port, with the production access logger; the runner
    (to `cleanup()` afterwards) and the base URL."""
    from router.logs import AccessLogger

    runner = web.AppRunner(app, access_log_class=AccessLogger)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


async def eventually(check: Callable[[], Awaitable[bool]], within: float = WAIT) -> None:
    """Wait until `check()` holds: another component's state (a background delivery, a timer,
    another node), polled every 20 ms, for at most `within` seconds."""

    async def poll() -> None:
        while not await check():  # noqa: ASYNC110 - polled, bounded by `within`
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), within)
