"""`GET /v1/conversations/{id}/why`: the routing story of one conversation (queues.explain).

Who may ask (a token in `Authorization: Bearer`):

* role `ops` — any conversation;
* role `supervisor` — a conversation whose client group its tier may see;
* role `agent` — a conversation it holds now (offered, assigned or in wrap-up), which its tier
  may see by construction.

Anyone else gets `forbidden` — a CCS agent asking about a CSC conversation learns nothing, not
even its state. An unknown conversation is `not_found`. The answer holds ids, tiers, times and
reasons; never customer content.

Wiring (in `create_app`): `add_why_routes(app, service, settings.jwt_secret)`.
"""

from __future__ import annotations

import structlog
from aiohttp import web

from queues.args import MAX_ID
from queues.explain import explain
from router.auth import AuthError, verify_token
from router.errors import error_body, http_status
from router.identity import AgentIdentity
from router.service import Service

log = structlog.get_logger("omniroute.why")


class Why:
    """The handler, bound to one service (its engine and store) and the token secret."""

    def __init__(self, service: Service, jwt_secret: str) -> None:
        self.service = service
        self.jwt_secret = jwt_secret

    def _identity(self, request: web.Request) -> AgentIdentity:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if not header or scheme.lower() != "bearer" or not token.strip():
            raise AuthError("unauthorized", "a token is required: Authorization: Bearer <JWT>")
        return verify_token(token.strip(), self.jwt_secret)

    @staticmethod
    def _refuse(code: str, message: str) -> web.Response:
        return web.json_response(error_body(code, message), status=http_status(code))

    async def get(self, request: web.Request) -> web.Response:
        conversation = request.match_info["id"]
        try:
            identity = self._identity(request)
        except AuthError as exc:
            log.info("why.refused", code=exc.code)
            return self._refuse(exc.code, exc.message)
        if not conversation or len(conversation) > MAX_ID:
            return self._refuse("invalid", f"a conversation id is 1-{MAX_ID} characters")
        engine, store = self.service.engine, self.service.store
        conv = await store.conversation(conversation)
        if conv is None:
            return self._refuse("not_found", f"conversation {conversation} is not known")
        now_ms = round(engine.clock() * 1000)
        raw = await engine.why_raw(conversation, conv.customer, now=now_ms / 1000)
        answer = explain(raw, engine.policy, conversation, now_ms)
        group = await store.client_group(conv.customer) or answer["group"] or "normal"
        holds = any(item["view"]["agent"] == identity.id for item in raw.get("live") or [])
        if identity.role == "ops":
            allowed = True
        elif identity.role == "supervisor":
            allowed = engine.policy.allowed(group, identity.tier)
        else:
            allowed = holds and engine.policy.allowed(group, identity.tier)
        if not allowed:
            log.info("why.refused", code="forbidden", user=identity.id, conversation=conversation)
            return self._refuse("forbidden", "this conversation is not yours to see")
        log.info("why.answered", user=identity.id, conversation=conversation)
        return web.json_response(answer)


def add_why_routes(app: web.Application, service: Service, jwt_secret: str) -> Why:
    """Add `GET /v1/conversations/{id}/why` to `app`."""
    why = Why(service, jwt_secret)
    app.router.add_get("/v1/conversations/{id}/why", why.get)
    return why
