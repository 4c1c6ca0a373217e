"""SMS over Twilio's wire format: webhook signatures, inbound forms, delivery statuses, replies.

Nothing here touches a socket. `router.channel_sms` serves the webhooks and hands this module
the raw form; the outbound `SmsPort` sends through a `Transport` it is given (the router's
shared HTTP client), so its retries (`channels.retry`, with `SMS_BACKOFF`) are tested without
aiohttp in the way.

Signatures are Twilio's legacy scheme, as `twilio.request_validator.RequestValidator` computes
them: base64(HMAC-SHA1(auth token, URL + every POST parameter name followed by its value,
names sorted, a repeated name's distinct values sorted)). The URL is the one Twilio requested,
so behind a proxy it is built from `[server] public_url`; like the official validator we accept
it with the scheme's default port written out or left off.

Inbound numbers are normalised to E.164 with `phonenumbers`: a national number is read in the
sender's country as Twilio reports it (`FromCountry`), else in `[sms] default_region`; anything
that is not a valid number is refused, so one customer is never split over two spellings.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import random
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import phonenumbers
import structlog

from channels.base import MAX_ID, Delivered, OutboundMessage, OutboundPort
from channels.retry import Backoff

log = structlog.get_logger("omniroute.channels.sms")

SIGNATURE_HEADER: Final = "X-Twilio-Signature"
EMPTY_TWIML: Final = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
MAX_FORM_FIELDS: Final = 200  # Twilio sends ~20 (plus MediaUrlN/MediaContentTypeN, at most 10)
MAX_SMS_CHARS: Final = 1_600  # Twilio's limit for one (concatenated) message body
MAX_BODY_BYTES: Final = 64 * 1024  # the event contract's bound on `body`
MAX_NUMBER: Final = 64  # a raw From/To longer than this is no phone number

_SID: Final = re.compile(r"[A-Za-z0-9]{2,64}")  # SM…/MM… (34 characters) from Twilio itself
_REGION: Final = re.compile(r"[A-Z]{2}")
_E164: Final = re.compile(r"\+[1-9][0-9]{6,14}")
_MEDIA: Final = re.compile(r"MediaUrl[0-9]{1,2}")
_ERROR_CODE: Final = re.compile(r"[0-9]{1,10}")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")

# Twilio's message statuses in the order a message moves through them; a callback never moves
# a message back (they may arrive out of order), and the final ones share the last rank.
_STATUS_ORDER: Final = (
    ("accepted", "scheduled"),
    ("queued",),
    ("sending",),
    ("sent", "receiving"),
    ("delivered", "undelivered", "failed", "received", "partially_delivered", "canceled"),
    ("read",),
)
STATUS_RANK: Final[Mapping[str, int]] = {
    status: rank for rank, group in enumerate(_STATUS_ORDER) for status in group
}


class SmsRefused(Exception):
    """Raised when a webhook is refused; `reason` names why in logs and metrics (no content)."""

    def __init__(self, reason: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason  # bad_signature | invalid
        self.message = message
        self.field = field


# -- signatures ---------------------------------------------------------------------------------


def form_pairs(body: bytes) -> list[tuple[str, str]]:
    """An `application/x-www-form-urlencoded` body as (name, value) pairs, in order.

    Bounded (`MAX_FORM_FIELDS`) and strict about UTF-8: Twilio never sends anything else, so a
    body that fails here is not Twilio's and is treated as unsigned.
    """
    try:
        text = body.decode("utf-8")
        return parse_qsl(
            text,
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FORM_FIELDS,
        )
    except ValueError:  # UnicodeDecodeError is one; so are too many fields
        raise SmsRefused(
            "bad_signature", "the body is not a form Twilio could have signed"
        ) from None


def compute_signature(token: str, url: str, params: Sequence[tuple[str, str]]) -> str:
    """Twilio's X-Twilio-Signature of a POST to `url` with form `params` (see module doc)."""
    values: dict[str, set[str]] = {}
    for name, value in params:
        values.setdefault(name, set()).add(value)
    data = url + "".join(name + value for name in sorted(values) for value in sorted(values[name]))
    mac = hmac.new(token.encode(), data.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def url_variants(url: str) -> list[str]:
    """`url` as given, with the scheme's default port left off, and with it written out.

    Twilio is not consistent about the port in what it signs; its own validator tries both.
    """
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return [url]
    bare = parts.netloc if port is None else parts.netloc[: parts.netloc.rfind(":")]
    default = 443 if parts.scheme == "https" else 80
    out = [url]
    for netloc in (bare, f"{bare}:{port if port is not None else default}"):
        candidate = urlunsplit(parts._replace(netloc=netloc))
        if candidate not in out:
            out.append(candidate)
    return out


def signature_ok(
    token: str, url: str, params: Sequence[tuple[str, str]], signature: str | None
) -> bool:
    """Constant-time check of an X-Twilio-Signature header against `url` and `params`."""
    if not token or not signature:
        return False
    given = signature.strip().encode()
    ok = False
    for candidate in url_variants(url):
        expected = compute_signature(token, candidate, params).encode()
        ok |= hmac.compare_digest(expected, given)
    return ok


# -- inbound ------------------------------------------------------------------------------------


def e164(raw: str, region: str | None) -> str:
    """The number in E.164, read in `region` unless it starts with `+`; refuses invalid ones."""
    text = raw.strip()
    if not text or len(text) > MAX_NUMBER or _CONTROL.search(text):
        raise SmsRefused("invalid", "From must be a phone number", "From")
    if not text.startswith("+") and not region:
        raise SmsRefused(
            "invalid", "From is a national number and no country is known for it", "From"
        )
    try:
        number = phonenumbers.parse(text, None if text.startswith("+") else region)
    except phonenumbers.NumberParseException:
        raise SmsRefused("invalid", "From is not a phone number", "From") from None
    if not phonenumbers.is_valid_number(number):
        raise SmsRefused("invalid", "From is not a valid phone number", "From")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@dataclass(frozen=True)
class InboundSms:
    """One inbound SMS/MMS webhook, validated; `event()` is its `/v1/events` shape."""

    sid: str
    sender: str  # E.164
    to: str
    body: str
    media: int = 0

    def event(self) -> dict[str, Any]:
        """The adapter event (DESIGN.md "Adapter ingest"); the id dedupes Twilio's retries."""
        meta: dict[str, Any] = {"to": self.to, "sid": self.sid, "from": self.sender}
        if self.media:
            meta["media"] = self.media
        body = self.body or f"[{self.media} attachment{'s' if self.media > 1 else ''}]"
        return {
            "id": f"sms:{self.sid}",
            "type": "message",
            "channel": "sms",
            "from": self.sender,
            "body": body,
            "meta": meta,
        }


def first_values(params: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Each name's first value (Twilio sends every field once)."""
    out: dict[str, str] = {}
    for name, value in params:
        out.setdefault(name, value)
    return out


def read_inbound(params: Mapping[str, str], default_region: str = "") -> InboundSms:
    """Validate Twilio's inbound message form; raises `SmsRefused` ("invalid") naming the field."""
    sid = params.get("MessageSid") or params.get("SmsSid") or ""
    if not _SID.fullmatch(sid):
        raise SmsRefused("invalid", "MessageSid must be 2 to 64 letters and digits", "MessageSid")
    country = params.get("FromCountry", "").strip().upper()
    region = country if _REGION.fullmatch(country) else default_region
    sender = e164(params.get("From", ""), region or None)
    to = params.get("To", "").strip()
    if not to or len(to) > MAX_NUMBER or _CONTROL.search(to):
        raise SmsRefused("invalid", "To must be our phone number", "To")
    body = params.get("Body", "")
    if "\x00" in body or len(body.encode()) > MAX_BODY_BYTES:
        raise SmsRefused("invalid", f"Body must be text of at most {MAX_BODY_BYTES} bytes", "Body")
    media = sum(1 for name in params if _MEDIA.fullmatch(name))
    if not body.strip() and not media:
        raise SmsRefused("invalid", "the message has neither text nor media", "Body")
    return InboundSms(sid=sid, sender=sender, to=to, body=body, media=media)


@dataclass(frozen=True)
class DeliveryStatus:
    """One status callback: which message, its new status, Twilio's error code if any."""

    sid: str
    status: str
    error: str | None

    def meta(self) -> dict[str, Any]:
        return {"sms_status": self.status, "sms_sid": self.sid, "sms_error": self.error}


def read_status(params: Mapping[str, str]) -> DeliveryStatus:
    """Validate a status callback form; raises `SmsRefused` ("invalid") naming the field."""
    sid = params.get("MessageSid") or params.get("SmsSid") or ""
    if not _SID.fullmatch(sid):
        raise SmsRefused("invalid", "MessageSid must be 2 to 64 letters and digits", "MessageSid")
    status = params.get("MessageStatus") or params.get("SmsStatus") or ""
    if status not in STATUS_RANK:
        raise SmsRefused("invalid", "MessageStatus is not a Twilio message status", "MessageStatus")
    error = params.get("ErrorCode") or None
    if error is not None and not _ERROR_CODE.fullmatch(error):
        raise SmsRefused("invalid", "ErrorCode must be a number", "ErrorCode")
    return DeliveryStatus(sid=sid, status=status, error=error)


def moves_forward(current: Any, new: str) -> bool:
    """Whether `new` may replace the stored status `current` (callbacks come out of order)."""
    if not isinstance(current, str) or current not in STATUS_RANK:
        return True
    return STATUS_RANK[new] >= STATUS_RANK[current]


def callback_ids(cu: str | None, ix: str | None) -> tuple[str, str]:
    """The customer and interaction a status callback URL names (`?cu=…&ix=…`), checked."""
    ids = []
    for name, value in (("cu", cu), ("ix", ix)):
        if not value or len(value) > MAX_ID or _CONTROL.search(value):
            raise SmsRefused("invalid", f"{name} must name a customer and an interaction", name)
        ids.append(value)
    return ids[0], ids[1]


# -- outbound -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpReply:
    """What the transport got back: status, body, and a Retry-After in seconds if one came."""

    status: int
    body: bytes = b""
    retry_after: float | None = None


class TransportError(Exception):
    """Raised by a transport when no HTTP answer came (refused, reset, timed out)."""


# POST url with a form and HTTP basic auth (user, password) → the reply
Transport = Callable[[str, Mapping[str, str], tuple[str, str]], Awaitable[HttpReply]]
# store.annotate(customer, interaction, meta) → found
Annotate = Callable[[str, str, Mapping[str, Any]], Awaitable[bool]]


# 4 tries, waits from 0.2 s doubling up to 1 s, each jittered down to half (so many senders
# retrying at once spread out); Twilio's Retry-After is honoured up to the same 1 s. The waits
# add up to at most 1.4 s.
SMS_BACKOFF: Final = Backoff(tries=4, base_s=0.2, cap_s=1.0, jitter=0.5)


def retryable(status: int) -> bool:
    """429 and 5xx are worth another try; any other 4xx will fail the same way again."""
    return status == 429 or status >= 500


class SmsPort(OutboundPort):
    """Sends agent replies through Twilio's Messages API.

    `send` only starts a background delivery, so the agent's request is not held up by
    Twilio; the delivery retries within `backoff`, then annotates the reply's interaction:
    `sms_sid` once Twilio took it, `sms_status: failed` (+ `sms_error`) when it never did.
    Status callbacks annotate the rest. `close` waits briefly, then cancels.
    """

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        from_number: str,
        api_base_url: str,
        status_url: str,
        transport: Transport,
        annotate: Annotate,
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
    ) -> None:
        account = quote(account_sid, safe="")
        self.url = f"{api_base_url.rstrip('/')}/2010-04-01/Accounts/{account}/Messages.json"
        self.auth = (account_sid, auth_token)
        self.from_number = from_number
        self.status_url = status_url  # "" = no StatusCallback
        self.transport = transport
        self.annotate = annotate
        self.backoff = backoff or SMS_BACKOFF
        self.rng = rng or random.Random()
        self.pending: set[asyncio.Task[None]] = set()

    async def send(self, message: OutboundMessage) -> None:
        task = asyncio.create_task(self._deliver_logged(message))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def deliver(self, message: OutboundMessage) -> Delivered:
        """Send one reply with bounded retries; annotate the outcome and return it. A broken
        store is raised (the durable job is tried again); everything else is an outcome."""
        to = recipient(message)
        if to is None:
            return await self._failed(message, "no_number", attempts=0)
        if len(message.body) > MAX_SMS_CHARS:
            return await self._failed(message, "too_long", attempts=0)
        return await self._post(message, to)

    async def _deliver_logged(self, message: OutboundMessage) -> None:
        try:
            await self.deliver(message)
        except Exception as exc:  # a broken store must not kill a background send
            log.error("sms.deliver_crashed", interaction=message.interaction,
                      error=type(exc).__name__)  # fmt: skip

    def form(self, message: OutboundMessage, to: str) -> dict[str, str]:
        form = {"To": to, "From": self.from_number, "Body": message.body}
        if self.status_url:
            ids = {"cu": message.customer, "ix": message.interaction}
            query = urlencode(ids, quote_via=quote, safe="")
            form["StatusCallback"] = f"{self.status_url}?{query}"
        return form

    async def _post(self, message: OutboundMessage, to: str) -> Delivered:
        form = self.form(message, to)
        error = "unreachable"
        attempts = self.backoff.attempts(self.rng)
        async for attempt in attempts:
            try:
                reply = await self.transport(self.url, form, self.auth)
            except TransportError:
                error = "unreachable"
                continue
            if 200 <= reply.status < 300:
                await self._sent(message, reply, attempt)
                return Delivered("sent")
            error = _error_of(reply)
            if not retryable(reply.status):
                break
            attempts.retry_after(reply.retry_after)
        return await self._failed(message, error, attempts=attempts.made)

    async def _sent(self, message: OutboundMessage, reply: HttpReply, attempts: int) -> None:
        sid = _sid_of(reply.body)
        if sid is not None:
            await self.annotate(message.customer, message.interaction, {"sms_sid": sid})
        log.info(
            "sms.sent",
            conversation=message.conversation,
            interaction=message.interaction,
            sid=sid,
            attempts=attempts,
        )

    async def _failed(self, message: OutboundMessage, error: str, attempts: int) -> Delivered:
        meta = {"sms_status": "failed", "sms_sid": None, "sms_error": error}
        await self.annotate(message.customer, message.interaction, meta)
        log.warning(
            "sms.failed",
            conversation=message.conversation,
            interaction=message.interaction,
            error=error,
            attempts=attempts,
        )
        return Delivered("failed", error)

    async def close(self, grace_s: float = 2.0) -> None:
        """Let deliveries in flight finish for up to `grace_s`, then cancel the rest."""
        if self.pending:
            _done, late = await asyncio.wait(set(self.pending), timeout=grace_s)
            for task in late:
                task.cancel()
            for task in late:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task


def recipient(message: OutboundMessage) -> str | None:
    """Whom to text: the number they last wrote from while it is still theirs, else their
    first E.164 address."""
    last = message.reply_meta.get("from")
    numbers = [a for a in message.addresses if _E164.fullmatch(a)]
    if isinstance(last, str) and _E164.fullmatch(last) and (last in numbers or not numbers):
        return last
    return numbers[0] if numbers else None


def _json_field(body: bytes, name: str) -> Any:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return document.get(name) if isinstance(document, dict) else None


def _sid_of(body: bytes) -> str | None:
    """The `sid` of Twilio's Message resource in a 201 answer, if it is a sane one."""
    sid = _json_field(body, "sid")
    return sid if isinstance(sid, str) and _SID.fullmatch(sid) else None


def _error_of(reply: HttpReply) -> str:
    """Twilio's error code (e.g. 21211, the same numbers status callbacks carry), else the
    HTTP status as `http_<status>`."""
    code = _json_field(reply.body, "code")
    if isinstance(code, int) and not isinstance(code, bool) and 0 < code < 10**10:
        return str(code)
    return f"http_{reply.status}"
