"""`/v1/campaigns`: outbound campaigns over HTTP, for ops (docs/protocol.md, docs/campaigns.md).

| route | does |
|---|---|
| `POST /v1/campaigns` | create one (`router.campaign_spec` checks every field) → 201 |
| `GET /v1/campaigns` | every campaign with its progress |
| `GET /v1/campaigns/{id}` | one campaign, its state and progress |
| `POST /v1/campaigns/{id}/pause`, `/resume`, `/stop` | change its state (stop is final) |
| `POST /v1/campaigns/{id}/contacts` | `{"contacts": [...]}` added to it, running or not |
| `POST /v1/campaigns/{id}/do-not-call` | `{"phones", "customer_ids"}` on its list now (below) |

A do-not-call entry always wins: contacts it names that wait in line are withdrawn (an offer
is revoked), never offered or dialled; the loop skips them from then on.

Every route needs a token with role `ops` or `supervisor` (`Authorization: Bearer`), like the
other ops views. A refused request is the contract's `{"error": {"code", "message",
"field"}}` (400 invalid, 401, 403, 404, 409 for an id taken or a stopped campaign); a bad
request stores nothing: the body is checked whole before the store is asked. On Redis a large
add or do-not-call list is stored in steps (`store.campaigns_redis`): one that fails part-way
(503, or 409 for a campaign stopped meanwhile) is to be repeated. Logs carry ids and counts
only.

The decoding and checks of a body (a phone number's parse is some 60 µs: a second for 10,000
contacts on these machines) run in a worker thread, so that the node's desktops, events and
lease are served meanwhile.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from aiohttp import web

from router.auth import AuthError, verify_token
from router.campaign_spec import SpecError, campaign_of, contacts_of, do_not_call_of
from router.codec import JSON
from router.errors import DecodeError, error_body, http_status
from router.service import Service
from router.settings import Settings
from store.campaigns import Record
from store.errors import CampaignExists, CampaignStopped, UnknownCampaign

log = structlog.get_logger("omniroute.campaigns")

OPS_ROLES = ("ops", "supervisor")
STATES = {"pause": "paused", "resume": "running", "stop": "stopped"}


def progress(view: Record) -> Record:
    """A campaign as the API shows it: the record, `state`, and `progress` from its counters."""
    counts = dict(view.get("counts") or {})
    total = sum(n for k, n in counts.items() if ":" not in k)
    out = {k: v for k, v in view.items() if k != "counts"}
    out["progress"] = {
        "total": total,
        "pending": counts.get("pending", 0),
        "queued": counts.get("queued", 0),
        "in_call": counts.get("in_call", 0),
        "retrying": counts.get("retrying", 0),
        "done": counts.get("done", 0),
        "done_by_disposition": _by(counts, "done:"),
        "outcomes": _by(counts, "outcome:"),
        "skipped": counts.get("skipped", 0),
        "exhausted": counts.get("exhausted", 0),
    }
    return out


def _by(counts: dict[str, int], prefix: str) -> dict[str, int]:
    return {k[len(prefix) :]: n for k, n in sorted(counts.items()) if k.startswith(prefix)}


class Refusal(Exception):
    """Raised inside a handler to answer with the contract's error body."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.field = code, message, field


