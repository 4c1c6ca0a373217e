"""Voice (CTI): PBX call events in, `connect` commands out. No sockets here.

Inbound, a PBX POSTs one JSON event per call step to `/v1/channels/voice/events` (served by
`router/channel_voice.py`): `{"id", "type": "call.offered|call.answered|call.ended", "call_id",
"from", "to"}`, optionally `occurred_at` (RFC 3339), `customer_id` and `site`; other keys are
ignored, so a PBX that sends more (a direction, a trunk) still works. `call_document` checks
it and returns the `/v1/events` document the router validates and ingests: id `voice:<id>`
(its own namespace, so a PBX id never collides with another adapter's), the caller normalised
to E.164, and the call's ids in `meta` (`call_id`, `to`), where the router finds the call.

Outbound, when an agent accepts a call the router asks the PBX to connect it: `PbxClient`
POSTs `{"type": "connect", "call_id", "agent", "endpoint"}` signed like adapter webhooks
(`X-Omniroute-Signature: sha256=<hex HMAC-SHA256 of the body>`), retrying a bounded number of
times with backoff while the PBX answers 5xx (or 408/429) or cannot be reached. The HTTP
transport is passed in (the router's aiohttp session), so this module never imports aiohttp.

Errors name fields and limits, never values: phone numbers are customer data.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import phonenumbers
import structlog

from channels.base import MAX_ID, SIGNATURE_HEADER, sign
from channels.retry import Backoff

log = structlog.get_logger("omniroute.channels.voice")

CALL_TYPES: Final = ("call.offered", "call.answered", "call.ended")
ID_PREFIX: Final = "voice:"
MAX_CALL_ID: Final = 200
MAX_BYTES: Final = 64 * 1024  # a call event is a few hundred bytes
MAX_ADDRESS: Final = 320  # as /v1/events


class BadCall(ValueError):
    """Raised when a PBX event is malformed; `field` names the key, never its value."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


_PHONE = re.compile(r"\+?[0-9(][0-9 ().\-/]*")


# -- inbound ----------------------------------------------------------------------------------


