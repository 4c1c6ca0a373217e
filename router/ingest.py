"""`POST /v1/events`: adapters push events; each is verified, validated, and stored or refused.

The checks run cheapest-and-least-trusting first, so nothing from an unauthenticated sender
is parsed or decompressed: size and time (413, reading stops at the limit; 408 for a body
that trickles in) → signature over the body as received, compressed or not (401) →
`Content-Encoding` undone within the same limit (415 for an unknown coding, 400 for a broken
stream, 413 for a bomb; `router.body`) → content type (415) → validation of every event (400)
→ the store's atomic `ingest` (202, or 503 when the store fails; a batch is stored whole or
not at all).

Every refusal is one `ingest.refused` log event carrying a reason, the wire code, the field
and the body's length — never the body, header values or the signature; `overloaded` ones,
which come in floods, are one line when the burst starts and one per 10 s with the count.
While routing is at its backlog bound (`admit`, `Service.admit`) a post is refused 503
before its body is read at all: a refusal has to cost far less than routing an event.
`on_result(kind, n)` counts outcomes for metrics: `accepted` and `duplicate` count events;
every refusal reason in `REASONS` counts requests.

The route is decoupled from the service: it takes any `ingest(events) -> [Ingested]`
coroutine (the app passes `Service.ingest`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import structlog
from aiohttp import web

from router.auth import SIGNATURE_HEADER, signature_ok
from router.body import BodyRefused, decode, read_raw
from router.codec import JSON, MSGPACK, Codec, codec_for
from router.connections import BurstLog
from router.errors import BadEvent, Overloaded, UnsupportedMediaType, error_body
from router.protocol import parse_events
from store.model import InboundEvent, Ingested

PATH: Final = "/v1/events"
MAX_BYTES: Final = 1 << 20
BODY_TIMEOUT_S: Final = 10.0  # `[connections] body_timeout_s`

# reason → (HTTP status, wire code)
REASONS: Final[Mapping[str, tuple[int, str]]] = {
    "too_large": (413, "too_large"),
    "timeout": (408, "timeout"),
    "no_signature": (401, "unauthorized"),
    "bad_signature": (401, "unauthorized"),
    "no_secret": (401, "unauthorized"),  # the server has no webhook secret: refuse everything
    "unsupported_media_type": (415, "invalid"),
    "unsupported_encoding": (415, "invalid"),
    "bad_encoding": (400, "invalid"),
    "invalid": (400, "invalid"),
    "unavailable": (503, "unavailable"),
    "overloaded": (503, "overloaded"),
}
RESULTS: Final = ("accepted", "duplicate", *REASONS)
RETRY: Final = "the events could not be stored; retry"

Ingest = Callable[[list[InboundEvent]], Awaitable[list[Ingested]]]
OnResult = Callable[[str, int], None]
Admit = Callable[[], None]  # raises `Overloaded` while routing is at its backlog bound

log = structlog.get_logger("omniroute.ingest")


class Refused(Exception):
    """Raised inside the handler when a request is refused; becomes the error answer."""

    def __init__(
        self,
        reason: str,
        message: str,
        field: str | None = None,
        *,
        log_field: str | None = None,
        size: int | None = None,
        error: str | None = None,
        retry_after: int = 1,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.field = field
        self.log_field = field if log_field is None else log_field  # no input-derived names
        self.size = size  # bytes read before refusing, when the body was cut off
        self.error = error  # the store's exception type, for `unavailable`
        self.retry_after = retry_after  # seconds, for `overloaded`


class IngestHandler:
    """`POST /v1/events`; see the module docstring for the order of checks."""

    def __init__(
        self,
        ingest: Ingest,
        webhook_secret: str,
        max_bytes: int = MAX_BYTES,
        on_result: OnResult | None = None,
        *,
        body_timeout_s: float = BODY_TIMEOUT_S,
        admit: Admit | None = None,
    ) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        self._ingest = ingest
        self._secret = webhook_secret
        self._max_bytes = max_bytes
        self._on_result = on_result
        self._body_timeout_s = body_timeout_s
        self._admit = admit
        # one line per burst of refusals, not one per post
        self._overloaded = BurstLog("ingest.refused", logger=log)

    def routes(self) -> list[web.RouteDef]:
        """The route of adapter ingest, for `app.add_routes(...)`."""
        return [web.post(PATH, self.handle)]

    async def handle(self, request: web.Request) -> web.Response:
        size = request.content_length or 0
        try:
            self._gate()
            raw = await self._read(request)
            size = len(raw)
            self._verify(raw, request.headers.get(SIGNATURE_HEADER))
            body = self._decode(raw, request.headers.get("Content-Encoding"))
            events = self._parse(body, request.headers.get("Content-Type"))
            results = await self._store(events)
        except Refused as refused:
            return self._refuse(request, refused, size if refused.size is None else refused.size)
        accepted = sum(1 for row in results if not row.duplicate)
        self._count("accepted", accepted)
        self._count("duplicate", len(results) - accepted)
        log.debug("ingest.accepted", events=len(results), accepted=accepted, bytes=size)
        answer = {
            "accepted": accepted,
            "duplicates": len(results) - accepted,
            "conversations": [row.conversation for row in results],
        }
        return _answer(request, 202, answer)

    def _gate(self) -> None:
        """Refuse at once while routing is at its backlog bound: before the body is read,
        verified or parsed, so that refusing costs little beside routing."""
        if self._admit is None:
            return
        try:
            self._admit()
        except Overloaded as exc:
            raise Refused("overloaded", str(exc), retry_after=exc.retry_after_s) from None

    async def _read(self, request: web.Request) -> bytes:
        """The body as received, refusing (without reading on) past the size or time limit."""
        try:
            return await read_raw(request, self._max_bytes, self._body_timeout_s)
        except BodyRefused as exc:
            raise Refused(exc.reason, exc.message, size=exc.size) from None

    def _decode(self, raw: bytes, encoding: str | None) -> bytes:
        """The signed body with its Content-Encoding undone, within the same size limit."""
        try:
            return decode(raw, encoding, self._max_bytes)
        except BodyRefused as exc:
            raise Refused(exc.reason, exc.message, "Content-Encoding") from None

    def _verify(self, body: bytes, header: str | None) -> None:
        if not self._secret:
            raise Refused("no_secret", "the server has no webhook secret configured")
        if not header or not header.strip():
            raise Refused("no_signature", f"{SIGNATURE_HEADER} is required")
        if not signature_ok(body, header, self._secret):
            raise Refused("bad_signature", f"{SIGNATURE_HEADER} does not match the body")

    @staticmethod
    def _parse(body: bytes, content_type: str | None) -> list[InboundEvent]:
        try:
            codec_for(content_type)
        except UnsupportedMediaType as exc:
            raise Refused("unsupported_media_type", exc.message) from None
        try:
            return parse_events(body, content_type or "")
        except BadEvent as exc:
            raise Refused("invalid", exc.message, exc.field, log_field=exc.log_field) from None

    async def _store(self, events: list[InboundEvent]) -> list[Ingested]:
        try:
            results = await self._ingest(events)
        except Overloaded as exc:  # nothing was stored: the adapter retries later
            raise Refused("overloaded", str(exc), retry_after=exc.retry_after_s) from None
        except Exception as exc:  # any store failure: nothing was stored, the adapter retries
            error = type(exc).__name__
            raise Refused("unavailable", RETRY, error=error) from None
        if len(results) != len(events):  # a broken store, not a bad request
            raise Refused("unavailable", RETRY, error="ResultCountMismatch")
        return results

    def _refuse(self, request: web.Request, refused: Refused, size: int) -> web.Response:
        status, code = REASONS[refused.reason]
        self._count(refused.reason, 1)
        if refused.reason == "overloaded":  # a flood of them while it lasts: counted per burst
            self._overloaded.note(reason=refused.reason, code=code, status=status)
        else:
            emit = log.error if refused.reason == "unavailable" else log.warning
            extra = {"error": refused.error} if refused.error else {}
            emit(
                "ingest.refused",
                reason=refused.reason,
                code=code,
                status=status,
                field=refused.log_field,
                bytes=size,
                **extra,
            )
        response = _answer(request, status, error_body(code, refused.message, refused.field))
        if refused.reason in ("too_large", "timeout"):
            response.force_close()  # the rest of the body is discarded, never buffered
        elif refused.reason in ("unavailable", "overloaded"):
            response.headers["Retry-After"] = str(refused.retry_after)
        return response

    def _count(self, kind: str, n: int) -> None:
        if self._on_result is None or n == 0:
            return
        try:
            self._on_result(kind, n)
        except Exception as exc:  # metrics never change an answer
            log.warning("ingest.metrics_failed", error=type(exc).__name__)


def _answer(request: web.Request, status: int, payload: Mapping[str, Any]) -> web.Response:
    """JSON, or msgpack when the adapter's Accept header asks for it (and not for JSON)."""
    codec: Codec = JSON
    accept = request.headers.get("Accept", "")
    if "msgpack" in accept and JSON.content_type not in accept:
        codec = MSGPACK
    return web.Response(status=status, body=codec.encode(payload), content_type=codec.content_type)
