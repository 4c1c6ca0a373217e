"""What a campaign request must be, and when a campaign may call: pure checks, no I/O.

`POST /v1/campaigns` (and its `contacts` and `do-not-call` endpoints, `router.campaign_api`)
hand their decoded bodies here; every field is checked before anything is stored, and a bad
one raises `SpecError` naming it (the contract's 400 body). Phones become E.164 with the voice
channel's normalisation (`channels.voice.e164`, national numbers in `[sms] default_region`).
`in_window` says whether a campaign's window (`starts_at`, `ends_at`, daily `hours` in its IANA
`timezone`) holds a moment. `docs/campaigns.md` lists the fields. Imports no aiohttp.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, time
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from channels.voice import e164
from queues.policy import TIERS

ID_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # campaign and contact ids
DISPOSITION_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
HOURS_RE: Final = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-4]):([0-5][0-9])")
MAX_CONTACTS: Final = 100_000  # one request
MAX_ATTRIBUTES: Final = 50
MAX_TEXT: Final = 500
DEFAULT_RETRY_ON: Final = ("no_answer", "busy")


class SpecError(ValueError):
    """Raised when a campaign request breaks the rules; `field` names where (never a value)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def _map(value: Any, field: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise SpecError("must be an object", field)
    return value


def _list(value: Any, field: str, most: int) -> Sequence[Any]:
    if not isinstance(value, list) or len(value) > most:
        raise SpecError(f"must be a list of at most {most}", field)
    return value


def _text(value: Any, field: str, most: int = 200) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > most:
        raise SpecError(f"must be text of 1 to {most} characters", field)
    if any(ord(c) < 0x20 for c in value):
        raise SpecError("must not contain control characters", field)
    return value


def _id(value: Any, field: str) -> str:
    if not isinstance(value, str) or not ID_RE.fullmatch(value):
        raise SpecError(
            "must be 1-64 of A-Z a-z 0-9 _ . - (starting with a letter or digit)", field
        )
    return value


def _number(value: Any, field: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise SpecError(f"must be a number from {low:g} to {high:g}", field)
    return float(value)


def _integer(value: Any, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SpecError(f"must be an integer from {low} to {high}", field)
    return value


def _moment(value: Any, field: str) -> datetime:
    text = _text(value, field, 40)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise SpecError("must be an RFC 3339 time, e.g. 2027-01-15T08:00:00Z", field) from None
    if moment.tzinfo is None:
        raise SpecError("must carry an offset (Z or ±hh:mm)", field)
    return moment


def phone_of(value: Any, field: str, region: str) -> str:
    """A contact's or list's phone in E.164; `SpecError` without the number."""
    text = _text(value, field, 64)
    try:
        return e164(text, region)
    except ValueError as exc:
        raise SpecError(f"must be a phone number: {exc}", field) from None


def attributes_of(value: Any, field: str) -> dict[str, Any]:
    """Flat scalars: text (≤ 500), numbers, booleans; names as ids (guidance rules test them)."""
    raw = _map(value, field)
    if len(raw) > MAX_ATTRIBUTES:
        raise SpecError(f"must have at most {MAX_ATTRIBUTES} attributes", field)
    out: dict[str, Any] = {}
    for name, item in raw.items():
        if not isinstance(name, str) or not ID_RE.fullmatch(name):
            raise SpecError("attribute names are 1-64 of A-Z a-z 0-9 _ . -", field)
        if isinstance(item, str):
            if len(item) > MAX_TEXT:
                raise SpecError(f"text attributes hold at most {MAX_TEXT} characters", field)
        elif item is None or not isinstance(item, bool | int | float):
            raise SpecError("attributes must be text, numbers or booleans", field)
        out[name] = item
    return out


def contacts_of(value: Any, region: str, field: str = "contacts") -> list[dict[str, Any]]:
    """The contacts of a request: `id`, `customer_id` and/or `phone`, `attributes`."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, raw in enumerate(_list(value, field, MAX_CONTACTS)):
        where = f"{field}[{i}]"
        item = _map(raw, where)
        unknown = set(item) - {"id", "customer_id", "phone", "attributes"}
        if unknown:
            raise SpecError("unknown field (id, customer_id, phone, attributes)", where)
        contact_id = _id(item.get("id"), f"{where}.id")
        if contact_id in seen:
            raise SpecError("contact ids must be unique", f"{where}.id")
        seen.add(contact_id)
        customer, phone = item.get("customer_id"), item.get("phone")
        if customer is None and phone is None:
            raise SpecError("a contact needs a customer_id or a phone", where)
        # given means given: "" or 0 is refused, never stored as "none" (it would be a contact
        # nobody can call, stuck in the line)
        out.append(
            {
                "id": contact_id,
                "customer_id": _text(customer, f"{where}.customer_id")
                if customer is not None
                else "",
                "phone": phone_of(phone, f"{where}.phone", region) if phone is not None else "",
                "attributes": attributes_of(item.get("attributes") or {}, f"{where}.attributes"),
            }
        )
    return out


def do_not_call_of(value: Any, region: str, field: str = "do_not_call") -> list[str]:
    """`{"phones": [...], "customer_ids": [...]}` → the list's entries (`store.campaigns`)."""
    raw = _map(value if value is not None else {}, field or None)  # type: ignore[arg-type]
    if set(raw) - {"phones", "customer_ids"}:
        raise SpecError("unknown field (phones, customer_ids)", field or None)
    pre = f"{field}." if field else ""
    phones = [
        phone_of(p, f"{pre}phones[{i}]", region)
        for i, p in enumerate(_list(raw.get("phones") or [], f"{pre}phones", MAX_CONTACTS))
    ]
    customers = [
        _text(c, f"{pre}customer_ids[{i}]")
        for i, c in enumerate(_list(raw.get("customer_ids") or [], f"{pre}customer_ids", 10**5))
    ]
    return [*phones, *(f"cu:{c}" for c in customers)]


def window_of(value: Any) -> dict[str, Any]:
    raw = _map(value, "window")
    starts, ends = _moment(raw.get("starts_at"), "window.starts_at"), None
    ends = _moment(raw.get("ends_at"), "window.ends_at")
    if ends <= starts:
        raise SpecError("must be after starts_at", "window.ends_at")
    out: dict[str, Any] = {
        "starts_at": raw["starts_at"],
        "ends_at": raw["ends_at"],
        "timezone": raw.get("timezone") or "UTC",
    }
    try:
        ZoneInfo(_text(out["timezone"], "window.timezone", 64))
    except (ZoneInfoNotFoundError, ValueError):
        raise SpecError(
            "must be an IANA time zone, e.g. Europe/Berlin", "window.timezone"
        ) from None
    if raw.get("hours") is not None:
        hours = raw["hours"]
        match = HOURS_RE.fullmatch(hours) if isinstance(hours, str) else None
        if match is None or hours[:5] >= hours[6:]:
            raise SpecError('must be "HH:MM-HH:MM", the start before the end', "window.hours")
        out["hours"] = hours
    return out


def campaign_of(
    body: Any, region: str, max_queued: int
) -> tuple[dict[str, Any], list[Any], list[str]]:
    """`POST /v1/campaigns` → (record, contacts, do-not-call entries), or `SpecError`."""
    raw = _map(body, None)  # type: ignore[arg-type]
    known = {"id", "name", "contacts", "tiers", "window", "dispositions", "retry"}
    if set(raw) - known - {"do_not_call", "max_queued", "state"}:
        raise SpecError(f"unknown field; known: {', '.join(sorted(known))}, do_not_call, "
                        "max_queued, state")  # fmt: skip
    campaign_id = (
        _id(raw["id"], "id") if raw.get("id") is not None else f"cp-{uuid.uuid4().hex[:12]}"
    )
    tiers = _list(raw.get("tiers"), "tiers", len(TIERS))
    if not tiers or len(set(tiers)) != len(tiers) or any(t not in TIERS for t in tiers):
        raise SpecError(f"must be a non-empty list of tiers ({', '.join(TIERS)})", "tiers")
    dispositions = _list(raw.get("dispositions"), "dispositions", 100)
    if not dispositions or len(set(dispositions)) != len(dispositions):
        raise SpecError("must be a non-empty list of unique dispositions", "dispositions")
    for i, d in enumerate(dispositions):
        if not isinstance(d, str) or not DISPOSITION_RE.fullmatch(d):
            raise SpecError("dispositions are 1-64 of A-Z a-z 0-9 _ . -", f"dispositions[{i}]")
    retry = _map(raw.get("retry") or {}, "retry")
    if set(retry) - {"on", "after_s", "max_attempts"}:
        raise SpecError("unknown field (on, after_s, max_attempts)", "retry")
    if retry.get("on") is None:
        on = [d for d in DEFAULT_RETRY_ON if d in dispositions]
    else:
        on = list(_list(retry["on"], "retry.on", 100))
        if any(d not in dispositions for d in on):
            raise SpecError("must name dispositions of the campaign", "retry.on")
    state = raw.get("state", "running")
    if state not in ("running", "paused"):
        raise SpecError("must be running or paused", "state")
    record = {
        "id": campaign_id,
        "name": _text(raw.get("name"), "name"),
        "tiers": [t for t in TIERS if t in tiers],
        "window": window_of(raw.get("window")),
        "dispositions": list(dispositions),
        "retry": {
            "on": on,
            "after_s": _number(retry.get("after_s", 3600), "retry.after_s", 0.01, 30 * 86_400),
            "max_attempts": _integer(retry.get("max_attempts", 3), "retry.max_attempts", 1, 50),
        },
        "max_queued": _integer(raw.get("max_queued", max_queued), "max_queued", 1, 10_000),
        "state": state,
    }
    contacts = contacts_of(raw.get("contacts") or [], region)
    return record, contacts, do_not_call_of(raw.get("do_not_call"), region)


def in_window(record: Mapping[str, Any], now_s: float) -> bool:
    """Is `now_s` inside the campaign's window: between `starts_at` and `ends_at`, and inside
    the daily `hours` (if any) in the window's time zone?"""
    window = record["window"]
    now = datetime.fromtimestamp(now_s, UTC)
    if not _moment(window["starts_at"], "") <= now < _moment(window["ends_at"], ""):
        return False
    hours = window.get("hours")
    if not hours:
        return True
    local = now.astimezone(ZoneInfo(window.get("timezone") or "UTC")).time()
    start = time(int(hours[0:2]), int(hours[3:5]))
    end_h, end_m = int(hours[6:8]), int(hours[9:11])
    return start <= local and (end_h == 24 or local < time(end_h, end_m))