def e164(text: str, default_region: str) -> str:
    """A caller's number in E.164 (`+4915112345678`).

    International forms (`+49 …`, `tel:+49…`) need no region; a national number (`0151 …`)
    is read in `default_region` (the `[sms] default_region` setting) and refused without one.
    Raises `ValueError` (without the number) when it is not a possible phone number.
    """
    number = text.strip()
    if number[:4].lower() == "tel:":
        number = number[4:]
    if not _PHONE.fullmatch(number):  # phonenumbers would dig a number out of any text
        raise ValueError("not a phone number: digits and separators only")
    if not number.startswith("+") and not default_region:
        raise ValueError("a national number needs [sms] default_region to be set")
    try:
        parsed = phonenumbers.parse(number, default_region or None)
    except phonenumbers.NumberParseException:
        raise ValueError("not a phone number") from None
    if not phonenumbers.is_possible_number(parsed):
        raise ValueError("not a possible phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def call_document(raw: Mapping[str, Any], default_region: str) -> dict[str, Any]:
    """One decoded PBX event → the `/v1/events` document the router validates and ingests;
    raises `BadCall` naming the field."""

    def need(key: str) -> Any:
        if raw.get(key) is None:
            raise BadCall(f"{key} is required", key)
        return raw[key]

    def token(key: str, limit: int) -> str:
        value = need(key)
        if not isinstance(value, str) or not 1 <= len(value.strip()) <= limit:
            raise BadCall(f"must be a string of 1 to {limit} characters", key)
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
            raise BadCall("must not contain control characters", key)
        return value.strip()

    event_id = token("id", MAX_ID - len(ID_PREFIX))
    kind = need("type")
    if kind not in CALL_TYPES:
        raise BadCall(f"type must be one of {', '.join(CALL_TYPES)}", "type")
    call_id = token("call_id", MAX_CALL_ID)
    to = token("to", MAX_ADDRESS)
    try:
        sender = e164(token("from", MAX_ADDRESS), default_region)
    except ValueError as exc:
        raise BadCall(f"from must be a phone number: {exc}", "from") from None
    document: dict[str, Any] = {
        "id": ID_PREFIX + event_id,
        "type": kind,
        "channel": "voice",
        "from": sender,
        "meta": {"call_id": call_id, "to": to},
    }
    for key in ("occurred_at", "customer_id", "site"):  # checked by validate_event, same names
        if raw.get(key) is not None:
            document[key] = raw[key]
    return document


# -- outbound ---------------------------------------------------------------------------------


class PbxUnreachable(Exception):
    """Raised by a transport when the PBX could not be reached or did not answer in time."""


# (url, body, headers) → the PBX's HTTP status; raises PbxUnreachable
Transport = Callable[[str, bytes, Mapping[str, str]], Awaitable[int]]


def connect_body(call_id: str, agent: str, endpoint: str | None) -> bytes:
    """The exact bytes of a `connect` command (the signature covers these bytes)."""
    command = {"type": "connect", "call_id": call_id, "agent": agent, "endpoint": endpoint}
    return json.dumps(command, separators=(",", ":"), ensure_ascii=False).encode()


def dial_body(command: Mapping[str, Any]) -> bytes:
    """The exact bytes of a `dial` command: `{"type": "dial", "call_id", "agent", "endpoint",
    "to", "campaign", "contact"}` (the signature covers these bytes)."""
    keys = ("call_id", "agent", "endpoint", "to", "campaign", "contact")
    body = {"type": "dial", **{k: command.get(k) for k in keys}}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def retryable(status: int) -> bool:
    """Worth another try: the PBX is failing or busy (5xx, 408, 429), not refusing us."""
    return status >= 500 or status in (408, 429)


@dataclass
class PbxClient:
    """Sends `connect` commands to `[voice] pbx_url`, with bounded retries and backoff.

    `attempts` tries in all; between them it waits `backoff_s`, doubling up to `max_backoff_s`
    (`channels.retry`). A 2xx is success; any other 4xx is final (a retry would be refused the
    same way).
    """

    url: str
    secret: str
    transport: Transport
    attempts: int = 4
    backoff_s: float = 0.25
    max_backoff_s: float = 2.0

    async def connect(self, call_id: str, agent: str, endpoint: str | None) -> bool:
        """POST one signed `connect`; True when the PBX took it (2xx)."""
        return await self.send(connect_body(call_id, agent, endpoint), "connect", call_id, agent)

    async def dial(self, command: Mapping[str, Any]) -> bool:
        """POST one signed `dial` (a campaign's preview call, `dial_body`); True on 2xx."""
        body = dial_body(command)
        return await self.send(body, "dial", str(command["call_id"]), str(command["agent"]))

    async def send(self, body: bytes, kind: str, call_id: str, agent: str) -> bool:
        """POST one signed command's exact bytes, with the retries; logs ids only."""
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, self.secret)}
        backoff = Backoff(self.attempts, self.backoff_s, cap_s=self.max_backoff_s)
        async for attempt in backoff.attempts():
            try:
                status = await self.transport(self.url, body, headers)
            except PbxUnreachable as exc:
                status, error = 0, str(exc) or "unreachable"
            else:
                error = ""
                if 200 <= status < 300:
                    done = "voice.connected" if kind == "connect" else f"voice.{kind}_sent"
                    log.info(done, call=call_id, agent=agent, attempt=attempt)
                    return True
                if not retryable(status):
                    log.error(f"voice.{kind}_refused", call=call_id, agent=agent, status=status)
                    return False
            last = attempt == backoff.tries
            log.warning(
                f"voice.{kind}_retry" if not last else f"voice.{kind}_failed",
                call=call_id,
                agent=agent,
                attempt=attempt,
                status=status or None,
                error=error or None,
            )
        return False
