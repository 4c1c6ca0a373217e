"""Withdrawal: the customer left before an agent took the task — abandoned."""

from __future__ import annotations

import pytest

from queues.base import RoutingEngine
from queues.effects import OfferRevoked, TaskEnded
from queues.errors import Conflict, NotFound
from tests.conformance.helpers import (
    T0,
    agent,
    busy,
    holding_with_next_waiting,
    offer,
    offered,
    res_of,
    shown,
    stats_row,
    work,
)
from tests.support import FakeClock


async def test_withdraw_a_queued_task(engine: RoutingEngine, clock: FakeClock) -> None:
    await engine.enqueue("t1", "c1", "chat")
    clock.advance(7)
    assert await engine.withdraw("t1") == [TaskEnded("t1", None, "abandoned")]
    assert await engine.task_view("t1") is None
    row = stats_row(await engine.queue_stats(), "chat")
    assert (row.waiting, row.abandoned, row.longest_wait_s) == (0, 1, 0)
    # gone from the line: a new agent gets nothing
    assert work(await agent(engine, "a1", "TRN")) == []


async def test_withdraw_a_reserved_task_revokes_the_offer(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    res = await offered(engine, "a1", "TRN")
    clock.advance(3)
    assert await engine.withdraw("t1") == [
        OfferRevoked(res, "t1", "a1", "withdrawn"),
        shown("a1", "available"),
        TaskEnded("t1", "a1", "abandoned"),
    ]
    view = await engine.agent_view("a1")
    assert view is not None
    assert not any(view["load"].values())
    with pytest.raises(NotFound):
        await engine.accept(res, "a1")
    assert await engine.tick() == []


async def test_withdraw_a_reserved_task_frees_the_agent_for_the_next(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    res = await holding_with_next_waiting(engine, clock, "a1")
    assert await engine.withdraw("t1") == [
        OfferRevoked(res, "t1", "a1", "withdrawn"),
        shown("a1", "available"),
        TaskEnded("t1", "a1", "abandoned"),
        offer("t2", "a1", T0 + 1),
        busy("a1"),
    ]


async def test_withdraw_a_held_task(engine: RoutingEngine) -> None:
    await agent(engine, "a1", "TRN", {"chat": 1})
    await engine.enqueue("t0", "c0", "chat")
    await engine.enqueue("t1", "c1", "chat", last_agent="a1")
    view = await engine.task_view("t1")
    assert view is not None and view["held_for"] == "a1"
    assert await engine.withdraw("t1") == [TaskEnded("t1", None, "abandoned")]
    row = stats_row(await engine.queue_stats(), "chat")
    assert (row.waiting, row.abandoned) == (0, 1)
    # no longer held: when a1 frees up it gets nothing
    await engine.withdraw("t0")
    view = await engine.agent_view("a1")
    assert view is not None
    assert (view["state"], any(view["load"].values())) == ("available", False)


async def test_withdraw_refuses_answered_work(engine: RoutingEngine) -> None:
    r1 = await offered(engine, "a1", "TRN")
    r2 = res_of(await engine.enqueue("t2", "c2", "chat"), "t2")
    await engine.accept(r1, "a1")
    await engine.accept(r2, "a1")
    await engine.complete("t2", "a1")
    before = await engine.dump()
    with pytest.raises(Conflict):
        await engine.withdraw("t1")
    with pytest.raises(Conflict):
        await engine.withdraw("t2")
    with pytest.raises(NotFound):
        await engine.withdraw("ghost")
    assert await engine.dump() == before


async def test_withdraw_after_an_answer_is_not_abandoned(engine: RoutingEngine) -> None:
    await agent(engine, "a1", "TRN")
    await engine.accept(res_of(await engine.enqueue("t1", "c1", "chat"), "t1"), "a1")
    await engine.transfer("t1", "a1", to_tier="PAM")  # nobody there: it waits
    assert await engine.withdraw("t1") == [TaskEnded("t1", None, "abandoned")]
    row = stats_row(await engine.queue_stats(), "chat")
    assert (row.answered, row.abandoned) == (1, 0)


async def test_a_withdrawn_task_id_can_be_used_again(engine: RoutingEngine) -> None:
    await engine.enqueue("t1", "c1", "chat")
    with pytest.raises(Conflict):
        await engine.enqueue("t1", "c1", "sms")
    await engine.withdraw("t1")
    assert await engine.enqueue("t1", "c1", "sms") == []
    view = await engine.task_view("t1")
    assert view is not None
    assert view["channel"] == "sms"


async def test_withdraw_clears_the_customer_index(engine: RoutingEngine) -> None:
    await engine.enqueue("t1", "c1", "chat")
    await engine.withdraw("t1")
    before = await engine.dump()
    assert await engine.reclassify("c1", "SIC") == []
    assert await engine.dump() == before