class CampaignApi:
    """The handlers, bound to one service and the settings (token secret, region, bounds)."""

    def __init__(self, service: Service, settings: Settings) -> None:
        self.service = service
        self.campaigns = service.campaigns
        self.secret = settings.jwt_secret
        self.region = settings.sms.default_region
        self.max_queued = settings.campaigns.max_queued

    def _check(self, request: web.Request) -> str:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if not header or scheme.lower() != "bearer" or not token.strip():
            raise Refusal("unauthorized", "a token is required: Authorization: Bearer <JWT>")
        try:
            identity = verify_token(token.strip(), self.secret)
        except AuthError as exc:
            raise Refusal(exc.code, exc.message) from None
        if identity.role not in OPS_ROLES:
            raise Refusal("forbidden", "campaigns need a token with role ops or supervisor")
        return identity.id

    @staticmethod
    async def _body(request: web.Request) -> Any:
        try:
            return await asyncio.to_thread(JSON.decode, await request.read())
        except DecodeError as exc:
            raise Refusal("invalid", exc.message) from None

    async def handle(self, request: web.Request) -> web.Response:
        """Every route: refusals and their logs in one place."""
        try:
            user = self._check(request)
            status, answer = await self._route(request)
        except Refusal as exc:
            log.info("campaigns.refused", code=exc.code, field=exc.field)
            body = error_body(exc.code, exc.message, exc.field)
            return web.json_response(body, status=http_status(exc.code))
        except SpecError as exc:
            log.info("campaigns.refused", code="invalid", field=exc.field)
            return web.json_response(error_body("invalid", exc.message, exc.field), status=400)
        except UnknownCampaign as exc:
            return web.json_response(error_body("not_found", str(exc)), status=404)
        except (CampaignExists, CampaignStopped) as exc:
            return web.json_response(error_body("conflict", str(exc)), status=409)
        match = request.match_info
        log.info("campaigns.answered", user=user, method=request.method,
                 campaign=match.get("id"), action=match.get("action"))  # fmt: skip
        return web.json_response(answer, status=status)

    async def _route(self, request: web.Request) -> tuple[int, Any]:
        cid = request.match_info.get("id")
        action = request.match_info.get("action")
        store = self.campaigns.store
        if cid is None:
            if request.method == "GET":
                return 200, {"campaigns": [progress(c) for c in await store.campaigns()]}
            body = await self._body(request)
            record, contacts, dnc = await asyncio.to_thread(
                campaign_of, body, self.region, self.max_queued
            )
            view = await store.create(record, contacts, dnc)
            log.info("campaign.created", campaign=record["id"], contacts=len(contacts))
            return 201, progress(view)
        if action is None:
            found = await store.campaign(cid)
            if found is None:
                raise Refusal("not_found", f"campaign {cid} is not known")
            return 200, progress(found)
        if action in STATES:
            view = await store.set_state(cid, STATES[action])
            if action != "resume":
                await self.campaigns.recall(cid)  # its contacts still in line come back
                view = await store.campaign(cid) or view
            log.info("campaign.state", campaign=cid, state=STATES[action])
            return 200, progress(view)
        body = await self._body(request)
        if not isinstance(body, dict):
            raise Refusal("invalid", "the body must be a JSON object")
        if action == "contacts":
            if set(body) != {"contacts"}:
                raise Refusal("invalid", 'the body is {"contacts": [...]}', "contacts")
            contacts = await asyncio.to_thread(contacts_of, body["contacts"], self.region)
            added, duplicates = await store.add_contacts(cid, contacts)
            log.info("campaign.contacts_added", campaign=cid, added=added, duplicates=duplicates)
            return 200, {"campaign": cid, "added": added, "duplicates": duplicates}
        entries = await asyncio.to_thread(do_not_call_of, body, self.region, "")
        withdrawn = await store.add_do_not_call(cid, entries)
        for contact in withdrawn:
            await self.campaigns.withdraw(cid, contact)
        log.info("campaign.do_not_call", campaign=cid, entries=len(entries),
                 withdrawn=len(withdrawn))  # fmt: skip
        return 200, {"campaign": cid, "entries": len(entries),
                     "withdrawn": [c["id"] for c in withdrawn]}  # fmt: skip


def add_campaign_routes(app: web.Application, service: Service, settings: Settings) -> CampaignApi:
    """Add the `/v1/campaigns` routes to `app`."""
    api = CampaignApi(service, settings)
    app.router.add_get("/v1/campaigns", api.handle)
    app.router.add_post("/v1/campaigns", api.handle)
    app.router.add_get("/v1/campaigns/{id}", api.handle)
    app.router.add_post("/v1/campaigns/{id}/{action:pause|resume|stop|contacts|do-not-call}",
                        api.handle)  # fmt: skip
    return api
