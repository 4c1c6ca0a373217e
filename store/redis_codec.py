"""How the Redis store's values look on the wire: msgpack records and script replies into
`store.model` objects, script arguments out, and the event as the log stores it.

Lua's cmsgpack has its quirks (no bin type, an empty table is an array), handled here once.
May import `store.model`, `store.errors` and `queues.runtime` (its refusal table); never
`router`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any

import msgpack

from queues.runtime import Refusals
from store.errors import Fenced, StoreError, UnknownConversation, UnknownCustomer
from store.model import Conversation, Customer, Frames, InboundEvent, Interaction, LogEntry


def as_map(value: Any) -> dict[str, Any]:
    """Lua's cmsgpack packs an empty table as an empty array; records mean an empty map."""
    return dict(value) if value else {}


def as_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


_EVENT_FIELDS = tuple(f.name for f in fields(InboundEvent))  # the log's map, in this order
_EVENT_MAPS = ("profile", "meta", "skills")  # entries logged before skills have none


def event_wire(ev: InboundEvent) -> dict[str, Any]:
    """The event as a msgpack-able map (the log's payload): its fields by name."""
    wire = {name: getattr(ev, name) for name in _EVENT_FIELDS}
    wire.update({name: dict(wire[name]) for name in _EVENT_MAPS})
    wire["references"] = list(ev.references)
    return wire


def event_from_wire(raw: Mapping[str, Any]) -> InboundEvent:
    """The inverse of `event_wire`; a field an older entry lacks takes its default."""
    given = {name: raw[name] for name in _EVENT_FIELDS if name in raw}
    given.update({name: dict(raw.get(name) or {}) for name in _EVENT_MAPS})
    given["references"] = tuple(raw.get("references") or ())
    return InboundEvent(**given)


def pack_args(args: Mapping[str, Any]) -> bytes:
    """Script arguments: Redis's cmsgpack reads no bin type, so bytes go as (raw) str."""
    packed: bytes = msgpack.packb(dict(args), use_bin_type=False)
    return packed


def wake_frames(data: bytes) -> Frames:
    """A wake's payload, msgpack [[seq, frame msgpack], …], as (seq, frame with seq) pairs."""
    return [
        (int(seq), {**msgpack.unpackb(raw, raw=False), "seq": int(seq)})
        for seq, raw in msgpack.unpackb(data, raw=True)
    ]


# A script's refusal {err = code, msg}: by code, the matching `store.errors` error.
REFUSALS = Refusals(
    {"customer": UnknownCustomer, "conversation": UnknownConversation, "fenced": Fenced},
    StoreError,
)


def field_pairs(flat: Sequence[Any]) -> dict[bytes, Any]:
    """[field, value, field, value…] (a raw script reply) → dict; a deleted entry → {}."""
    if not flat:
        return {}
    return dict(zip(flat[::2], flat[1::2], strict=True))


def log_entry(entry_id: Any, fields: Mapping[bytes, Any], reclaimed: bool = False) -> LogEntry:
    event = event_from_wire(msgpack.unpackb(fields[b"e"], raw=False))
    return LogEntry(
        as_text(entry_id), event, as_text(fields[b"cv"]), as_text(fields[b"cu"]), reclaimed
    )


def stream_order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def customer_from(rec: Mapping[str, Any]) -> Customer:
    return Customer(
        id=rec["id"],
        version=int(rec["v"]),
        client_group=rec["grp"],
        site=rec.get("site") or None,
        profile=as_map(rec.get("prof")),
        editable=as_map(rec.get("ed")),
        messages_in=int(rec["ni"]),
        messages_out=int(rec["no"]),
        addresses=tuple(rec.get("addr") or ()),
        open_conversation=rec.get("open") or None,
    )


def conversation_from(rec: Mapping[str, Any]) -> Conversation:
    channels = tuple(rec["ch"])
    return Conversation(
        id=rec["id"],
        customer=rec["cu"],
        state=rec["st"],
        agent=rec.get("ag") or None,
        channels=channels,
        last_channel=channels[-1],
        created_at=rec["at"],
        last_agent=rec.get("la") or None,
    )


def interaction_from(rec: Mapping[str, Any]) -> Interaction:
    return Interaction(
        id=rec["id"],
        conversation=rec["cv"],
        channel=rec["ch"],
        direction=rec["dir"],
        at=rec["at"],
        body=rec.get("body"),
        subject=rec.get("subj"),
        type=rec.get("type", "message"),
        meta=as_map(rec.get("meta")),
    )
