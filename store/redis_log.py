"""The Redis store's streams: ingest into the log, the log and the outgoing jobs read through
their consumer groups, node leases with the takeover of dead nodes, and desktops per node.
`RedisStore` (in `store.redis`, which lists the keys) builds on `RedisLog`.

May import `queues`' Redis helpers, `store.redis_base` and below; never `router`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any

import msgpack
import redis.asyncio as aioredis

from queues.pipeline import GroupCommit
from store.common import check_batch, iso, thread_refs
from store.model import Backlog, Beat, InboundEvent, Ingested, Job, LogEntry
from store.redis_base import GROUP, SEND_GROUP, RedisBase
from store.redis_codec import as_text, event_wire, field_pairs, log_entry, pack_args

CLAIM_MAX = 1000  # log entries one beat claims per dead consumer (the next beat takes more)


class RedisLog(RedisBase):
    """The log, jobs, leases and desktops of `store.redis.RedisStore` (see `store.base.Store`)."""

    @cached_property
    def _ingesting(self) -> GroupCommit[tuple[InboundEvent, int], Ingested]:
        """Concurrent `ingest` callers share one script call (made on first use)."""
        return GroupCommit(self._ingest_group)

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
            read = self._rt.procedures["read"]  # on its own, not riding the pipeline
            reclaimed, raw = await read.call(self._rt.client, self._rt.args(pack_args(args)))
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
        entries = [(entry_id, field_pairs(fields), i < reclaimed) for i, (entry_id, fields) in
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
        return [log_entry(entry_id, fields, again) for entry_id, fields, again in read]

    def reread(self, consumer: str) -> None:
        self._own.add(("log", consumer))

    async def add_job(self, fields: Mapping[str, Any]) -> str:
        redis = await self._redis()
        job_id = await redis.xadd(self._key("out"), {"j": msgpack.packb(dict(fields))})
        return as_text(job_id)

    async def read_jobs(self, consumer: str, count: int, block_ms: int) -> list[Job]:
        read = await self._read("out", consumer, count, block_ms)
        return [
            Job(as_text(job_id), msgpack.unpackb(fields[b"j"], raw=False), again)
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
        group = next((g for g in groups if as_text(g.get("name", b"")) == GROUP), None)
        if group is None:
            return Backlog()
        read = group.get("entries-read")  # Redis 7: the group's read counter (nil if unknown)
        read = None if read is None else int(read)
        last = as_text(group.get("last-delivered-id", b"0-0"))
        unread = await redis.xrange(self._log, min=f"({last}", count=1)
        if not unread:
            return Backlog(0, 0.0, read)
        oldest_ms = int(as_text(unread[0][0]).split("-", 1)[0])
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
