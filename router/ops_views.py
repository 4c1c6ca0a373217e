"""What ops see: the rows of the engine's views (ids, states and counts, never customer
content) and the producer of `/v1/ops/stream`.

The stream has one producer per app (`OpsHub`): it reads one snapshot per interval, encodes it
once and hands the same text to every subscriber without waiting on any; a subscriber that
falls behind is dropped (close 4029, "reconnect after a back-off"). No aiohttp: the endpoints
and the socket that serve these are `router.ops`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import structlog

from queues.base import RoutingEngine
from queues.effects import QueueStats
from queues.views import AgentView
from router.clock import rfc3339
from router.errors import CLOSE_DRAINING, CLOSE_RATE_LIMITED
from router.metrics import Metrics

log = structlog.get_logger("omniroute.ops")

READ_TIMEOUT_S = 2.0  # one view read (snapshot, scrape) may take this long
BACKLOG = 2  # snapshots a subscriber may have unsent before it is dropped
SHUTDOWN_WAIT_S = 5.0  # close_all waits this long for every stream to close


# -- rows --------------------------------------------------------------------------------------


def queue_row(row: QueueStats) -> dict[str, Any]:
    """A queue as `/v1/queues` shows it (the contract's row, plus `answered_in_threshold`)."""
    return {
        "name": row.name,
        "waiting": row.waiting,
        "longest_wait_s": round(row.longest_wait_s, 3),
        "agents": {tier: dict(states) for tier, states in row.agents.items()},
        "offered": row.offered,
        "answered": row.answered,
        "abandoned": row.abandoned,
        "service_level": row.service_level,
        "answered_in_threshold": row.answered_in_threshold,
        "average_speed_of_answer_s": _rounded(row.average_speed_of_answer_s),
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def agent_row(view: AgentView) -> dict[str, Any]:
    """An agent as `/v1/agents` shows it: ids, tier, states and numbers — no names."""
    return {
        "id": view["id"],
        "tier": view["tier"],
        "state": view["state"],
        "chosen": view["chosen"],
        "capacity": dict(view["cap"]),
        "load": dict(view["load"]),
        "tasks": list(view.get("tasks", ())),
    }


async def read_views(engine: RoutingEngine) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Queue rows and agent rows, read concurrently within `READ_TIMEOUT_S`."""
    async with asyncio.timeout(READ_TIMEOUT_S):
        stats, views = await asyncio.gather(engine.queue_stats(), engine.agents())
    return [queue_row(s) for s in stats], [agent_row(v) for v in views]


# -- the stream's producer ---------------------------------------------------------------------


class Subscriber:
    """One stream socket's mailbox: encoded snapshots, then `None` when it must close."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=BACKLOG + 1)
        self.close_code = CLOSE_DRAINING

    def offer(self, frame: str) -> bool:
        """Hand a frame over without waiting; False when the subscriber is `BACKLOG` behind."""
        if self.queue.qsize() >= BACKLOG:
            return False
        self.queue.put_nowait(frame)
        return True

    def end(self, code: int) -> None:
        """Tell the socket to close with `code`; what it has not sent yet is discarded."""
        self.close_code = code
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)


class OpsHub:
    """One producer task per app: a snapshot per interval, encoded once, for every subscriber.

    The task runs only while someone subscribes. A new subscriber gets the latest snapshot at
    once (at most one interval old; its `at` says when it was taken), or the first one as soon
    as the producer has read it.
    """

    def __init__(self, engine: RoutingEngine, interval_s: float, metrics: Metrics) -> None:
        if interval_s <= 0:
            raise ValueError("snapshot_interval_s must be > 0")
        self.engine = engine
        self.interval_s = interval_s
        self.metrics = metrics
        self.subscribers: set[Subscriber] = set()
        self.snapshots = 0  # how many the producer has read (for tests and debugging)
        self._latest: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._empty = asyncio.Event()

    @property
    def closed(self) -> bool:
        return self._closed

    def subscribe(self) -> Subscriber:
        sub = Subscriber()
        if self._closed:
            sub.end(CLOSE_DRAINING)
            return sub
        self.subscribers.add(sub)
        self._empty.clear()
        if self._latest is not None:
            sub.offer(self._latest)
        if self._task is None:
            self._task = asyncio.create_task(self._produce(), name="omniroute.ops.snapshots")
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)
        if not self.subscribers:
            self._empty.set()

    async def _produce(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self.subscribers:
                started = loop.time()
                frame = await self._snapshot()
                if frame is not None:
                    self._latest = frame
                    for sub in list(self.subscribers):
                        if not sub.offer(frame):
                            self._drop(sub)
                await asyncio.sleep(max(0.0, self.interval_s - (loop.time() - started)))
        finally:
            self._task = None
            self._latest = None

    async def _snapshot(self) -> str | None:
        at = self.engine.clock()
        try:
            queues, agents = await read_views(self.engine)
        except Exception as exc:  # the engine is down: keep the sockets, try next interval
            log.warning("ops.snapshot_failed", error=type(exc).__name__)
            return None
        self.snapshots += 1
        frame = {"type": "snapshot", "at": rfc3339(at), "queues": queues, "agents": agents}
        return json.dumps(frame, separators=(",", ":"))

    def _drop(self, sub: Subscriber) -> None:
        self.unsubscribe(sub)
        sub.end(CLOSE_RATE_LIMITED)
        self.metrics.dropped("ops")
        log.info("ops.stream_dropped", reason="slow", backlog=BACKLOG)

    async def close(self) -> None:
        """Stop the producer and close every stream (4000, "reconnect to any node"); waits at
        most `SHUTDOWN_WAIT_S` for the sockets to finish their close handshakes."""
        self._closed = True
        for sub in list(self.subscribers):
            sub.end(CLOSE_DRAINING)
        if self.subscribers:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SHUTDOWN_WAIT_S):
                    await self._empty.wait()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
