"""Test support: a fake clock, a served app, a bounded wait for another component's state,
production logging into a buffer, and (from `chaos.processes`) a free port and a throw-away
redis-server on 127.0.0.1; `DATA`, the folder of the data files tests load."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import structlog
from aiohttp import web

from chaos.processes import free_port, start_redis, stop_redis

__all__ = [
    "DATA",
    "EPOCH",
    "WAIT",
    "FakeClock",
    "eventually",
    "free_port",
    "logs_captured",
    "serve_app",
    "start_redis",
    "stop_redis",
]

EPOCH = 1_800_000_000.0
WAIT = 5.0  # the bound on every wait for the server
DATA = Path(__file__).parent / "data"


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


@contextlib.contextmanager
def logs_captured(level: str) -> Iterator[io.StringIO]:
    """Production logging (`router.logs.configure_logging`, JSON lines at `level`) into a
    buffer; the logging and structlog configuration before it is restored afterwards."""
    from router.logs import ACCESS_LOGGER, configure_logging

    root = logging.getLogger()
    access = logging.getLogger(ACCESS_LOGGER)
    saved = (root.handlers[:], root.level, access.level, access.filters[:])
    saved_structlog = structlog.get_config()
    buffer = io.StringIO()
    configure_logging(json=True, level=level, stream=buffer, cache=False)
    try:
        yield buffer
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        access.setLevel(saved[2])
        access.filters[:] = saved[3]
        structlog.configure(**saved_structlog)


async def eventually(check: Callable[[], Awaitable[bool]], within: float = WAIT) -> None:
    """Wait until `check()` holds: another component's state (a background delivery, a timer,
    another node), polled every 20 ms, for at most `within` seconds."""

    async def poll() -> None:
        while not await check():  # noqa: ASYNC110 - polled, bounded by `within`
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), within)
