"""Ops counters per queue (waiting, longest wait, offered, answered, abandoned, service level)
and agents per tier and state."""

from __future__ import annotations

import pytest

from queues.base import RoutingEngine
from queues.policy import CHANNELS
from tests.conformance.helpers import agent, agent_counts, offered, res_of, stats_row
from tests.support import FakeClock


async def test_empty_stats(engine: RoutingEngine) -> None:
    rows = await engine.queue_stats()
    assert [r.name for r in rows] == list(CHANNELS)
    for row in rows:
        assert (row.waiting, row.longest_wait_s, row.offered, row.answered) == (0, 0, 0, 0)
        assert (row.answered_in_threshold, row.abandoned) == (0, 0)
        assert row.service_level is None
        assert agent_counts(row) == {}


async def test_waiting_and_longest_wait(engine: RoutingEngine, clock: FakeClock) -> None:
    await engine.enqueue("t1", "c1", "chat")
    clock.advance(10)
    await engine.enqueue("t2", "c2", "chat")
    await engine.enqueue("m1", "c3", "email", "CSC")
    clock.advance(15)
    rows = await engine.queue_stats()
    chat, email = stats_row(rows, "chat"), stats_row(rows, "email")
    assert (chat.waiting, chat.longest_wait_s) == (2, 25.0)
    assert (email.waiting, email.longest_wait_s) == (1, 15.0)
    assert stats_row(rows, "voice").waiting == 0
    # an explicit moment
    chat = stats_row(await engine.queue_stats(now=clock.now + 5), "chat")
    assert chat.longest_wait_s == 30.0
    # the oldest leaves: the longest wait is the next one's
    await agent(engine, "a1", "TRN", {"chat": 1, "email": 0})
    chat = stats_row(await engine.queue_stats(), "chat")
    assert (chat.waiting, chat.longest_wait_s, chat.offered) == (1, 15.0, 1)


