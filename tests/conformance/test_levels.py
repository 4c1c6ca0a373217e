"""Preference levels: normal work widens from TRN+CCS to PAM at 60 s and SAM at 120 s."""

from __future__ import annotations

import pytest

from queues.base import RoutingEngine
from queues.effects import PresenceChanged
from queues.policy import Policy
from tests.conformance.helpers import T0, agent, busy, offer, pass_time, res_of, work
from tests.support import FakeClock


async def test_trn_and_ccs_take_normal_work_at_once(engine: RoutingEngine) -> None:
    await agent(engine, "ccs", "CCS")
    await agent(engine, "trn", "TRN")
    await agent(engine, "pam", "PAM")
    await agent(engine, "sam", "SAM")
    # ccs < pam < sam < trn by id, all idle since T0: the open tiers are TRN and CCS only
    assert await engine.enqueue("t1", "c1", "chat") == [offer("t1", "ccs", T0), busy("ccs")]


async def test_pam_opens_at_60_seconds(engine: RoutingEngine, clock: FakeClock) -> None:
    await agent(engine, "trn", "TRN", available=False)  # logged in: keeps the levels closed
    await agent(engine, "pam", "PAM")
    await agent(engine, "sam", "SAM")
    assert await engine.enqueue("t1", "c1", "chat") == []
    assert await pass_time(engine, clock, 59, keep=["trn", "pam", "sam"], step=59) == []
    clock.advance(1)
    for name in ("trn", "pam", "sam"):
        await engine.heartbeat(name)
    assert await engine.tick() == [offer("t1", "pam", T0 + 60), busy("pam")]


async def test_sam_opens_at_120_seconds(engine: RoutingEngine, clock: FakeClock) -> None:
    await agent(engine, "trn", "TRN", available=False)
    await agent(engine, "pam", "PAM", available=False)
    await agent(engine, "sam", "SAM")
    keep = ["trn", "pam", "sam"]
    assert await engine.enqueue("t1", "c1", "chat") == []
    assert await pass_time(engine, clock, 119, keep=keep) == []
    assert await pass_time(engine, clock, 1, keep=keep) == [
        offer("t1", "sam", T0 + 120),
        busy("sam"),
    ]


async def test_agent_side_match_respects_the_level(engine: RoutingEngine, clock: FakeClock) -> None:
    await agent(engine, "trn", "TRN", available=False)
    await engine.login("pam", "PAM")
    await engine.enqueue("t1", "c1", "chat")
    clock.advance(30)
    await engine.heartbeat("trn")
    assert await engine.set_presence("pam", "available") == [PresenceChanged("pam", "available")]
    await engine.set_presence("pam", "away")
    clock.advance(31)
    await engine.heartbeat("trn")
    assert await engine.set_presence("pam", "available") == [
        PresenceChanged("pam", "available"),
        offer("t1", "pam", T0 + 61),
        busy("pam"),
    ]


async def test_open_levels_compete_by_idle_time(engine: RoutingEngine, clock: FakeClock) -> None:
    # a CSC task waits (no SAM); the TRN and the PAM may not take it
    assert await engine.enqueue("t1", "c1", "chat", "CSC") == []
    clock.advance(3)
    await agent(engine, "pam", "PAM")
    clock.advance(2)
    await agent(engine, "trn", "TRN")
    await pass_time(engine, clock, 56, keep=["pam", "trn"])
    # at 61 s it becomes normal work: TRN, CCS and PAM levels are open; the PAM idled longest
    assert await engine.reclassify("c1", "normal") == [offer("t1", "pam", T0 + 61), busy("pam")]


