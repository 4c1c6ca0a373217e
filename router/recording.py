"""`GET /v1/recording`: this node's routing recording as JSON lines, for `omniroute export`.

The memory engine keeps its recording (task traces and agent actions, `queues.trace`) in the
serving process, so this endpoint is the only way to take it out; for the Redis engine it reads
the same keys `omniroute export --from redis://…` reads. Role `ops` only (it spans every
conversation and every tier); the body is `replay.recording`'s file format, ids and times only.

Wiring (in `create_app`): `add_recording_route(app, engine, settings)`.
"""

from __future__ import annotations

import structlog
from aiohttp import web

from queues.base import RoutingEngine
from queues.memory import MemoryEngine
from replay.recording import from_engine, from_redis, lines
from router.auth import AuthError, verify_token
from router.errors import error_body, http_status
from router.settings import Settings

log = structlog.get_logger("omniroute.recording")


class RecordingRoute:
    def __init__(self, engine: RoutingEngine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings

    async def get(self, request: web.Request) -> web.StreamResponse:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        try:
            if scheme.lower() != "bearer" or not token.strip():
                raise AuthError("unauthorized", "an ops token is required")
            identity = verify_token(token.strip(), self.settings.jwt_secret)
            if identity.role != "ops":
                raise AuthError("forbidden", "the recording needs a token with role ops")
        except AuthError as exc:
            log.info("recording.refused", code=exc.code)
            return web.json_response(
                error_body(exc.code, exc.message), status=http_status(exc.code)
            )
        now_ms = round(self.engine.clock() * 1000)
        if isinstance(self.engine, MemoryEngine):
            recording = await from_engine(self.engine, now_ms)
        else:
            url, domain = self.settings.redis.url, self.engine.domain
            recording = await from_redis(url, domain, self.engine.policy, now_ms)
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        for line in lines(recording):
            await response.write(line.encode())
        await response.write_eof()
        log.info("recording.exported", user=identity.id, tasks=len(recording.traces))
        return response


def add_recording_route(app: web.Application, engine: RoutingEngine, settings: Settings) -> None:
    """Add `GET /v1/recording` to `app`."""
    app.router.add_get("/v1/recording", RecordingRoute(engine, settings).get)