async def test_a_requeued_task_waits_since_it_first_arrived(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    res = await offered(engine, "a1", "TRN")
    clock.advance(8)
    await engine.reject(res, "a1")
    clock.advance(2)
    chat = stats_row(await engine.queue_stats(), "chat")
    assert (chat.waiting, chat.longest_wait_s, chat.offered) == (1, 10.0, 1)


async def test_answered_service_level_and_abandoned(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    await agent(engine, "a1", "TRN", {"chat": 1})
    await agent(engine, "a2", "TRN", {"chat": 0}, available=False)
    # answered in 20 s exactly: within the threshold
    res = res_of(await engine.enqueue("fast", "c1", "chat"), "fast")
    clock.advance(19.5)
    await engine.accept(res, "a1")
    await engine.complete("fast", "a1")
    await engine.wrapup_done("fast", "a1")
    # rejected, re-offered and answered 25 s after it first arrived: outside
    res = res_of(await engine.enqueue("slow", "c2", "chat"), "slow")
    clock.advance(5)
    await engine.reject(res, "a1")
    await engine.login("a2", "TRN", {"chat": 1})
    clock.advance(10)
    res = res_of(await engine.set_presence("a2", "available"), "slow")
    clock.advance(10)
    await engine.accept(res, "a2")
    # abandoned while offered to a1 (an offer, never answered)
    await engine.enqueue("gone", "c3", "chat")
    await engine.withdraw("gone")
    chat = stats_row(await engine.queue_stats(), "chat")
    assert (chat.offered, chat.answered, chat.answered_in_threshold, chat.abandoned) == (4, 2, 1, 1)
    assert chat.service_level == 1 / 3
    assert chat.average_speed_of_answer_s == pytest.approx((19.5 + 25) / 2)  # of the answered
    assert stats_row(await engine.queue_stats(), "sms").service_level is None
    assert stats_row(await engine.queue_stats(), "sms").average_speed_of_answer_s is None


async def test_answered_at_the_threshold_counts(engine: RoutingEngine, clock: FakeClock) -> None:
    await agent(engine, "a1", "TRN")
    await agent(engine, "a2", "TRN")
    res = res_of(await engine.enqueue("t1", "c1", "chat"), "t1")  # a1 first by id
    clock.advance(5)
    res = res_of(await engine.reject(res, "a1"), "t1")  # to a2 until T0+25
    clock.advance(15)
    await engine.accept(res, "a2")  # 20 s after arrival: within the threshold
    chat = stats_row(await engine.queue_stats(), "chat")
    assert (chat.answered, chat.answered_in_threshold) == (1, 1)
    res = res_of(await engine.enqueue("t2", "c2", "chat"), "t2")
    clock.advance(5)
    res = res_of(await engine.reject(res, "a1"), "t2")
    clock.advance(15.001)
    await engine.accept(res, "a2")
    chat = stats_row(await engine.queue_stats(), "chat")
    assert (chat.answered, chat.answered_in_threshold) == (2, 1)


async def test_agents_per_tier_and_state(engine: RoutingEngine, clock: FakeClock) -> None:
    await agent(engine, "t-av", "TRN")
    await agent(engine, "t-away", "TRN", available=False)
    await agent(engine, "t-off", "TRN")
    await engine.logout("t-off")
    await agent(engine, "p-busy", "PAM", {"voice": 0})
    await agent(engine, "s-wrap", "SAM", {"chat": 0})
    await engine.accept(res_of(await engine.enqueue("t1", "c1", "chat", "SIC"), "t1"), "p-busy")
    await engine.accept(res_of(await engine.enqueue("t2", "c2", "sms", "CSC"), "t2"), "s-wrap")
    await engine.complete("t2", "s-wrap")
    rows = await engine.queue_stats()
    assert agent_counts(stats_row(rows, "chat")) == {
        "TRN": {"available": 1, "away": 1},
        "PAM": {"busy": 1},
    }
    assert agent_counts(stats_row(rows, "sms")) == {
        "TRN": {"available": 1, "away": 1},
        "PAM": {"busy": 1},
        "SAM": {"wrapup": 1},
    }
    assert agent_counts(stats_row(rows, "voice")) == {
        "TRN": {"available": 1, "away": 1},
        "SAM": {"wrapup": 1},
    }
    # changes follow the shown state
    await engine.wrapup_done("t2", "s-wrap")
    await engine.set_presence("t-away", "available")
    await engine.logout("t-av")
    rows = await engine.queue_stats()
    assert agent_counts(stats_row(rows, "voice")) == {
        "TRN": {"available": 1},
        "SAM": {"available": 1},
    }
    # a presence expiry counts too
    clock.advance(61)
    await engine.tick()
    assert agent_counts(stats_row(await engine.queue_stats(), "email")) == {}


async def test_offered_counts_every_offer(engine: RoutingEngine, clock: FakeClock) -> None:
    await agent(engine, "a1", "TRN")
    await agent(engine, "a2", "TRN")
    res = await offered(engine, "a3", "TRN")
    effects = await engine.reject(res, "a1")
    clock.advance(21)
    for name in ("a1", "a2", "a3"):
        await engine.heartbeat(name)
    effects = await engine.tick()  # a2's offer times out → a3
    await engine.accept(res_of(effects, "t1"), "a3")
    chat = stats_row(await engine.queue_stats(), "chat")
    assert (chat.offered, chat.answered, chat.waiting) == (3, 1, 0)


async def test_agent_counts_follow_capacity_and_tier_changes(engine: RoutingEngine) -> None:
    await agent(engine, "x", "TRN", {"voice": 0})
    rows = await engine.queue_stats()
    assert agent_counts(stats_row(rows, "voice")) == {}
    assert agent_counts(stats_row(rows, "chat")) == {"TRN": {"available": 1}}
    await engine.login("x", "TRN", {"voice": 1})
    assert agent_counts(stats_row(await engine.queue_stats(), "voice")) == {"TRN": {"available": 1}}
    await engine.login("x", "CCS", {"voice": 1, "email": 0})
    rows = await engine.queue_stats()
    assert agent_counts(stats_row(rows, "chat")) == {"CCS": {"available": 1}}
    assert agent_counts(stats_row(rows, "email")) == {}
    await engine.logout("x")
    rows = await engine.queue_stats()
    assert [agent_counts(r) for r in rows] == [{}, {}, {}, {}]


async def test_held_tasks_count_as_waiting(engine: RoutingEngine, clock: FakeClock) -> None:
    await agent(engine, "last", "TRN", available=False)
    await engine.enqueue("t1", "c1", "chat", last_agent="last")
    clock.advance(4)
    chat = stats_row(await engine.queue_stats(), "chat")
    assert (chat.waiting, chat.longest_wait_s) == (1, 4.0)
