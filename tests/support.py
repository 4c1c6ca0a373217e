"""Test support: a fake clock, a served app, and (from `chaos.processes`) a free port and a
throw-away redis-server on 127.0.0.1."""

from __future__ import annotations

from aiohttp import web

from chaos.processes import free_port, start_redis, stop_redis

__all__ = ["EPOCH", "FakeClock", "free_port", "serve_app", "start_redis", "stop_redis"]

EPOCH = 1_800_000_000.0


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
