"""The in-process store: everything in dicts, for one router process. See `router.store`.

This is the reference implementation: `router.store_redis` makes the same decisions in Lua,
and `tests/test_store.py` runs one suite against both. The decisions a contact-centre engineer
would ask about:

* **Ids.** A customer's id is the event's `customer_id` when the site gives one, else
  `cu-<n>`; conversations are `cv-<n>`, interactions `ix-<n>` (one counter for inbound and
  outbound), log entries `<n>-0` (the same shape as Redis stream ids).
* **Identity.** An address (`sender`) names at most one customer. An event with a
  `customer_id` links its address to that customer, moving it away from any other customer
  (the site vouches for its logged-in user). An unknown address without `customer_id` makes a
  new customer.
* **Email.** A repeated Message-ID is a duplicate reporting the original's conversation (one
  mail to two support addresses is one conversation). A mail whose In-Reply-To or References
  (In-Reply-To first, then References newest first) names a known message belongs to that
  message's customer — unless it carries a different `customer_id` — and joins that message's
  conversation while it is open; otherwise the customer's open conversation, or a new one.
  Threading never links the reply's address (headers are easy to forge). Message-IDs are
  remembered for `thread_s` (180 days), event ids for `dedupe_s`.
* **One open conversation per customer**, across channels. A new conversation starts `queued`
  with the event's channel and carries the customer's last agent as `last_agent`.
  `set_state(…, "closed", agent)` clears the customer's open pointer and remembers `agent`
  (else the conversation's agent; else the previous last agent); a closed conversation is
  never reopened or reused. An entry applied after its conversation was closed goes to the
  customer's open (or a new) conversation, which `apply_inbound` returns.
* **Re-applying** an event (a reclaimed log entry) changes nothing and returns the interaction
  appended the first time (while the event id is remembered, `dedupe_s`).
* **Profile.** `apply_inbound` merges only `PROFILE_FIELDS`; `None` values mean "not given".
  `client_group` from an event is simply set. The customer's `site` is the first one seen.
* **Versions.** A new customer is version 1. `update_customer` (only `EDITABLE_FIELDS`) and
  `set_group` bump the version when they change something, as does a group change from an
  event; other profile merges do not (they are not agent-visible edits to conflict with).
* **Counters.** `messages_in` counts inbound `type == "message"`; `messages_out` each
  `add_outbound`.
* **Log.** One consumer group: an entry goes to one consumer; `read_log` first reclaims
  entries any consumer has held unacknowledged for `claim_idle_ms` (measured with `clock`),
  then hands out new ones. Acknowledged entries are dropped.
* **Outboxes.** `since` returns `(seq, frame)` pairs whose frame includes `"seq"`; a `since`
  beyond the head is not `recovered` (the store was reset under the client).
* **Wakes.** `push` calls each listener of an agent once per batch with the agent's last seq;
  async callbacks are awaited, and a callback that raises is logged and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import structlog

from router.store import (
    ANNOTATE_WINDOW,
    CONVERSATION_STATES,
    EDITABLE_FIELDS,
    HELD_STATES,
    PROFILE_FIELDS,
    Backlog,
    Beat,
    Conversation,
    Customer,
    Fenced,
    Frames,
    InboundEvent,
    Ingested,
    Interaction,
    Job,
    LogEntry,
    StaleVersion,
    Store,
    StoreError,
    UnknownConversation,
    UnknownCustomer,
    Wake,
)

GROUPS = ("normal", "SIC", "CSC")
CHANNELS = ("chat", "sms", "email", "voice")
EVENT_TYPES = ("message", "call.offered", "call.answered", "call.ended")
THREAD_S = 180 * 86_400

log = structlog.get_logger(__name__)


# -- helpers both backends use -----------------------------------------------------------------


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
        if ev.type not in EVENT_TYPES:
            raise StoreError(f"event {ev.id!r}: unknown type {ev.type!r}")
        group = ev.profile.get("client_group")
        if group is not None and group not in GROUPS:
            raise StoreError(f"event {ev.id!r}: unknown client group {group!r}")


def check_edit(fields: Mapping[str, str]) -> None:
    """Only agent-editable fields, as text."""
    for name, value in fields.items():
        if name not in EDITABLE_FIELDS:
            raise StoreError(f"field {name!r} is not editable")
        if not isinstance(value, str):
            raise StoreError(f"field {name!r} must be text")


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
    return {k: v for k, v in ev.profile.items() if k in PROFILE_FIELDS and v is not None}


def event_wire(ev: InboundEvent) -> dict[str, Any]:
    """The event as a msgpack-able map (the log's payload)."""
    return {
        "id": ev.id,
        "type": ev.type,
        "channel": ev.channel,
        "sender": ev.sender,
        "customer_id": ev.customer_id,
        "site": ev.site,
        "profile": dict(ev.profile),
        "subject": ev.subject,
        "body": ev.body,
        "message_id": ev.message_id,
        "in_reply_to": ev.in_reply_to,
        "references": list(ev.references),
        "occurred_at": ev.occurred_at,
        "meta": dict(ev.meta),
    }


def event_from_wire(raw: Mapping[str, Any]) -> InboundEvent:
    """The inverse of `event_wire`."""
    return InboundEvent(
        id=raw["id"],
        type=raw["type"],
        channel=raw["channel"],
        sender=raw["sender"],
        customer_id=raw.get("customer_id"),
        site=raw.get("site"),
        profile=dict(raw.get("profile") or {}),
        subject=raw.get("subject"),
        body=raw.get("body"),
        message_id=raw.get("message_id"),
        in_reply_to=raw.get("in_reply_to"),
        references=tuple(raw.get("references") or ()),
        occurred_at=raw.get("occurred_at"),
        meta=dict(raw.get("meta") or {}),
    )


async def call_wake(wake: Wake, agent: str, seq: int, frames: Frames) -> None:
    """Run one listener callback; a failing listener never breaks delivery to the others."""
    try:
        result = wake(agent, seq, frames)
        if inspect.isawaitable(result):
            await result
    except Exception:
        log.exception("store.wake_failed", agent=agent, seq=seq)


# -- records -------------------------------------------------------------------------------------


@dataclass
class _Cust:
    id: str
    version: int = 1
    group: str = "normal"
    site: str | None = None
    profile: dict[str, Any] = field(default_factory=dict)
    editable: dict[str, str] = field(default_factory=dict)
    messages_in: int = 0
    messages_out: int = 0
    addresses: list[str] = field(default_factory=list)
    open: str | None = None
    last_agent: str | None = None
    history: list[Interaction] = field(default_factory=list)

    def view(self) -> Customer:
        return Customer(
            id=self.id,
            version=self.version,
            client_group=self.group,
            site=self.site,
            profile=dict(self.profile),
            editable=dict(self.editable),
            messages_in=self.messages_in,
            messages_out=self.messages_out,
            addresses=tuple(self.addresses),
            open_conversation=self.open,
        )


@dataclass
class _Conv:
    id: str
    customer: str
    channels: list[str]
    created_at: str
    last_agent: str | None
    state: str = "queued"
    agent: str | None = None

    def view(self) -> Conversation:
        return Conversation(
            id=self.id,
            customer=self.customer,
            state=self.state,
            agent=self.agent,
            channels=tuple(self.channels),
            last_channel=self.channels[-1],
            created_at=self.created_at,
            last_agent=self.last_agent,
        )


@dataclass
class _Seen:
    """What an event id (or Message-ID) was placed in; `interaction` once applied."""

    conversation: str
    customer: str
    expires_ms: int
    interaction: Interaction | None = None  # the same object as in the history


class _Expiring:
    """A map whose entries expire in insertion order (every entry lives the same time)."""

    def __init__(self) -> None:
        self._items: OrderedDict[str, _Seen] = OrderedDict()

    def get(self, key: str, now_ms: int) -> _Seen | None:
        seen = self._items.get(key)
        return seen if seen is not None and seen.expires_ms > now_ms else None

    def put(self, key: str, seen: _Seen) -> None:
        self._items.pop(key, None)
        self._items[key] = seen

    def sweep(self, now_ms: int) -> None:
        while self._items:
            key, seen = next(iter(self._items.items()))
            if seen.expires_ms > now_ms:
                return
            del self._items[key]


class MemoryStore(Store):
    """See `router.store.Store`; the decisions are in this module's docstring."""

    def __init__(
        self,
        domain: str = "default",
        *,
        clock: Callable[[], float] = time.time,
        dedupe_s: int | None = None,
        claim_idle_ms: int | None = None,
        outbox_keep: int | None = None,
    ) -> None:
        self.domain = domain
        self._clock = clock
        if dedupe_s is not None:
            self.dedupe_s = dedupe_s
        if claim_idle_ms is not None:
            self.claim_idle_ms = claim_idle_ms
        if outbox_keep is not None:
            self.outbox_keep = outbox_keep
        self.thread_s = THREAD_S
        self._ids = {name: itertools.count(1) for name in ("cu", "cv", "ix", "log", "job")}
        self._customers: dict[str, _Cust] = {}
        self._conversations: dict[str, _Conv] = {}
        self._addresses: dict[str, str] = {}
        self._events = _Expiring()
        self._messages = _Expiring()
        self._entries: dict[str, LogEntry] = {}
        self._accepted_ms: dict[str, int] = {}  # entry → when it was accepted, oldest first
        self._new: deque[str] = deque()
        self._read_total = 0  # entries taken from `_new`, ever: `Backlog.read`
        self._pending: dict[str, tuple[str, int]] = {}
        self._own: set[str] = set()  # consumers that read their own pending entries first
        self._jobs: dict[str, Job] = {}  # outgoing jobs not yet done, oldest first
        self._job_holder: dict[str, tuple[str, int]] = {}  # job → (consumer, since ms)
        self._own_jobs: set[str] = set()
        self._job_arrived: asyncio.Event | None = None
        self._leases: dict[str, tuple[str, int]] = {}  # node → (token, expires ms)
        self._desks: dict[str, dict[str, int]] = {}  # agent → node → desktops
        self._waiting: dict[str, list[dict[str, Any]]] = {}  # to_holder frames, by conversation
        self._arrived: asyncio.Event | None = None
        self._outboxes: dict[str, deque[tuple[int, dict[str, Any]]]] = {}
        self._heads: dict[str, int] = {}
        self._listeners: dict[str, list[Wake]] = {}

    def _next(self, counter: str) -> int:
        return next(self._ids[counter])

    # -- ingest and the log --------------------------------------------------------------------

    async def ingest(self, events: Sequence[InboundEvent], now_ms: int) -> list[Ingested]:
        check_batch(events)
        self._events.sweep(now_ms)
        self._messages.sweep(now_ms)
        out = [self._ingest_one(ev, now_ms) for ev in events]
        if any(not row.duplicate for row in out) and self._arrived is not None:
            self._arrived.set()
        return out

    def _ingest_one(self, ev: InboundEvent, now_ms: int) -> Ingested:
        seen = self._events.get(ev.id, now_ms)
        if seen is None and ev.message_id:
            seen = self._messages.get(ev.message_id, now_ms)
        if seen is not None:
            return Ingested(ev.id, seen.conversation, seen.customer, duplicate=True)
        conv: _Conv | None = None
        cust: _Cust | None = None
        for ref in thread_refs(ev):
            origin = self._messages.get(ref, now_ms)
            if origin is None:
                continue
            if ev.customer_id is None or ev.customer_id == origin.customer:
                cust = self._customers[origin.customer]
                candidate = self._conversations[origin.conversation]
                conv = candidate if candidate.state != "closed" else None
            break
        if cust is None or ev.customer_id is not None:
            cust = self._identify(ev)
        if conv is None:
            conv = self._open_conversation(cust, ev.channel, now_ms)
        seen = _Seen(conv.id, cust.id, now_ms + self.dedupe_s * 1000)
        self._events.put(ev.id, seen)
        if ev.message_id:
            thread_until = now_ms + self.thread_s * 1000
            self._messages.put(ev.message_id, _Seen(conv.id, cust.id, thread_until))
        entry_id = f"{self._next('log')}-0"
        self._entries[entry_id] = LogEntry(entry_id, ev, conv.id, cust.id)
        self._accepted_ms[entry_id] = now_ms
        self._new.append(entry_id)
        return Ingested(ev.id, conv.id, cust.id, duplicate=False)

    def _identify(self, ev: InboundEvent) -> _Cust:
        known = self._addresses.get(ev.sender) if ev.sender else None
        if ev.customer_id is not None:
            cust = self._customers.get(ev.customer_id)
            if cust is None:
                cust = self._customers[ev.customer_id] = _Cust(ev.customer_id, site=ev.site)
            if ev.sender and known != cust.id:
                if known is not None:
                    self._customers[known].addresses.remove(ev.sender)
                self._addresses[ev.sender] = cust.id
                cust.addresses.append(ev.sender)
            return cust
        if known is not None:
            return self._customers[known]
        cid = f"cu-{self._next('cu')}"
        while cid in self._customers:
            cid = f"cu-{self._next('cu')}"
        cust = self._customers[cid] = _Cust(cid, site=ev.site, addresses=[ev.sender])
        self._addresses[ev.sender] = cid
        return cust

    def _open_conversation(self, cust: _Cust, channel: str, now_ms: int) -> _Conv:
        if cust.open is not None:
            return self._conversations[cust.open]
        conv = _Conv(f"cv-{self._next('cv')}", cust.id, [channel], iso(now_ms), cust.last_agent)
        self._conversations[conv.id] = conv
        cust.open = conv.id
        return conv

    async def read_log(self, consumer: str, count: int, block_ms: int) -> list[LogEntry]:
        out = self._take(consumer, count)
        if out or block_ms <= 0:
            return out
        if self._arrived is None:
            self._arrived = asyncio.Event()
        self._arrived.clear()
        try:
            await asyncio.wait_for(self._arrived.wait(), block_ms / 1000)
        except TimeoutError:
            return []
        return self._take(consumer, count)

    def _take(self, consumer: str, count: int) -> list[LogEntry]:
        now_ms = int(self._clock() * 1000)
        out: list[LogEntry] = []
        if consumer in self._own:
            self._own.discard(consumer)
            for entry_id, (holder, _since) in list(self._pending.items()):
                if holder == consumer and len(out) < count:
                    self._pending[entry_id] = (consumer, now_ms)
                    out.append(replace(self._entries[entry_id], reclaimed=True))
            if len(out) >= count:
                self._own.add(consumer)  # more may be left
                return out
        for entry_id, (_holder, since_ms) in list(self._pending.items()):
            if len(out) >= count:
                return out
            if now_ms - since_ms >= self.claim_idle_ms:
                del self._pending[entry_id]
                self._pending[entry_id] = (consumer, now_ms)
                out.append(replace(self._entries[entry_id], reclaimed=True))
        while self._new and len(out) < count:
            entry_id = self._new.popleft()
            self._read_total += 1
            if entry_id in self._entries:  # acknowledged before anyone read it
                self._pending[entry_id] = (consumer, now_ms)
                out.append(self._entries[entry_id])
        return out

    async def backlog(self) -> Backlog:
        # not yet read by a consumer: `_new`, oldest first (an entry acknowledged unread is gone
        # from `_entries`)
        oldest = next((self._accepted_ms[e] for e in self._new if e in self._entries), None)
        if oldest is None:
            return Backlog(0, 0.0, self._read_total)
        return Backlog(len(self._new), max(0.0, self._clock() - oldest / 1000), self._read_total)

    async def ack_log(self, entry_ids: Sequence[str]) -> None:
        for entry_id in entry_ids:
            self._pending.pop(entry_id, None)
            self._entries.pop(entry_id, None)
            self._accepted_ms.pop(entry_id, None)

    def reread(self, consumer: str) -> None:
        self._own.add(consumer)

    # -- outgoing jobs ---------------------------------------------------------------------------

    async def add_job(self, fields: Mapping[str, Any]) -> str:
        job_id = f"{int(self._clock() * 1000)}-{self._next('job')}"
        self._jobs[job_id] = Job(job_id, dict(fields))
        if self._job_arrived is not None:
            self._job_arrived.set()
        return job_id

    async def read_jobs(self, consumer: str, count: int, block_ms: int) -> list[Job]:
        out = self._take_jobs(consumer, count)
        if out or block_ms <= 0:
            return out
        if self._job_arrived is None:
            self._job_arrived = asyncio.Event()
        self._job_arrived.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._job_arrived.wait(), block_ms / 1000)
        return self._take_jobs(consumer, count)

    def _take_jobs(self, consumer: str, count: int) -> list[Job]:
        now_ms = int(self._clock() * 1000)
        own = consumer in self._own_jobs
        self._own_jobs.discard(consumer)
        out: list[Job] = []
        for job_id, job in self._jobs.items():
            if len(out) >= count:
                break
            held = self._job_holder.get(job_id)
            if held is None:
                out.append(job)
            elif (own and held[0] == consumer) or now_ms - held[1] >= self.claim_idle_ms:
                out.append(replace(job, reclaimed=True))
            else:
                continue
            self._job_holder[job_id] = (consumer, now_ms)
        return out

    async def ack_jobs(self, job_ids: Sequence[str]) -> None:
        for job_id in job_ids:
            self._jobs.pop(job_id, None)
            self._job_holder.pop(job_id, None)

    # -- nodes: leases, takeover, desktops ------------------------------------------------------

    def _alive(self, node: str, me: str, now_ms: int) -> bool:
        lease = self._leases.get(node)
        return node == me or (lease is not None and lease[1] > now_ms)

    async def beat(self, node: str, token: str, ttl_ms: int, first: bool = False) -> Beat:
        now_ms = int(self._clock() * 1000)
        held = self._leases.get(node)
        held_token = held[0] if held is not None and held[1] > now_ms else None
        self._leases[node] = (token, now_ms + ttl_ms)
        holders = {holder for holder, _since in self._pending.values()}
        holders |= {holder for holder, _since in self._job_holder.values()}
        dead = sorted(
            {n for n in self._leases if not self._alive(n, node, now_ms)}
            | {h for h in holders if not self._alive(h, node, now_ms)}
        )
        claimed = 0
        if not dead:  # the common beat: nothing to take over, nothing more to walk
            if first:
                self._own.add(node)
                self._own_jobs.add(node)
            clash = held_token is not None and held_token != token
            return Beat(fenced=not first and held_token != token, clash=clash)
        for entry_id, (holder, _since) in list(self._pending.items()):
            if holder in dead:
                self._pending[entry_id] = (node, now_ms)
                claimed += 1
        for job_id, (holder, _since) in list(self._job_holder.items()):
            if holder in dead:
                self._job_holder[job_id] = (node, now_ms)
                claimed += 1
        if claimed or first:  # first: a restart under the same name rereads its leftovers
            self._own.add(node)
            self._own_jobs.add(node)
        orphans: list[str] = []
        for agent, desks in self._desks.items():
            if any(n in dead for n in desks):
                for n in dead:
                    desks.pop(n, None)
                if not any(self._alive(n, node, now_ms) for n in desks):
                    orphans.append(agent)
        for n in dead:
            self._leases.pop(n, None)
        return Beat(
            fenced=not first and held_token != token,
            clash=held_token is not None and held_token != token,
            claimed=claimed,
            dead=tuple(dead),
            orphans=tuple(orphans),
        )

    async def desktop(self, agent: str, node: str, change: int, count: int | None = None) -> int:
        now_ms = int(self._clock() * 1000)
        desks = self._desks.setdefault(agent, {})
        n = count if count is not None else desks.get(node, 0) + change
        if n > 0:
            desks[node] = n
        else:
            desks.pop(node, None)
        others = sum(1 for other in desks if other != node and self._alive(other, node, now_ms))
        if not desks:
            del self._desks[agent]
        return others

    # -- customers, conversations, history -------------------------------------------------------

    async def apply_inbound(
        self, entry: LogEntry, now_ms: int
    ) -> tuple[Conversation, Customer, Interaction | None]:
        ev = entry.event
        cust = self._customers.get(entry.customer)
        if cust is None:
            raise UnknownCustomer(entry.customer)
        seen = self._events.get(ev.id, now_ms)
        if seen is not None and seen.interaction is not None:
            done = self._conversations[seen.conversation]
            return done.view(), cust.view(), seen.interaction
        conv = self._conversations.get(entry.conversation)
        if conv is None:
            raise UnknownConversation(entry.conversation)
        if conv.state == "closed":
            conv = self._open_conversation(cust, ev.channel, now_ms)
        ix = Interaction(
            id=f"ix-{self._next('ix')}",
            conversation=conv.id,
            channel=ev.channel,
            direction="in",
            at=ev.occurred_at or iso(now_ms),
            body=ev.body,
            subject=ev.subject,
            type=ev.type,
            meta=dict(ev.meta),
        )
        cust.history.append(ix)
        profile = merged_profile(ev)
        group = profile.pop("client_group", None)
        cust.profile.update(profile)
        if group is not None and group != cust.group:
            cust.group = group
            cust.version += 1
        if cust.site is None and ev.site:
            cust.site = ev.site
        if ev.type == "message":
            cust.messages_in += 1
        if ev.channel in conv.channels:
            conv.channels.remove(ev.channel)
        conv.channels.append(ev.channel)  # the last one is the conversation's last channel
        seen = self._events.get(ev.id, now_ms)
        if seen is None:
            seen = _Seen(conv.id, cust.id, now_ms + self.dedupe_s * 1000)
            self._events.put(ev.id, seen)
        seen.conversation, seen.interaction = conv.id, ix
        return conv.view(), cust.view(), ix

    async def conversation(self, conversation_id: str) -> Conversation | None:
        conv = self._conversations.get(conversation_id)
        return conv.view() if conv is not None else None

    async def history(self, customer_id: str, limit: int) -> list[Interaction]:
        cust = self._customers.get(customer_id)
        if cust is None or limit <= 0:
            return []
        return list(cust.history[-limit:])

    async def customer(self, customer_id: str) -> Customer | None:
        cust = self._customers.get(customer_id)
        return cust.view() if cust is not None else None

    def _cust(self, customer_id: str) -> _Cust:
        cust = self._customers.get(customer_id)
        if cust is None:
            raise UnknownCustomer(customer_id)
        return cust

    def _conv(self, conversation_id: str) -> _Conv:
        conv = self._conversations.get(conversation_id)
        if conv is None:
            raise UnknownConversation(conversation_id)
        return conv

    async def update_customer(
        self, customer_id: str, version: int, fields: Mapping[str, str]
    ) -> Customer:
        check_edit(fields)
        cust = self._cust(customer_id)
        if version != cust.version:
            raise StaleVersion(cust.view())
        if any(cust.editable.get(name) != value for name, value in fields.items()):
            cust.editable.update(fields)
            cust.version += 1
        return cust.view()

    async def set_group(self, customer_id: str, group: str) -> Customer:
        check_group(group)
        cust = self._cust(customer_id)
        if cust.group != group:
            cust.group = group
            cust.version += 1
        return cust.view()

    async def add_outbound(
        self,
        conversation_id: str,
        channel: str,
        body: str,
        agent: str,
        now_ms: int,
        send: bool = False,
    ) -> Interaction:
        conv = self._conv(conversation_id)
        cust = self._cust(conv.customer)
        ix = Interaction(
            id=f"ix-{self._next('ix')}",
            conversation=conv.id,
            channel=channel,
            direction="out",
            at=iso(now_ms),
            body=body,
            meta={"agent": agent},
        )
        cust.history.append(ix)
        cust.messages_out += 1
        if send:
            job = {"kind": "reply", "cv": conv.id, "cu": cust.id, "ch": channel, "ix": ix.id}
            await self.add_job({**job, "ag": agent, "body": body})
        return ix

    async def link(self, customer_id: str, addresses: Sequence[str]) -> None:
        cust = self._cust(customer_id)
        for address in addresses:
            known = self._addresses.get(address)
            if known == cust.id:
                continue
            if known is not None:
                self._customers[known].addresses.remove(address)
            self._addresses[address] = cust.id
            cust.addresses.append(address)

    async def annotate(
        self, customer_id: str, interaction_id: str, meta: Mapping[str, Any]
    ) -> bool:
        cust = self._customers.get(customer_id)
        if cust is None:
            return False
        window = cust.history[-ANNOTATE_WINDOW:]
        for offset, ix in enumerate(reversed(window)):
            if ix.id == interaction_id:
                cust.history[len(cust.history) - 1 - offset] = replace(ix, meta={**ix.meta, **meta})
                mid = meta.get("message_id")
                if isinstance(mid, str) and mid:  # our sent mail: a reply to it threads back
                    until = round(self._clock() * 1000) + self.thread_s * 1000
                    self._messages.put(mid, _Seen(ix.conversation, cust.id, until))
                return True
        return False

    async def set_state(self, conversation_id: str, state: str, agent: str | None) -> None:
        check_state(state)
        conv = self._conv(conversation_id)
        if conv.state == "closed":
            if state == "closed":
                return
            raise StoreError(f"conversation {conversation_id} is closed")
        if state == "closed":
            cust = self._cust(conv.customer)
            if cust.open == conv.id:
                cust.open = None
            agent = agent or conv.agent
            if agent is not None:
                cust.last_agent = agent
        conv.state, conv.agent = state, agent

    # -- outboxes ----------------------------------------------------------------------------

    async def push(
        self,
        frames: Sequence[tuple[str, Mapping[str, Any]]],
        states: Sequence[tuple[str, str, str | None]] = (),
        ack: Sequence[str] = (),
        to_holder: Sequence[tuple[str, Mapping[str, Any]]] = (),
        consumer: str | None = None,
    ) -> list[int]:
        if consumer is not None:
            for entry_id in ack:
                holder = self._pending.get(entry_id)
                if holder is None or holder[0] != consumer:
                    raise Fenced(f"log entry {entry_id} is no longer held by {consumer}")
        for conversation_id, state, agent in states:
            conv = self._conversations.get(conversation_id)
            if conv is not None and (conv.state != "closed" or state == "closed"):
                await self.set_state(conversation_id, state, agent)
        await self.ack_log(ack)
        woken: dict[str, Frames] = {}

        def deliver(agent: str, frame: Mapping[str, Any]) -> int:
            seq = self._heads.get(agent, 0) + 1
            self._heads[agent] = seq
            box = self._outboxes.get(agent)
            if box is None:
                box = self._outboxes[agent] = deque(maxlen=max(self.outbox_keep, 1))
            stored = {**frame, "seq": seq}
            box.append((seq, stored))
            woken.setdefault(agent, []).append((seq, dict(stored)))
            return seq

        seqs = [deliver(agent, frame) for agent, frame in frames]
        for conversation_id, _state, _agent in states:  # frames that waited for a holder
            conv = self._conversations.get(conversation_id)
            if conv is not None and conv.state in HELD_STATES and conv.agent:
                for waited in self._waiting.pop(conversation_id, []):
                    deliver(conv.agent, waited)
        for conversation_id, held in to_holder:
            conv = self._conversations.get(conversation_id)
            if conv is not None and conv.state in HELD_STATES and conv.agent:
                deliver(conv.agent, held)
            elif conv is not None and conv.state == "queued":
                self._waiting.setdefault(conversation_id, []).append(dict(held))
        for agent, pushed in woken.items():
            for wake in list(self._listeners.get(agent, ())):
                await call_wake(wake, agent, pushed[-1][0], pushed)
        return seqs

    async def since(self, agent: str, seq: int) -> tuple[list[tuple[int, dict[str, Any]]], bool]:
        box: Iterable[tuple[int, dict[str, Any]]] = self._outboxes.get(agent, ())
        frames = [(n, dict(frame)) for n, frame in box if n > seq]
        return frames, recovered(frames, seq, self._heads.get(agent, 0))

    async def head(self, agent: str) -> int:
        return self._heads.get(agent, 0)

    async def client_group(self, customer_id: str) -> str | None:
        cust = self._customers.get(customer_id)
        return cust.group if cust is not None else None

    async def listen(self, agent: str, wake: Wake) -> None:
        self._listeners.setdefault(agent, []).append(wake)

    async def unlisten(self, agent: str, wake: Wake) -> None:
        wakes = self._listeners.get(agent, [])
        if wake in wakes:
            wakes.remove(wake)
        if not wakes:
            self._listeners.pop(agent, None)


def recovered(frames: Sequence[tuple[int, Any]], since: int, head: int) -> bool:
    """Whether `frames` (everything kept after `since`) cover the whole gap up to `head`."""
    if not frames:
        return head == since
    return frames[0][0] == since + 1
