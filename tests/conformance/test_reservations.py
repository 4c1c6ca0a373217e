"""Reservations: offer, accept, reject, timeout (20 s) — and the task keeps its place in line."""

from __future__ import annotations

import re

import pytest

from queues.base import RoutingEngine
from queues.effects import Assigned, PresenceChanged
from queues.errors import Expired, Forbidden, NotFound
from queues.policy import Policy
from tests.conformance.helpers import (
    T0,
    T0_MS,
    agent,
    busy,
    handed_on,
    holding_with_next_waiting,
    load,
    offer,
    offered,
    offered_with_another_free,
    offers,
    pass_time,
    presence_of,
    res_of,
    shown,
    timed_out,
    work,
)
from tests.support import FakeClock


async def test_an_offer_reserves_the_task(engine: RoutingEngine) -> None:
    await agent(engine, "a1", "TRN")
    effects = await engine.enqueue("t1", "c1", "chat")
    assert effects == [offer("t1", "a1", T0), busy("a1")]
    res = res_of(effects, "t1")
    assert await engine.task_view("t1") == {
        "id": "t1",
        "customer": "c1",
        "channel": "chat",
        "group": "normal",
        "prio": 0,
        "enq_ms": T0_MS,
        "state": "reserved",
        "agent": "a1",
        "res": res,
        "res_until": T0_MS + 20_000,  # the shipped 20 s reservation
        "restrict": "",
        "last": "",
        "held_for": "",
        "excluded": [],
    }
    view = await engine.agent_view("a1")
    assert view is not None
    assert (view["state"], view["load"]["chat"]) == ("busy", 1)


async def test_reservation_ids_are_distinct_and_counted(engine: RoutingEngine) -> None:
    await agent(engine, "a1", "TRN", {"email": 5})
    effects = []
    for n in range(5):
        effects += await engine.enqueue(f"t{n}", f"c{n}", "email")
    ids = [o.reservation for o in offers(effects)]
    assert len(ids) == 5
    assert all(re.fullmatch(r"R[0-9]+", r) for r in ids)
    numbers = [int(r[1:]) for r in ids]
    assert numbers == sorted(numbers) and len(set(numbers)) == 5


async def test_the_deadline_follows_the_policy(make_engine, kind: str) -> None:
    engine = await make_engine(kind, Policy(reservation_timeout_s=7.5))
    await agent(engine, "a1", "TRN")
    assert work(await engine.enqueue("t1", "c1", "chat")) == [offer("t1", "a1", T0, timeout=7.5)]


async def test_accept_assigns(engine: RoutingEngine, clock: FakeClock) -> None:
    res = await offered(engine, "a1", "TRN")
    clock.advance(19.999)
    assert await engine.accept(res, "a1") == [Assigned("t1", "a1", "chat")]
    view = await engine.task_view("t1")
    assert view is not None
    assert (view["state"], view["agent"], view["res"]) == ("assigned", "a1", "")
    agent_view = await engine.agent_view("a1")
    assert agent_view is not None
    assert (agent_view["state"], agent_view["load"]["chat"]) == ("busy", 1)
    # the reservation is gone
    with pytest.raises(NotFound):
        await engine.accept(res, "a1")
    # nothing times out later
    assert await pass_time(engine, clock, 30, keep=["a1"]) == []


