"""SMS over HTTP: Twilio's inbound and status webhooks, and the shared client for replies.

`POST /v1/channels/sms/twilio` takes Twilio's inbound message webhook; the checks run
least-trusting first, so nothing unsigned is looked at: body size (413) → an auth token, a
public URL and an `X-Twilio-Signature` at all (403) → form content type, and no
`Content-Encoding` (415: Twilio signs the URL and the decoded form, never compresses it, so a
compressed body is not Twilio's and is never inflated) → the body within 128 KiB and
`[connections] body_timeout_s` (413, 408) → the signature
over `[server] public_url` + the path and query as requested, and the form (403) → the fields
(400: an invalid number, no text) → the store (200 with empty TwiML, 503 when it fails). The
event id is `sms:<MessageSid>`, so Twilio's retries are deduplicated by the store.

`POST /v1/channels/sms/twilio/status` takes delivery statuses, signed the same way; the
StatusCallback URL omniroute gives Twilio names the customer and interaction (`?cu=…&ix=…`),
and the status is merged into that interaction's `meta` (`sms_status`, `sms_sid`,
`sms_error`) unless it would move it backwards. Unknown ids answer 200 (Twilio would retry
otherwise) and are logged.

Replies go out through `channels.sms.outbound.SmsPort` over one `aiohttp.ClientSession`, opened on
startup and closed on cleanup; deliveries in flight get a short grace on shutdown. Every
refusal is one `sms.refused` log line with a reason and the field — never a number or a body.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Final, ParamSpec, TypeVar

import aiohttp
import structlog
from aiohttp import web

from channels.base import Delivered
from channels.sms.form import EMPTY_TWIML, SmsRefused, first_values, form_pairs
from channels.sms.inbound import InboundSms, read_inbound
from channels.sms.outbound import HttpReply, SmsPort, TransportError
from channels.sms.signature import SIGNATURE_HEADER, signature_ok
from channels.sms.status import callback_ids, moves_forward, read_status
from router.body import BodyRefused, codings, read_raw
from router.errors import BadEvent, Overloaded, error_body
from router.protocol import validate_event
from router.service import Service
from router.settings import Settings
from store.model import ANNOTATE_WINDOW, Interaction

WEBHOOK_PATH: Final = "/v1/channels/sms/twilio"
STATUS_PATH: Final = "/v1/channels/sms/twilio/status"
# Twilio's status → the `message.status` an agent is told (the others say nothing new)
WIRE_STATUS: Final = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "delivered",
    "failed": "failed",
    "undelivered": "failed",
}
MAX_FORM_BYTES: Final = 128 * 1024  # a 1,600-character body percent-encoded is ~15 KiB
MAX_REPLY_BYTES: Final = 64 * 1024  # of Twilio's API answer: only its `sid` is read
FORM_TYPE: Final = "application/x-www-form-urlencoded"

# reason → (HTTP status, wire code)
REASONS: Final[Mapping[str, tuple[int, str]]] = {
    "too_large": (413, "too_large"),
    "no_token": (403, "forbidden"),  # [sms] auth_token is empty: nothing can be verified
    "no_public_url": (403, "forbidden"),  # [server] public_url is empty: the URL is unknown
    "no_signature": (403, "forbidden"),
    "bad_signature": (403, "forbidden"),
    "unsupported_media_type": (415, "invalid"),
    "unsupported_encoding": (415, "invalid"),
    "timeout": (408, "timeout"),
    "invalid": (400, "invalid"),
    "unavailable": (503, "unavailable"),
    "overloaded": (503, "overloaded"),
}

log = structlog.get_logger("omniroute.sms")

P = ParamSpec("P")
T = TypeVar("T")


class Refused(Exception):
    """Raised inside a handler when a webhook is refused; becomes the error answer."""

    def __init__(self, reason: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.field = field


class SmsWebhooks:
    """The two webhook handlers; see the module docstring for the order of checks."""

    def __init__(
        self,
        service: Service,
        auth_token: str,
        public_url: str,
        default_region: str,
        body_timeout_s: float = 10.0,
    ) -> None:
        self.service = service
        self.body_timeout_s = body_timeout_s
        self.auth_token = auth_token
        self.public_url = public_url.rstrip("/")
        self.default_region = default_region
        self._warned: set[str] = set()

    async def inbound(self, request: web.Request) -> web.Response:
        try:
            try:
                self.service.admit()  # past the backlog bound: refused before anything is read
            except Overloaded as exc:
                raise Refused("overloaded", str(exc)) from None
            params = await self._verified(request)
            sms = _checked(read_inbound, params, self.default_region)
            await self._store(sms)
        except Refused as refused:
            return self._refuse("inbound", refused)
        return web.Response(status=200, text=EMPTY_TWIML, content_type="text/xml")

    async def status(self, request: web.Request) -> web.Response:
        try:
            params = await self._verified(request)
            customer, interaction = _checked(
                callback_ids, request.query.get("cu"), request.query.get("ix")
            )
            status = _checked(read_status, params)
            await self._annotate(customer, interaction, status.meta())
        except Refused as refused:
            return self._refuse("status", refused)
        return web.Response(status=200)

    async def _verified(self, request: web.Request) -> dict[str, str]:
        """The form of a request Twilio signed, or `Refused`; nothing else is read before."""
        if request.content_length is not None and request.content_length > MAX_FORM_BYTES:
            raise Refused("too_large", f"the body exceeds {MAX_FORM_BYTES} bytes")
        if not self.auth_token:
            raise Refused("no_token", "SMS webhooks are off: [sms] auth_token is not set")
        if not self.public_url:
            raise Refused("no_public_url", "SMS webhooks are off: [server] public_url is not set")
        signature = request.headers.get(SIGNATURE_HEADER, "")
        if not signature.strip():
            raise Refused("no_signature", f"{SIGNATURE_HEADER} is required")
        if request.content_type != FORM_TYPE:
            raise Refused("unsupported_media_type", f"the body must be {FORM_TYPE}")
        if codings(request.headers.get("Content-Encoding")):
            raise Refused("unsupported_encoding", "Twilio's webhooks are not compressed")
        try:
            body = await read_raw(request, MAX_FORM_BYTES, self.body_timeout_s)
        except BodyRefused as exc:
            raise Refused(exc.reason, exc.message) from None
        pairs = _checked(form_pairs, body)
        if not signature_ok(self.auth_token, self.public_url + request.raw_path, pairs, signature):
            raise Refused("bad_signature", f"{SIGNATURE_HEADER} does not match")
        return first_values(pairs)

    async def _store(self, sms: InboundSms) -> None:
        try:
            event = validate_event(sms.event())
        except BadEvent as exc:  # e.g. a To longer than meta allows
            raise Refused("invalid", exc.message, exc.field) from None
        try:
            (result,) = await self.service.ingest([event])
        except Overloaded as exc:  # nothing was stored; Twilio retries a 503
            raise Refused("overloaded", str(exc)) from None
        except Exception as exc:  # nothing was stored; Twilio may retry
            log.error("sms.store_failed", event_id=event.id, error=type(exc).__name__)
            raise Refused("unavailable", "the message could not be stored; retry") from None
        kind = "duplicate" if result.duplicate else "accepted"
        metrics: Any = self.service.metrics
        if metrics is not None:
            metrics.ingested(kind, 1)
        log.info(
            "sms.received",
            event_id=event.id,
            conversation=result.conversation,
            duplicate=result.duplicate,
            media=sms.media,
        )

    async def _annotate(self, customer: str, interaction: str, meta: Mapping[str, Any]) -> None:
        status, sid = meta["sms_status"], meta["sms_sid"]
        try:
            item = await self._current(customer, interaction)
            if item is None:
                log.warning("sms.status_unknown", customer=customer, interaction=interaction)
                return
            if not moves_forward(item.meta.get("sms_status"), status):
                log.info("sms.status_stale", interaction=interaction, sid=sid, status=status)
                return
            found = await self.service.store.annotate(customer, interaction, meta)
        except Exception as exc:
            log.error("sms.status_failed", interaction=interaction, error=type(exc).__name__)
            raise Refused("unavailable", "the status could not be stored; retry") from None
        if found:
            log.info("sms.status", interaction=interaction, sid=sid, status=status)
            told = WIRE_STATUS.get(status)
            if told is not None:  # the agent who sent it hears what became of it
                outcome = Delivered(told, meta.get("sms_error") if told == "failed" else None)
                agent = str(item.meta.get("agent", ""))
                with contextlib.suppress(Exception):  # stored: a lost frame is only a frame
                    await self.service.replies.status(
                        item.conversation, customer, interaction, agent, outcome
                    )
        else:
            log.warning("sms.status_unknown", customer=customer, interaction=interaction)

    async def _current(self, customer: str, interaction: str) -> Interaction | None:
        """The interaction, if it is among those `annotate` can reach."""
        for item in await self.service.store.history(customer, ANNOTATE_WINDOW):
            if item.id == interaction:
                return item
        return None

    def _refuse(self, endpoint: str, refused: Refused) -> web.Response:
        status, code = REASONS[refused.reason]
        if refused.reason in ("no_token", "no_public_url") and refused.reason not in self._warned:
            self._warned.add(refused.reason)  # a setting, not an attack: say it once, loudly
            log.error("sms.webhooks_off", reason=refused.reason)
        emit = log.error if status >= 500 else log.warning
        emit(
            "sms.refused",
            endpoint=endpoint,
            reason=refused.reason,
            status=status,
            field=refused.field,
        )
        response = web.json_response(
            error_body(code, refused.message, refused.field), status=status
        )
        if refused.reason in ("too_large", "timeout"):
            response.force_close()
        elif status == 503:
            response.headers["Retry-After"] = "1"
        return response


def _checked(parse: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Call a `channels.sms` reader; its `SmsRefused` becomes this module's `Refused`."""
    try:
        return parse(*args, **kwargs)
    except SmsRefused as exc:
        raise Refused(exc.reason, exc.message, exc.field) from None


