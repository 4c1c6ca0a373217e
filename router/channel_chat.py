"""`GET /v1/chat/ws`: the customer side of a site's chat widget. See `channels/chat.py` for who
a visitor is and where replies wait; this module is the socket's handshake and its wiring.

Handshake: `?site=S&visitor=V` (anonymous) or `?token=T` (a logged-in customer), optional
`?since=SEQ`. Everything is checked before the upgrade: a bad query is 400, a bad or expired
token 401. Then, per socket, one `router.chat_session.ChatSession` (open → closing → closed)
owns it: the welcome, the sender, the receive loop.

Logs carry ids (session, customer, event, conversation) — never bodies, visitor ids or addresses.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import Mapping
from typing import Final

import structlog
from aiohttp import web

from channels.chat import MAX_FRAME_BYTES, ChatPort, ChatRefused, Visitor, anonymous, from_token
from router.chat_session import ChatSession
from router.errors import CLOSE_DRAINING, error_body, http_status
from router.limits import ChatLimits, SharedFrameLimits
from router.service import Service
from router.settings import Settings

log = structlog.get_logger("omniroute.chat")

PATH: Final = "/v1/chat/ws"
SECRET_ENV: Final = "OMNIROUTE_VISITOR_SECRET"
_SINCE = re.compile(r"[0-9]{1,18}")


class ChatSocket:
    """The `GET /v1/chat/ws` handler: checks everything it can before the upgrade."""

    def __init__(self, service: Service, visitor_secret: str, limits: ChatLimits | None = None):
        self.service, self.visitor_secret = service, visitor_secret
        self.limits = limits or ChatLimits()
        self.shared = SharedFrameLimits(self.limits.rate, self.limits.burst, self.limits.strikes)
        self.sessions: set[ChatSession] = set()
        self.draining = False

    def visitor(self, query: Mapping[str, str]) -> Visitor:
        """The visitor a handshake names, or `ChatRefused`."""
        token = query.get("token")
        if token is None:
            return anonymous(query.get("site"), query.get("visitor"))
        if "visitor" in query:
            raise ChatRefused("invalid", "give a token or a visitor id, not both", "visitor")
        visitor = from_token(token, self.visitor_secret)
        if query.get("site", visitor.site) != visitor.site:
            raise ChatRefused("invalid", "site differs from the token's site", "site")
        return visitor

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            visitor = self.visitor(request.query)
            since: int | None = None
            if "since" in request.query:
                if not _SINCE.fullmatch(request.query["since"]):
                    raise ChatRefused("invalid", "since must be an integer >= 0", "since")
                since = int(request.query["since"])
        except ChatRefused as refused:
            return self._refused(refused.code, refused.message, refused.field)
        ws = web.WebSocketResponse(
            heartbeat=self.limits.ping_s,
            max_msg_size=MAX_FRAME_BYTES + 1,  # aiohttp refuses frames of max_msg_size and up
            compress=False,
            timeout=self.limits.close_timeout_s,
        )
        if not ws.can_prepare(request).ok:
            return self._refused("invalid", "expected a WebSocket upgrade")
        if self.draining:
            return self._refused("unavailable", "this node is shutting down")
        await ws.prepare(request)
        session = ChatSession(ws, visitor, self.service, self.limits, self.shared, since)
        self.sessions.add(session)
        try:
            await session.run()
        finally:
            self.sessions.discard(session)
        return ws

    async def close_all(self, wait_s: float = 5.0) -> None:
        """Shutdown: every widget is asked to reconnect (4000), to another node."""
        self.draining = True
        live = list(self.sessions)
        await asyncio.gather(*(s.close(CLOSE_DRAINING, "server draining") for s in live))
        if live:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(s.done.wait() for s in live)), wait_s)

    def _refused(self, code: str, message: str, field: str | None = None) -> web.Response:
        log.info("chat.refused", code=code, field=field)
        headers = {"WWW-Authenticate": "Bearer"} if code == "unauthorized" else None
        body = error_body(code, message, field)
        return web.json_response(body, status=http_status(code), headers=headers)


def add_chat(
    app: web.Application,
    service: Service,
    settings: Settings,
    *,
    limits: ChatLimits | None = None,
    visitor_secret: str | None = None,
) -> ChatSocket:
    """Add `GET /v1/chat/ws`, register the chat outbound port, drain widgets on shutdown.

    The visitor secret is read from `OMNIROUTE_VISITOR_SECRET` (an environment-only variable,
    see `router.settings_keys.ENV_ONLY`); without it only anonymous visitors can connect.
    `settings` is taken for the common `add_<channel>` shape; nothing in it is chat-specific.
    """
    del settings
    secret = visitor_secret if visitor_secret is not None else os.environ.get(SECRET_ENV, "")
    socket = ChatSocket(service, secret, limits)
    app.router.add_get(PATH, socket.handle)
    service.outbound.register("chat", ChatPort(service.store.push))

    async def drain(_app: web.Application) -> None:
        await socket.close_all()

    app.on_shutdown.append(drain)
    return socket
