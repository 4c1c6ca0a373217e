"""Outbound work (campaign contacts) blended with inbound work, on both engines.

The rule (docs/routing.md, "Outbound work"): an outbound task goes only to a routable agent
with no work at all, whose tier both the campaign's tiers and the customer's group allow, and
for whom no inbound work is eligible now; inbound work always comes first.
"""

from __future__ import annotations

import pytest

from queues.args import Enqueue
from queues.base import RoutingEngine
from queues.effects import Offer
from queues.errors import Invalid
from tests.conformance.helpers import T0, agent, offer, offers, pass_time, work
from tests.support import FakeClock

VOICE = {"chat": 3, "voice": 1}


async def dial(
    engine: RoutingEngine,
    task: str,
    tiers: tuple[str, ...] = ("TRN", "CCS", "PAM", "SAM"),
    group: str = "normal",
    customer: str | None = None,
) -> list[object]:
    item = Enqueue(task, customer or f"c-{task}", "voice", group, outbound=tiers)
    [decided] = await engine.enqueue_many([item])
    assert not isinstance(decided, Exception), decided
    return list(decided)


async def test_outbound_goes_to_an_idle_agent_and_is_outbound(engine: RoutingEngine) -> None:
    await agent(engine, "a1", "CCS", VOICE)
    effects = work(await dial(engine, "o1"))
    assert effects == [offer("o1", "a1", T0, "voice")]
    view = await engine.task_view("o1")
    assert view is not None
    assert view["outbound"] == ["TRN", "CCS", "PAM", "SAM"]
    # the inbound queue counters are not a campaign's
    (voice,) = [row for row in await engine.queue_stats() if row.name == "voice"]
    assert voice.offered == 0


async def test_outbound_waits_while_the_agent_has_any_work(engine: RoutingEngine) -> None:
    await agent(engine, "a1", "CCS", VOICE)
    await engine.enqueue("chat1", "c1", "chat")  # a1 is on one chat of three
    assert await dial(engine, "o1") == []  # not interrupted by a dial
    view = await engine.task_view("o1")
    assert view is not None and view["state"] == "queued"
    # nor while the chat is in wrap-up; only once it holds nothing at all
    task = await engine.task_view("chat1")
    assert task is not None
    await engine.accept(task["res"], "a1")
    assert offers(await engine.complete("chat1", "a1")) == []
    assert await state(engine, "o1") == "queued"
    ended = await engine.wrapup_done("chat1", "a1")
    assert [e for e in offers(ended)] == [offer("o1", "a1", T0, "voice")]


async def test_inbound_first_regardless_of_priority(
    make_engine: object, kind: str, clock: FakeClock
) -> None:
    from queues.policy import Policy

    engine = await make_engine(kind, Policy(priority_rules=()))  # type: ignore[operator]
    await dial(engine, "o1")  # in line first, nobody there
    clock.advance(30)
    await engine.enqueue("in1", "c1", "chat")
    clock.advance(1)
    effects = await agent(engine, "a1", "CCS", VOICE)
    assert [e.task for e in offers(effects)] == ["in1"]  # the chat, though the dial is older
    # a1 takes more chats, never the dial while it has one
    assert await state(engine, "o1") == "queued"


async def state(engine: RoutingEngine, task: str) -> str | None:
    view = await engine.task_view(task)
    return None if view is None else view["state"]


