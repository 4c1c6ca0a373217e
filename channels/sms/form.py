"""One Twilio webhook's form: its body read into pairs, the refusal every reader raises, and
the field shapes more than one reader checks.

Twilio posts `application/x-www-form-urlencoded` bodies, UTF-8, each field once; what does not
read that way is not Twilio's. `SmsRefused` carries a reason for logs and metrics and the field,
never a number or a body. Standard library only; the other `channels.sms` modules import this
one, and it imports none of them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Final
from urllib.parse import parse_qsl

EMPTY_TWIML: Final = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
MAX_FORM_FIELDS: Final = 200  # Twilio sends ~20 (plus MediaUrlN/MediaContentTypeN, at most 10)

SID: Final = re.compile(r"[A-Za-z0-9]{2,64}")  # SM…/MM… (34 characters) from Twilio itself
CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")


class SmsRefused(Exception):
    """Raised when a webhook is refused; `reason` names why in logs and metrics (no content)."""

    def __init__(self, reason: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason  # bad_signature | invalid
        self.message = message
        self.field = field


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


def first_values(params: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Each name's first value (Twilio sends every field once)."""
    out: dict[str, str] = {}
    for name, value in params:
        out.setdefault(name, value)
    return out


def message_sid(params: Mapping[str, str]) -> str:
    """The message's SID, which both webhooks carry; raises `SmsRefused` ("invalid")."""
    sid = params.get("MessageSid") or params.get("SmsSid") or ""
    if not SID.fullmatch(sid):
        raise SmsRefused("invalid", "MessageSid must be 2 to 64 letters and digits", "MessageSid")
    return sid
