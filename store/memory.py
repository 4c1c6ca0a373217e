"""The in-process store: everything in dicts, for one router process. See `store.base`.

This is the reference implementation: `store.redis` makes the same decisions in Lua,
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
  then hands out new ones. Acknowledged entries are dropped. (The log, the jobs and the node
  leases are kept by `store.memory_log.MemoryLog`, which this store builds on.)
* **Outboxes.** `since` returns `(seq, frame)` pairs whose frame includes `"seq"`; a `since`
  beyond the head is not `recovered` (the store was reset under the client).
* **Wakes.** `push` calls each listener of an agent once per batch with the agent's last seq;
  async callbacks are awaited, and a callback that raises is logged and skipped.

May import `store.base`, `store.common`, `store.model`, `store.errors` and its own
`store.memory_*` modules; never `store.redis`, never `router`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Unpack

from store.base import Tuning
from store.common import (
    THREAD_S,
    call_wake,
    check_batch,
    check_edit,
    check_group,
    check_state,
    iso,
    merged_profile,
    thread_refs,
)
from store.errors import Fenced, StaleVersion, StoreError, UnknownConversation, UnknownCustomer
from store.memory_log import MemoryLog
from store.memory_records import ConversationRecord, CustomerRecord, Expiring, Seen
from store.model import (
    ANNOTATE_WINDOW,
    HELD_STATES,
    Conversation,
    Customer,
    Frames,
    InboundEvent,
    Ingested,
    Interaction,
    LogEntry,
    Push,
    Reply,
)


class MemoryStore(MemoryLog):
    """See `store.base.Store`; the decisions are in this module's docstring."""

    def __init__(
        self,
        domain: str = "default",
        *,
        clock: Callable[[], float] = time.time,
        **tuning: Unpack[Tuning],
    ) -> None:
        self.domain = domain
        super().__init__(clock)
        self._tune(tuning)
        self.thread_s = THREAD_S
        self._customers: dict[str, CustomerRecord] = {}
        self._conversations: dict[str, ConversationRecord] = {}
        self._addresses: dict[str, str] = {}
        self._events = Expiring()
        self._messages = Expiring()
        self._waiting: dict[str, list[dict[str, Any]]] = {}  # to_holder frames, by conversation

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
        conv: ConversationRecord | None = None
        cust: CustomerRecord | None = None
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
        seen = Seen(conv.id, cust.id, now_ms + self.dedupe_s * 1000)
        self._events.put(ev.id, seen)
        if ev.message_id:
            thread_until = now_ms + self.thread_s * 1000
            self._messages.put(ev.message_id, Seen(conv.id, cust.id, thread_until))
        entry_id = f"{self._next('log')}-0"
        self._entries[entry_id] = LogEntry(entry_id, ev, conv.id, cust.id)
        self._accepted_ms[entry_id] = now_ms
        self._new.append(entry_id)
        return Ingested(ev.id, conv.id, cust.id, duplicate=False)

    def _identify(self, ev: InboundEvent) -> CustomerRecord:
        known = self._addresses.get(ev.sender) if ev.sender else None
        if ev.customer_id is not None:
            cust = self._customers.get(ev.customer_id)
            if cust is None:
                cust = self._customers[ev.customer_id] = CustomerRecord(
                    ev.customer_id, site=ev.site
                )
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
        cust = self._customers[cid] = CustomerRecord(cid, site=ev.site, addresses=[ev.sender])
        self._addresses[ev.sender] = cid
        return cust

    def _open_conversation(
        self, cust: CustomerRecord, channel: str, now_ms: int
    ) -> ConversationRecord:
        if cust.open is not None:
            return self._conversations[cust.open]
        conv = ConversationRecord(
            f"cv-{self._next('cv')}", cust.id, [channel], iso(now_ms), cust.last_agent
        )
        self._conversations[conv.id] = conv
        cust.open = conv.id
        return conv

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
            seen = Seen(conv.id, cust.id, now_ms + self.dedupe_s * 1000)
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

    def _cust(self, customer_id: str) -> CustomerRecord:
        cust = self._customers.get(customer_id)
        if cust is None:
            raise UnknownCustomer(customer_id)
        return cust

    def _conv(self, conversation_id: str) -> ConversationRecord:
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

    async def add_outbound(self, reply: Reply, send: bool = False) -> Interaction:
        conv = self._conv(reply.conversation)
        cust = self._cust(conv.customer)
        ix = Interaction(
            id=f"ix-{self._next('ix')}",
            conversation=conv.id,
            channel=reply.channel,
            direction="out",
            at=iso(reply.at_ms),
            body=reply.body,
            meta={"agent": reply.agent},
        )
        cust.history.append(ix)
        cust.messages_out += 1
        if send:
            job = {"kind": "reply", "cv": conv.id, "cu": cust.id, "ch": reply.channel, "ix": ix.id}
            await self.add_job({**job, "ag": reply.agent, "body": reply.body})
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
                    self._messages.put(mid, Seen(ix.conversation, cust.id, until))
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

    async def _push(self, batch: Push) -> list[int]:
        if batch.consumer is not None:
            for entry_id in batch.ack:
                holder = self._pending.get(entry_id)
                if holder is None or holder[0] != batch.consumer:
                    raise Fenced(f"log entry {entry_id} is no longer held by {batch.consumer}")
        for conversation_id, state, agent in batch.states:
            conv = self._conversations.get(conversation_id)
            if conv is not None and (conv.state != "closed" or state == "closed"):
                await self.set_state(conversation_id, state, agent)
        await self.ack_log(batch.ack)
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

        seqs = [deliver(agent, frame) for agent, frame in batch.frames]
        for conversation_id, _state, _agent in batch.states:  # frames that waited for a holder
            conv = self._conversations.get(conversation_id)
            if conv is not None and conv.state in HELD_STATES and conv.agent:
                for waited in self._waiting.pop(conversation_id, []):
                    deliver(conv.agent, waited)
        for conversation_id, held in batch.to_holder:
            conv = self._conversations.get(conversation_id)
            if conv is not None and conv.state in HELD_STATES and conv.agent:
                deliver(conv.agent, held)
            elif conv is not None and conv.state == "queued":
                self._waiting.setdefault(conversation_id, []).append(dict(held))
        for agent, pushed in woken.items():
            for wake in list(self._listeners.get(agent, ())):
                await call_wake(wake, agent, pushed[-1][0], pushed)
        return seqs

    async def client_group(self, customer_id: str) -> str | None:
        cust = self._customers.get(customer_id)
        return cust.group if cust is not None else None
