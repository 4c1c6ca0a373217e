"""Skills (`queues.skills`, docs/routing.md "Skills"): hard skills never relax, preferred ones
widen with waiting time, proficiency minimums hold, and the tier filter comes first."""

from __future__ import annotations

import pytest

from queues.base import RoutingEngine
from queues.errors import Forbidden, Invalid
from queues.explain import explain
from queues.policy import Policy, SkillRule
from tests.conformance.helpers import T0, busy, offer, pass_time, res_of, work
from tests.conftest import EngineFactory
from tests.support import FakeClock

POLICY = Policy(
    skills_hard=("de",),
    skills_widen_s=60.0,
    skills_widen_by={"vip": 30.0},
    last_agent_s=30.0,
)


@pytest.fixture
async def engine(kind: str, make_engine: EngineFactory) -> RoutingEngine:
    return await make_engine(kind, POLICY)


async def skilled(
    engine: RoutingEngine,
    agent_id: str,
    tier: str,
    skills: dict[str, int] | list[str] | None,
    available: bool = True,
) -> None:
    await engine.login(agent_id, tier, skills=skills)
    if available:
        await engine.set_presence(agent_id, "available")


async def test_a_hard_skill_is_never_relaxed(engine: RoutingEngine, clock: FakeClock) -> None:
    await skilled(engine, "a1", "CCS", None)  # longest idle, but no German
    await skilled(engine, "a2", "CCS", {"de": 1}, available=False)
    assert await engine.enqueue("t1", "c1", "chat", skills={"de": 1}) == []
    # an hour of waiting opens every level and every preferred skill; not a hard one
    assert await pass_time(engine, clock, 3600, keep=["a1", "a2"], step=600) == []
    assert (await engine.task_view("t1") or {})["state"] == "queued"
    effects = await engine.set_presence("a2", "available")
    assert work(effects) == [offer("t1", "a2", T0 + 3600)]


async def test_a_proficiency_minimum_holds_both_ways(engine: RoutingEngine) -> None:
    await skilled(engine, "a_low", "CCS", {"de": 2})  # idle first, first by id too
    assert await engine.enqueue("t1", "c1", "chat", skills={"de": 3}) == []  # task side
    await skilled(engine, "b_high", "CCS", {"de": 4}, available=False)
    effects = await engine.set_presence("b_high", "available")  # agent side
    assert work(effects) == [offer("t1", "b_high", T0)]
    assert await engine.enqueue("t2", "c2", "chat", skills={"de": 2}) == [
        offer("t2", "a_low", T0),
        busy("a_low"),
    ]


async def test_a_preferred_skill_goes_first_to_agents_who_have_it(engine: RoutingEngine) -> None:
    await skilled(engine, "plain", "CCS", None)  # longest idle
    await skilled(engine, "french", "CCS", ["fr"])
    assert await engine.enqueue("t1", "c1", "chat", skills={"fr": 1}) == [
        offer("t1", "french", T0),
        busy("french"),
    ]


async def test_a_preferred_skill_widens_on_time(engine: RoutingEngine, clock: FakeClock) -> None:
    await skilled(engine, "plain", "CCS", {"de": 5})
    assert await engine.enqueue("t1", "c1", "chat", skills={"fr": 2}) == []
    assert await pass_time(engine, clock, 59, keep=["plain"], step=59) == []
    assert await pass_time(engine, clock, 1, keep=["plain"]) == [
        offer("t1", "plain", T0 + 60),
        busy("plain"),
    ]


