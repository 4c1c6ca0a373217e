"""Helpers shared by the conformance tests (no engine logic: setup and comparison only)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from queues.base import RoutingEngine
from queues.effects import Effect, Offer, OfferRevoked, PresenceChanged
from tests.support import EPOCH, FakeClock

T0 = EPOCH
T0_MS = int(T0 * 1000)
RES_TIMEOUT = 20.0


class _AnyReservation:
    """Equal to any reservation id of the form R<n>."""

    _pattern = re.compile(r"^R[0-9]+$")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and bool(self._pattern.match(other))

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return "R<n>"


ANY_RES: Any = _AnyReservation()


def offer(task: str, agent: str, at: float, channel: str = "chat", timeout: float = 20.0) -> Offer:
    """The offer effect expected for `task` to `agent` made at `at` (any reservation id)."""
    return Offer(ANY_RES, task, agent, channel, at + timeout)


def busy(agent: str) -> PresenceChanged:
    return PresenceChanged(agent, "busy")


def shown(agent: str, state: str) -> PresenceChanged:
    return PresenceChanged(agent, state)


def timed_out(reservation: str, task: str, agent: str) -> OfferRevoked:
    """The offer revoked at its deadline, unanswered."""
    return OfferRevoked(reservation, task, agent, "timeout")


def handed_on(freed: str, task: str, to: str, at: float) -> list[Effect]:
    """`freed` lets go of its work and `task` goes at once to `to`, filling its last slot:
    `freed` shows available, `task` is offered to `to` at `at`, `to` shows busy."""
    return [shown(freed, "available"), offer(task, to, at), busy(to)]


def work(effects: Iterable[Effect]) -> list[Effect]:
    """The effects without presence changes (for tests where presence is not the point)."""
    return [e for e in effects if not isinstance(e, PresenceChanged)]


def presences(effects: Iterable[Effect]) -> list[PresenceChanged]:
    return [e for e in effects if isinstance(e, PresenceChanged)]


def offers(effects: Iterable[Effect]) -> list[Offer]:
    return [e for e in effects if isinstance(e, Offer)]


def res_of(effects: Sequence[Effect], task: str) -> str:
    """The reservation id of the (last) offer of `task` among `effects`."""
    found = [e.reservation for e in effects if isinstance(e, Offer) and e.task == task]
    assert found, f"no offer of {task} in {effects}"
    return found[-1]


def nonzero(mapping: Mapping[str, int]) -> dict[str, int]:
    return {k: int(v) for k, v in mapping.items() if v}


async def agent(
    engine: RoutingEngine,
    agent_id: str,
    tier: str,
    capacity: Mapping[str, int] | None = None,
    *,
    available: bool = True,
) -> list[Effect]:
    """Log an agent in (away) and, unless told otherwise, make it available."""
    effects = await engine.login(agent_id, tier, capacity)
    if available:
        effects += await engine.set_presence(agent_id, "available")
    return effects


async def offered(engine: RoutingEngine, agent_id: str, tier: str) -> str:
    """An available agent of `tier` (default capacity), and t1 (customer c1, chat) offered to
    it at once: the reservation."""
    await agent(engine, agent_id, tier)
    return res_of(await engine.enqueue("t1", "c1", "chat"), "t1")


async def holding_with_next_waiting(
    engine: RoutingEngine, clock: FakeClock, agent_id: str, tier: str = "TRN"
) -> str:
    """`agent_id`, with one chat slot, is offered t1 at T0; t2 waits behind it from T0 + 1 s.
    The reservation of t1."""
    await agent(engine, agent_id, tier, {"chat": 1})
    res = res_of(await engine.enqueue("t1", "c1", "chat"), "t1")
    clock.advance(1)
    await engine.enqueue("t2", "c2", "chat")
    return res


async def offered_with_another_free(engine: RoutingEngine, clock: FakeClock) -> str:
    """a1 (TRN) is available from T0 and a2 (TRN) from T0 + 1 s; t1 (customer c1, chat),
    enqueued then, is offered to a1, who idled longer, and a2 is free to take it next. The
    reservation of t1."""
    await agent(engine, "a1", "TRN")
    clock.advance(1)
    await agent(engine, "a2", "TRN")
    return res_of(await engine.enqueue("t1", "c1", "chat"), "t1")


async def state_of(engine: RoutingEngine, task: str) -> str | None:
    view = await engine.task_view(task)
    return None if view is None else str(view["state"])


async def holder(engine: RoutingEngine, task: str) -> str | None:
    view = await engine.task_view(task)
    return None if view is None else str(view["agent"])


async def load(engine: RoutingEngine, agent_id: str) -> dict[str, int]:
    view = await engine.agent_view(agent_id)
    assert view is not None
    return nonzero(view["load"])


async def presence_of(engine: RoutingEngine, agent_id: str) -> tuple[str, str]:
    """The agent's chosen and shown state."""
    view = await engine.agent_view(agent_id)
    assert view is not None
    return view["chosen"], view["state"]


async def pass_time(
    engine: RoutingEngine,
    clock: FakeClock,
    seconds: float,
    keep: Sequence[str] = (),
    step: float = 30.0,
) -> list[Effect]:
    """Let time pass in steps, heart-beating the `keep` agents and ticking after each step."""
    effects: list[Effect] = []
    remaining = seconds
    while remaining > 0:
        delta = min(step, remaining)
        clock.advance(delta)
        remaining -= delta
        for agent_id in keep:
            await engine.heartbeat(agent_id)
        effects += await engine.tick()
    return effects


def stats_row(rows: Sequence[Any], channel: str) -> Any:
    (row,) = [r for r in rows if r.name == channel]
    return row


def agent_counts(row: Any) -> dict[str, dict[str, int]]:
    """The `agents` of a stats row without zero counts or empty tiers."""
    out = {}
    for tier, states in row.agents.items():
        kept = nonzero(states)
        if kept:
            out[tier] = kept
    return out
