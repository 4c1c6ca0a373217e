"""Twilio's delivery status callbacks: the order statuses move in, reading one callback,
and the customer and interaction its StatusCallback URL names (`?cu=…&ix=…`).

May import `channels.base` and `channels.sms.form`; the router merges the status into the
interaction's `meta`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from channels.base import MAX_ID
from channels.sms.form import CONTROL, SmsRefused, message_sid

_ERROR_CODE: Final = re.compile(r"[0-9]{1,10}")

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
    sid = message_sid(params)
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
        if not value or len(value) > MAX_ID or CONTROL.search(value):
            raise SmsRefused("invalid", f"{name} must name a customer and an interaction", name)
        ids.append(value)
    return ids[0], ids[1]
