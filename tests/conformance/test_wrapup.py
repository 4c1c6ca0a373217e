"""Complete and wrap-up: the capacity stays held for the channel's wrap-up time or until done."""

from __future__ import annotations

import pytest

from queues.base import RoutingEngine
from queues.effects import Assigned, AssignmentRevoked, PresenceChanged, TaskEnded
from queues.policy import Policy
from tests.conformance.helpers import T0, agent, busy, load, offer, pass_time, res_of, work
from tests.support import FakeClock


async def _assigned(engine: RoutingEngine, task: str, agent_id: str, channel: str = "chat") -> None:
    res = res_of(await engine.enqueue(task, f"cust-{task}", channel), task)
    assert await engine.accept(res, agent_id) == [Assigned(task, agent_id, channel)]


async def test_complete_starts_wrapup_holding_capacity(engine: RoutingEngine) -> None:
    await agent(engine, "a1", "TRN", {"chat": 1})
    await _assigned(engine, "t1", "a1")
    assert await engine.complete("t1", "a1") == [PresenceChanged("a1", "wrapup")]
    task = await engine.task_view("t1")
    assert task is not None
    assert (task["state"], task["agent"]) == ("wrapup", "a1")
    view = await engine.agent_view("a1")
    assert view is not None
    assert (view["state"], view["wrapups"], view["load"]["chat"]) == ("wrapup", 1, 1)
    assert await engine.enqueue("t2", "c2", "chat") == []


async def test_wrapup_with_other_work_stays_busy(engine: RoutingEngine) -> None:
    await agent(engine, "a1", "TRN")
    await _assigned(engine, "t1", "a1")
    await _assigned(engine, "t2", "a1")
    assert await engine.complete("t1", "a1") == []
    view = await engine.agent_view("a1")
    assert view is not None
    assert (view["state"], view["wrapups"]) == ("busy", 1)
    # all it holds is in wrap-up: shown wrapup
    assert await engine.complete("t2", "a1") == [PresenceChanged("a1", "wrapup")]


async def test_wrapup_done_ends_the_task_and_frees_the_slot(engine: RoutingEngine) -> None:
    await agent(engine, "a1", "TRN", {"chat": 1})
    await _assigned(engine, "t1", "a1")
    await engine.complete("t1", "a1")
    await engine.enqueue("t2", "c2", "chat")
    effects = await engine.wrapup_done("t1", "a1")
    assert work(effects) == [TaskEnded("t1", "a1", "completed"), offer("t2", "a1", T0)]
    assert await engine.task_view("t1") is None
    assert await load(engine, "a1") == {"chat": 1}
    view = await engine.agent_view("a1")
    assert view is not None
    assert (view["state"], view["wrapups"]) == ("busy", 0)


async def test_wrapup_done_shows_the_agent_available(engine: RoutingEngine) -> None:
    await agent(engine, "a1", "TRN")
    await _assigned(engine, "t1", "a1")
    await engine.complete("t1", "a1")
    effects = await engine.wrapup_done("t1", "a1")
    assert sorted(effects, key=repr) == sorted(
        [PresenceChanged("a1", "available"), TaskEnded("t1", "a1", "completed")], key=repr
    )
    # free_holder (and its touch) comes before the task's end (docs/routing.md, finish)
    assert effects == [PresenceChanged("a1", "available"), TaskEnded("t1", "a1", "completed")]


@pytest.mark.parametrize(
    ("channel", "wrap"), [("chat", 30), ("sms", 30), ("email", 60), ("voice", 60)]
)
async def test_wrapup_ends_by_itself_after_the_channel_time(
    engine: RoutingEngine, clock: FakeClock, channel: str, wrap: int
) -> None:
    await agent(engine, "a1", "TRN")
    await _assigned(engine, "t1", "a1", channel)
    await engine.complete("t1", "a1")
    assert await pass_time(engine, clock, wrap - 1, keep=["a1"], step=wrap - 1) == []
    clock.advance(1)
    await engine.heartbeat("a1")
    assert work(await engine.tick()) == [TaskEnded("t1", "a1", "completed")]
    assert await engine.task_view("t1") is None
    assert await load(engine, "a1") == {}


async def test_wrapup_end_by_tick_offers_waiting_work(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    await agent(engine, "a1", "TRN")
    await _assigned(engine, "call", "a1", "voice")
    await engine.complete("call", "a1")
    await engine.enqueue("call2", "c2", "voice")
    effects = await pass_time(engine, clock, 60, keep=["a1"])
    assert work(effects) == [
        TaskEnded("call", "a1", "completed"),
        offer("call2", "a1", T0 + 60, "voice"),
    ]
    assert effects[-1] == busy("a1")


async def test_zero_wrapup_finishes_at_once(make_engine, kind: str) -> None:
    engine = await make_engine(
        kind, Policy(wrapup_s={"chat": 0, "sms": 30, "email": 60, "voice": 60})
    )
    await agent(engine, "a1", "TRN", {"chat": 1})
    await _assigned(engine, "t1", "a1")
    await engine.enqueue("t2", "c2", "chat")
    assert work(await engine.complete("t1", "a1")) == [
        TaskEnded("t1", "a1", "completed"),
        offer("t2", "a1", T0),
    ]
    assert await engine.task_view("t1") is None


async def test_reclassify_ends_the_wrapup_of_a_holder_who_may_not_see_it(
    engine: RoutingEngine,
) -> None:
    """CSC is for SAM only: a TRN's wrap-up of that customer ends at once (the conversation
    leaves its desktop), a SAM's wrap-up of another customer going CSC too is left alone."""
    await agent(engine, "sam", "SAM")  # alone: normal work reaches it at once
    await _assigned(engine, "t2", "sam")
    await engine.complete("t2", "sam")
    await engine.set_presence("sam", "away")
    await agent(engine, "trn", "TRN")
    await _assigned(engine, "t1", "trn")
    await engine.complete("t1", "trn")
    assert await engine.reclassify("cust-t1", "CSC") == [
        AssignmentRevoked("t1", "trn", "reclassified"),
        PresenceChanged("trn", "available"),
        TaskEnded("t1", "trn", "completed"),
    ]
    assert await engine.reclassify("cust-t2", "CSC") == []
    after = await engine.dump()
    assert "t1" not in after["tasks"]
    assert (after["tasks"]["t2"]["state"], after["tasks"]["t2"]["agent"]) == ("wrapup", "sam")


async def test_wrapup_of_an_offline_agent_still_ends(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    await agent(engine, "a1", "TRN")
    await _assigned(engine, "t1", "a1")
    await engine.complete("t1", "a1")
    assert await engine.logout("a1") == [PresenceChanged("a1", "offline")]
    await engine.enqueue("t2", "c2", "chat")
    clock.advance(30)
    # the agent stays offline: the task ends, nothing new is offered
    assert await engine.tick() == [TaskEnded("t1", "a1", "completed")]
    view = await engine.agent_view("a1")
    assert view is not None
    assert (view["state"], view["wrapups"], any(view["load"].values())) == ("offline", 0, False)


async def test_an_agent_back_from_offline_with_work_shows_its_choice(
    engine: RoutingEngine,
) -> None:
    await agent(engine, "a1", "TRN")
    await _assigned(engine, "t1", "a1")
    await engine.logout("a1")
    assert await engine.login("a1", "TRN") == [PresenceChanged("a1", "away")]
    assert await engine.set_presence("a1", "available") == [PresenceChanged("a1", "busy")]
