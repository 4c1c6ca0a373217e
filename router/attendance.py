"""Attendance: which agents have a desktop on this node, and the timers of those who left.

The first desktop of an agent logs it in (away); a desktop that goes away lowers the count the
store keeps per node. When the agent's last desktop anywhere is gone, it goes offline after
`[agent] offline_grace_s` (a reconnect within the grace cancels that: a flaky network costs no
offers), and the work it was assigned goes back in line after `[agent] release_after_s`
unless it came back meanwhile. An agent that went offline without a socket here (its node
died, its presence expired) gets the same release timer (`watch_offline`). Heartbeats keep
every connected agent's presence alive in one engine call.

It works through its `Service` (engine, store, effects → frames). Imports `queues.errors`,
`router.errors` and `router.identity`; no aiohttp.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

import structlog

from queues.errors import RoutingError
from router.errors import ServiceError
from router.identity import AgentIdentity

if TYPE_CHECKING:
    from router.service import Service

log = structlog.get_logger("omniroute.service")


class Attendance:
    """See the module docstring; one per `Service`."""

    def __init__(
        self,
        service: Service,
        stopping: asyncio.Event,
        offline_grace_s: float,
        release_after_s: float,
    ) -> None:
        self.service = service
        self.offline_grace_s = offline_grace_s
        self.release_after_s = release_after_s
        self.identities: dict[str, AgentIdentity] = {}  # agents connected to this node
        self._stopping = stopping  # no new timers while the node stops
        self._sessions: dict[str, int] = {}
        self._away: dict[str, asyncio.Task[None]] = {}

    @property
    def desktops(self) -> dict[str, int]:
        """Agent → desktops connected to this node."""
        return dict(self._sessions)

    async def connect(self, identity: AgentIdentity) -> None:
        """A desktop connected: log the agent in (away) and cancel a pending disconnect."""
        svc = self.service
        pending = self._away.pop(identity.id, None)
        if pending is not None:
            pending.cancel()
        try:
            effects = await svc.engine.login(
                identity.id, identity.tier, identity.capacity, skills=identity.skills
            )
        except RoutingError as exc:
            raise ServiceError(exc.code, exc.message) from exc
        self._sessions[identity.id] = self._sessions.get(identity.id, 0) + 1
        self.identities[identity.id] = identity
        await svc.store.desktop(identity.id, svc.node, 0, count=self._sessions[identity.id])
        await svc.apply_effects(effects)
        log.info("agent.connected", agent=identity.id, tier=identity.tier, node=svc.node)

    async def disconnect(self, identity: AgentIdentity) -> None:
        """A desktop went away. With none left: offline after the grace, release later."""
        svc = self.service
        left = self._sessions.get(identity.id, 1) - 1
        if left > 0:
            self._sessions[identity.id] = left
            with contextlib.suppress(Exception):  # the count is refreshed on a fence
                await svc.store.desktop(identity.id, svc.node, 0, count=left)
            return
        self._sessions.pop(identity.id, None)
        self.identities.pop(identity.id, None)
        try:
            elsewhere = await svc.store.desktop(identity.id, svc.node, 0, count=0)
        except Exception:
            elsewhere = 0  # the store is down: the grace decides, as on one node
        if elsewhere:  # a desktop on another node keeps the agent online
            log.info("agent.disconnected", agent=identity.id, node=svc.node, elsewhere=elsewhere)
            return
        if not self._stopping.is_set() and identity.id not in self._away:
            self._away[identity.id] = asyncio.create_task(self._absent(identity.id))
        log.info("agent.disconnected", agent=identity.id, node=svc.node)

    async def _absent(self, agent: str, grace_s: float | None = None) -> None:
        """Offline after the grace (offers re-routed); assigned work re-queued after longer."""
        svc = self.service
        grace = self.offline_grace_s if grace_s is None else grace_s
        try:
            if grace_s is None:
                await asyncio.sleep(grace)
                if await svc.store.desktop(agent, svc.node, 0) > 0:
                    return  # connected on another node meanwhile: it stays online
                await svc.apply_effects(await svc.engine.logout(agent))
            await asyncio.sleep(max(0.0, self.release_after_s - grace))
            view = await svc.engine.agent_view(agent)
            if view is None or view["chosen"] != "offline":
                return  # it came back (on some node): its work stays with it
            for task_id in view["tasks"]:
                task = await svc.engine.task_view(task_id)
                if task is not None and task["state"] == "assigned":
                    with contextlib.suppress(RoutingError):
                        await svc.apply_effects(await svc.engine.release(task_id, agent))
        except RoutingError as exc:
            log.warning("agent.absent_failed", agent=agent, code=exc.code)
        finally:
            if self._away.get(agent) is asyncio.current_task():
                del self._away[agent]

    def watch_offline(self, agent: str) -> None:
        """An agent went offline without a socket on this node (e.g. its node died): give its
        assigned work back after `release_after_s`, unless it comes back meanwhile."""
        if agent in self._sessions or agent in self._away or self._stopping.is_set():
            return
        self._away[agent] = asyncio.create_task(self._absent(agent, grace_s=0.0))

    async def heartbeat_many(self, identities: Sequence[AgentIdentity]) -> None:
        """Keep every given agent's presence alive in one engine call; log in again those
        whose presence had expired."""
        svc = self.service
        results = await svc.engine.heartbeat_many([i.id for i in identities])
        for identity, result in zip(identities, results, strict=True):
            if isinstance(result, RoutingError):
                effects = await svc.engine.login(
                    identity.id, identity.tier, identity.capacity, skills=identity.skills
                )
                await svc.apply_effects(effects)

    async def stop(self) -> None:
        """Cancel every pending timer (the node is stopping) and wait until they are gone."""
        timers = list(self._away.values())
        for task in timers:
            task.cancel()
        for task in timers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._away.clear()
