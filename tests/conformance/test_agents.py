"""Agents: login, presence, heartbeat, logout, presence expiry and the longest-idle order."""

from __future__ import annotations

import pytest

from queues.base import RoutingEngine
from queues.effects import Assigned, OfferRevoked, PresenceChanged, TaskEnded
from queues.errors import Conflict, NotFound
from tests.conformance.helpers import (
    ANY_RES,
    T0,
    T0_MS,
    agent,
    busy,
    offer,
    offered,
    presence_of,
    work,
)
from tests.support import FakeClock

DEFAULT_CAP = {"chat": 3, "sms": 3, "email": 5, "voice": 1}


async def test_login_creates_an_away_agent(engine: RoutingEngine) -> None:
    assert await engine.agent_view("a1") is None
    assert await engine.login("a1", "CCS") == [PresenceChanged("a1", "away")]
    view = await engine.agent_view("a1")
    assert view is not None
    assert view["id"] == "a1"
    assert view["tier"] == "CCS"
    assert view["chosen"] == "away"
    assert view["state"] == "away"
    assert dict(view["cap"]) == DEFAULT_CAP
    assert not any(view["load"].values())
    assert view["wrapups"] == 0
    assert view["idle_ms"] == T0_MS
    assert view["exp_ms"] == T0_MS + 60_000


async def test_login_stores_capacity_overrides(engine: RoutingEngine) -> None:
    await engine.login("a1", "TRN", {"chat": 1, "email": 0})
    view = await engine.agent_view("a1")
    assert view is not None
    assert dict(view["cap"]) == {"chat": 1, "sms": 3, "email": 0, "voice": 1}


