"""SMS replies out: `SmsPort` sends agents' replies through Twilio's Messages API.

Nothing here touches a socket: the port sends through a `Transport` it is given (the router's
shared HTTP client, `router.channel_sms.HttpTransport`), so its retries (`channels.retry`, with
`SMS_BACKOFF`) are tested without aiohttp in the way.

May import `channels.base`, `channels.retry` and `channels.sms.form`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, urlencode

import structlog

from channels.base import Delivered, OutboundMessage, OutboundPort
from channels.retry import Backoff
from channels.sms.form import SID

log = structlog.get_logger("omniroute.channels.sms")

MAX_SMS_CHARS: Final = 1_600  # Twilio's limit for one (concatenated) message body
_E164: Final = re.compile(r"\+[1-9][0-9]{6,14}")


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
        meta = {"sms_sid": sid} if sid is not None else {}
        await self._outcome(message, meta, log.info, "sms.sent", sid=sid, attempts=attempts)

    async def _failed(self, message: OutboundMessage, error: str, attempts: int) -> Delivered:
        meta = {"sms_status": "failed", "sms_sid": None, "sms_error": error}
        await self._outcome(
            message, meta, log.warning, "sms.failed", error=error, attempts=attempts
        )
        return Delivered("failed", error)

    async def _outcome(
        self,
        message: OutboundMessage,
        meta: Mapping[str, Any],
        log_at: Callable[..., Any],
        event: str,
        **fields: Any,
    ) -> None:
        """A send's outcome: noted on its interaction (`meta`, when there is any) and logged
        with the message's ids."""
        if meta:
            await self.annotate(message.customer, message.interaction, meta)
        log_at(event, conversation=message.conversation, interaction=message.interaction, **fields)

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
    return sid if isinstance(sid, str) and SID.fullmatch(sid) else None


def _error_of(reply: HttpReply) -> str:
    """Twilio's error code (e.g. 21211, the same numbers status callbacks carry), else the
    HTTP status as `http_<status>`."""
    code = _json_field(reply.body, "code")
    if isinstance(code, int) and not isinstance(code, bool) and 0 < code < 10**10:
        return str(code)
    return f"http_{reply.status}"
