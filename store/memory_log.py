"""The memory store's streams: the event log handed out through one consumer group, outgoing
jobs, node leases with the takeover of dead nodes, desktops per node, and the per-agent
outboxes with their listeners. `MemoryStore` (in `store.memory`, whose docstring lists the
decisions) builds on `MemoryLog` and reaches into this state where one call spans both:
ingest appends to the log; push checks and acknowledges the entries it finishes and appends to
the outboxes.

May import `store.base`, `store.common` and `store.model`; never `router`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from store.base import Store
from store.common import recovered
from store.model import Backlog, Beat, Job, LogEntry, Wake


class MemoryLog(Store):
    """The log, jobs, leases, desktops and outboxes of `store.memory.MemoryStore` (see
    `store.base.Store`)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._ids = {name: itertools.count(1) for name in ("cu", "cv", "ix", "log", "job")}
        self._entries: dict[str, LogEntry] = {}
        self._accepted_ms: dict[str, int] = {}  # entry → when it was accepted, oldest first
        self._new: deque[str] = deque()
        self._read_total = 0  # entries taken from `_new`, ever: `Backlog.read`
        self._pending: dict[str, tuple[str, int]] = {}
        self._own: set[str] = set()  # consumers that read their own pending entries first
        self._arrived: asyncio.Event | None = None
        self._jobs: dict[str, Job] = {}  # outgoing jobs not yet done, oldest first
        self._job_holder: dict[str, tuple[str, int]] = {}  # job → (consumer, since ms)
        self._own_jobs: set[str] = set()
        self._job_arrived: asyncio.Event | None = None
        self._leases: dict[str, tuple[str, int]] = {}  # node → (token, expires ms)
        self._desks: dict[str, dict[str, int]] = {}  # agent → node → desktops
        self._outboxes: dict[str, deque[tuple[int, dict[str, Any]]]] = {}
        self._heads: dict[str, int] = {}
        self._listeners: dict[str, list[Wake]] = {}

    def _next(self, counter: str) -> int:
        return next(self._ids[counter])

    # -- the log ---------------------------------------------------------------------------------

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

    # -- outboxes: what `push` (in `store.memory`) appended ------------------------------------

    async def since(self, agent: str, seq: int) -> tuple[list[tuple[int, dict[str, Any]]], bool]:
        box: Iterable[tuple[int, dict[str, Any]]] = self._outboxes.get(agent, ())
        frames = [(n, dict(frame)) for n, frame in box if n > seq]
        return frames, recovered(frames, seq, self._heads.get(agent, 0))

    async def head(self, agent: str) -> int:
        return self._heads.get(agent, 0)

    async def listen(self, agent: str, wake: Wake) -> None:
        self._listeners.setdefault(agent, []).append(wake)

    async def unlisten(self, agent: str, wake: Wake) -> None:
        wakes = self._listeners.get(agent, [])
        if wake in wakes:
            wakes.remove(wake)
        if not wakes:
            self._listeners.pop(agent, None)