async def test_second_login_keeps_the_chosen_state_and_refreshes_expiry(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    await agent(engine, "a1", "TRN")
    clock.advance(10)
    assert await engine.login("a1", "TRN") == []
    view = await engine.agent_view("a1")
    assert view is not None
    assert (view["chosen"], view["state"]) == ("available", "available")
    assert view["exp_ms"] == T0_MS + 70_000


async def test_login_may_change_tier_while_holding_nothing(engine: RoutingEngine) -> None:
    await agent(engine, "a1", "TRN")
    await engine.login("a1", "SAM")
    view = await engine.agent_view("a1")
    assert view is not None
    assert view["tier"] == "SAM"
    # the new tier is the one the hard filter sees
    assert await engine.enqueue("t1", "c1", "chat", "CSC") == [offer("t1", "a1", T0), busy("a1")]


@pytest.mark.parametrize("accepted", [False, True], ids=["reserved", "assigned"])
async def test_login_refuses_a_tier_change_while_holding_work(
    engine: RoutingEngine, accepted: bool
) -> None:
    await agent(engine, "a1", "PAM")
    effects = await engine.enqueue("t1", "c1", "chat", "SIC")
    if accepted:
        await engine.accept(effects[0].reservation, "a1")  # type: ignore[union-attr]
    before = await engine.dump()
    with pytest.raises(Conflict):
        await engine.login("a1", "TRN")
    assert await engine.dump() == before


async def test_presence_available_and_away(engine: RoutingEngine, clock: FakeClock) -> None:
    await engine.login("a1", "TRN")
    clock.advance(5)
    assert await engine.set_presence("a1", "available") == [PresenceChanged("a1", "available")]
    view = await engine.agent_view("a1")
    assert view is not None
    assert (view["chosen"], view["state"], view["idle_ms"]) == (
        "available",
        "available",
        T0_MS + 5000,
    )
    assert view["exp_ms"] == T0_MS + 65_000
    clock.advance(5)
    # already available: no change shown, idle kept
    assert await engine.set_presence("a1", "available") == []
    view = await engine.agent_view("a1")
    assert view is not None
    assert view["idle_ms"] == T0_MS + 5000
    assert view["exp_ms"] == T0_MS + 70_000
    assert await engine.set_presence("a1", "away") == [PresenceChanged("a1", "away")]
    assert await presence_of(engine, "a1") == ("away", "away")


async def test_presence_available_matches_waiting_work(engine: RoutingEngine) -> None:
    await engine.enqueue("t1", "c1", "chat")
    await engine.login("a1", "TRN")
    assert await engine.set_presence("a1", "available") == [
        PresenceChanged("a1", "available"),
        offer("t1", "a1", T0),
        busy("a1"),
    ]


async def test_away_while_busy_shows_away_and_stops_new_offers(engine: RoutingEngine) -> None:
    await agent(engine, "a1", "TRN")
    await engine.enqueue("t1", "c1", "chat")
    assert await engine.set_presence("a1", "away") == [PresenceChanged("a1", "away")]
    assert await engine.enqueue("t2", "c2", "chat") == []
    assert await engine.set_presence("a1", "available") == [
        PresenceChanged("a1", "busy"),
        offer("t2", "a1", T0),
    ]


async def test_presence_and_heartbeat_errors(engine: RoutingEngine) -> None:
    with pytest.raises(NotFound):
        await engine.set_presence("ghost", "available")
    with pytest.raises(NotFound):
        await engine.heartbeat("ghost")
    with pytest.raises(NotFound):
        await engine.logout("ghost")
    await engine.login("a1", "TRN")
    await engine.logout("a1")
    before = await engine.dump()
    with pytest.raises(Conflict):
        await engine.set_presence("a1", "available")
    with pytest.raises(Conflict):
        await engine.heartbeat("a1")
    assert await engine.dump() == before


async def test_heartbeat_extends_presence_without_effects(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    await agent(engine, "a1", "TRN")
    clock.advance(50)
    assert await engine.heartbeat("a1") == []
    view = await engine.agent_view("a1")
    assert view is not None
    assert view["exp_ms"] == T0_MS + 110_000
    clock.advance(11)
    assert await engine.tick() == []
    assert await engine.enqueue("t1", "c1", "chat") == [offer("t1", "a1", T0 + 61), busy("a1")]


async def test_logout_shows_offline_and_is_idempotent(engine: RoutingEngine) -> None:
    await agent(engine, "a1", "TRN")
    assert await engine.logout("a1") == [PresenceChanged("a1", "offline")]
    view = await engine.agent_view("a1")
    assert view is not None
    assert (view["chosen"], view["state"]) == ("offline", "offline")
    assert not view["exp_ms"]
    assert await engine.logout("a1") == []
    assert await engine.enqueue("t1", "c1", "chat") == []


async def test_logout_revokes_offers_and_requeues_them(engine: RoutingEngine) -> None:
    await agent(engine, "a1", "TRN")
    effects = await engine.enqueue("t1", "c1", "chat")
    res = effects[0].reservation  # type: ignore[union-attr]
    await agent(engine, "a2", "TRN")
    assert await engine.logout("a1") == [
        PresenceChanged("a1", "offline"),
        OfferRevoked(res, "t1", "a1", "withdrawn"),
        offer("t1", "a2", T0),
        busy("a2"),
    ]
    view = await engine.task_view("t1")
    assert view is not None
    assert (view["state"], view["agent"], view["enq_ms"]) == ("reserved", "a2", T0_MS)
    # a withdrawn offer does not exclude the agent
    assert view["excluded"] == []


async def test_logout_keeps_assigned_work(engine: RoutingEngine) -> None:
    await agent(engine, "a1", "TRN")
    effects = await engine.enqueue("t1", "c1", "chat")
    await engine.accept(effects[0].reservation, "a1")  # type: ignore[union-attr]
    assert await engine.logout("a1") == [PresenceChanged("a1", "offline")]
    view = await engine.task_view("t1")
    assert view is not None
    assert (view["state"], view["agent"]) == ("assigned", "a1")
    agent_view = await engine.agent_view("a1")
    assert agent_view is not None
    assert agent_view["load"]["chat"] == 1
    # the offline agent can still finish it
    assert await engine.complete("t1", "a1") == []
    assert await engine.wrapup_done("t1", "a1") == [TaskEnded("t1", "a1", "completed")]


async def test_login_after_logout_comes_back_away(engine: RoutingEngine, clock: FakeClock) -> None:
    await agent(engine, "a1", "TRN")
    await engine.logout("a1")
    clock.advance(3)
    assert await engine.login("a1", "TRN") == [PresenceChanged("a1", "away")]
    view = await engine.agent_view("a1")
    assert view is not None
    assert (view["chosen"], view["exp_ms"]) == ("away", T0_MS + 63_000)


async def test_presence_expiry_logs_out_at_the_next_tick(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    await agent(engine, "a1", "TRN")
    clock.advance(59)
    assert await engine.tick() == []
    clock.advance(2)
    # expired but not yet ticked: no longer routable
    assert await engine.enqueue("t1", "c1", "chat") == []
    assert await engine.tick() == [PresenceChanged("a1", "offline")]
    view = await engine.agent_view("a1")
    assert view is not None
    assert view["chosen"] == "offline"
    assert await engine.tick() == []
    view = await engine.task_view("t1")
    assert view is not None
    assert view["state"] == "queued"


async def test_presence_expiry_revokes_offers_with_withdrawn(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    await agent(engine, "a1", "TRN")
    clock.advance(45)
    effects = await engine.enqueue("t1", "c1", "chat")
    assert effects == [offer("t1", "a1", T0 + 45), busy("a1")]
    res = effects[0].reservation  # type: ignore[union-attr]
    clock.advance(16)
    assert await engine.tick() == [
        PresenceChanged("a1", "offline"),
        OfferRevoked(res, "t1", "a1", "withdrawn"),
    ]
    view = await engine.task_view("t1")
    assert view is not None
    assert (view["state"], view["agent"], view["res"]) == ("queued", "", "")


# -- agent order: longest idle first, then agent id -------------------------------------------


async def test_longest_idle_agent_gets_the_task(engine: RoutingEngine, clock: FakeClock) -> None:
    await agent(engine, "b", "TRN")
    clock.advance(1)
    await agent(engine, "a", "TRN")
    clock.advance(1)
    assert work(await engine.enqueue("t1", "c1", "chat")) == [offer("t1", "b", T0 + 2)]
    clock.advance(1)
    # b's idle moved to its offer: a has now waited longest
    assert work(await engine.enqueue("t2", "c2", "chat")) == [offer("t2", "a", T0 + 3)]
    clock.advance(1)
    assert work(await engine.enqueue("t3", "c3", "chat")) == [offer("t3", "b", T0 + 4)]


async def test_equal_idle_is_broken_by_agent_id(engine: RoutingEngine) -> None:
    await agent(engine, "b", "TRN", {"chat": 1})
    await agent(engine, "a", "CCS", {"chat": 2})
    await agent(engine, "c", "TRN", {"chat": 1})
    assert work(await engine.enqueue("t1", "c1", "chat")) == [offer("t1", "a", T0)]
    # the offer moved a's idle to now, which is still T0: a stays first on the tie
    assert work(await engine.enqueue("t2", "c2", "chat")) == [offer("t2", "a", T0)]
    assert work(await engine.enqueue("t3", "c3", "chat")) == [offer("t3", "b", T0)]
    assert work(await engine.enqueue("t4", "c4", "chat")) == [offer("t4", "c", T0)]
    assert work(await engine.enqueue("t5", "c5", "chat")) == []


async def test_becoming_available_again_resets_idle(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    await agent(engine, "a", "TRN")
    clock.advance(1)
    await agent(engine, "b", "TRN")
    clock.advance(1)
    await engine.set_presence("a", "away")
    await engine.set_presence("a", "available")
    clock.advance(1)
    assert work(await engine.enqueue("t1", "c1", "chat")) == [offer("t1", "b", T0 + 3)]


async def test_busy_agent_with_free_capacity_stays_routable(engine: RoutingEngine) -> None:
    await agent(engine, "a1", "TRN")
    for n in range(3):
        assert await engine.enqueue(f"t{n}", f"c{n}", "chat") == (
            [offer(f"t{n}", "a1", T0), busy("a1")] if n == 0 else [offer(f"t{n}", "a1", T0)]
        )
    view = await engine.agent_view("a1")
    assert view is not None
    assert view["state"] == "busy"


async def test_logout_revokes_every_offer_by_task_id(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    await agent(engine, "a", "TRN")
    for task in ("t3", "t1", "t2"):
        await engine.enqueue(task, f"c-{task}", "chat")
    clock.advance(1)
    await agent(engine, "b", "TRN")
    effects = await engine.logout("a")
    assert effects[0] == PresenceChanged("a", "offline")
    assert work(effects) == [
        OfferRevoked(ANY_RES, "t1", "a", "withdrawn"),
        offer("t1", "b", T0 + 1),
        OfferRevoked(ANY_RES, "t2", "a", "withdrawn"),
        offer("t2", "b", T0 + 1),
        OfferRevoked(ANY_RES, "t3", "a", "withdrawn"),
        offer("t3", "b", T0 + 1),
    ]


async def test_presence_expiry_releases_held_work(engine: RoutingEngine, clock: FakeClock) -> None:
    await agent(engine, "last", "TRN", available=False)
    clock.advance(58)
    await agent(engine, "other", "TRN")
    assert await engine.enqueue("t1", "c1", "chat", last_agent="last") == []
    clock.advance(3)  # last expired at T0+60; the preference runs until T0+63
    assert await engine.tick() == [
        PresenceChanged("last", "offline"),
        offer("t1", "other", T0 + 61),
        busy("other"),
    ]


async def test_a_second_login_stores_the_new_capacity(engine: RoutingEngine) -> None:
    await agent(engine, "a1", "TRN")
    assert await engine.login("a1", "TRN", {"chat": 1}) == []
    view = await engine.agent_view("a1")
    assert view is not None
    assert view["cap"]["chat"] == 1
    assert work(await engine.enqueue("t1", "c1", "chat")) == [offer("t1", "a1", T0)]
    assert await engine.enqueue("t2", "c2", "chat") == []


async def test_domains_are_isolated(make_engine, kind: str) -> None:
    one = await make_engine(kind)
    two = await make_engine(kind)
    await agent(one, "a1", "TRN")
    assert await two.enqueue("t1", "c1", "chat") == []
    assert await two.agent_view("a1") is None
    assert await one.task_view("t1") is None
    assert await two.dump() == {"tasks": {"t1": await two.task_view("t1")}, "agents": {}}


async def test_a_second_desktop_counts_once_for_the_levels(engine: RoutingEngine) -> None:
    await agent(engine, "trn", "TRN", available=False)
    assert await engine.login("trn", "TRN") == []  # a second desktop
    await agent(engine, "pam", "PAM")
    assert await engine.enqueue("t1", "c1", "chat") == []
    # one logout takes the only TRN offline: PAM's level opens
    assert await engine.logout("trn") == [
        PresenceChanged("trn", "offline"),
        offer("t1", "pam", T0),
        busy("pam"),
    ]


async def test_a_tier_change_moves_the_agent_between_levels(engine: RoutingEngine) -> None:
    await agent(engine, "x", "TRN", available=False)
    await agent(engine, "sam", "SAM", available=False)
    assert await engine.login("x", "PAM") == []
    # no TRN or CCS is logged in any more: PAM is open at once for normal work
    assert await engine.enqueue("t1", "c1", "chat") == []
    assert await engine.set_presence("x", "available") == [
        PresenceChanged("x", "available"),
        offer("t1", "x", T0),
        busy("x"),
    ]


async def test_an_away_agent_may_still_answer_its_offer(engine: RoutingEngine) -> None:
    res = await offered(engine, "a1", "TRN")
    await engine.set_presence("a1", "away")
    assert await engine.accept(res, "a1") == [Assigned("t1", "a1", "chat")]
    assert await presence_of(engine, "a1") == ("away", "away")


async def test_an_away_agent_rejecting_gets_nothing_new(engine: RoutingEngine) -> None:
    res = await offered(engine, "a1", "TRN")
    await engine.enqueue("t2", "c2", "chat")
    await engine.set_presence("a1", "away")
    await engine.enqueue("t3", "c3", "chat")
    assert await engine.reject(res, "a1") == []
    view = await engine.agent_view("a1")
    assert view is not None
    assert view["load"]["chat"] == 1  # t2 only
