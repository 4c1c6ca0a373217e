"""The Redis store: durable, shared by every router node. See `router.store` for the contract
and `router.store_memory` for the decisions (ids, identity, threading, versions), which the
scripts in `router/lua/` make the same way.

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

**Wakes.** One pub/sub connection per store and one reader task call the registered callbacks
(subscribe on an agent's first listener, unsubscribe on its last); callbacks should be quick.
A wake carries the pushed frames, so an up-to-date session writes them without reading the
outbox. After the pub/sub connection was lost, every listener is woken with its agent's head
and no frames, since pushes in between were not heard.

**Client groups.** The send-time tier filter asks `client_group` for every frame with customer
content. The same pub/sub connection hears every group change (`groups`), so while it is
subscribed the store answers from a cache of (version, group) per customer, filled from every
customer record a script returns; a higher version always wins, so a reply that raced a change
never undoes it. Without the subscription (not yet, or lost) it reads Redis.

Idleness for `claim_idle_ms` is measured by Redis (XAUTOCLAIM); `clock` is accepted for
symmetry with the memory store. Values are msgpack; the scripts never call TIME.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from importlib import resources
from typing import Any

import msgpack
import redis.asyncio as aioredis
import structlog
from redis.asyncio.client import PubSub

from queues.clients import companion
from queues.pipeline import GroupCommit, Script, ScriptPipeline
from queues.redis import connect
from router.store import (
    ANNOTATE_WINDOW,
    Applied,
    Backlog,
    Beat,
    Conversation,
    Customer,
    Fenced,
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
from router.store import Frames as FrameList
from router.store_memory import (
    THREAD_S,
    call_wake,
    check_batch,
    check_edit,
    check_group,
    check_state,
    event_from_wire,
    event_wire,
    iso,
    merged_profile,
    recovered,
    thread_refs,
)

SCRIPTS = (
    "ingest",
    "apply",
    "outbound",
    "state",
    "customer",
    "push",
    "read",
    "link",
    "annotate",
    "view",
    "nodes",
    "desk",
)
GROUP = "router"
SEND_GROUP = "send"  # the consumer group of the outgoing jobs (stream `out`)
PURGE_BATCH = 500
CLAIM_MAX = 1000  # log entries one beat claims per dead consumer (the next beat takes more)
CONFIRM_S = 5.0
GROUP_CACHE = 100_000  # customers whose client group a node keeps in memory
_GLOB_SPECIAL = "\\*?[]"

log = structlog.get_logger(__name__)


@cache
def script_source(name: str) -> str:
    """The full text of one script: the shared helpers, then the operation."""
    lua = resources.files("router") / "lua"
    return (lua / "lib.lua").read_text("utf-8") + "\n" + (lua / f"{name}.lua").read_text("utf-8")


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in _GLOB_SPECIAL else ch for ch in text)


def _map(value: Any) -> dict[str, Any]:
    """Lua's cmsgpack packs an empty table as an empty array; records mean an empty map."""
    return dict(value) if value else {}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisStore(Store):
    """See `router.store.Store`; keys and round trips are in this module's docstring."""

    def __init__(
        self,
        url: str | None = None,
        *,
        client: aioredis.Redis[bytes] | None = None,
        domain: str = "default",
        clock: Callable[[], float] = time.time,
        dedupe_s: int | None = None,
        claim_idle_ms: int | None = None,
        outbox_keep: int | None = None,
    ) -> None:
        if url is None and client is None:
            raise StoreError("the Redis store needs a redis:// URL or a client")
        self.domain = domain
        self._url = url
        self._client = client
        self._owned = False
        self._clock = clock
        if dedupe_s is not None:
            self.dedupe_s = dedupe_s
        if claim_idle_ms is not None:
            self.claim_idle_ms = claim_idle_ms
        if outbox_keep is not None:
            self.outbox_keep = outbox_keep
        self.thread_s = THREAD_S
        self._prefix = f"omniroute:{{{domain}}}:"
        self._anchor = self._key("ids")
        self._log = self._key("log")
        self._scripts: dict[str, Script] = {}
        self._pipeline: ScriptPipeline | None = None
        self._group_ready = False
        self._own: set[tuple[str, str]] = set()  # (stream, consumer): next read starts with own
        self._subscribing = asyncio.Lock()
        self._blocking: aioredis.Redis[bytes] | None = None
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._wakes: dict[str, list[Wake]] = {}
        self._confirmed: dict[str, asyncio.Future[None]] = {}
        self._groups: dict[str, tuple[int, str]] = {}  # customer → (version, group)
        self._groups_live = False  # subscribed to `groups`: the cache is kept true
        self._ingesting: GroupCommit[tuple[InboundEvent, int], Ingested] = GroupCommit(
            self._ingest_group
        )

    def _key(self, *parts: str) -> str:
        """The one place key names are made; `key()` in router/lua/lib.lua mirrors it."""
        return self._prefix + ":".join(parts)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, register the scripts, create the consumer group (all idempotent)."""
        if self._client is None:
            assert self._url is not None
            self._client = connect(self._url)
            self._owned = True
        if self._blocking is None:
            # a blocking read may wait longer than any timeout; same server or Sentinel service
            self._blocking = companion(self._client, socket_timeout=None)
        if not self._scripts:
            client = self._client
            self._scripts = {name: Script(client, script_source(name)) for name in SCRIPTS}
            self._pipeline = ScriptPipeline(client)
        if not self._group_ready:
            # Retried by every start() until it succeeds: Redis may be down when a node boots.
            for stream, group in ((self._log, GROUP), (self._key("out"), SEND_GROUP)):
                try:
                    await self._client.xgroup_create(stream, group, id="0", mkstream=True)
                except aioredis.ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise
            self._group_ready = True

    async def close(self) -> None:
        """Stop the wake reader; close what this store opened."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        if self._pubsub is not None:
            await self._pubsub.aclose()  # type: ignore[attr-defined]  # stubs predate aclose
            self._pubsub = None
        self._wakes.clear()
        self._confirmed.clear()
        self._groups.clear()
        self._groups_live = False
        if self._blocking is not None:
            await self._blocking.connection_pool.disconnect()
            self._blocking = None
        if self._owned and self._client is not None:
            await self._client.connection_pool.disconnect()
            self._client = None
            self._owned = False
        self._scripts = {}
        self._pipeline = None
        self._group_ready = False

    async def purge(self) -> None:
        """Delete every key of this domain (SCAN + UNLINK in batches; never KEYS). For tests."""
        redis = await self._redis()
        batch: list[bytes] = []
        async for name in redis.scan_iter(
            match=_glob_escape(self._prefix) + "*", count=PURGE_BATCH
        ):
            batch.append(name)
            if len(batch) >= PURGE_BATCH:
                await redis.unlink(*batch)
                batch = []
        if batch:
            await redis.unlink(*batch)

    async def _redis(self) -> aioredis.Redis[bytes]:
        if self._client is None or not self._scripts:
            await self.start()
        assert self._client is not None
        return self._client

    async def _eval(self, name: str, args: Mapping[str, Any]) -> Any:
        """One script call; a refusal becomes the matching `router.store` error."""
        await self._redis()
        assert self._pipeline is not None
        raw = await self._pipeline.call(
            self._scripts[name], self._anchor, self._prefix, _pack(args)
        )
        return _result(msgpack.unpackb(raw, raw=False))

    # -- ingest and the log --------------------------------------------------------------------

    async def ingest(self, events: Sequence[InboundEvent], now_ms: int) -> list[Ingested]:
        """Batches of concurrent callers go together in one script call (`GroupCommit`)."""
        check_batch(events)
        if not events:
            return []
        return await self._ingesting.submit([(ev, now_ms) for ev in events])

    async def _ingest_group(self, items: list[tuple[InboundEvent, int]]) -> list[Ingested]:
        events = [ev for ev, _ in items]
        now_ms = max(at for _, at in items)
        rows = []
        for ev in events:
            row: dict[str, Any] = {
                "id": ev.id,
                "ch": ev.channel,
                "from": ev.sender or "",
                "refs": thread_refs(ev),
                "raw": msgpack.packb(event_wire(ev)),
            }
            for name, value in (("cid", ev.customer_id), ("site", ev.site)):
                if value is not None:
                    row[name] = value
            if ev.message_id:
                row["mid"] = ev.message_id
            rows.append(row)
        args = {"dd": self.dedupe_s, "ts": self.thread_s, "at": iso(now_ms), "ev": rows}
        result = await self._eval("ingest", args)
        return [
            Ingested(ev.id, conv, cust, duplicate=bool(dup))
            for ev, (conv, cust, dup) in zip(events, result, strict=True)
        ]

    async def _read(
        self, stream: str, consumer: str, count: int, block_ms: int
    ) -> list[tuple[Any, dict[bytes, Any], bool]]:
        """read.lua on `stream` ('log' or 'out'), then one blocking read when it found nothing:
        [(id, fields, read before)], deleted entries left out."""
        await self._redis()
        mark = (stream, consumer)
        own = mark in self._own
        self._own.discard(mark)  # until a takeover, a fence or a failure says otherwise
        args = {"c": consumer, "n": count, "idle": self.claim_idle_ms, "own": int(own)}
        args["s"] = stream
        try:
            read = self._scripts["read"].script
            reclaimed, raw = await read(keys=[self._anchor], args=[self._prefix, _pack(args)])
        except aioredis.ResponseError as exc:
            self._own.add(mark)
            if "NOGROUP" in str(exc):  # Redis lost the group (restart without persistence)
                self._group_ready = False
            raise
        except BaseException:
            self._own.add(mark)  # what the script read is this consumer's now
            raise
        if own and int(reclaimed) >= count:
            self._own.add(mark)  # its own pending may hold more
        entries = [(entry_id, _pairs(fields), i < reclaimed) for i, (entry_id, fields) in
                   enumerate(raw)]  # fmt: skip
        if not entries and block_ms > 0:
            assert self._blocking is not None
            group = GROUP if stream == "log" else SEND_GROUP
            reply = await self._blocking.xreadgroup(
                group, consumer, {self._key(stream): ">"}, count=count, block=block_ms
            )
            for _stream, items in reply or ():
                entries.extend((entry_id, dict(fields), False) for entry_id, fields in items)
        return [(entry_id, fields, again) for entry_id, fields, again in entries if fields]

    async def read_log(self, consumer: str, count: int, block_ms: int) -> list[LogEntry]:
        read = await self._read("log", consumer, count, block_ms)
        return [_entry(entry_id, fields, again) for entry_id, fields, again in read]

    def reread(self, consumer: str) -> None:
        self._own.add(("log", consumer))

    async def add_job(self, fields: Mapping[str, Any]) -> str:
        redis = await self._redis()
        job_id = await redis.xadd(self._key("out"), {"j": msgpack.packb(dict(fields))})
        return _text(job_id)

    async def read_jobs(self, consumer: str, count: int, block_ms: int) -> list[Job]:
        read = await self._read("out", consumer, count, block_ms)
        return [
            Job(_text(job_id), msgpack.unpackb(fields[b"j"], raw=False), again)
            for job_id, fields, again in read
        ]

    async def ack_jobs(self, job_ids: Sequence[str]) -> None:
        if not job_ids:
            return
        redis = await self._redis()
        async with redis.pipeline(transaction=True) as pipe:
            pipe.xack(self._key("out"), SEND_GROUP, *job_ids)
            pipe.xdel(self._key("out"), *job_ids)
            await pipe.execute()

    async def beat(self, node: str, token: str, ttl_ms: int, first: bool = False) -> Beat:
        args = {"n": node, "tok": token, "ttl": ttl_ms, "max": CLAIM_MAX, "first": int(first)}
        found = await self._eval("nodes", args)
        if first or found["claimed"]:  # first: a restart under the same name rereads its own
            self._own.update({("log", node), ("out", node)})
        return Beat(
            fenced=bool(found["fenced"]),
            clash=bool(found["clash"]),
            claimed=int(found["claimed"]),
            dead=tuple(found["dead"] or ()),
            orphans=tuple(found["orphans"] or ()),
        )

    async def desktop(self, agent: str, node: str, change: int, count: int | None = None) -> int:
        args: dict[str, Any] = {"a": agent, "n": node, "d": change}
        if count is not None:
            args["set"] = count
        return int(await self._eval("desk", args))

    async def backlog(self) -> Backlog:
        """Entries no consumer has read yet and how long the oldest of them has waited, by
        Redis' own clock (entry ids are Redis milliseconds). Entries read and not yet
        acknowledged are in hand, not behind: a dead node's are reclaimed, not waited for."""
        redis = await self._redis()
        async with redis.pipeline(transaction=False) as pipe:
            pipe.xinfo_groups(self._log)
            pipe.xlen(self._log)
            pipe.time()
            groups, length, (now_s, now_us) = await pipe.execute()
        group = next((g for g in groups if _text(g.get("name", b"")) == GROUP), None)
        if group is None:
            return Backlog()
        read = group.get("entries-read")  # Redis 7: the group's read counter (nil if unknown)
        read = None if read is None else int(read)
        last = _text(group.get("last-delivered-id", b"0-0"))
        unread = await redis.xrange(self._log, min=f"({last}", count=1)
        if not unread:
            return Backlog(0, 0.0, read)
        oldest_ms = int(_text(unread[0][0]).split("-", 1)[0])
        count = int(length) - int(group.get("pending", 0))  # acked entries are deleted
        return Backlog(count, max(0.0, now_s + now_us / 1e6 - oldest_ms / 1000), read)

    async def ack_log(self, entry_ids: Sequence[str]) -> None:
        if not entry_ids:
            return
        redis = await self._redis()
        async with redis.pipeline(transaction=True) as pipe:
            pipe.xack(self._log, GROUP, *entry_ids)
            pipe.xdel(self._log, *entry_ids)
            await pipe.execute()

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
        assert self._pipeline is not None
        script = self._scripts["apply"]
        calls = [
            (
                script,
                (self._anchor, self._prefix, _pack(self._apply_args(e, now_ms, history_limit))),
            )
            for e in entries
        ]
        replies = await self._pipeline.many(calls)
        out: list[Applied | StoreError] = []
        for raw in replies:
            if isinstance(raw, Exception):
                raise raw
            try:
                out.append(self._applied(_result(msgpack.unpackb(raw, raw=False))))
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
        tail = [_interaction(rec) for rec in history]
        return _conversation(conv), self._seen(_customer(cust)), _interaction(ix), tail

    def _seen(self, customer: Customer) -> Customer:
        """Every customer record a reply carries refreshes the client-group cache."""
        if self._groups_live:
            self._remember_group(customer.id, customer.version, customer.client_group)
        return customer

    def _remember_group(self, customer: str, version: int, group: str) -> None:
        """Keep the group of the higher version (a reply that raced a change never undoes
        it); at `GROUP_CACHE` customers the oldest entry makes room."""
        cached = self._groups.get(customer)
        if cached is None or cached[0] < version:
            if cached is None and len(self._groups) >= GROUP_CACHE:
                self._groups.pop(next(iter(self._groups)))
            self._groups[customer] = (version, group)

    async def client_group(self, customer_id: str) -> str | None:
        if self._groups_live:
            cached = self._groups.get(customer_id)
            if cached is not None:
                return cached[1]
        customer = await self.customer(customer_id)
        return customer.client_group if customer is not None else None

    async def conversation(self, conversation_id: str) -> Conversation | None:
        raw = await (await self._redis()).get(self._key("cv", conversation_id))
        return _conversation(msgpack.unpackb(raw, raw=False)) if raw is not None else None

    async def history(self, customer_id: str, limit: int) -> list[Interaction]:
        if limit <= 0:
            return []
        items = await (await self._redis()).lrange(self._key("h", customer_id), -limit, -1)
        return [_interaction(msgpack.unpackb(raw, raw=False)) for raw in items]

    async def customer(self, customer_id: str) -> Customer | None:
        raw = await (await self._redis()).get(self._key("cu", customer_id))
        return self._seen(_customer(msgpack.unpackb(raw, raw=False))) if raw is not None else None

    async def _edit_customer(self, args: Mapping[str, Any]) -> Customer:
        result = await self._eval("customer", args)
        if "stale" in result:
            raise StaleVersion(self._seen(_customer(result["stale"])))
        return self._seen(_customer(result["ok"]))

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

    async def add_outbound(
        self,
        conversation_id: str,
        channel: str,
        body: str,
        agent: str,
        now_ms: int,
        send: bool = False,
    ) -> Interaction:
        args: dict[str, Any] = {"cv": conversation_id, "ch": channel, "body": body}
        args.update(agent=agent, at=iso(now_ms), send=int(send))
        return _interaction(await self._eval("outbound", args))

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

    async def push(
        self,
        frames: Sequence[tuple[str, Mapping[str, Any]]],
        states: Sequence[tuple[str, str, str | None]] = (),
        ack: Sequence[str] = (),
        to_holder: Sequence[tuple[str, Mapping[str, Any]]] = (),
        consumer: str | None = None,
    ) -> list[int]:
        if not frames and not states and not ack and not to_holder:
            return []
        packed = [[agent, msgpack.packb(dict(frame))] for agent, frame in frames]
        held = [[cv, msgpack.packb(dict(frame))] for cv, frame in to_holder]
        changes = [[cv, st, ag or ""] for cv, st, ag in states]
        for _cv, state, _ag in states:
            check_state(state)
        args = {
            "keep": max(self.outbox_keep, 1),
            "f": packed,
            "s": changes,
            "ack": list(ack),
            "h": held,
        }
        if consumer is not None and ack:
            order = sorted(ack, key=_stream_order)
            args.update(c=consumer, lo=order[0], hi=order[-1])
        seqs = await self._eval("push", args)
        return [int(seq) for seq in seqs]

    async def view(
        self, conversation_id: str, history_limit: int
    ) -> tuple[Conversation | None, Customer | None, list[Interaction]]:
        conv, customer, history = await self._eval(
            "view", {"cv": conversation_id, "hl": max(0, history_limit)}
        )
        return (
            _conversation(conv) if conv else None,
            self._seen(_customer(customer)) if customer else None,
            [_interaction(rec) for rec in history],
        )

    async def since(self, agent: str, seq: int) -> tuple[list[tuple[int, dict[str, Any]]], bool]:
        redis = await self._redis()
        async with redis.pipeline(transaction=True) as pipe:
            pipe.get(self._key("oseq", agent))
            pipe.xrange(self._key("obox", agent), min=str(seq + 1), max="+")
            head_raw, items = await pipe.execute()
        frames: list[tuple[int, dict[str, Any]]] = []
        for entry_id, fields in items:
            n = int(_text(entry_id).split("-", 1)[0])
            frames.append((n, {**msgpack.unpackb(fields[b"f"], raw=False), "seq": n}))
        return frames, recovered(frames, seq, int(head_raw or 0))

    async def head(self, agent: str) -> int:
        return int(await (await self._redis()).get(self._key("oseq", agent)) or 0)

    async def listen(self, agent: str, wake: Wake) -> None:
        self._wakes.setdefault(agent, []).append(wake)
        confirmed = self._confirmed.get(agent)
        if confirmed is None:
            confirmed = self._confirmed[agent] = asyncio.get_running_loop().create_future()
            # One at a time: concurrent first subscribes on a PubSub without a connection yet
            # would each open one, and all but the last would be orphaned (never woken).
            async with self._subscribing:
                if self._pubsub is None:
                    pubsub = (await self._redis()).pubsub()
                    await pubsub.connect()  # type: ignore[attr-defined]  # stubs predate it
                    self._pubsub = pubsub
                    await pubsub.subscribe(self._key("groups"))
                await self._pubsub.subscribe(self._key("wake", agent))
                if self._reader is None:
                    self._reader = asyncio.create_task(self._read_wakes())
        try:
            await asyncio.wait_for(asyncio.shield(confirmed), CONFIRM_S)
        except TimeoutError:
            log.warning("store.subscribe_unconfirmed", agent=agent)

    async def unlisten(self, agent: str, wake: Wake) -> None:
        wakes = self._wakes.get(agent, [])
        if wake in wakes:
            wakes.remove(wake)
        if wakes or agent not in self._wakes:
            return
        del self._wakes[agent]
        confirmed = self._confirmed.pop(agent, None)
        if confirmed is not None and not confirmed.done():
            confirmed.cancel()
        if self._pubsub is not None:
            await self._pubsub.unsubscribe(self._key("wake", agent))

    async def _read_wakes(self) -> None:
        """The one reader of this store's pub/sub connection: dispatch wakes to callbacks and
        keep the client-group cache true."""
        assert self._pubsub is not None
        channel_prefix = len(self._key("wake", ""))
        groups = self._key("groups").encode()
        lost = False
        while True:
            try:
                message = await self._pubsub.get_message(timeout=1.0)
            except (aioredis.ConnectionError, aioredis.TimeoutError, OSError) as exc:
                log.warning("store.wakes_lost", error=type(exc).__name__)
                lost = True
                self._groups_live = False  # changes may go unheard: read Redis until back
                self._groups.clear()
                await asyncio.sleep(0.5)
                continue
            if lost:
                lost = False
                await self._wake_all()
            if message is None:
                continue
            channel = message["channel"]
            if channel == groups:
                if message["type"] == "subscribe":
                    self._groups.clear()
                    self._groups_live = True
                elif message["type"] == "message":
                    self._group_changed(message["data"])
                continue
            agent = _text(channel)[channel_prefix:]
            if message["type"] == "subscribe":
                confirmed = self._confirmed.get(agent)
                if confirmed is not None and not confirmed.done():
                    confirmed.set_result(None)
            elif message["type"] == "message":
                frames = _wake_frames(message["data"])
                if not frames:
                    continue
                for wake in list(self._wakes.get(agent, ())):
                    await call_wake(wake, agent, frames[-1][0], frames)

    def _group_changed(self, data: bytes) -> None:
        customer, version, group = msgpack.unpackb(data, raw=False)
        self._remember_group(str(customer), int(version), str(group))

    async def _wake_all(self) -> None:
        for agent, wakes in list(self._wakes.items()):
            try:
                seq = await self.head(agent)
            except (aioredis.ConnectionError, aioredis.TimeoutError, OSError):
                return
            for wake in list(wakes):
                await call_wake(wake, agent, seq, [])