async def test_task_side_gives_the_agent_its_eligible_inbound_work_first(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    # a PAM agent; a normal chat opens for PAM after 60 s, but no tick has run yet
    await agent(engine, "trn", "TRN", {"chat": 1, "voice": 0})
    await engine.enqueue("hold", "c0", "chat")  # trn full; PAM still in a lower level's wait
    await agent(engine, "pam", "PAM", VOICE)
    await engine.enqueue("in1", "c1", "chat")
    assert await state(engine, "in1") == "queued"  # PAM's level is not open yet
    clock.advance(61)  # open now, but nobody ticked
    await engine.heartbeat("pam")
    await engine.heartbeat("trn")
    effects = work(await dial(engine, "o1", ("PAM",)))
    # pam may take in1 now: it gets in1, and the dial waits
    assert [(e.task, e.agent) for e in offers(effects)] == [("in1", "pam")]
    assert await state(engine, "o1") == "queued"


async def test_agent_side_inbound_before_outbound(engine: RoutingEngine, clock: FakeClock) -> None:
    await dial(engine, "o1")
    clock.advance(5)
    await engine.enqueue("v1", "c1", "voice")
    effects = await agent(engine, "a1", "CCS", VOICE)
    assert [e.task for e in offers(effects)] == ["v1"]
    assert await state(engine, "o1") == "queued"


async def test_campaign_tiers_restrict_and_the_group_holds(engine: RoutingEngine) -> None:
    await agent(engine, "ccs", "CCS", VOICE)
    await agent(engine, "pam", "PAM", VOICE)
    await agent(engine, "sam", "SAM", VOICE)
    # only PAM may work this campaign: ccs (idle longest) is passed over
    assert [(e.task, e.agent) for e in offers(await dial(engine, "o1", ("CCS", "PAM")))] == [
        ("o1", "ccs")
    ]
    assert [(e.task, e.agent) for e in offers(await dial(engine, "o2", ("PAM", "SAM")))] == [
        ("o2", "pam")
    ]
    # a CSC customer: SAM only, even where the campaign names CCS
    effects = await dial(engine, "o3", ("CCS", "SAM"), group="CSC")
    assert [(e.task, e.agent) for e in offers(effects)] == [("o3", "sam")]


async def test_csc_contact_waits_for_sam_even_if_ccs_is_free(engine: RoutingEngine) -> None:
    await agent(engine, "ccs", "CCS", VOICE)
    assert await dial(engine, "o1", ("CCS",), group="CSC") == []
    await agent(engine, "sam", "SAM", VOICE)
    assert await state(engine, "o1") == "queued"  # the campaign does not name SAM


async def test_agent_side_walks_outbound_by_rank_and_tier(engine: RoutingEngine) -> None:
    await dial(engine, "o1", ("SAM",))
    await dial(engine, "o2", ("CCS",))
    effects = await agent(engine, "a1", "CCS", VOICE)
    assert [e.task for e in offers(effects)] == ["o2"]


async def test_reject_and_timeout_put_the_contact_back_for_others(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    await agent(engine, "a1", "CCS", VOICE)
    first = offers(await dial(engine, "o1"))
    assert [e.agent for e in first] == ["a1"]
    clock.advance(1)
    await agent(engine, "a2", "CCS", VOICE)
    again = await engine.reject(first[0].reservation, "a1")
    assert [(e.task, e.agent) for e in offers(again)] == [("o1", "a2")]
    # a time-out sets a2 away and the contact waits (a1 refused it)
    effects = await pass_time(engine, clock, 25, keep=["a1", "a2"])
    assert await state(engine, "o1") == "queued"
    assert not [e for e in offers(effects) if isinstance(e, Offer)]


async def test_withdraw_of_a_queued_contact_counts_no_abandon(engine: RoutingEngine) -> None:
    await dial(engine, "o1")
    await engine.withdraw("o1")
    assert await engine.task_view("o1") is None
    (voice,) = [row for row in await engine.queue_stats() if row.name == "voice"]
    assert (voice.abandoned, voice.waiting) == (0, 0)


async def test_a_second_enqueue_of_a_live_contact_is_refused(engine: RoutingEngine) -> None:
    await dial(engine, "o1")
    [again] = await engine.enqueue_many([Enqueue("o1", "c", "voice", outbound=("CCS",))])
    assert isinstance(again, Exception) and getattr(again, "code", "") == "conflict"


@pytest.mark.parametrize("tiers", [(), ("XXX",), ("CCS", "XXX")])
async def test_bad_outbound_tiers_are_invalid(engine: RoutingEngine, tiers: tuple[str]) -> None:
    [refused] = await engine.enqueue_many([Enqueue("o1", "c", "voice", outbound=tiers)])
    assert isinstance(refused, Invalid)


async def test_outbound_is_voice_only(engine: RoutingEngine) -> None:
    [refused] = await engine.enqueue_many([Enqueue("o1", "c", "chat", outbound=("CCS",))])
    assert isinstance(refused, Invalid)
