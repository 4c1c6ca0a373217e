"""The Redis store: durable, shared by every router node. See `store.base` for the contract
and `store.memory` for the decisions (ids, identity, threading, versions), which the
scripts in `store/lua/` make the same way.

`RedisStore` is built in three layers, one concept each: `store.redis_base` (its hold on
the Redis runtime it shares with the routing engine, `queues.runtime`: keys, connections,
scripts), `store.redis_log` (ingest, the log, jobs, leases, desktops) and this module
(customers, conversations, history, outboxes), beside `store.redis_wakes` (the pub/sub
connection: wakes and the client-group cache); the msgpack shapes are in `store.redis_codec`.

Keys, all under one hash tag per domain, `omniroute:{DOMAIN}:` (so every script runs on Redis
Cluster; ids always come last in a key so no id can forge another key):

| key | type | what |
|---|---|---|
| `ids` | hash | counters `cu`, `cv`, `ix`; KEYS[1] of every script |
| `cu:ID` / `cv:ID` | string | customer / conversation record (msgpack map) |
| `h:CUSTOMER` | list | the customer's history, every conversation, oldest first (msgpack) |
| `addr` | hash | address → customer id |
| `ev:EVENT` | string | dedupe: {cv, cu, ix, pos} for `dedupe_s` (pos = history index) |
| `mid:MESSAGE-ID` | string | email dedupe and threading: {cv, cu} for `thread_s` (180 days) |
| `log` | stream | the durable event log, consumer group `router` |
| `out` | stream | outgoing jobs (replies to send, PBX commands), consumer group `send` |
| `node:NODE` / `nodes` | string / set | a node's lease (its token, PX `lease_s`) / nodes seen |
| `desk:AGENT` / `desks:NODE` | hash / set | desktops per node of an agent / agents per node |
| `oseq:AGENT` / `obox:AGENT` | string / stream | outbox head / frames, entry id `SEQ-0` |
| `pend:CONVERSATION` | list | frames for a conversation's holder-to-be (`pd` in `cv:ID`: any?) |
| `wake:AGENT` | channel | PUBLISH of the frames of every push: msgpack [[seq, frame], …] |
| `groups` | channel | PUBLISH of every client-group change: msgpack [customer, version, group] |

**Where the bulk lives.** Message bodies are in the history lists (`h:CUSTOMER`) and, until an
entry is acknowledged, in the log stream (`ack_log` XACKs *and* XDELs, so the log holds only the
backlog). History sits under the domain's hash tag, i.e. on one Cluster slot, on purpose:
`apply_inbound` appends to it, counts, merges the profile and marks the event applied in one
atomic script, which is what makes re-applying a reclaimed entry safe. Spreading history over
slots would cost a second round trip per event and a repair path for a crash between the two;
a deployment that outgrows one node splits by domain (e.g. one per site) instead.

**Round trips.** `ingest` (a whole batch), `apply_inbound`, `add_outbound`, `set_state`,
`update_customer`, `set_group` and `push` (any number of frames and agents) are one EVALSHA
each; `since` is one MULTI (GET + XRANGE); `head`, `customer`, `conversation`, `history` one
command; `ack_log` one MULTI (XACK + XDEL); `read_log` one script (XAUTOCLAIM, then a
non-blocking XREADGROUP) plus, only when that found nothing, one blocking XREADGROUP on a
separate connection pool so no other call waits behind it.

Idleness for `claim_idle_ms` is measured by Redis (XAUTOCLAIM); `clock` is accepted for
symmetry with the memory store. Values are msgpack; the scripts never call TIME.

May import `queues`' Redis helpers and the rest of `store` but `store.memory*`; never `router`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgpack

from store.common import check_edit, check_group, check_state, iso, merged_profile, recovered
from store.errors import StaleVersion, StoreError
from store.model import (
    ANNOTATE_WINDOW,
    Applied,
    Conversation,
    Customer,
    Interaction,
    LogEntry,
    Push,
    Reply,
)
from store.redis_codec import (
    REFUSALS,
    as_text,
    conversation_from,
    customer_from,
    interaction_from,
    pack_args,
    stream_order,
)
from store.redis_log import RedisLog
from store.redis_wakes import RedisWakes


class RedisStore(RedisLog, RedisWakes):
    """See `store.base.Store`; keys and round trips are in this module's docstring."""

    # -- customers, conversations, history -------------------------------------------------------

    async def apply_inbound(
        self, entry: LogEntry, now_ms: int
    ) -> tuple[Conversation, Customer, Interaction | None]:
        conv, customer, interaction, _ = await self.apply_inbound_view(entry, now_ms, 0)
        return conv, customer, interaction

    async def apply_inbound_view(self, entry: LogEntry, now_ms: int, history_limit: int) -> Applied:
        result = await self._eval("apply", self._apply_args(entry, now_ms, history_limit))
        return self._applied(result)

    async def apply_many(
        self, entries: Sequence[LogEntry], now_ms: int, history_limit: int
    ) -> list[Applied | StoreError]:
        """One pipeline of `apply` script calls: one round trip for the whole batch."""
        if not entries:
            return []
        await self._redis()
        argvs = [(pack_args(self._apply_args(e, now_ms, history_limit)),) for e in entries]
        replies = await self._rt.many("apply", argvs)
        out: list[Applied | StoreError] = []
        for raw in replies:
            if isinstance(raw, Exception):
                raise raw
            try:
                out.append(self._applied(REFUSALS.check(msgpack.unpackb(raw, raw=False))))
            except StoreError as exc:
                out.append(exc)
        return out

    def _apply_args(self, entry: LogEntry, now_ms: int, history_limit: int) -> dict[str, Any]:
        ev = entry.event
        profile = merged_profile(ev)
        group = profile.pop("client_group", None)
        row: dict[str, Any] = {
            "id": ev.id,
            "ch": ev.channel,
            "type": ev.type,
            "at": ev.occurred_at or iso(now_ms),
            "meta": dict(ev.meta),
            "prof": profile,
        }
        for name, value in (
            ("body", ev.body),
            ("subj", ev.subject),
            ("grp", group),
            ("site", ev.site),
        ):
            if value is not None:
                row[name] = value
        return {
            "dd": self.dedupe_s,
            "now": iso(now_ms),
            "cv": entry.conversation,
            "cu": entry.customer,
            "e": row,
            "hl": max(0, history_limit),
        }

    def _applied(self, result: Any) -> Applied:
        conv, cust, ix, history = result
        tail = [interaction_from(rec) for rec in history]
        return conversation_from(conv), self._seen(customer_from(cust)), interaction_from(ix), tail

    async def conversation(self, conversation_id: str) -> Conversation | None:
        raw = await (await self._redis()).get(self._key("cv", conversation_id))
        return conversation_from(msgpack.unpackb(raw, raw=False)) if raw is not None else None

    async def history(self, customer_id: str, limit: int) -> list[Interaction]:
        if limit <= 0:
            return []
        items = await (await self._redis()).lrange(self._key("h", customer_id), -limit, -1)
        return [interaction_from(msgpack.unpackb(raw, raw=False)) for raw in items]

    async def customer(self, customer_id: str) -> Customer | None:
        raw = await (await self._redis()).get(self._key("cu", customer_id))
        return (
            self._seen(customer_from(msgpack.unpackb(raw, raw=False))) if raw is not None else None
        )

    async def _edit_customer(self, args: Mapping[str, Any]) -> Customer:
        result = await self._eval("customer", args)
        if "stale" in result:
            raise StaleVersion(self._seen(customer_from(result["stale"])))
        return self._seen(customer_from(result["ok"]))

    async def update_customer(
        self, customer_id: str, version: int, fields: Mapping[str, str]
    ) -> Customer:
        check_edit(fields)
        return await self._edit_customer(
            {"cu": customer_id, "v": version, "f": dict(fields), "grp": ""}
        )

    async def set_group(self, customer_id: str, group: str) -> Customer:
        check_group(group)
        return await self._edit_customer({"cu": customer_id, "v": -1, "f": {}, "grp": group})

    async def add_outbound(self, reply: Reply, send: bool = False) -> Interaction:
        args: dict[str, Any] = {"cv": reply.conversation, "ch": reply.channel, "body": reply.body}
        args.update(agent=reply.agent, at=iso(reply.at_ms), send=int(send))
        return interaction_from(await self._eval("outbound", args))

    async def link(self, customer_id: str, addresses: Sequence[str]) -> None:
        await self._eval("link", {"cu": customer_id, "addr": list(addresses)})

    async def annotate(
        self, customer_id: str, interaction_id: str, meta: Mapping[str, Any]
    ) -> bool:
        args = {
            "cu": customer_id,
            "ix": interaction_id,
            "meta": dict(meta),
            "win": ANNOTATE_WINDOW,
            "ts": self.thread_s,
        }
        return bool(await self._eval("annotate", args))

    async def set_state(self, conversation_id: str, state: str, agent: str | None) -> None:
        check_state(state)
        await self._eval("state", {"cv": conversation_id, "st": state, "ag": agent or ""})

    # -- outboxes ----------------------------------------------------------------------------

    async def _push(self, batch: Push) -> list[int]:
        packed = [[agent, msgpack.packb(dict(frame))] for agent, frame in batch.frames]
        held = [[cv, msgpack.packb(dict(frame))] for cv, frame in batch.to_holder]
        changes = [[cv, st, ag or ""] for cv, st, ag in batch.states]
        args = {
            "keep": max(self.outbox_keep, 1),
            "f": packed,
            "s": changes,
            "ack": list(batch.ack),
            "h": held,
        }
        if batch.consumer is not None and batch.ack:
            order = sorted(batch.ack, key=stream_order)
            args.update(c=batch.consumer, lo=order[0], hi=order[-1])
        seqs = await self._eval("push", args)
        return [int(seq) for seq in seqs]

    async def view(
        self, conversation_id: str, history_limit: int
    ) -> tuple[Conversation | None, Customer | None, list[Interaction]]:
        conv, customer, history = await self._eval(
            "view", {"cv": conversation_id, "hl": max(0, history_limit)}
        )
        return (
            conversation_from(conv) if conv else None,
            self._seen(customer_from(customer)) if customer else None,
            [interaction_from(rec) for rec in history],
        )

    async def since(self, agent: str, seq: int) -> tuple[list[tuple[int, dict[str, Any]]], bool]:
        redis = await self._redis()
        async with redis.pipeline(transaction=True) as pipe:
            pipe.get(self._key("oseq", agent))
            pipe.xrange(self._key("obox", agent), min=str(seq + 1), max="+")
            head_raw, items = await pipe.execute()
        frames: list[tuple[int, dict[str, Any]]] = []
        for entry_id, fields in items:
            n = int(as_text(entry_id).split("-", 1)[0])
            frames.append((n, {**msgpack.unpackb(fields[b"f"], raw=False), "seq": n}))
        return frames, recovered(frames, seq, int(head_raw or 0))

    async def head(self, agent: str) -> int:
        return int(await (await self._redis()).get(self._key("oseq", agent)) or 0)
