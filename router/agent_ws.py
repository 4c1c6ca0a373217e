"""`GET /v1/agent/ws`: the agent desktop socket — the handshake, the node's heartbeats, drain.

The protocol stops at the edge: everything a request can get wrong (token, role, Origin,
subprotocol, `?since=`) is checked here before the upgrade and refused with an HTTP error;
after it, one `router.agent_session.Session` owns the socket. Beside the sessions, the
**heartbeat** keeps the agents' presence alive in the engine: one task per node (in
`AgentSocket`), not per socket, beats for every connected agent every `heartbeat_s` in one
call (`Service.heartbeat_many`). WebSocket ping/pong (aiohttp's `heartbeat`) finds dead TCP
peers; the engine's presence TTL covers a node that died with all its sockets. On shutdown
`close_all` closes every session with a *reconnect* code before the Service is closed.

The only module of the desktop socket that sees a request (auth, Origin, query); it imports
`router.agent_session` and `router.limits`; in the server only `router.app` imports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import weakref
from collections.abc import Mapping, Sequence
from typing import Final

import structlog
from aiohttp import web

from router.agent_fields import MAX_FRAME_BYTES
from router.agent_session import Session
from router.auth import AuthError, subprotocol_token, verify_token
from router.codec import JSON, MSGPACK, Codec
from router.errors import CLOSE_DRAINING, error_body, http_status
from router.limits import AgentLimits
from router.service import Service
from store.base import Store

log = structlog.get_logger("omniroute.agent_ws")

PATH: Final = "/v1/agent/ws"
SUBPROTOCOL_JSON: Final = JSON.subprotocol  # omniroute.v1.json: text frames, the default
SUBPROTOCOL_MSGPACK: Final = MSGPACK.subprotocol  # omniroute.v1.msgpack: binary frames
SUBPROTOCOLS: Final[Mapping[str, Codec]] = {c.subprotocol: c for c in (JSON, MSGPACK)}
SOCKET_ROLES: Final = ("agent", "supervisor")

# Live sessions per application, for `close_all` on shutdown.
_SESSIONS: weakref.WeakKeyDictionary[web.Application, set[Session]] = weakref.WeakKeyDictionary()
_DRAINING: weakref.WeakSet[web.Application] = weakref.WeakSet()  # close_all began: no new ones


# -- the handshake ----------------------------------------------------------------------------

_SINCE = re.compile(r"[0-9]{1,18}")


def _refuse(code: str, message: str, field: str | None = None) -> web.Response:
    headers = {"WWW-Authenticate": "Bearer"} if code == "unauthorized" else None
    body = error_body(code, message, field)
    return web.json_response(body, status=http_status(code), headers=headers)


def _token(request: web.Request) -> str | None:
    """Authorization: Bearer, then an offered subprotocol `bearer.<JWT>` (how a browser sends
    it: it can set no header on a WebSocket, and a URL may end up in logs), then `?token=`."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return subprotocol_token(request.headers) or request.query.get("token") or None