async def test_tiers_of_one_level_compete_by_idle_time(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    await agent(engine, "sam", "SAM")
    clock.advance(1)
    await agent(engine, "pam", "PAM")
    await agent(engine, "ccs", "CCS")
    clock.advance(1)
    await agent(engine, "trn", "TRN")
    assert work(await engine.enqueue("sic", "c1", "chat", "SIC")) == [offer("sic", "sam", T0 + 2)]
    # normal work: CCS (idle since T0+1) before TRN (since T0+2), the PAM's level is closed
    assert work(await engine.enqueue("n", "c2", "chat")) == [offer("n", "ccs", T0 + 2)]


async def test_empty_lower_levels_open_at_once(engine: RoutingEngine) -> None:
    # no TRN or CCS logged in: PAM is open at once for normal work
    await agent(engine, "pam", "PAM")
    assert await engine.enqueue("t1", "c1", "chat") == [offer("t1", "pam", T0), busy("pam")]


@pytest.mark.parametrize(
    ("lower", "waiting"),
    [(["pam"], "sam"), (["trn", "ccs"], "pam")],
    ids=["sam-after-the-pam", "pam-after-the-trn-and-the-ccs"],
)
async def test_the_last_lower_agent_logging_out_opens_the_level(
    engine: RoutingEngine, clock: FakeClock, lower: list[str], waiting: str
) -> None:
    """A lower-level agent logged in, though away, keeps the `waiting` agent's level closed
    (PAM 60 s, SAM 120 s); when the last one logs out, the level opens and the task that
    waited is matched at once."""
    for name in lower:
        await agent(engine, name, name.upper(), available=False)
    await agent(engine, waiting, waiting.upper())
    assert await engine.enqueue("t1", "c1", "chat") == []
    clock.advance(5)
    *others, last = lower
    for name in others:
        # one lower agent still logged in: nothing opens
        assert await engine.logout(name) == [PresenceChanged(name, "offline")]
    assert await engine.logout(last) == [
        PresenceChanged(last, "offline"),
        offer("t1", waiting, T0 + 5),
        busy(waiting),
    ]


async def test_presence_expiry_of_the_last_lower_agent_opens_the_level(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    await agent(engine, "trn", "TRN", available=False)
    await agent(engine, "pam", "PAM")
    clock.advance(30)
    await engine.enqueue("t1", "c1", "chat")
    clock.advance(20)
    await engine.heartbeat("pam")
    clock.advance(11)  # T0+61: trn expired, t1 has waited 31 s only
    assert await engine.tick() == [
        PresenceChanged("trn", "offline"),
        offer("t1", "pam", T0 + 61),
        busy("pam"),
    ]


async def test_a_lower_agent_logging_in_closes_the_level_again(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    await agent(engine, "pam", "PAM", {"chat": 1})
    assert work(await engine.enqueue("t1", "c1", "chat")) == [offer("t1", "pam", T0)]
    await engine.login("trn", "TRN")  # away, but logged in
    assert await engine.enqueue("t2", "c2", "chat") == []
    await engine.set_presence("pam", "away")
    await engine.set_presence("pam", "available")
    view = await engine.task_view("t2")
    assert view is not None
    assert view["state"] == "queued"


async def test_open_empty_levels_off_keeps_the_levels(
    make_engine, kind: str, clock: FakeClock
) -> None:
    engine = await make_engine(kind, Policy(open_empty_levels=False))
    await agent(engine, "pam", "PAM")
    await agent(engine, "sam", "SAM")
    assert await engine.enqueue("t1", "c1", "chat") == []
    effects = await pass_time(engine, clock, 60, keep=["pam", "sam"])
    assert effects == [offer("t1", "pam", T0 + 60), busy("pam")]


async def test_sic_and_csc_have_no_waiting_levels(engine: RoutingEngine) -> None:
    await agent(engine, "trn", "TRN", available=False)
    await agent(engine, "ccs", "CCS", available=False)
    await agent(engine, "pam", "PAM")
    await agent(engine, "sam", "SAM")
    assert work(await engine.enqueue("t1", "c1", "chat", "SIC")) == [offer("t1", "pam", T0)]
    assert work(await engine.enqueue("t2", "c2", "chat", "CSC")) == [offer("t2", "sam", T0)]


async def test_widening_keeps_the_waiting_time_through_a_reject(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    await agent(engine, "trn", "TRN")
    await agent(engine, "pam", "PAM")
    effects = await engine.enqueue("t1", "c1", "chat")
    assert work(effects) == [offer("t1", "trn", T0)]
    clock.advance(15)
    # rejected at 15 s: back in line with enq T0, so PAM's level opens at 60 s, not 75 s
    res = effects[0].reservation  # type: ignore[union-attr]
    assert await engine.reject(res, "trn") == [PresenceChanged("trn", "available")]
    effects = await pass_time(engine, clock, 46, keep=["trn", "pam"], step=23)
    assert effects == [offer("t1", "pam", T0 + 61), busy("pam")]


async def test_a_tier_restriction_skips_the_level_on_the_agent_side(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    await agent(engine, "trn", "TRN", {"chat": 1})
    await engine.login("pam", "PAM")
    assert work(await engine.enqueue("normal", "c1", "chat")) == [offer("normal", "trn", T0)]
    await engine.accept(res_of(await engine.enqueue("mine", "c2", "sms"), "mine"), "trn")
    clock.advance(5)
    await engine.transfer("mine", "trn", to_tier="PAM")
    await engine.enqueue("later", "c3", "chat")
    clock.advance(5)
    # "mine" (restricted to PAM) has no level to wait for; "later" (normal, 5 s) waits for 60 s
    assert work(await engine.set_presence("pam", "available")) == [
        offer("mine", "pam", T0 + 10, "sms")
    ]


async def test_opening_levels_matches_every_routable_agent_by_idle(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    await agent(engine, "trn", "TRN", available=False)
    await agent(engine, "p2", "PAM", {"chat": 1})
    clock.advance(1)
    await agent(engine, "p1", "PAM", {"chat": 1})
    await engine.enqueue("t1", "c1", "chat")
    clock.advance(1)
    await engine.enqueue("t2", "c2", "chat")
    clock.advance(1)
    assert await engine.logout("trn") == [
        PresenceChanged("trn", "offline"),
        offer("t1", "p2", T0 + 3),
        busy("p2"),
        offer("t2", "p1", T0 + 3),
        busy("p1"),
    ]