# -- coding -------------------------------------------------------------------------------------


def _pack(args: Mapping[str, Any]) -> bytes:
    """Script arguments: Redis's cmsgpack reads no bin type, so bytes go as (raw) str."""
    packed: bytes = msgpack.packb(dict(args), use_bin_type=False)
    return packed


def _wake_frames(data: bytes) -> FrameList:
    """A wake's payload, msgpack [[seq, frame msgpack], …], as (seq, frame with seq) pairs."""
    return [
        (int(seq), {**msgpack.unpackb(raw, raw=False), "seq": int(seq)})
        for seq, raw in msgpack.unpackb(data, raw=True)
    ]


def _result(result: Any) -> Any:
    """A script's reply, or its refusal raised as the matching `router.store` error."""
    if isinstance(result, dict) and "err" in result:
        code, msg = result["err"], str(result["msg"])
        if code == "customer":
            raise UnknownCustomer(msg)
        if code == "conversation":
            raise UnknownConversation(msg)
        if code == "fenced":
            raise Fenced(msg)
        raise StoreError(msg)
    return result


def _pairs(flat: Sequence[Any]) -> dict[bytes, Any]:
    """[field, value, field, value…] (a raw script reply) → dict; a deleted entry → {}."""
    if not flat:
        return {}
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _entry(entry_id: Any, fields: Mapping[bytes, Any], reclaimed: bool = False) -> LogEntry:
    event = event_from_wire(msgpack.unpackb(fields[b"e"], raw=False))
    return LogEntry(_text(entry_id), event, _text(fields[b"cv"]), _text(fields[b"cu"]), reclaimed)


def _stream_order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _customer(rec: Mapping[str, Any]) -> Customer:
    return Customer(
        id=rec["id"],
        version=int(rec["v"]),
        client_group=rec["grp"],
        site=rec.get("site") or None,
        profile=_map(rec.get("prof")),
        editable=_map(rec.get("ed")),
        messages_in=int(rec["ni"]),
        messages_out=int(rec["no"]),
        addresses=tuple(rec.get("addr") or ()),
        open_conversation=rec.get("open") or None,
    )


def _conversation(rec: Mapping[str, Any]) -> Conversation:
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


def _interaction(rec: Mapping[str, Any]) -> Interaction:
    return Interaction(
        id=rec["id"],
        conversation=rec["cv"],
        channel=rec["ch"],
        direction=rec["dir"],
        at=rec["at"],
        body=rec.get("body"),
        subject=rec.get("subj"),
        type=rec.get("type", "message"),
        meta=_map(rec.get("meta")),
    )