class AgentSocket:
    """The `GET /v1/agent/ws` handler: checks everything it can before the upgrade."""

    def __init__(
        self,
        service: Service,
        store: Store,
        jwt_secret: str,
        allowed_origins: Sequence[str] = (),
        limits: AgentLimits | None = None,
    ) -> None:
        self.service, self.store, self.jwt_secret = service, store, jwt_secret
        self.allowed_origins = frozenset(o.rstrip("/").lower() for o in allowed_origins)
        self.limits = limits or AgentLimits()
        self._live: set[Session] = set()
        self._emptied = asyncio.Event()
        self._beat: asyncio.Task[None] | None = None

    def routes(self) -> list[web.RouteDef]:
        """The desktop socket's route, for `app.add_routes`."""
        return [web.get(PATH, self.handle)]

    async def _heartbeats(self) -> None:
        """Beat for every agent with a connected desktop here, every `heartbeat_s`, in one
        engine call; ends when the last session has gone (the next one starts it again)."""
        while self._live:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.limits.heartbeat_s):
                    await self._emptied.wait()
            live = {s.identity.id: s.identity for s in self._live if s.connected}
            if not live:
                continue
            try:
                await self.service.heartbeat_many(list(live.values()))
            except Exception as exc:
                log.warning("agent_ws.heartbeat_failed", agents=len(live), error=type(exc).__name__)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        token = _token(request)
        if token is None:
            return self._refused("unauthorized", "a token is required (Authorization or ?token=)")
        try:
            identity = verify_token(token, self.jwt_secret)
        except AuthError as exc:
            return self._refused(exc.code, exc.message)
        if identity.role not in SOCKET_ROLES:
            return self._refused("forbidden", f"role {identity.role} cannot open a desktop socket")
        origin = request.headers.get("Origin")
        allowed = self.allowed_origins
        if allowed and origin is not None and origin.rstrip("/").lower() not in allowed:
            return self._refused("forbidden", "origin not allowed", "Origin")
        offered = [
            p.strip()
            for header in request.headers.getall("Sec-WebSocket-Protocol", [])
            for p in header.split(",")
            if p.strip()
        ]
        chosen = next((p for p in offered if p in SUBPROTOCOLS), None)
        if offered and chosen is None:
            known = f"{SUBPROTOCOL_JSON} or {SUBPROTOCOL_MSGPACK}"
            return self._refused(
                "invalid", f"subprotocol must be {known}", "Sec-WebSocket-Protocol"
            )
        since: int | None = None
        if "since" in request.query:
            text = request.query["since"]
            if not _SINCE.fullmatch(text):
                return self._refused("invalid", "since must be an integer >= 0", "since")
            since = int(text)
        ws = web.WebSocketResponse(
            protocols=(chosen,) if chosen else (),
            heartbeat=self.limits.ping_s,
            max_msg_size=MAX_FRAME_BYTES + 1,  # aiohttp refuses frames of max_msg_size and up
            compress=False,  # frames are small; deflate costs more CPU than it saves
            timeout=self.limits.close_timeout_s,
        )
        if not ws.can_prepare(request).ok:
            return self._refused("invalid", "expected a WebSocket upgrade")
        if request.app in _DRAINING:
            return self._refused("unavailable", "this node is shutting down")
        await ws.prepare(request)
        codec = SUBPROTOCOLS[chosen or SUBPROTOCOL_JSON]
        transport = request.transport
        session = Session(
            ws, codec, identity, self.service, self.store, self.limits, since, transport
        )
        sessions = _SESSIONS.setdefault(request.app, set())
        sessions.add(session)
        self._live.add(session)
        self._emptied.clear()
        if self._beat is None or self._beat.done():
            self._beat = asyncio.create_task(self._heartbeats(), name="agent_ws.heartbeats")
        try:
            await session.run()
        finally:
            sessions.discard(session)
            self._live.discard(session)
            if not self._live:
                self._emptied.set()
        return ws

    def _refused(self, code: str, message: str, field: str | None = None) -> web.Response:
        log.info("agent_ws.refused", code=code, field=field)
        return _refuse(code, message, field)


def add_agent_ws(app: web.Application, socket: AgentSocket) -> None:
    """Add the socket's route, and drain the sockets (`close_all`) when the app shuts down —
    before the cleanup steps close the Service, so every `disconnect` still reaches it."""
    app.add_routes(socket.routes())

    async def drain(app: web.Application) -> None:
        await close_all(app)

    app.on_shutdown.append(drain)


def sessions(app: web.Application) -> list[Session]:
    """The live desktop sessions of `app` (for ops views and tests)."""
    return list(_SESSIONS.get(app, ()))


async def close_all(app: web.Application, code: int = CLOSE_DRAINING, wait_s: float = 5.0) -> int:
    """Close every live session of `app` with `code` and wait (bounded) for their cleanup, so
    each `Service.disconnect` has run. Returns how many sessions there were."""
    _DRAINING.add(app)
    live = sessions(app)
    if not live:
        return 0
    await asyncio.gather(*(s.close(code, "server draining") for s in live), return_exceptions=True)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(s.wait_closed() for s in live)), wait_s)
    return len(live)
