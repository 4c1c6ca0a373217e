"""Reclassification re-checks the hard filter at once; the task keeps its waiting time."""

from __future__ import annotations

import pytest

from queues.base import RoutingEngine
from queues.effects import Assigned, AssignmentRevoked, OfferRevoked, PresenceChanged, TaskEnded
from queues.errors import NotFound
from queues.policy import GROUPS
from tests.conformance.helpers import (
    T0,
    T0_MS,
    agent,
    busy,
    handed_on,
    holding_with_next_waiting,
    offer,
    offered,
    res_of,
    shown,
    work,
)
from tests.support import FakeClock


async def test_reserved_by_a_now_forbidden_agent_is_revoked(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    res = await offered(engine, "trn", "TRN")
    await agent(engine, "pam", "PAM")
    clock.advance(3)
    assert await engine.reclassify("c1", "SIC") == [
        OfferRevoked(res, "t1", "trn", "reclassified"),
        *handed_on("trn", "t1", "pam", T0 + 3),
    ]
    view = await engine.task_view("t1")
    assert view is not None
    assert (view["group"], view["enq_ms"], view["agent"]) == ("SIC", T0_MS, "pam")
    # the revoked agent is not excluded: it simply may not take SIC work
    assert view["excluded"] == []


async def test_assigned_to_a_now_forbidden_agent_is_revoked(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    res = await offered(engine, "ccs", "CCS")
    await engine.accept(res, "ccs")
    clock.advance(40)
    await engine.heartbeat("ccs")
    assert await engine.reclassify("c1", "CSC") == [
        AssignmentRevoked("t1", "ccs", "reclassified"),
        shown("ccs", "available"),
    ]
    view = await engine.task_view("t1")
    assert view is not None
    assert (view["state"], view["agent"], view["group"], view["enq_ms"]) == (
        "queued",
        "",
        "CSC",
        T0_MS,
    )
    # a SAM logging in later gets it; the CCS never again
    await engine.set_presence("ccs", "away")
    assert work(await engine.set_presence("ccs", "available")) == []
    assert work(await agent(engine, "sam", "SAM")) == [offer("t1", "sam", T0 + 40)]


async def test_a_wrap_up_of_a_now_forbidden_agent_ends_at_once(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    """Answered and completed by a TRN, in its wrap-up when the customer is marked SIC: the
    conversation leaves the TRN's desktop at once (revoked) and its wrap-up ends there, so
    the TRN is free and can no longer name the task."""
    res = await offered(engine, "trn", "TRN")
    await engine.accept(res, "trn")
    assert work(await engine.complete("t1", "trn")) == []  # wrap-up
    clock.advance(2)
    assert await engine.reclassify("c1", "SIC") == [
        AssignmentRevoked("t1", "trn", "reclassified"),
        shown("trn", "available"),
        TaskEnded("t1", "trn", "completed"),
    ]
    assert await engine.task_view("t1") is None
    trn = await engine.agent_view("trn")
    assert trn is not None and trn["load"]["chat"] == 0
    with pytest.raises(NotFound):
        await engine.wrapup_done("t1", "trn")


async def test_an_allowed_holder_keeps_its_wrap_up(engine: RoutingEngine) -> None:
    res = await offered(engine, "pam", "PAM")
    await engine.accept(res, "pam")
    await engine.complete("t1", "pam")
    assert await engine.reclassify("c1", "SIC") == []
    view = await engine.task_view("t1")
    assert view is not None and (view["state"], view["agent"]) == ("wrapup", "pam")


async def test_an_allowed_holder_keeps_the_work(engine: RoutingEngine) -> None:
    res = await offered(engine, "pam", "PAM")
    await engine.enqueue("t2", "c1", "chat")
    await engine.accept(res, "pam")
    assert await engine.reclassify("c1", "SIC") == []
    dump = await engine.dump()
    assert (dump["tasks"]["t1"]["state"], dump["tasks"]["t1"]["group"]) == ("assigned", "SIC")
    assert (dump["tasks"]["t2"]["state"], dump["tasks"]["t2"]["group"]) == ("reserved", "SIC")


async def test_queued_work_moves_to_the_new_group_at_once(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    await agent(engine, "trn", "TRN", available=False)
    await agent(engine, "pam", "PAM")
    assert await engine.enqueue("t1", "c1", "chat") == []  # normal: PAM waits for 60 s
    clock.advance(5)
    # SIC: PAM is allowed and its level is 0
    assert await engine.reclassify("c1", "SIC") == [offer("t1", "pam", T0 + 5), busy("pam")]


async def test_queued_work_never_reaches_lower_tiers_after_upgrade(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    await engine.enqueue("t1", "c1", "chat")
    assert await engine.reclassify("c1", "SIC") == []
    await agent(engine, "trn", "TRN")
    await agent(engine, "ccs", "CCS")
    view = await engine.task_view("t1")
    assert view is not None
    assert (view["state"], view["group"]) == ("queued", "SIC")
    # downgrade back to normal: both idle since T0, ccs comes first by id
    clock.advance(1)
    assert await engine.reclassify("c1", "normal") == [offer("t1", "ccs", T0 + 1), busy("ccs")]


async def test_every_task_of_the_customer_by_task_id(engine: RoutingEngine) -> None:
    await agent(engine, "trn", "TRN")
    r2 = res_of(await engine.enqueue("t2", "cust", "chat"), "t2")
    r1 = res_of(await engine.enqueue("t1", "cust", "email"), "t1")
    await engine.accept(r2, "trn")
    await engine.enqueue("other", "someone-else", "sms")  # keeps trn busy
    assert await engine.reclassify("cust", "SIC") == [
        OfferRevoked(r1, "t1", "trn", "reclassified"),
        AssignmentRevoked("t2", "trn", "reclassified"),
    ]
    dump = await engine.dump()
    assert dump["tasks"]["other"]["group"] == "normal"
    assert dump["tasks"]["other"]["agent"] == "trn"
    # a PAM takes both, in line order (same arrival: by task id)
    assert work(await agent(engine, "pam", "PAM")) == [
        offer("t1", "pam", T0, "email"),
        offer("t2", "pam", T0),
    ]


async def test_unknown_customer_has_no_effects(engine: RoutingEngine) -> None:
    await agent(engine, "trn", "TRN")
    before = await engine.dump()
    assert await engine.reclassify("nobody", "CSC") == []
    assert await engine.dump() == before


async def test_the_freed_agent_takes_other_work(engine: RoutingEngine, clock: FakeClock) -> None:
    res = await holding_with_next_waiting(engine, clock, "trn")
    clock.advance(1)
    assert await engine.reclassify("c1", "SIC") == [
        OfferRevoked(res, "t1", "trn", "reclassified"),
        *handed_on("trn", "t2", "trn", T0 + 2),
    ]


async def test_a_task_held_for_a_now_forbidden_last_agent_is_released(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    await agent(engine, "trn", "TRN", {"chat": 1})
    await agent(engine, "pam", "PAM", available=False)
    await engine.enqueue("busy", "c0", "chat")  # fills trn
    assert await engine.enqueue("t1", "c1", "chat", last_agent="trn") == []
    view = await engine.task_view("t1")
    assert view is not None
    assert (view["held_for"], view["last"]) == ("trn", "trn")
    clock.advance(1)
    await engine.set_presence("pam", "available")
    assert await engine.reclassify("c1", "SIC") == [offer("t1", "pam", T0 + 1), busy("pam")]
    view = await engine.task_view("t1")
    assert view is not None
    assert (view["held_for"], view["last"], view["state"]) == ("", "", "reserved")


async def test_a_held_task_stays_held_when_its_agent_is_still_allowed(
    engine: RoutingEngine,
) -> None:
    await agent(engine, "pam", "PAM", {"chat": 1})
    await engine.enqueue("busy", "c0", "chat")
    assert await engine.enqueue("t1", "c1", "chat", last_agent="pam") == []
    assert await engine.reclassify("c1", "SIC") == []
    view = await engine.task_view("t1")
    assert view is not None
    assert (view["held_for"], view["group"]) == ("pam", "SIC")


async def test_a_restriction_the_new_group_forbids_is_dropped(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    await agent(engine, "trn", "TRN", {"chat": 1})
    res = res_of(await engine.enqueue("t1", "c1", "chat"), "t1")
    await engine.accept(res, "trn")
    await engine.transfer("t1", "trn", to_tier="CCS")  # no CCS logged in: waits, restricted
    view = await engine.task_view("t1")
    assert view is not None
    assert (view["state"], view["restrict"]) == ("queued", "CCS")
    await agent(engine, "pam", "PAM")
    clock.advance(1)
    assert await engine.reclassify("c1", "SIC") == [offer("t1", "pam", T0 + 1), busy("pam")]
    view = await engine.task_view("t1")
    assert view is not None
    assert view["restrict"] == ""


async def test_a_restriction_the_new_group_allows_is_kept(engine: RoutingEngine) -> None:
    res = await offered(engine, "trn", "TRN")
    await engine.accept(res, "trn")
    await engine.transfer("t1", "trn", to_tier="SAM")
    await agent(engine, "pam", "PAM")
    assert await engine.reclassify("c1", "SIC") == []
    view = await engine.task_view("t1")
    assert view is not None
    assert (view["restrict"], view["state"]) == ("SAM", "queued")


@pytest.mark.parametrize("group", GROUPS)
async def test_reclassify_to_the_same_group_changes_nothing(
    engine: RoutingEngine, group: str
) -> None:
    await agent(engine, "sam", "SAM")
    res = res_of(await engine.enqueue("t1", "c1", "chat", group), "t1")
    assert await engine.accept(res, "sam") == [Assigned("t1", "sam", "chat")]
    before = await engine.dump()
    assert await engine.reclassify("c1", group) == []
    assert await engine.dump() == before


async def test_presence_of_the_freed_agent_is_reported_once_per_change(
    engine: RoutingEngine,
) -> None:
    res = await offered(engine, "trn", "TRN")
    await engine.accept(res, "trn")
    effects = await engine.reclassify("c1", "SIC")
    assert [e for e in effects if isinstance(e, PresenceChanged)] == [shown("trn", "available")]
