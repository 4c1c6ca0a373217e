"""Transfer of an assigned task to one agent (offered at once) or to a tier (queued for it)."""

from __future__ import annotations

import pytest

from queues.base import RoutingEngine
from queues.effects import Assigned, AssignmentRevoked
from queues.errors import Conflict, Forbidden, Invalid, NotFound, RoutingError
from tests.conformance.helpers import (
    T0,
    T0_MS,
    agent,
    busy,
    handed_on,
    offer,
    res_of,
    shown,
    stats_row,
    work,
)
from tests.support import FakeClock


async def _assigned(
    engine: RoutingEngine, task: str, agent_id: str, group: str = "normal", channel: str = "chat"
) -> None:
    effects = await engine.enqueue(task, f"cust-{task}", channel, group)
    assert [o.agent for o in effects if hasattr(o, "reservation")] == [agent_id]
    assert await engine.accept(res_of(effects, task), agent_id) == [
        Assigned(task, agent_id, channel)
    ]


async def test_transfer_to_an_agent_offers_it_at_once(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    await agent(engine, "a", "TRN")
    await _assigned(engine, "t1", "a")
    await agent(engine, "b", "CCS", available=False)
    clock.advance(10)
    await engine.set_presence("b", "available")
    effects = await engine.transfer("t1", "a", to_agent="b")
    assert effects == [
        AssignmentRevoked("t1", "a", "transferred"),
        *handed_on("a", "t1", "b", T0 + 10),
    ]
    view = await engine.task_view("t1")
    assert view is not None
    assert (view["state"], view["agent"], view["enq_ms"]) == ("reserved", "b", T0_MS)
    assert await engine.accept(res_of(effects, "t1"), "b") == [Assigned("t1", "b", "chat")]
    # answered once, offered twice
    row = stats_row(await engine.queue_stats(), "chat")
    assert (row.offered, row.answered) == (2, 1)


async def test_transfer_to_an_agent_ignores_levels_and_a_previous_reject(
    engine: RoutingEngine,
) -> None:
    await agent(engine, "sam", "SAM")
    await agent(engine, "trn", "TRN", available=False)
    await agent(engine, "ccs", "CCS")
    effects = await engine.enqueue("t1", "c1", "chat")
    assert work(effects) == [offer("t1", "ccs", T0)]
    # the CCS rejects... (the SAM's level is still closed: nobody else may take it yet)
    assert work(await engine.reject(res_of(effects, "t1"), "ccs")) == []
    # the TRN comes back and takes it, then sends it back to the CCS that refused it
    await engine.set_presence("trn", "available")
    view = await engine.task_view("t1")
    assert view is not None and view["agent"] == "trn"
    await engine.accept(view["res"], "trn")
    effects = await engine.transfer("t1", "trn", to_agent="ccs")
    assert work(effects) == [AssignmentRevoked("t1", "trn", "transferred"), offer("t1", "ccs", T0)]
    view = await engine.task_view("t1")
    assert view is not None
    assert view["excluded"] == []
    # the SAM's level does not matter for a direct transfer either
    await engine.accept(view["res"], "ccs")
    assert work(await engine.transfer("t1", "ccs", to_agent="sam")) == [
        AssignmentRevoked("t1", "ccs", "transferred"),
        offer("t1", "sam", T0),
    ]


@pytest.mark.parametrize(
    ("group", "to"), [("SIC", "TRN"), ("SIC", "CCS"), ("CSC", "PAM"), ("CSC", "TRN")]
)
async def test_transfer_to_a_forbidden_agent_is_refused(
    engine: RoutingEngine, group: str, to: str
) -> None:
    await agent(engine, "sam", "SAM")
    await _assigned(engine, "t1", "sam", group)
    await agent(engine, "x", to)
    before = await engine.dump()
    with pytest.raises(Forbidden):
        await engine.transfer("t1", "sam", to_agent="x")
    with pytest.raises(Forbidden):
        await engine.transfer("t1", "sam", to_tier=to)
    assert await engine.dump() == before


async def test_transfer_to_an_agent_errors_change_nothing(engine: RoutingEngine) -> None:
    await agent(engine, "a", "TRN", {"chat": 1})
    await _assigned(engine, "t1", "a")
    await agent(engine, "away", "TRN", available=False)
    await agent(engine, "full", "TRN", {"chat": 0})
    await agent(engine, "gone", "TRN")
    await engine.logout("gone")
    await agent(engine, "b", "TRN", {"chat": 1})
    res = res_of(await engine.enqueue("t2", "c2", "chat"), "t2")  # reserved by b (a is full)
    before = await engine.dump()
    refusals: list[tuple[type[RoutingError], str, str, dict[str, str]]] = [
        (NotFound, "ghost", "a", {"to_agent": "b"}),
        (NotFound, "t1", "a", {"to_agent": "ghost"}),
        (Conflict, "t1", "a", {"to_agent": "a"}),
        (Conflict, "t1", "a", {"to_agent": "away"}),
        (Conflict, "t1", "a", {"to_agent": "full"}),
        (Conflict, "t1", "a", {"to_agent": "gone"}),
        (Conflict, "t1", "a", {"to_agent": "b"}),  # b's only chat slot is taken
        (Forbidden, "t1", "b", {"to_agent": "away"}),  # not b's task
        (Conflict, "t2", "b", {"to_tier": "CCS"}),  # reserved, not assigned
        (Invalid, "t1", "a", {"to_agent": "b", "to_tier": "CCS"}),
        (Invalid, "t1", "a", {}),
    ]
    for error, task, by, target in refusals:
        with pytest.raises(error):
            await engine.transfer(task, by, **target)
    assert await engine.dump() == before
    assert res


async def test_transfer_to_an_expired_agent_is_refused(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    await agent(engine, "a", "TRN")
    await agent(engine, "b", "TRN", {"chat": 0})
    await _assigned(engine, "t1", "a")
    await engine.login("b", "TRN", {"chat": 1})
    clock.advance(61)  # b's presence expired (not yet ticked); a's too, but a holds the task
    before = await engine.dump()
    with pytest.raises(Conflict):
        await engine.transfer("t1", "a", to_agent="b")
    assert await engine.dump() == before


async def test_transfer_to_a_tier_goes_to_that_tier_at_once(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    await agent(engine, "pam", "PAM")
    clock.advance(1)
    await agent(engine, "sam", "SAM")
    await agent(engine, "trn", "TRN")
    await _assigned(engine, "t1", "trn")
    clock.advance(1)
    # SAM's level (120 s) does not apply to a tier transfer; the PAM, idle longer, is skipped
    assert await engine.transfer("t1", "trn", to_tier="SAM") == [
        AssignmentRevoked("t1", "trn", "transferred"),
        *handed_on("trn", "t1", "sam", T0 + 2),
    ]
    view = await engine.task_view("t1")
    assert view is not None
    assert (view["restrict"], view["excluded"], view["enq_ms"]) == ("SAM", ["trn"], T0_MS + 1000)


async def test_transfer_to_a_tier_waits_for_that_tier_only(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    await agent(engine, "trn", "TRN")
    await _assigned(engine, "t1", "trn")
    assert work(await engine.transfer("t1", "trn", to_tier="PAM")) == [
        AssignmentRevoked("t1", "trn", "transferred")
    ]
    view = await engine.task_view("t1")
    assert view is not None
    assert (view["state"], view["restrict"]) == ("queued", "PAM")
    # other tiers never get it, however long it waits
    await agent(engine, "ccs", "CCS")
    await agent(engine, "sam", "SAM")
    for _ in range(5):
        clock.advance(30)
        for name in ("trn", "ccs", "sam"):
            await engine.heartbeat(name)
        assert await engine.tick() == []
    assert work(await agent(engine, "pam", "PAM")) == [offer("t1", "pam", T0 + 150)]


async def test_transfer_to_own_tier_goes_to_a_colleague(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    await agent(engine, "a", "TRN")
    await _assigned(engine, "t1", "a")
    assert work(await engine.transfer("t1", "a", to_tier="TRN")) == [
        AssignmentRevoked("t1", "a", "transferred")
    ]
    clock.advance(1)
    assert work(await agent(engine, "b", "TRN")) == [offer("t1", "b", T0 + 1)]


async def test_transfer_to_a_tier_clears_the_last_agent(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    await agent(engine, "a", "TRN")
    await agent(engine, "b", "CCS", {"chat": 0})
    effects = await engine.enqueue("t1", "c1", "chat", last_agent="a")
    await engine.accept(res_of(effects, "t1"), "a")
    view = await engine.task_view("t1")
    assert view is not None
    assert view["last"] == "a"
    await engine.transfer("t1", "a", to_tier="CCS")
    view = await engine.task_view("t1")
    assert view is not None
    assert (view["last"], view["held_for"], view["state"]) == ("", "", "queued")


async def test_the_transferring_agent_takes_other_work(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    await agent(engine, "a", "TRN", {"chat": 1, "voice": 1})
    await _assigned(engine, "call", "a", channel="voice")
    clock.advance(1)
    assert await engine.enqueue("t2", "c2", "chat") == []  # the call blocks a's chat
    await agent(engine, "b", "TRN", {"chat": 0, "voice": 1})
    assert await engine.transfer("call", "a", to_agent="b") == [
        AssignmentRevoked("call", "a", "transferred"),
        shown("a", "available"),
        offer("call", "b", T0 + 1, "voice"),
        busy("b"),
        offer("t2", "a", T0 + 1),
        busy("a"),
    ]


async def test_transfer_of_sic_work_between_allowed_tiers(engine: RoutingEngine) -> None:
    await agent(engine, "pam", "PAM")
    await _assigned(engine, "t1", "pam", "SIC")
    await agent(engine, "sam", "SAM")
    assert work(await engine.transfer("t1", "pam", to_agent="sam")) == [
        AssignmentRevoked("t1", "pam", "transferred"),
        offer("t1", "sam", T0),
    ]


async def test_transfer_of_a_call_respects_voice_blocking(engine: RoutingEngine) -> None:
    await agent(engine, "a", "TRN")
    await _assigned(engine, "call", "a", channel="voice")
    await agent(engine, "b", "TRN")
    res = res_of(await engine.enqueue("call2", "c2", "voice"), "call2")  # to b
    await engine.accept(res, "b")
    before = await engine.dump()
    with pytest.raises(Conflict):
        await engine.transfer("call", "a", to_agent="b")
    assert await engine.dump() == before


async def test_transfer_to_own_tier_with_no_colleague_waits(engine: RoutingEngine) -> None:
    await agent(engine, "a", "CCS")
    await _assigned(engine, "t1", "a")
    assert await engine.transfer("t1", "a", to_tier="CCS") == [
        AssignmentRevoked("t1", "a", "transferred"),
        shown("a", "available"),
    ]
    view = await engine.task_view("t1")
    assert view is not None
    assert (view["state"], view["restrict"], view["excluded"]) == ("queued", "CCS", ["a"])
    # a TRN (allowed for normal work, but not the tier asked for) does not get it
    assert work(await agent(engine, "trn", "TRN")) == []
