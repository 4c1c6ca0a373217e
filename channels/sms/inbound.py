"""An inbound SMS/MMS webhook, validated, and the `/v1/events` event it becomes.

Inbound numbers are normalised to E.164 with `phonenumbers`: a national number is read in the
sender's country as Twilio reports it (`FromCountry`), else in `[sms] default_region`; anything
that is not a valid number is refused, so one customer is never split over two spellings.

May import `channels.sms.form` and `phonenumbers`; the router checks the signature first.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import phonenumbers

from channels.sms.form import CONTROL, SmsRefused, message_sid

MAX_BODY_BYTES: Final = 64 * 1024  # the event contract's bound on `body`
MAX_NUMBER: Final = 64  # a raw From/To longer than this is no phone number

_REGION: Final = re.compile(r"[A-Z]{2}")
_MEDIA: Final = re.compile(r"MediaUrl[0-9]{1,2}")


def e164(raw: str, region: str | None) -> str:
    """The number in E.164, read in `region` unless it starts with `+`; refuses invalid ones."""
    text = raw.strip()
    if not text or len(text) > MAX_NUMBER or CONTROL.search(text):
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


def read_inbound(params: Mapping[str, str], default_region: str = "") -> InboundSms:
    """Validate Twilio's inbound message form; raises `SmsRefused` ("invalid") naming the field."""
    sid = message_sid(params)
    country = params.get("FromCountry", "").strip().upper()
    region = country if _REGION.fullmatch(country) else default_region
    sender = e164(params.get("From", ""), region or None)
    to = params.get("To", "").strip()
    if not to or len(to) > MAX_NUMBER or CONTROL.search(to):
        raise SmsRefused("invalid", "To must be our phone number", "To")
    body = params.get("Body", "")
    if "\x00" in body or len(body.encode()) > MAX_BODY_BYTES:
        raise SmsRefused("invalid", f"Body must be text of at most {MAX_BODY_BYTES} bytes", "Body")
    media = sum(1 for name in params if _MEDIA.fullmatch(name))
    if not body.strip() and not media:
        raise SmsRefused("invalid", "the message has neither text nor media", "Body")
    return InboundSms(sid=sid, sender=sender, to=to, body=body, media=media)
