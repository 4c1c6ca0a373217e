"""Identifiers are opaque strings: separators, braces, digits, unicode and clashing names work."""

from __future__ import annotations

import pytest

from queues.base import RoutingEngine
from queues.effects import Assigned, OfferRevoked, PresenceChanged, TaskEnded
from tests.conformance.helpers import T0, agent, busy, offer, res_of, work
from tests.support import FakeClock

ODD = [
    "whatsapp:+447700900123|chat{1}",
    "R1",
    "42",
    "tâche é 🚀",
    "a" * 200,
    "*",
    "-1",
]


@pytest.mark.parametrize("name", ODD, ids=[f"id{n}" for n in range(len(ODD))])
async def test_a_full_flow_with_odd_ids(engine: RoutingEngine, clock: FakeClock, name: str) -> None:
    await agent(engine, name, "SAM")
    effects = await engine.enqueue(name, name, "chat", "CSC", last_agent=name)
    assert effects == [offer(name, name, T0), busy(name)]
    assert await engine.accept(res_of(effects, name), name) == [Assigned(name, name, "chat")]
    assert await engine.complete(name, name) == [PresenceChanged(name, "wrapup")]
    clock.advance(30)
    await engine.heartbeat(name)
    assert await engine.tick() == [
        PresenceChanged(name, "available"),
        TaskEnded(name, name, "completed"),
    ]
    assert await engine.task_view(name) is None
    view = await engine.agent_view(name)
    assert view is not None
    assert view["id"] == name


async def test_agents_tasks_and_customers_may_share_names(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    # an agent "R1", a task "R1" and the first reservation (also "R1" on most engines)
    await agent(engine, "R1", "TRN", {"chat": 1})
    await agent(engine, "x", "TRN", {"chat": 1}, available=False)
    effects = await engine.enqueue("R1", "R1", "chat", last_agent="R1")
    res = res_of(effects, "R1")
    assert work(effects) == [offer("R1", "R1", T0)]
    clock.advance(1)
    await engine.enqueue("x", "x", "chat", last_agent="x")  # held for x
    await engine.enqueue("R2", "R1", "chat")  # customer R1's second task
    clock.advance(20)
    await engine.heartbeat("x")
    assert work(await engine.tick()) == [OfferRevoked(res, "R1", "R1", "timeout")]
    assert await engine.reclassify("R1", "SIC") == []
    dump = await engine.dump()
    assert {t: (v["group"], v["state"]) for t, v in dump["tasks"].items()} == {
        "R1": ("SIC", "queued"),
        "R2": ("SIC", "queued"),
        "x": ("normal", "queued"),
    }
    assert dump["tasks"]["x"]["held_for"] == ""  # the preference ended at T0+6
    assert await engine.set_presence("x", "available") == [
        PresenceChanged("x", "available"),
        offer("x", "x", T0 + 21),
        busy("x"),
    ]
