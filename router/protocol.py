"""Inbound events at the edge: validation of adapter events into `InboundEvent`s.

`parse_events` turns the body of `POST /v1/events` into `InboundEvent`s or raises `BadEvent`
naming the offending field, e.g. `events[3].channel` or `profile.coins`; the channel modules
call `validate_event` for one event they built themselves. Messages name fields and limits,
never values, so an error can be logged and echoed without carrying customer content.

Bytes become a tree in `router/codec.py` (JSON or msgpack, checked the same way); the errors
are `router/errors.py`'s. Imports those two; for the wire type `InboundEvent`, its
`PROFILE_FIELDS` and `EVENT_TYPES`, `store.model`; and the routing vocabulary an event names
(`CHANNELS`, client `GROUPS`, the bound on ids `MAX_ID`) from `queues`. No aiohttp here:
`router/ingest.py` and the channel modules call in.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import fields
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any, Final

from queues.args import MAX_ID
from queues.errors import Invalid
from queues.policy import CHANNELS, GROUPS
from queues.skills import check_skills
from router.clock import rfc3339_moment
from router.codec import codec_for
from router.errors import BadEvent, DecodeError
from store.model import EVENT_TYPES, PROFILE_FIELD_SET, InboundEvent

MAX_BATCH: Final = 500
MAX_ADDRESS: Final = 320  # RFC 5321: 64 + 1 + 255
MAX_SHORT: Final = 200  # site, string profile fields
MAX_SUBJECT: Final = 1_000
MAX_BODY_BYTES: Final = 64 * 1024  # UTF-8 bytes of `body`
MAX_MESSAGE_ID: Final = 998  # RFC 5322 line length
MAX_REFERENCES: Final = 100
MAX_META_KEYS: Final = 32
MAX_META_KEY: Final = 64
MAX_META_TEXT: Final = 1_000

_BOOL_FIELDS: Final = frozenset({"top_up", "phone_verified", "hot", "online"})
_DATE_FIELDS: Final = frozenset({"birthday", "signup_date"})
# the contract's keys are InboundEvent's fields, with the wire's "from" for `sender`
_EVENT_KEYS: Final = frozenset({"from", *(f.name for f in fields(InboundEvent))} - {"sender"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
_PHONE = re.compile(r"\+?[0-9 ().\-/]+")


# -- ingest events ----------------------------------------------------------------------------


def parse_events(body: bytes, content_type: str) -> list[InboundEvent]:
    """The events of one `POST /v1/events` body: one event object or `{"events": [...]}`.

    All or nothing: raises `BadEvent` (or `UnsupportedMediaType`) for the first problem.
    """
    codec = codec_for(content_type)
    try:
        document = codec.decode(body)
    except DecodeError as exc:
        raise BadEvent(exc.message) from exc
    return validate_events(document)


def validate_events(document: Any) -> list[InboundEvent]:
    """`parse_events` for an already decoded (and `router.codec.check_tree`d) document."""
    if not isinstance(document, dict):
        raise BadEvent('the body must be an event object or {"events": [...]}')
    if "events" not in document:
        return [validate_event(document, "")]
    for key in document:
        if key != "events":
            raise _unknown(key, "", 'a batch holds only "events"')
    items = document["events"]
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH:
        raise BadEvent(f"events must be a list of 1 to {MAX_BATCH} events", "events")
    events: list[InboundEvent] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        prefix = f"events[{index}]."
        event = validate_event(item, prefix)
        if event.id in seen:
            raise BadEvent("event id repeated within the batch", f"{prefix}id")
        seen.add(event.id)
        events.append(event)
    return events


def validate_event(raw: Any, prefix: str = "") -> InboundEvent:
    """One event object → `InboundEvent`; field names in errors start with `prefix`."""
    if not isinstance(raw, dict):
        raise BadEvent("an event must be an object", prefix.rstrip(".") or None)
    for key in raw:
        if key not in _EVENT_KEYS:
            raise _unknown(key, prefix, "unknown event field")

    def need(key: str) -> Any:
        if raw.get(key) is None:
            raise BadEvent(f"{key} is required", prefix + key)
        return raw[key]

    event_id = _token(need("id"), prefix + "id", MAX_ID)
    kind = need("type")
    if kind not in EVENT_TYPES:
        raise BadEvent(f"type must be one of {', '.join(EVENT_TYPES)}", prefix + "type")
    channel = need("channel")
    if channel not in CHANNELS:
        raise BadEvent(f"channel must be one of {', '.join(CHANNELS)}", prefix + "channel")
    if kind != "message" and channel != "voice":
        raise BadEvent("call events need channel voice", prefix + "type")
    sender = _address(need("from"), channel, prefix + "from")

    def opt(key: str, check: Any, *args: Any) -> Any:
        value = raw.get(key)
        return None if value is None else check(value, prefix + key, *args)

    subject = opt("subject", _text, MAX_SUBJECT)
    body = opt("body", _body)
    if kind == "message" and not body and not subject:
        raise BadEvent("a message needs a body or a subject", prefix + "body")
    references = opt("references", _references)
    return InboundEvent(
        id=event_id,
        type=kind,
        channel=channel,
        sender=sender,
        customer_id=opt("customer_id", _token, MAX_ID),
        site=opt("site", _token, MAX_SHORT),
        profile=opt("profile", _profile) or {},
        subject=subject,
        body=body,
        message_id=opt("message_id", _token, MAX_MESSAGE_ID),
        in_reply_to=opt("in_reply_to", _token, MAX_MESSAGE_ID),
        references=references or (),
        occurred_at=opt("occurred_at", _time),
        meta=opt("meta", _meta) or {},
        skills=opt("skills", _skills) or {},
    )


def _unknown(key: str, prefix: str, message: str) -> BadEvent:
    shown = key if len(key) <= MAX_META_KEY else key[:MAX_META_KEY] + "…"
    return BadEvent(f"{message}: {shown!r}", prefix + shown, prefix + "<unknown>")


def _token(value: Any, field: str, limit: int) -> str:
    """An identifier-like string: 1..limit characters, no control characters."""
    if not isinstance(value, str) or not 1 <= len(value) <= limit:
        raise BadEvent(f"must be a string of 1 to {limit} characters", field)
    if _CONTROL.search(value):
        raise BadEvent("must not contain control characters", field)
    return value


def _text(value: Any, field: str, limit: int) -> str:
    """Free text up to `limit` characters; no NUL."""
    if not isinstance(value, str) or len(value) > limit:
        raise BadEvent(f"must be a string of at most {limit} characters", field)
    if "\x00" in value:
        raise BadEvent("must not contain NUL characters", field)
    return value


def _body(value: Any, field: str) -> str:
    text = _text(value, field, MAX_BODY_BYTES)
    if not text.isascii() and len(text.encode()) > MAX_BODY_BYTES:
        raise BadEvent(f"must be at most {MAX_BODY_BYTES} bytes of UTF-8", field)
    return text


def _address(value: Any, channel: str, field: str) -> str:
    """The customer's address, normalised so one address always names one customer.

    Trimmed; `visitor:…` kept as is; email addresses lowercased; phone numbers written with
    separators (spaces, dots, dashes, slashes, brackets) dropped, keeping a leading `+`.
    """
    if not isinstance(value, str):
        raise BadEvent(f"must be a string of 1 to {MAX_ADDRESS} characters", field)
    address = _token(value.strip(), field, MAX_ADDRESS)
    if address.startswith("visitor:"):
        if address == "visitor:":
            raise BadEvent("a visitor address needs an id after visitor:", field)
        return address
    if channel == "email" and not _EMAIL.fullmatch(address):
        raise BadEvent("an email event needs an email address", field)
    if "@" in address:
        return address.lower()
    if _PHONE.fullmatch(address) and sum(c.isdigit() for c in address) >= 3:
        digits = "".join(c for c in address if c.isdigit())
        return ("+" if address.startswith("+") else "") + digits
    return address


def _references(value: Any, field: str) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > MAX_REFERENCES:
        raise BadEvent(f"must be a list of at most {MAX_REFERENCES} message ids", field)
    return tuple(_token(item, f"{field}[{i}]", MAX_MESSAGE_ID) for i, item in enumerate(value))


def _profile(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadEvent("must be an object", field)
    profile: dict[str, Any] = {}
    for key, item in value.items():
        if key not in PROFILE_FIELD_SET:
            raise _unknown(key, f"{field}.", "unknown profile field")
        profile[key] = _profile_value(key, item, f"{field}.{key}")
    return profile


def _profile_value(key: str, value: Any, field: str) -> Any:
    if key == "client_group":
        if value not in GROUPS:
            raise BadEvent(f"must be one of {', '.join(GROUPS)}", field)
        return value
    if key == "coins":
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
            raise BadEvent("must be an integer >= 0", field)
        return value
    if key in _BOOL_FIELDS:
        if not isinstance(value, bool):
            raise BadEvent("must be true or false", field)
        return value
    if key in _DATE_FIELDS:
        return _date(value, field, future_ok=key != "birthday")
    if key == "last_ip":
        try:
            return str(ipaddress.ip_address(value if isinstance(value, str) else ""))
        except ValueError:
            raise BadEvent("must be an IPv4 or IPv6 address", field) from None
    return _token(value, field, MAX_SHORT)


def _date(value: Any, field: str, *, future_ok: bool) -> str:
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise BadEvent("must be a date YYYY-MM-DD", field)
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise BadEvent("must be a real calendar date", field) from None
    if not future_ok and day > datetime.now(UTC).date():
        raise BadEvent("must not be in the future", field)
    return value


def _time(value: Any, field: str) -> str:
    """An RFC 3339 time → UTC with milliseconds (`2026-11-23T12:00:00.000Z`)."""
    match = _RFC3339.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise BadEvent("must be an RFC 3339 time, e.g. 2026-11-23T12:00:00Z", field)
    year, month, day, hour, minute, second, fraction, _, sign, off_h, off_m = match.groups()
    try:
        offset = timedelta(hours=int(off_h or 0), minutes=int(off_m or 0))
        if int(off_m or 0) > 59:
            raise ValueError(field)
        moment = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second),
            int((fraction or "0").ljust(6, "0")[:6]),
            tzinfo=timezone(-offset if sign == "-" else offset),
        ).astimezone(UTC)
    except (ValueError, OverflowError):
        raise BadEvent("must be a real RFC 3339 time", field) from None
    return rfc3339_moment(moment)


def _skills(value: Any, field: str) -> dict[str, int]:
    """What the event's work asks for: names, or name → minimum proficiency 1-5."""
    try:
        return check_skills(value, field)
    except Invalid as exc:
        raise BadEvent(exc.message, field) from None


def _meta(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict) or len(value) > MAX_META_KEYS:
        raise BadEvent(f"must be an object of at most {MAX_META_KEYS} keys", field)
    meta: dict[str, Any] = {}
    for key, item in value.items():
        where, masked = f"{field}.{key[:MAX_META_KEY]}", f"{field}.<key>"
        if not 1 <= len(key) <= MAX_META_KEY or _CONTROL.search(key):
            raise BadEvent(f"keys must be 1 to {MAX_META_KEY} characters", where, masked)
        if isinstance(item, str):
            if len(item) > MAX_META_TEXT or "\x00" in item:
                raise BadEvent(
                    f"must be a string of at most {MAX_META_TEXT} characters", where, masked
                )
        elif item is not None and not isinstance(item, bool | int | float):
            raise BadEvent("values must be strings, numbers, booleans or null", where, masked)
        meta[key] = item
    return meta
