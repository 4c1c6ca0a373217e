"""Wire shapes at the edge: the JSON and msgpack codecs, and validation of adapter events.

One module owns both codecs so that a document means the same thing whichever one carried it:
every decoded tree is checked the same way (string map keys, 64-bit integers, finite floats,
valid Unicode, bounded nesting, no binary or extension values). `parse_events` turns the body
of `POST /v1/events` into `InboundEvent`s or raises `BadEvent` naming the offending field, e.g.
`events[3].channel` or `profile.coins`. Messages name fields and limits, never values, so an
error can be logged and echoed without carrying customer content.

No aiohttp here: `router/ingest.py` and the socket modules call in with bytes.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import fields
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any, Final

import msgpack

from store.model import PROFILE_FIELDS, InboundEvent

MAX_DEPTH: Final = 32  # nesting of maps and arrays in any decoded document
MAX_INT_DIGITS: Final = 20  # JSON integers are parsed only this long (2**64 has 20 digits)
INT_MIN: Final = -(2**63)
INT_MAX: Final = 2**64 - 1  # msgpack's range; JSON is held to the same one

MAX_BATCH: Final = 500
EVENT_TYPES: Final = ("message", "call.offered", "call.answered", "call.ended")
CHANNELS: Final = ("chat", "sms", "email", "voice")
CLIENT_GROUPS: Final = ("normal", "SIC", "CSC")
MAX_ID: Final = 200
MAX_ADDRESS: Final = 320  # RFC 5321: 64 + 1 + 255
MAX_SHORT: Final = 200  # customer_id, site, string profile fields
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


class ProtocolError(ValueError):
    """Raised when input from outside is malformed; `field` says where (None: the whole body).

    `log_field` is `field` with any part taken from the input (an unknown key's name) masked,
    so it can be logged next to ids.
    """

    def __init__(self, message: str, field: str | None = None, log_field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.log_field = field if log_field is None else log_field


class DecodeError(ProtocolError):
    """Raised when bytes are not one well-formed, bounded document of the codec."""


class UnsupportedMediaType(ProtocolError):
    """Raised when a body's content type is neither JSON nor msgpack (HTTP 415)."""


class BadEvent(ProtocolError):
    """Raised when an ingest body, or one event in it, breaks the contract (HTTP 400)."""


# -- codecs -----------------------------------------------------------------------------------


class Codec(ABC):
    """Encodes and decodes one wire format; `decode` returns a checked tree (see module doc)."""

    name: str
    content_type: str
    subprotocol: str  # the agent WebSocket subprotocol that selects it
    binary: bool  # frames go out as binary (bytes) rather than text (str)

    @abstractmethod
    def encode(self, value: Any) -> bytes:
        """Serialise plain data (dicts, lists, tuples, mappings, scalars)."""

    @abstractmethod
    def _load(self, data: bytes) -> Any:
        """Parse bytes; raise DecodeError (or ValueError) when they are not a document."""

    def decode(self, data: bytes) -> Any:
        """Parse and check one document; raise `DecodeError` on anything malformed."""
        try:
            value = self._load(data)
        except DecodeError:
            raise
        except RecursionError as exc:
            raise DecodeError(f"{self.name} document nested too deeply") from exc
        except (ValueError, TypeError, OverflowError) as exc:
            raise DecodeError(f"body is not a valid {self.name} document") from exc
        check_tree(value)
        return value

    def decode_map(self, data: bytes) -> dict[str, Any]:
        """`decode`, refusing any top-level value but a map."""
        value = self.decode(data)
        if not isinstance(value, dict):
            raise DecodeError(f"the {self.name} document must be an object (a map)")
        return value


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, tuple | frozenset | set):
        return list(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def _json_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise DecodeError("integer too large")
    return int(text)


def _json_constant(text: str) -> Any:
    raise DecodeError(f"{text} is not JSON")


class JsonCodec(Codec):
    """UTF-8 JSON (RFC 8259): no NaN/Infinity, integers of at most 20 digits."""

    name = "json"
    content_type = "application/json"
    subprotocol = "omniroute.v1.json"
    binary = False

    def encode(self, value: Any) -> bytes:
        return self.dumps(value).encode()

    def dumps(self, value: Any) -> str:
        """The document as text (for WebSocket text frames)."""
        return json.dumps(
            value, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_plain
        )

    def _load(self, data: bytes) -> Any:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError("body is not UTF-8") from exc
        return json.loads(text, parse_int=_json_int, parse_constant=_json_constant)


def _no_ext(code: int, data: bytes) -> Any:
    raise DecodeError("msgpack extension types are not accepted")


class MsgpackCodec(Codec):
    """msgpack with str/bin distinguished (`raw=False`); extension types are refused."""

    name = "msgpack"
    content_type = "application/msgpack"
    subprotocol = "omniroute.v1.msgpack"
    binary = True

    def encode(self, value: Any) -> bytes:
        packed: bytes = msgpack.packb(value, use_bin_type=True, default=_plain)
        return packed

    def _load(self, data: bytes) -> Any:
        return msgpack.unpackb(data, raw=False, strict_map_key=True, ext_hook=_no_ext)


JSON: Final[Codec] = JsonCodec()
MSGPACK: Final[Codec] = MsgpackCodec()
_BY_TYPE: Final = {
    "application/json": JSON,
    "application/msgpack": MSGPACK,
    "application/x-msgpack": MSGPACK,  # the older name many msgpack clients still send
}
CODECS: Final = (JSON, MSGPACK)


def codec_for(content_type: str | None) -> Codec:
    """The codec of a Content-Type header (parameters allowed; JSON only as UTF-8)."""
    media, _, params = (content_type or "").partition(";")
    codec = _BY_TYPE.get(media.strip().lower())
    if codec is None:
        raise UnsupportedMediaType("content type must be application/json or application/msgpack")
    for param in params.split(";"):
        key, _, value = param.partition("=")
        charset = value.strip().strip('"').lower()
        if key.strip().lower() == "charset" and codec is JSON and charset not in ("utf-8", "utf8"):
            raise UnsupportedMediaType("JSON bodies must be UTF-8")
    return codec


def encode_frame(codec: Codec, frame: Mapping[str, Any]) -> str | bytes:
    """A WebSocket frame: text (str) for JSON, binary (bytes) for msgpack."""
    if isinstance(codec, JsonCodec):
        return codec.dumps(frame)
    return codec.encode(frame)


def decode_frame(codec: Codec, data: str | bytes) -> dict[str, Any]:
    """A client frame: one checked map (raises `DecodeError`)."""
    return codec.decode_map(data.encode() if isinstance(data, str) else data)


def check_tree(value: Any, max_depth: int = MAX_DEPTH) -> None:
    """Refuse what one codec could carry and the other could not, and unbounded nesting."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            if not node.isascii() and not _utf8(node):
                raise DecodeError("strings must be valid Unicode (no lone surrogates)")
        elif isinstance(node, bool) or node is None:
            continue
        elif isinstance(node, int):
            if not INT_MIN <= node <= INT_MAX:
                raise DecodeError("integer out of the 64-bit range")
        elif isinstance(node, float):
            if not math.isfinite(node):
                raise DecodeError("numbers must be finite")
        elif isinstance(node, dict | list):
            if depth > max_depth:
                raise DecodeError(f"document nested deeper than {max_depth} levels")
            if isinstance(node, dict):
                for key in node:
                    if not isinstance(key, str):
                        raise DecodeError("map keys must be strings")
                    stack.append((key, depth + 1))
                stack.extend((item, depth + 1) for item in node.values())
            else:
                stack.extend((item, depth + 1) for item in node)
        else:
            raise DecodeError("binary and extension values are not accepted")


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
    """`parse_events` for an already decoded (and `check_tree`d) document."""
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
        customer_id=opt("customer_id", _token, MAX_SHORT),
        site=opt("site", _token, MAX_SHORT),
        profile=opt("profile", _profile) or {},
        subject=subject,
        body=body,
        message_id=opt("message_id", _token, MAX_MESSAGE_ID),
        in_reply_to=opt("in_reply_to", _token, MAX_MESSAGE_ID),
        references=references or (),
        occurred_at=opt("occurred_at", _time),
        meta=opt("meta", _meta) or {},
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
        if key not in PROFILE_FIELDS:
            raise _unknown(key, f"{field}.", "unknown profile field")
        profile[key] = _profile_value(key, item, f"{field}.{key}")
    return profile


def _profile_value(key: str, value: Any, field: str) -> Any:
    if key == "client_group":
        if value not in CLIENT_GROUPS:
            raise BadEvent(f"must be one of {', '.join(CLIENT_GROUPS)}", field)
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
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