async def test_accept_and_reject_errors_change_nothing(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    await agent(engine, "a1", "TRN")
    await agent(engine, "a2", "TRN", {"chat": 0})
    res = res_of(await engine.enqueue("t1", "c1", "chat"), "t1")
    before = await engine.dump()
    for call in (engine.accept, engine.reject):
        with pytest.raises(NotFound):
            await call("R999999", "a1")
        with pytest.raises(Forbidden):
            await call(res, "a2")
    assert await engine.dump() == before
    clock.advance(20)  # exactly the deadline: too late, even before any tick
    for call in (engine.accept, engine.reject):
        with pytest.raises(Expired):
            await call(res, "a1")
    assert await engine.dump() == before


async def test_reject_requeues_and_never_reoffers_to_the_same_agent(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    res = await offered(engine, "a1", "TRN")
    clock.advance(5)
    assert await engine.reject(res, "a1") == [shown("a1", "available")]
    view = await engine.task_view("t1")
    assert view is not None
    assert (view["state"], view["agent"], view["res"]) == ("queued", "", "")
    assert (view["enq_ms"], view["excluded"]) == (T0_MS, ["a1"])
    # a1 is available with free capacity, but never gets t1 again
    await engine.set_presence("a1", "away")
    assert work(await engine.set_presence("a1", "available")) == []
    assert work(await engine.enqueue("t2", "c2", "chat")) == [offer("t2", "a1", T0 + 5)]
    # another agent gets t1
    assert work(await agent(engine, "a2", "CCS")) == [offer("t1", "a2", T0 + 5)]


async def test_reject_offers_the_task_to_the_next_agent_at_once(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    res = await offered_with_another_free(engine, clock)
    assert await engine.reject(res, "a1") == handed_on("a1", "t1", "a2", T0 + 1)


async def test_reject_lets_the_agent_take_other_work(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    res = await holding_with_next_waiting(engine, clock, "a1")
    assert await engine.reject(res, "a1") == handed_on("a1", "t2", "a1", T0 + 1)


async def test_a_rejected_task_keeps_its_place_in_line(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    await agent(engine, "x", "TRN", {"chat": 1})
    await engine.login("y", "TRN", {"chat": 1})
    res = res_of(await engine.enqueue("first", "c1", "chat"), "first")
    clock.advance(1)
    await engine.enqueue("second", "c2", "chat")
    clock.advance(1)
    await engine.enqueue("third", "c3", "chat")
    clock.advance(1)
    # x refuses "first": it goes back ahead of "second" and "third"; x takes "second"
    assert work(await engine.reject(res, "x")) == [offer("second", "x", T0 + 3)]
    assert work(await engine.set_presence("y", "available")) == [offer("first", "y", T0 + 3)]
    view = await engine.task_view("third")
    assert view is not None
    assert view["state"] == "queued"


async def test_everyone_rejects_then_a_new_agent_gets_it(engine: RoutingEngine) -> None:
    await agent(engine, "a", "TRN")
    await agent(engine, "b", "TRN")
    effects = await engine.enqueue("t1", "c1", "chat")
    effects = await engine.reject(res_of(effects, "t1"), "a")
    assert work(effects) == [offer("t1", "b", T0)]
    assert work(await engine.reject(res_of(effects, "t1"), "b")) == []
    view = await engine.task_view("t1")
    assert view is not None
    assert (view["state"], view["excluded"]) == ("queued", ["a", "b"])
    assert work(await agent(engine, "c", "TRN")) == [offer("t1", "c", T0)]


async def test_timeout_revokes_sets_the_agent_away_and_requeues(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    res = await offered(engine, "a1", "TRN")
    clock.advance(19)
    assert await engine.tick() == []
    clock.advance(2)
    # one presence change for the desktop: straight to away (no flicker through available)
    assert await engine.tick() == [timed_out(res, "t1", "a1"), shown("a1", "away")]
    assert await presence_of(engine, "a1") == ("away", "away")
    assert await load(engine, "a1") == {}
    task = await engine.task_view("t1")
    assert task is not None
    assert (task["state"], task["enq_ms"], task["excluded"]) == ("queued", T0_MS, ["a1"])
    assert await engine.tick() == []
    # back available: still never offered t1 again
    assert await engine.set_presence("a1", "available") == [PresenceChanged("a1", "available")]


async def test_timeout_offers_the_task_to_the_next_agent(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    res = await offered_with_another_free(engine, clock)
    clock.advance(21)
    assert work(await engine.tick()) == [
        timed_out(res, "t1", "a1"),
        offer("t1", "a2", T0 + 22),
    ]


async def test_a_timed_out_task_keeps_its_place_in_line(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    await agent(engine, "x", "TRN", {"chat": 1})
    await engine.login("y", "TRN", {"chat": 1})
    await engine.enqueue("first", "c1", "chat")
    clock.advance(1)
    await engine.enqueue("second", "c2", "chat")
    clock.advance(20)
    await engine.heartbeat("y")
    await engine.tick()
    assert work(await engine.set_presence("y", "available")) == [offer("first", "y", T0 + 21)]


async def test_timeout_with_other_work_keeps_the_agent_busy_but_away(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    res1 = await offered(engine, "a1", "TRN")
    await engine.accept(res1, "a1")
    clock.advance(5)
    res2 = res_of(await engine.enqueue("t2", "c2", "chat"), "t2")
    clock.advance(20)
    assert await engine.tick() == [timed_out(res2, "t2", "a1"), shown("a1", "away")]
    assert await presence_of(engine, "a1") == ("away", "away")
    assert await load(engine, "a1") == {"chat": 1}
