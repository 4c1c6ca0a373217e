"""Release: an agent gives assigned work back; the `agents` view lists who holds what."""

from __future__ import annotations

import pytest

from queues.base import RoutingEngine
from queues.effects import Assigned, AssignmentRevoked
from queues.errors import Conflict, Forbidden, NotFound
from tests.conformance.helpers import T0, T0_MS, agent, busy, offer, res_of
from tests.support import FakeClock


async def test_release_requeues_with_its_waiting_time_and_offers_it_again(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    await agent(engine, "a", "CCS")
    effects = await engine.enqueue("t1", "c1", "chat")
    assert await engine.accept(res_of(effects, "t1"), "a") == [Assigned("t1", "a", "chat")]
    await agent(engine, "b", "TRN", available=False)
    clock.advance(30)
    await engine.set_presence("b", "available")
    await engine.set_presence("a", "away")
    effects = await engine.release("t1", "a")
    assert effects == [
        AssignmentRevoked("t1", "a", "released"),
        offer("t1", "b", T0 + 30),
        busy("b"),
    ]
    view = await engine.task_view("t1")
    assert view is not None
    assert (view["state"], view["agent"], view["enq_ms"]) == ("reserved", "b", T0_MS)


async def test_released_task_waits_in_line_when_nobody_is_free(engine: RoutingEngine) -> None:
    await agent(engine, "a", "CCS")
    effects = await engine.enqueue("t1", "c1", "chat")
    await engine.accept(res_of(effects, "t1"), "a")
    await engine.set_presence("a", "away")
    # already shown away, so no presence change; nobody else to offer it to
    assert await engine.release("t1", "a") == [AssignmentRevoked("t1", "a", "released")]
    view = await engine.task_view("t1")
    assert view is not None
    assert (view["state"], view["agent"]) == ("queued", "")
    stats = {row.name: row for row in await engine.queue_stats()}
    assert stats["chat"].waiting == 1


async def test_release_refusals_change_nothing(engine: RoutingEngine) -> None:
    await agent(engine, "a", "CCS")
    await agent(engine, "b", "CCS")
    effects = await engine.enqueue("t1", "c1", "chat")
    before = await engine.dump()
    with pytest.raises(NotFound):
        await engine.release("nope", "a")
    holder = effects[0].agent  # type: ignore[union-attr]
    other = "b" if holder == "a" else "a"
    with pytest.raises(Forbidden):
        await engine.release("t1", other)
    with pytest.raises(Conflict):
        await engine.release("t1", holder)  # reserved, not assigned
    assert await engine.dump() == before


async def test_agents_view_lists_every_agent_with_its_tasks(engine: RoutingEngine) -> None:
    assert await engine.agents() == []
    await agent(engine, "b", "PAM")
    await agent(engine, "a", "CCS")
    effects = await engine.enqueue("t1", "c1", "chat", group="SIC")
    assert [o.agent for o in effects if hasattr(o, "reservation")] == ["b"]
    views = await engine.agents()
    assert [v["id"] for v in views] == ["a", "b"]
    assert [v["tasks"] for v in views] == [[], ["t1"]]
    assert views[1] == await engine.agent_view("b")
