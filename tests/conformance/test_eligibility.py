"""The hard filter: normal → any tier, SIC → PAM/SAM, CSC → SAM only; nothing relaxes it."""

from __future__ import annotations

import pytest

from queues.base import RoutingEngine
from queues.effects import PresenceChanged
from queues.policy import GROUPS, TIERS
from tests.conformance.helpers import T0, agent, busy, offer, offers, pass_time, work
from tests.support import FakeClock

ALLOWED = {"normal": set(TIERS), "SIC": {"PAM", "SAM"}, "CSC": {"SAM"}}
CASES = [(g, t) for g in GROUPS for t in TIERS]


@pytest.mark.parametrize(("group", "tier"), CASES, ids=[f"{g}-{t}" for g, t in CASES])
async def test_enqueue_offers_only_to_allowed_tiers(
    engine: RoutingEngine, group: str, tier: str
) -> None:
    # the only agent logged in: every preference level is open at once (open_empty_levels)
    await agent(engine, "a1", tier)
    effects = await engine.enqueue("t1", "c1", "chat", group)
    if tier in ALLOWED[group]:
        assert effects == [offer("t1", "a1", T0), busy("a1")]
    else:
        assert effects == []
        view = await engine.task_view("t1")
        assert view is not None
        assert (view["state"], view["agent"]) == ("queued", "")


@pytest.mark.parametrize(("group", "tier"), CASES, ids=[f"{g}-{t}" for g, t in CASES])
async def test_agent_side_match_offers_only_allowed_work(
    engine: RoutingEngine, group: str, tier: str
) -> None:
    await engine.enqueue("t1", "c1", "chat", group)
    await engine.login("a1", tier)
    effects = await engine.set_presence("a1", "available")
    if tier in ALLOWED[group]:
        assert effects == [PresenceChanged("a1", "available"), offer("t1", "a1", T0), busy("a1")]
    else:
        assert effects == [PresenceChanged("a1", "available")]


@pytest.mark.parametrize("group", ["SIC", "CSC"])
async def test_waiting_never_widens_to_forbidden_tiers(
    engine: RoutingEngine, clock: FakeClock, group: str
) -> None:
    lower = ["trn", "ccs"] + (["pam"] if group == "CSC" else [])
    await agent(engine, "trn", "TRN")
    await agent(engine, "ccs", "CCS")
    if group == "CSC":
        await agent(engine, "pam", "PAM")
    assert await engine.enqueue("t1", "c1", "chat", group) == []
    # far past every level (60 s, 120 s, ...), ticking on the way
    effects = await pass_time(engine, clock, 600, keep=lower)
    assert effects == []
    view = await engine.task_view("t1")
    assert view is not None
    assert view["state"] == "queued"
    # a forbidden agent becoming available again (agent-side match) gets nothing either
    for name in lower:
        await engine.set_presence(name, "away")
        assert work(await engine.set_presence(name, "available")) == []
    # the right tier logs in later: it gets the task at once
    await engine.login("sam", "SAM")
    assert await engine.set_presence("sam", "available") == [
        PresenceChanged("sam", "available"),
        offer("t1", "sam", clock.now),
        busy("sam"),
    ]


async def test_sic_goes_to_pam_while_trn_waits_idle_longer(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    await agent(engine, "trn", "TRN")
    clock.advance(5)
    await agent(engine, "pam", "PAM")
    clock.advance(5)
    assert work(await engine.enqueue("t1", "c1", "chat", "SIC")) == [offer("t1", "pam", T0 + 10)]
    assert work(await engine.enqueue("t2", "c2", "chat", "normal")) == [offer("t2", "trn", T0 + 10)]


async def test_forbidden_agents_never_hold_sic_or_csc_work_across_a_busy_day(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    """Many tasks of every group, agents of every tier, time passing, rejects and timeouts."""
    tiers = {"trn": "TRN", "ccs": "CCS", "pam": "PAM", "sam": "SAM"}
    for name, tier in tiers.items():
        await agent(engine, name, tier)
    groups = {}
    effects = []
    for n in range(12):
        group = GROUPS[n % 3]
        groups[f"t{n}"] = group
        step = await engine.enqueue(f"t{n}", f"c{n}", "chat", group)
        # the PAM rejects everything it gets at once; the others' offers time out
        for o in offers(step):
            if o.agent == "pam":
                step += await engine.reject(o.reservation, "pam")
        effects += step
        clock.advance(7)
        for name in tiers:
            await engine.heartbeat(name)
        effects += await engine.tick()
    effects += await pass_time(engine, clock, 300, keep=list(tiers))
    for name in tiers:
        if (await engine.agent_view(name) or {}).get("chosen") == "away":
            effects += await engine.set_presence(name, "available")
    effects += await pass_time(engine, clock, 300, keep=list(tiers))
    seen = offers(effects)
    assert seen, "no offers at all"
    for o in seen:
        assert tiers[o.agent] in ALLOWED[groups[o.task]], o
    dump = await engine.dump()
    for view in dump["tasks"].values():
        for who in (view["agent"], view["held_for"]):
            if who:
                assert tiers[who] in ALLOWED[view["group"]], view
