"""The background loops of one node: the log consumer, the engine ticker, the backlog sampler,
and the start and bounded stop of those and of the lease and reply loops.

`NodeLoops` owns the `stopping` event every loop watches, so one `stop` ends them all: the
consumer finishes the batch it holds (a batch half routed would come again, but later), and
what does not end within the drain is cancelled. The work each loop does is elsewhere —
`Service.process_batch` (router.inbound), `Service.apply_effects`, `Liveness.run`,
`Replies.run`, `Admission.sample`; this module is only their rhythm and their errors.

Imports `store.errors` and, for types, `router.service`; no aiohttp.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import structlog

from store.errors import Fenced

if TYPE_CHECKING:
    from router.service import Service

log = structlog.get_logger("omniroute.service")


class NodeLoops:
    """See the module docstring; one per `Service`."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.stopping = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()
        self._consuming = False
        self._consumer: asyncio.Task[None] | None = None

    def run(self) -> None:
        """Start the loops of a node: the log consumer, the engine ticker, the lease, the
        replies, the campaigns and (with a bound on the backlog) the backlog sampler."""
        svc = self.service
        self._consumer = asyncio.create_task(self.run_consumer())
        loops = [
            self._consumer,
            asyncio.create_task(self.run_ticker()),
            asyncio.create_task(svc.liveness.run(self.stopping)),
            asyncio.create_task(svc.replies.run(self.stopping)),
            asyncio.create_task(svc.campaigns.run(self.stopping)),  # router.campaigns
        ]
        if svc.max_backlog_s:
            loops.append(asyncio.create_task(self.run_backlog()))
        for task in loops:
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def stop(self, drain_s: float) -> None:
        """Stop the loops after the batch in hand (bounded by `drain_s`), then cancel the rest."""
        self.stopping.set()
        if self._consumer is not None and not self._consuming:
            self._consumer.cancel()  # idle in a blocking read: nothing in hand to finish
        loops = list(self._background)
        if loops:
            _done, pending = await asyncio.wait(loops, timeout=drain_s)
            for task in pending:
                task.cancel()
        for task in loops:
            task.cancel()
        for task in loops:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def run_backlog(self, interval_s: float = 0.2) -> None:
        """Sample the log's backlog (one pipeline on Redis) until stopped; ingest reads it."""
        svc = self.service
        while not self.stopping.is_set():
            try:
                backlog = await svc.store.backlog()
                svc.admission.sample(backlog)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store is down: ingest will say so by itself
                log.debug("backlog.unknown", error=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), interval_s)

    async def run_consumer(self, batch: int = 100, block_ms: int = 500) -> None:
        """Consume the log until stopped: process each entry, acknowledge it after. A blocking
        read waits at most `block_ms`, so entries taken over from a dead node (read first) wait
        no longer than that."""
        svc = self.service
        while not self.stopping.is_set():
            try:
                entries = await svc.store.read_log(svc.node, batch, block_ms)
                self._consuming = True  # stop() lets a batch in hand finish
                if entries:
                    await svc.process_batch(entries)
            except asyncio.CancelledError:
                raise
            except Fenced as exc:  # presumed dead meanwhile: what is still ours comes again
                log.warning("consumer.fenced", node=svc.node, reason=str(exc))
                svc.store.reread(svc.node)
            except Exception as exc:  # keep consuming; what it still holds is retried
                log.error("consumer.failed", node=svc.node, error=type(exc).__name__)
                svc.store.reread(svc.node)
                await asyncio.sleep(0.5)
                with contextlib.suppress(Exception):
                    await svc.store.start()  # idempotent; re-creates a lost consumer group
            finally:
                self._consuming = False

    async def run_ticker(self, interval_s: float = 0.25) -> None:
        """Fire the engine's timers until stopped (offer time-outs, wrap-up ends, levels)."""
        svc = self.service
        while not self.stopping.is_set():
            try:
                effects = await svc.engine.tick()
                await svc.apply_effects(effects)
                if effects:
                    continue  # more may be due: tick again at once
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("ticker.failed", node=svc.node, error=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), interval_s)