async def test_each_skill_may_widen_at_its_own_time(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    await skilled(engine, "plain", "CCS", None)
    await engine.enqueue("t1", "c1", "chat", skills={"vip": 1})
    assert await pass_time(engine, clock, 30, keep=["plain"], step=15) == [
        offer("t1", "plain", T0 + 30),
        busy("plain"),
    ]


async def test_an_agent_judges_waiting_work_by_its_wait(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    """Agent side: work that asks for a preferred skill the agent lacks is taken only once it
    has waited the widening time; the older of two such tasks first."""
    await skilled(engine, "keep", "TRN", None, available=False)  # keeps levels as they are
    await engine.enqueue("t1", "c1", "chat", skills={"fr": 1})
    clock.advance(20)
    await engine.heartbeat("keep")
    await engine.enqueue("t2", "c2", "chat", skills={"fr": 1})
    await skilled(engine, "plain", "CCS", None, available=False)
    clock.advance(30)
    await engine.heartbeat("keep")
    assert work(await engine.set_presence("plain", "available")) == []
    await engine.set_presence("plain", "away")
    clock.advance(15)  # t1 has waited 65 s, t2 45 s
    await engine.heartbeat("keep")
    assert work(await engine.set_presence("plain", "available")) == [offer("t1", "plain", T0 + 65)]


async def test_tiers_filter_before_skills(engine: RoutingEngine, clock: FakeClock) -> None:
    """The best German speaker is a trainee: SIC work (PAM and SAM only) never reaches it."""
    await skilled(engine, "trn", "TRN", {"de": 5})
    await skilled(engine, "pam", "PAM", None)
    assert await engine.enqueue("t1", "c1", "chat", group="SIC", skills={"de": 1}) == []
    assert await pass_time(engine, clock, 600, keep=["trn", "pam"], step=120) == []
    await skilled(engine, "pam2", "PAM", {"de": 1}, available=False)
    effects = await engine.set_presence("pam2", "available")
    assert work(effects) == [offer("t1", "pam2", T0 + 600)]


async def test_the_last_agent_must_have_a_hard_skill(engine: RoutingEngine) -> None:
    """The last-agent preference yields to a hard skill: the task is not held for an agent who
    lacks it, and goes to one who has it."""
    await skilled(engine, "last", "CCS", None, available=False)
    await skilled(engine, "other", "CCS", {"de": 1})
    effects = await engine.enqueue("t1", "c1", "chat", last_agent="last", skills={"de": 1})
    assert effects == [offer("t1", "other", T0), busy("other")]


async def test_transfer_to_an_agent_without_a_hard_skill_is_forbidden(
    engine: RoutingEngine,
) -> None:
    await skilled(engine, "a1", "CCS", {"de": 3})
    await skilled(engine, "a2", "CCS", {"de": 2})
    await skilled(engine, "a3", "CCS", {"de": 3})
    effects = await engine.enqueue("t1", "c1", "chat", skills={"de": 3})
    await engine.accept(res_of(effects, "t1"), "a1")
    with pytest.raises(Forbidden):
        await engine.transfer("t1", "a1", to_agent="a2")
    assert (await engine.task_view("t1") or {})["agent"] == "a1"  # nothing changed
    moved = await engine.transfer("t1", "a1", to_agent="a3")
    assert offer("t1", "a3", T0) in moved


async def test_views_show_skills(engine: RoutingEngine) -> None:
    await skilled(engine, "a1", "CCS", ["fr", "de"], available=False)
    await skilled(engine, "a2", "CCS", None, available=False)
    await engine.enqueue("t1", "c1", "chat", skills={"fr": 2, "de": 1})
    await engine.enqueue("t2", "c2", "chat")
    a1, a2 = await engine.agent_view("a1"), await engine.agent_view("a2")
    t1, t2 = await engine.task_view("t1"), await engine.task_view("t2")
    assert a1 is not None and a1["skills"] == {"de": 1, "fr": 1}
    assert a2 is not None and "skills" not in a2
    assert t1 is not None and t1["skills"] == {"de": 1, "fr": 2}
    assert t2 is not None and "skills" not in t2


@pytest.mark.parametrize(
    "skills",
    [
        {"de": 0},
        {"de": 6},
        {"de": True},
        {"de": "3"},
        {"": 1},
        {"a|b": 1},
        {"a,b": 1},
        {"a=b": 1},
        ["x" * 65],
        "de",
        {f"s{n}": 1 for n in range(51)},
    ],
)
async def test_bad_skills_are_refused_and_change_nothing(
    engine: RoutingEngine, skills: object
) -> None:
    with pytest.raises(Invalid):
        await engine.enqueue("t1", "c1", "chat", skills=skills)  # type: ignore[arg-type]
    with pytest.raises(Invalid):
        await engine.login("a1", "CCS", skills=skills)  # type: ignore[arg-type]
    assert await engine.task_view("t1") is None
    assert await engine.agent_view("a1") is None


async def test_explain_says_which_agents_the_skills_keep_away(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    await skilled(engine, "nodeu", "CCS", {"fr": 2})  # lacks the hard de
    await skilled(engine, "weak", "CCS", {"de": 1})  # below the minimum
    await skilled(engine, "nofr", "CCS", {"de": 3})  # has de, lacks the preferred fr
    await skilled(engine, "gone", "CCS", {"de": 3, "fr": 1}, available=False)
    await engine.enqueue("c1", "cu1", "chat", skills={"de": 2, "fr": 1})
    raw = await engine.why_raw("c1", "cu1")
    answer = explain(raw, engine.policy, "c1", round(engine.clock() * 1000))
    assert answer["waiting"]["who"]["CCS"] == {
        "missing_skill": ["nodeu", "weak"],
        "preferred_skill": ["nofr"],
        "away": ["gone"],
    }
    assert await pass_time(engine, clock, 60, keep=["nodeu", "weak", "nofr", "gone"]) == [
        offer("c1", "nofr", T0 + 60),
        busy("nofr"),
    ]


async def test_skill_rules_ask_for_skills_by_the_profile(
    kind: str, make_engine: EngineFactory
) -> None:
    """`[[skills.rules]]`: a French customer's work asks for French (hard here); the event's own
    skills and the rules' add up, the higher minimum winning."""
    policy = Policy(
        skills_hard=("fr",),
        skill_rules=(SkillRule("country", "eq", "FR", "fr", 2),),
    )
    engine = await make_engine(kind, policy)
    await skilled(engine, "plain", "CCS", None)
    await skilled(engine, "weak", "CCS", {"fr": 1})
    assert await engine.enqueue("t1", "c1", "chat", attrs={"country": "FR"}) == []
    assert (await engine.task_view("t1") or {})["skills"] == {"fr": 2}
    await engine.enqueue("t2", "c2", "chat", attrs={"country": "FR"}, skills={"fr": 1, "x": 1})
    assert (await engine.task_view("t2") or {})["skills"] == {"fr": 2, "x": 1}
    assert await engine.enqueue("t3", "c3", "chat", attrs={"country": "DE"}) == [
        offer("t3", "plain", T0),
        busy("plain"),
    ]
