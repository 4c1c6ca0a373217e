"""Priority: policy rules give points; a point buys `priority_step_s` (30 s) of head start."""

from __future__ import annotations

from typing import Any

import pytest

from queues.base import RoutingEngine
from queues.effects import PresenceChanged
from queues.policy import Policy, PriorityRule
from tests.conformance.helpers import T0, agent, busy, offer, work
from tests.support import FakeClock


@pytest.mark.parametrize(
    ("attrs", "prio"),
    [
        ({}, 0),
        ({"top_up": True}, 2),
        ({"hot": True}, 1),
        ({"coins": 150}, 1),
        ({"coins": 99}, 0),
        ({"top_up": True, "hot": True, "coins": 100}, 4),
        ({"top_up": False, "hot": 0}, 0),
    ],
)
async def test_priority_comes_from_the_policy_rules(
    engine: RoutingEngine, attrs: dict[str, Any], prio: int
) -> None:
    await engine.enqueue("t1", "c1", "chat", attrs=attrs)
    view = await engine.task_view("t1")
    assert view is not None
    assert view["prio"] == prio


async def _first_taken(engine: RoutingEngine, clock: FakeClock) -> list[str]:
    """Let a one-chat agent pick from the line; return the tasks it is offered, in order."""
    await engine.login("x", "TRN", {"chat": 1})
    effects = await engine.set_presence("x", "available")
    return [e.task for e in work(effects)]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("later_after", "later_attrs", "first"),
    [
        (10, {"hot": True}, "late"),  # 1 point = 30 s head start: 10 s later overtakes
        (29, {"hot": True}, "late"),
        (30, {"hot": True}, "early"),  # equal rank: the earlier arrival wins
        (31, {"hot": True}, "early"),  # anti-starvation: beyond the head start, waiting wins
        (59, {"top_up": True}, "late"),  # 2 points = 60 s
        (61, {"top_up": True}, "early"),
        (0, {}, "early"),
    ],
)
async def test_priority_ordering_and_the_anti_starvation_bound(
    engine: RoutingEngine,
    clock: FakeClock,
    later_after: float,
    later_attrs: dict[str, Any],
    first: str,
) -> None:
    await engine.enqueue("early", "c1", "chat")
    clock.advance(later_after)
    await engine.enqueue("late", "c2", "chat", attrs=later_attrs)
    clock.advance(1)
    assert await _first_taken(engine, clock) == [first]


async def test_equal_rank_and_arrival_break_ties_by_task_id(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    await engine.enqueue("t2", "c2", "chat")
    await engine.enqueue("t1", "c1", "chat")
    assert await _first_taken(engine, clock) == ["t1"]


async def test_an_agent_takes_the_line_in_rank_order(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    await engine.enqueue("a", "c1", "chat")  # rank T0
    clock.advance(10)
    await engine.enqueue("b", "c2", "chat", attrs={"top_up": True})  # rank T0+10-60 = T0-50
    clock.advance(10)
    await engine.enqueue("c", "c3", "chat", attrs={"hot": True})  # rank T0+20-30 = T0-10
    clock.advance(10)
    await engine.enqueue("d", "c4", "chat")  # rank T0+30
    await engine.login("x", "TRN")
    assert await engine.set_presence("x", "available") == [
        PresenceChanged("x", "available"),
        offer("b", "x", T0 + 30),
        busy("x"),
        offer("c", "x", T0 + 30),
        offer("a", "x", T0 + 30),
    ]
    view = await engine.task_view("d")
    assert view is not None
    assert view["state"] == "queued"


async def test_rank_compares_across_channels(engine: RoutingEngine, clock: FakeClock) -> None:
    await engine.enqueue("mail", "c1", "email")
    clock.advance(5)
    await engine.enqueue("chat", "c2", "chat")
    clock.advance(5)
    await engine.enqueue("text", "c3", "sms", attrs={"hot": True})
    await engine.login("x", "TRN", {"chat": 1, "sms": 1, "email": 1, "voice": 0})
    assert work(await engine.set_presence("x", "available")) == [
        offer("text", "x", T0 + 10, "sms"),
        offer("mail", "x", T0 + 10, "email"),
        offer("chat", "x", T0 + 10, "chat"),
    ]


async def test_priority_does_not_reorder_tiers_or_agents(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    await agent(engine, "b", "TRN")
    clock.advance(1)
    await agent(engine, "a", "TRN")
    # a high-priority task still goes to the longest-idle agent
    assert work(await engine.enqueue("t1", "c1", "chat", attrs={"top_up": True})) == [
        offer("t1", "b", T0 + 1)
    ]


async def test_custom_rules_and_clamping(make_engine, kind: str, clock: FakeClock) -> None:
    policy = Policy(
        priority_rules=(
            PriorityRule("vip", "eq", "gold", 500),
            PriorityRule("spam", "truthy", True, -3),
        ),
        priority_step_s=10.0,
    )
    engine = await make_engine(kind, policy)
    await engine.enqueue("gold", "c1", "chat", attrs={"vip": "gold"})
    await engine.enqueue("spam", "c2", "chat", attrs={"spam": 1})
    gold = await engine.task_view("gold")
    spam = await engine.task_view("spam")
    assert gold is not None and spam is not None
    assert (gold["prio"], spam["prio"]) == (100, -3)
    # negative priority: a normal task arriving 29 s later (< 3 * 10 s) overtakes it
    clock.advance(29)
    await engine.enqueue("plain", "c3", "chat")
    await engine.login("x", "TRN", {"chat": 2})
    assert [e.task for e in work(await engine.set_presence("x", "available"))] == [  # type: ignore[union-attr]
        "gold",
        "plain",
    ]
