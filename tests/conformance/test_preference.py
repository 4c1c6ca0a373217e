"""The customer's last agent: preferred for `last_agent_s` (5 s), always within the hard filter."""

from __future__ import annotations

from queues.base import RoutingEngine
from queues.effects import PresenceChanged, TaskEnded
from queues.policy import Policy
from tests.conformance.helpers import (
    T0,
    agent,
    busy,
    handed_on,
    offer,
    pass_time,
    res_of,
    stats_row,
    work,
)
from tests.support import FakeClock


async def _task_fields(engine: RoutingEngine, task: str, *fields: str) -> tuple[object, ...]:
    view = await engine.task_view(task)
    assert view is not None
    return tuple(view[f] for f in fields)


async def test_the_last_agent_is_preferred_over_the_longest_idle(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    await agent(engine, "old", "TRN")
    clock.advance(1)
    await agent(engine, "last", "TRN")
    assert await engine.enqueue("t1", "c1", "chat", last_agent="last") == [
        offer("t1", "last", T0 + 1),
        busy("last"),
    ]
    assert await _task_fields(engine, "t1", "last", "held_for") == ("last", "")
    # without a preference the longest idle wins
    assert work(await engine.enqueue("t2", "c2", "chat")) == [offer("t2", "old", T0 + 1)]


async def test_the_preference_skips_the_levels_but_not_the_filter(engine: RoutingEngine) -> None:
    await agent(engine, "trn", "TRN")
    await agent(engine, "sam", "SAM")
    # normal work: SAM's level is 120 s away, but it was the customer's last agent
    assert work(await engine.enqueue("t1", "c1", "chat", last_agent="sam")) == [
        offer("t1", "sam", T0)
    ]


async def test_a_busy_last_agent_holds_the_task_until_free(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    await agent(engine, "other", "TRN")
    await agent(engine, "last", "TRN", {"chat": 1})
    res = res_of(await engine.enqueue("t0", "c0", "chat", last_agent="last"), "t0")
    await engine.accept(res, "last")
    # last is full: the task is held for it although "other" is free
    assert await engine.enqueue("t1", "c1", "chat", last_agent="last") == []
    assert await _task_fields(engine, "t1", "state", "held_for", "last", "agent") == (
        "queued",
        "last",
        "last",
        "",
    )
    row = stats_row(await engine.queue_stats(), "chat")
    assert row.waiting == 1
    # a held task is out of the line: another agent becoming available does not take it
    await engine.set_presence("other", "away")
    assert await engine.set_presence("other", "available") == [
        PresenceChanged("other", "available")
    ]
    clock.advance(2)
    await engine.complete("t0", "last")
    assert work(await engine.wrapup_done("t0", "last")) == [
        TaskEnded("t0", "last", "completed"),
        offer("t1", "last", T0 + 2),
    ]
    assert await _task_fields(engine, "t1", "held_for") == ("",)


async def test_the_hold_ends_with_the_preference(engine: RoutingEngine, clock: FakeClock) -> None:
    await agent(engine, "other", "TRN")
    await agent(engine, "last", "TRN", {"chat": 1})
    await engine.enqueue("t0", "c0", "chat", last_agent="last")
    await engine.enqueue("t1", "c1", "chat", last_agent="last")
    clock.advance(4.9)
    assert await engine.tick() == []
    clock.advance(0.2)
    assert await engine.tick() == [offer("t1", "other", T0 + 5.1), busy("other")]
    assert await _task_fields(engine, "t1", "last", "held_for") == ("", "")


async def test_an_away_last_agent_holds_the_task(engine: RoutingEngine, clock: FakeClock) -> None:
    await agent(engine, "other", "TRN")
    await agent(engine, "last", "TRN", available=False)
    assert await engine.enqueue("t1", "c1", "chat", last_agent="last") == []
    assert await _task_fields(engine, "t1", "held_for") == ("last",)
    clock.advance(3)
    # its held work comes first when it becomes available
    await engine.enqueue("t0", "c0", "chat", last_agent="nobody")  # to other
    assert await engine.set_presence("last", "available") == [
        PresenceChanged("last", "available"),
        offer("t1", "last", T0 + 3),
        busy("last"),
    ]


async def test_held_tasks_are_offered_in_arrival_order(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    await agent(engine, "last", "TRN", {"chat": 1}, available=False)
    await engine.enqueue("b", "c1", "chat", last_agent="last")
    clock.advance(1)
    await engine.enqueue("a", "c2", "chat", last_agent="last")
    assert work(await engine.set_presence("last", "available")) == [offer("b", "last", T0 + 1)]


async def test_an_offline_or_unknown_last_agent_is_ignored(engine: RoutingEngine) -> None:
    await agent(engine, "other", "TRN")
    await agent(engine, "gone", "TRN")
    await engine.logout("gone")
    assert work(await engine.enqueue("t1", "c1", "chat", last_agent="gone")) == [
        offer("t1", "other", T0)
    ]
    assert work(await engine.enqueue("t2", "c2", "chat", last_agent="ghost")) == [
        offer("t2", "other", T0)
    ]
    assert await _task_fields(engine, "t1", "last", "held_for") == ("", "")
    assert await _task_fields(engine, "t2", "last", "held_for") == ("", "")


async def test_a_forbidden_last_agent_is_never_used(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    await agent(engine, "trn", "TRN")
    # SIC work whose last agent is a TRN: neither offered to it nor held for it
    assert await engine.enqueue("t1", "c1", "chat", "SIC", last_agent="trn") == []
    assert await _task_fields(engine, "t1", "state", "last", "held_for") == ("queued", "", "")
    # not when it becomes available again, not after the preference, not after minutes
    await engine.set_presence("trn", "away")
    assert work(await engine.set_presence("trn", "available")) == []
    assert await pass_time(engine, clock, 200, keep=["trn"]) == []
    # a PAM gets it at once
    assert work(await agent(engine, "pam", "PAM")) == [offer("t1", "pam", T0 + 200)]


async def test_a_forbidden_last_agent_is_skipped_for_an_allowed_one(engine: RoutingEngine) -> None:
    await agent(engine, "trn", "TRN")
    await agent(engine, "sam", "SAM")
    assert work(await engine.enqueue("t1", "c1", "chat", "CSC", last_agent="trn")) == [
        offer("t1", "sam", T0)
    ]


async def test_a_last_agent_who_rejects_loses_the_preference(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    await agent(engine, "other", "TRN")
    clock.advance(1)
    await agent(engine, "last", "TRN")
    res = res_of(await engine.enqueue("t1", "c1", "chat", last_agent="last"), "t1")
    assert await engine.reject(res, "last") == handed_on("last", "t1", "other", T0 + 1)
    assert await _task_fields(engine, "t1", "last", "excluded") == ("", ["last"])


async def test_the_last_agent_logging_out_releases_its_holds(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    await agent(engine, "other", "TRN")
    await agent(engine, "last", "TRN", available=False)
    await engine.enqueue("t1", "c1", "chat", last_agent="last")
    clock.advance(2)
    await engine.set_presence("other", "away")
    await engine.set_presence("other", "available")
    # "other" was away for a moment: the task stayed held
    assert await _task_fields(engine, "t1", "held_for") == ("last",)
    assert await engine.logout("last") == [
        PresenceChanged("last", "offline"),
        offer("t1", "other", T0 + 2),
        busy("other"),
    ]


async def test_no_preference_when_the_policy_turns_it_off(make_engine, kind: str) -> None:
    engine = await make_engine(kind, Policy(last_agent_s=0))
    await agent(engine, "other", "TRN")
    await agent(engine, "last", "TRN", available=False)
    assert work(await engine.enqueue("t1", "c1", "chat", last_agent="last")) == [
        offer("t1", "other", T0)
    ]
    view = await engine.task_view("t1")
    assert view is not None
    assert (view["last"], view["held_for"]) == ("", "")


async def test_a_transfer_to_a_tier_drops_the_preference(engine: RoutingEngine) -> None:
    await agent(engine, "last", "TRN")
    res = res_of(await engine.enqueue("t1", "c1", "chat", last_agent="last"), "t1")
    await engine.accept(res, "last")
    await engine.transfer("t1", "last", to_tier="CCS")
    assert await _task_fields(engine, "t1", "last", "held_for", "restrict") == ("", "", "CCS")


async def test_held_work_comes_before_the_line(engine: RoutingEngine, clock: FakeClock) -> None:
    await agent(engine, "last", "TRN", {"chat": 1}, available=False)
    await engine.enqueue("old", "c0", "chat", attrs={"top_up": True})
    clock.advance(1)
    await engine.enqueue("mine", "c1", "chat", last_agent="last")
    assert work(await engine.set_presence("last", "available")) == [offer("mine", "last", T0 + 1)]
