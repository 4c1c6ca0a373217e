"""Liveness: this node's lease, and the takeover of nodes that stopped renewing theirs.

Every node renews a lease in the store every quarter of `[events] lease_s` (`Store.beat`, one
script call on Redis). The same call takes over every node whose lease lapsed: the log entries
it had read and not finished become this node's (the consumer reads them before anything
new), its desktops are forgotten, and the agents it leaves connected nowhere are logged out
here, so their offers go to others at once instead of after the presence TTL. Work such a
node had assigned comes back after `[agent] release_after_s`, as for any agent gone offline.

A node that was only paused (SIGSTOP, a long GC, a frozen VM) finds on its next beat that its
lease had lapsed (`fenced`). What it was doing on stale state cannot land: a push that finishes
log entries it no longer holds is refused by the store (`Fenced`), and the engine's decisions
are atomic against the state they read. It registers its desktops again and goes on.

`docs/reliability.md` has the figures; `tests/test_liveness.py` kills and pauses real nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from typing import TYPE_CHECKING

import structlog

from queues.errors import RoutingError
from store.model import Beat

if TYPE_CHECKING:
    from router.service import Service

log = structlog.get_logger("omniroute.liveness")


class Liveness:
    """See the module docstring; one per `Service`."""

    def __init__(self, service: Service, lease_s: float) -> None:
        self.service = service
        self.lease_ms = max(500, round(lease_s * 1000))
        self.token = secrets.token_hex(8)  # this process: a restart under one name is another
        self.beats = 0
        self.took_over_ms = 0  # when this node last took another over (its clock)

    @property
    def interval_s(self) -> float:
        return self.lease_ms / 4000

    async def run(self, stopping: asyncio.Event) -> None:
        """Beat until `stopping` is set; a failed beat (the store is down) is logged and retried."""
        while not stopping.is_set():
            try:
                await self.beat()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("node.beat_failed", node=self.service.node, error=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.interval_s)

    async def beat(self) -> Beat:
        svc = self.service
        found = await svc.store.beat(svc.node, self.token, self.lease_ms, first=self.beats == 0)
        self.beats += 1
        if found.clash:
            log.error("node.name_clash", node=svc.node, hint="one [server] node name per process")
        if found.fenced:
            log.warning("node.fenced", node=svc.node, lease_ms=self.lease_ms)
            await self._register_again()
        if found.dead:
            self.took_over_ms = svc.now_ms()
            log.warning(
                "node.taken_over",
                node=svc.node,
                dead=list(found.dead),
                entries=found.claimed,
                orphans=len(found.orphans),
            )
        for agent in found.orphans:
            if agent in svc.identities:
                continue  # it has a desktop here (connected since): it stays
            try:
                await svc.apply_effects(await svc.engine.logout(agent))
            except RoutingError as exc:
                log.warning("node.orphan_logout_failed", agent=agent, code=exc.code)
        return found

    async def _register_again(self) -> None:
        """Presumed dead, this node's desktops were forgotten: count them again."""
        svc = self.service
        for agent, sessions in list(svc.desktops.items()):
            await svc.store.desktop(agent, svc.node, 0, count=sessions)
