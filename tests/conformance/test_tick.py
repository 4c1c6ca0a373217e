"""tick: presence expiry, reservation deadlines, wrap-up ends, preference ends, level timers."""

from __future__ import annotations

from queues.base import RoutingEngine
from queues.effects import OfferRevoked, PresenceChanged, TaskEnded
from tests.conformance.helpers import (
    T0,
    agent,
    busy,
    offer,
    offered,
    offers,
    res_of,
    timed_out,
    work,
)
from tests.support import FakeClock


async def test_tick_with_nothing_due(engine: RoutingEngine, clock: FakeClock) -> None:
    assert await engine.tick() == []
    await agent(engine, "a1", "TRN")
    await engine.enqueue("t1", "c1", "sms", "CSC")
    before = await engine.dump()
    clock.advance(10)
    assert await engine.tick() == []
    assert await engine.dump() == before


async def test_tick_accepts_an_explicit_now(engine: RoutingEngine) -> None:
    res = await offered(engine, "a1", "TRN")
    assert await engine.tick(now=T0 + 10) == []
    assert work(await engine.tick(now=T0 + 21)) == [timed_out(res, "t1", "a1")]


async def test_tick_limit_bounds_each_kind(engine: RoutingEngine, clock: FakeClock) -> None:
    await agent(engine, "a1", "TRN")
    await agent(engine, "a2", "CCS")
    effects = await engine.enqueue("t1", "c1", "chat")
    effects += await engine.enqueue("t2", "c2", "chat")
    effects += await engine.enqueue("t3", "c3", "chat")
    assert len(offers(effects)) == 3
    clock.advance(21)
    revoked = []
    for _ in range(3):
        step = await engine.tick(limit=1)
        got = [e for e in step if isinstance(e, OfferRevoked)]
        assert len(got) == 1
        revoked += got
    assert sorted(r.task for r in revoked) == ["t1", "t2", "t3"]
    assert {r.reason for r in revoked} == {"timeout"}
    assert await engine.tick(limit=1) == []


async def test_presence_expiry_comes_before_reservation_deadlines(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    await agent(engine, "a1", "TRN")
    clock.advance(45)
    res = res_of(await engine.enqueue("t1", "c1", "chat"), "t1")
    clock.advance(25)  # both a1's presence (T0+60) and the offer (T0+65) are due
    assert await engine.tick() == [
        PresenceChanged("a1", "offline"),
        OfferRevoked(res, "t1", "a1", "withdrawn"),
    ]
    view = await engine.task_view("t1")
    assert view is not None
    # withdrawn by the logout, not refused: no exclusion
    assert (view["state"], view["excluded"]) == ("queued", [])


async def test_one_tick_fires_every_kind_in_order(engine: RoutingEngine, clock: FakeClock) -> None:
    only_chat = {"chat": 1, "sms": 0, "email": 0, "voice": 0}
    only_sms = {"chat": 0, "sms": 1, "email": 0, "voice": 0}
    await agent(engine, "x", "TRN", available=False)  # presence expires at T0+60
    clock.advance(25)
    await agent(engine, "w", "TRN", only_chat)
    await engine.accept(res_of(await engine.enqueue("done", "c0", "chat"), "done"), "w")
    clock.advance(5)
    await engine.complete("done", "w")  # wrap-up ends at T0+60
    await agent(engine, "h", "CCS", only_chat, available=False)
    clock.advance(10)
    await agent(engine, "r", "CCS", only_sms)
    res = res_of(await engine.enqueue("sms", "c1", "sms"), "sms")  # deadline T0+60
    clock.advance(15)
    assert await engine.enqueue("pref", "c2", "chat", last_agent="h") == []  # held until T0+60
    clock.advance(6)
    effects = await engine.tick()
    assert effects[0] == PresenceChanged("x", "offline")
    assert work(effects) == [
        timed_out(res, "sms", "r"),
        TaskEnded("done", "w", "completed"),
        offer("pref", "w", T0 + 61),
    ]
    assert effects[-1] == busy("w")
    assert (await engine.agent_view("r"))["chosen"] == "away"  # type: ignore[index]


async def test_repeated_ticks_do_not_repeat_effects(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    await agent(engine, "a1", "TRN", {"chat": 1})
    await agent(engine, "a2", "TRN", {"chat": 1}, available=False)
    res = res_of(await engine.enqueue("t1", "c1", "chat"), "t1")
    clock.advance(21)
    await engine.heartbeat("a2")
    assert work(await engine.tick()) == [timed_out(res, "t1", "a1")]
    assert await engine.tick() == []
    assert await engine.tick() == []


async def test_a_late_tick_catches_up(engine: RoutingEngine, clock: FakeClock) -> None:
    await agent(engine, "trn", "TRN", available=False)
    await agent(engine, "pam", "PAM")
    await agent(engine, "sam", "SAM")
    await engine.enqueue("t1", "c1", "chat")
    for _ in range(2):
        clock.advance(50)
        for name in ("trn", "pam", "sam"):
            await engine.heartbeat(name)
    clock.advance(30)  # T0+130: the first tick, after both levels passed
    assert await engine.tick() == [offer("t1", "pam", T0 + 130), busy("pam")]


async def test_the_limit_applies_per_kind(engine: RoutingEngine, clock: FakeClock) -> None:
    await agent(engine, "w", "TRN", {"chat": 1, "sms": 0})
    await agent(engine, "r", "CCS", {"chat": 0, "sms": 2})
    await engine.accept(res_of(await engine.enqueue("done", "c0", "chat"), "done"), "w")
    await engine.complete("done", "w")  # wrap-up until T0+30
    clock.advance(15)
    await engine.heartbeat("w")
    await engine.heartbeat("r")
    r1 = res_of(await engine.enqueue("s1", "c1", "sms"), "s1")
    r2 = res_of(await engine.enqueue("s2", "c2", "sms"), "s2")
    clock.advance(21)  # T0+36: both offers (T0+35) and the wrap-up are due
    assert work(await engine.tick(limit=1)) == [
        timed_out(r1, "s1", "r"),
        TaskEnded("done", "w", "completed"),
    ]
    assert work(await engine.tick(limit=1)) == [timed_out(r2, "s2", "r")]
    assert await engine.tick(limit=1) == []