class HttpTransport:
    """`channels.sms.outbound.Transport` over one shared `aiohttp.ClientSession` (see `start`)."""

    def __init__(self, timeout_s: float = 5.0) -> None:
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(timeout=self.timeout)

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def __call__(self, url: str, form: Mapping[str, str], auth: tuple[str, str]) -> HttpReply:
        if self.session is None:
            raise TransportError("the HTTP client is not running")
        try:
            headers = {"Authorization": basic_auth(*auth)}
            async with self.session.post(url, data=dict(form), headers=headers) as response:
                body = bytearray()
                while chunk := await response.content.read(MAX_REPLY_BYTES - len(body)):
                    body += chunk
                    if len(body) >= MAX_REPLY_BYTES:
                        break
                retry_after = _seconds(response.headers.get("Retry-After"))
                return HttpReply(response.status, bytes(body), retry_after)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransportError(type(exc).__name__) from None


def basic_auth(user: str, password: str) -> str:
    """An HTTP Basic `Authorization` value (RFC 7617, UTF-8)."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def _seconds(value: str | None) -> float | None:
    """A Retry-After given in seconds (the HTTP-date form is ignored)."""
    if value is None or not value.strip().isdigit():
        return None
    return float(value.strip())


def add_sms(app: web.Application, service: Service, settings: Settings) -> None:
    """Serve the SMS webhooks and, when `[sms]` is complete, send SMS replies via Twilio.

    Without an account SID, auth token and sender number, replies stay with the router's
    default port (recorded, not sent); without an auth token, every webhook is refused.
    """
    sms = settings.sms
    public_url = settings.server.public_url.rstrip("/")
    webhooks = SmsWebhooks(
        service,
        sms.auth_token,
        public_url,
        sms.default_region,
        settings.connections.body_timeout_s,
    )
    app.add_routes(
        [web.post(WEBHOOK_PATH, webhooks.inbound), web.post(STATUS_PATH, webhooks.status)]
    )
    if not (sms.account_sid and sms.auth_token and sms.from_number):
        log.info("sms.outbound_off", reason="[sms] account_sid, auth_token or from_number unset")
        return
    transport = HttpTransport()
    port = SmsPort(
        account_sid=sms.account_sid,
        auth_token=sms.auth_token,
        from_number=sms.from_number,
        api_base_url=sms.api_base_url,
        status_url=f"{public_url}{STATUS_PATH}" if public_url else "",
        transport=transport,
        annotate=service.store.annotate,
    )
    service.outbound.register("sms", port)

    async def client(_app: web.Application) -> AsyncIterator[None]:
        await transport.start()
        try:
            yield
        finally:
            await port.close()  # already drained on shutdown, unless startup failed after us
            await transport.close()

    async def drain(_app: web.Application) -> None:
        await port.close()  # before any cleanup step closes the store the outcome goes to

    app.cleanup_ctx.append(client)
    app.on_shutdown.append(drain)
