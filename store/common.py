"""What both store backends compute the same way: validation before anything is stored,
timestamps, the order email threading tries references in, the profile fields a merge takes,
calling listeners, and whether an outbox could replay a gap. Both backends import this module
so that neither imports the other.

May import `store.model`, `store.errors` and the routing vocabulary (`queues.policy`); never a
backend, never `router`.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import structlog

from queues.policy import CHANNELS, GROUPS
from store.errors import StoreError
from store.model import (
    CONVERSATION_STATES,
    PROFILE_FIELD_SET,
    STORE_EVENT_TYPES,
    Frames,
    InboundEvent,
    Wake,
    edit_refusal,
)

THREAD_S = 180 * 86_400  # how long a Message-ID threads replies (and dedupes its mail)

log = structlog.get_logger(__name__)


def iso(now_ms: int) -> str:
    """RFC 3339 in UTC with milliseconds, e.g. 2027-01-15T08:00:00.000Z."""
    stamp = datetime.fromtimestamp(now_ms / 1000, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def check_batch(events: Sequence[InboundEvent]) -> None:
    """Refuse a batch before anything is stored if one event could not be placed."""
    for ev in events:
        if not ev.id or not (ev.sender or ev.customer_id):
            raise StoreError(f"event {ev.id!r} needs an id and a sender or customer_id")
        if ev.channel not in CHANNELS:
            raise StoreError(f"event {ev.id!r}: unknown channel {ev.channel!r}")
        if ev.type not in STORE_EVENT_TYPES:
            raise StoreError(f"event {ev.id!r}: unknown type {ev.type!r}")
        group = ev.profile.get("client_group")
        if group is not None and group not in GROUPS:
            raise StoreError(f"event {ev.id!r}: unknown client group {group!r}")


def check_edit(fields: Mapping[str, str]) -> None:
    """Only agent-editable fields, as text within their bounds (`store.model.edit_refusal`)."""
    for name, value in fields.items():
        refused = edit_refusal(name, value)
        if refused:
            raise StoreError(f"field {name!r} {refused}")


def check_group(group: str) -> None:
    if group not in GROUPS:
        raise StoreError(f"unknown client group {group!r}")


def check_state(state: str) -> None:
    if state not in CONVERSATION_STATES:
        raise StoreError(f"unknown conversation state {state!r}")


def thread_refs(ev: InboundEvent) -> list[str]:
    """Message-IDs to thread by, best first: In-Reply-To, then References newest first."""
    refs = [ev.in_reply_to] if ev.in_reply_to else []
    refs.extend(ref for ref in reversed(ev.references) if ref)
    return list(dict.fromkeys(refs))


def merged_profile(ev: InboundEvent) -> dict[str, Any]:
    """The event's profile fields that a merge takes (known names, given values)."""
    return {k: v for k, v in ev.profile.items() if k in PROFILE_FIELD_SET and v is not None}


async def call_wake(wake: Wake, agent: str, seq: int, frames: Frames) -> None:
    """Run one listener callback; a failing listener never breaks delivery to the others."""
    try:
        result = wake(agent, seq, frames)
        if inspect.isawaitable(result):
            await result
    except Exception:
        log.exception("store.wake_failed", agent=agent, seq=seq)


def recovered(frames: Sequence[tuple[int, Any]], since: int, head: int) -> bool:
    """Whether `frames` (everything kept after `since`) cover the whole gap up to `head`."""
    if not frames:
        return head == since
    return frames[0][0] == since + 1
