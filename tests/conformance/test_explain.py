"""Explain on both engines: decisions as recorded, and what waiting work waits for."""

from __future__ import annotations

from typing import Any

from queues.base import RoutingEngine
from queues.explain import explain, iso_ms
from queues.policy import Policy
from queues.trace import normalised
from router.settings import load_settings
from tests.conformance.helpers import T0, agent, offers, pass_time, res_of
from tests.conftest import EngineFactory
from tests.support import FakeClock

EVERYONE = ("trn", "ccs", "pam", "sam")


async def why(engine: RoutingEngine, conv: str, customer: str) -> dict[str, Any]:
    now_ms = round(engine.clock() * 1000)
    raw = await engine.why_raw(conv, customer)
    return explain(raw, engine.policy, conv, now_ms)


async def staff(engine: RoutingEngine, *, available: tuple[str, ...] = ()) -> None:
    for name in EVERYONE:
        await agent(engine, name, name.upper(), available=name in available)


def kinds(answer: dict[str, Any]) -> list[str]:
    return [d["kind"] for d in answer["decisions"]]


async def test_a_waiting_sic_conversation_lists_pam_and_sam_only_whatever_the_wait(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    await staff(engine, available=("trn", "ccs"))  # free lower tiers: they must stay unnamed
    await engine.enqueue("c1", "cu1", "chat", group="SIC")
    for wait in (0, 59, 61, 121, 600):
        await pass_time(engine, clock, wait - (engine.clock() - T0), keep=EVERYONE)
        answer = await why(engine, "c1", "cu1")
        waiting = answer["waiting"]
        assert answer["state"] == "waiting"
        assert set(waiting["agents"]) == {"PAM", "SAM"}
        assert waiting["who"] == {"PAM": {"away": ["pam"]}, "SAM": {"away": ["sam"]}}
        assert waiting["eligible_now"] == ["PAM", "SAM"]
        assert waiting["next"] == []
        named = {d.get("agent") for d in answer["decisions"]} | {
            d.get("tier") for d in answer["decisions"]
        }
        assert named.isdisjoint({"trn", "ccs", "TRN", "CCS"})
        raw = await engine.why_raw("c1", "cu1")
        assert {row[1] for row in raw["waiting"][0]["agents"]} == {"PAM", "SAM"}


async def test_a_waiting_normal_one_says_when_pam_and_sam_open_under_the_shipped_policy(
    kind: str, make_engine: EngineFactory, clock: FakeClock
) -> None:
    shipped = load_settings(None, {}).policy
    engine = await make_engine(kind, shipped)
    await staff(engine)  # all logged in, all away: the levels stay closed
    await engine.enqueue("c1", "cu1", "chat", attrs={"top_up": True})
    answer = await why(engine, "c1", "cu1")
    waiting = answer["waiting"]
    assert waiting["eligible_now"] == ["TRN", "CCS"]
    assert waiting["next"] == [
        {"tier": "PAM", "at": iso_ms(int(T0 * 1000) + 60_000)},
        {"tier": "SAM", "at": iso_ms(int(T0 * 1000) + 120_000)},
    ]
    assert waiting["agents"] == {t: {"away": 1} for t in ("TRN", "CCS", "PAM", "SAM")}
    assert waiting["position"] == 1
    [enqueued] = answer["decisions"]
    assert enqueued["kind"] == "enqueued"
    assert enqueued["rules"] == ["top_up truthy True +2"]
    assert enqueued["priority"] == 2
    await pass_time(engine, clock, 61, keep=EVERYONE)
    answer = await why(engine, "c1", "cu1")
    assert kinds(answer) == ["enqueued", "level_opened"]
    assert answer["decisions"][1]["tier"] == "PAM"
    assert answer["decisions"][1]["at"] == iso_ms(int(T0 * 1000) + 60_000)
    assert answer["waiting"]["eligible_now"] == ["TRN", "CCS", "PAM"]
    assert answer["waiting"]["next"] == [{"tier": "SAM", "at": iso_ms(int(T0 * 1000) + 120_000)}]


async def test_a_rejected_offer_shows_the_rejecting_agent_as_excluded(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    await agent(engine, "ccs", "CCS")
    await agent(engine, "pam", "PAM", available=False)
    effects = await engine.enqueue("c1", "cu1", "chat")
    clock.advance(3)
    await engine.reject(res_of(effects, "c1"), "ccs")
    answer = await why(engine, "c1", "cu1")
    assert kinds(answer) == ["enqueued", "offered", "rejected"]
    offered = answer["decisions"][1]
    assert (offered["agent"], offered["tier"], offered["why"]) == ("ccs", "CCS", "longest_idle")
    assert answer["decisions"][2]["agent"] == "ccs"
    assert answer["waiting"]["who"]["CCS"] == {"excluded": ["ccs"]}
    assert answer["waiting"]["who"]["PAM"] == {"away": ["pam"]}


async def test_a_timed_out_offer_shows_the_timeout_and_the_agent_set_away(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    await agent(engine, "trn", "TRN")
    await agent(engine, "ccs", "CCS", available=False)
    effects = await engine.enqueue("c1", "cu1", "chat")
    assert [o.agent for o in offers(effects)] == ["trn"]
    await pass_time(engine, clock, 20, keep=("ccs", "trn"), step=20)
    answer = await why(engine, "c1", "cu1")
    assert kinds(answer) == ["enqueued", "offered", "timed_out"]
    timed_out = answer["decisions"][2]
    assert timed_out["agent"] == "trn"
    assert "no answer within 20 s" in timed_out["reason"]
    assert "set away" in timed_out["reason"]
    view = await engine.agent_view("trn")
    assert view is not None and view["chosen"] == "away"
    assert answer["waiting"]["who"] == {
        "TRN": {"excluded": ["trn"]},
        "CCS": {"away": ["ccs"]},
        "PAM": {},
        "SAM": {},
    }


async def test_a_waiting_task_counts_agents_by_why_they_do_not_take_it(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    full = {"chat": 1, "sms": 0, "email": 0, "voice": 1}
    await agent(engine, "ccs1", "CCS", capacity=full)
    await agent(engine, "ccs2", "CCS", capacity=full)
    await agent(engine, "ccs3", "CCS", available=False)
    await engine.enqueue("v1", "cu9", "voice")  # ccs1 takes the call: voice blocks its chat
    await engine.enqueue("x1", "cu8", "chat")  # ccs2 takes this one: at capacity
    await engine.enqueue("c1", "cu1", "chat")
    await engine.enqueue("c2", "cu2", "chat")
    answer = await why(engine, "c2", "cu2")
    assert answer["waiting"]["who"]["CCS"] == {
        "voice_call": ["ccs1"],
        "at_capacity": ["ccs2"],
        "away": ["ccs3"],
    }
    assert answer["waiting"]["position"] == 2  # c1 came first


async def test_finished_work_keeps_its_story(engine: RoutingEngine, clock: FakeClock) -> None:
    await agent(engine, "ccs", "CCS")
    effects = await engine.enqueue("c1", "cu1", "chat")
    clock.advance(2)
    await engine.accept(res_of(effects, "c1"), "ccs")
    clock.advance(60)
    await engine.complete("c1", "ccs")
    await engine.wrapup_done("c1", "ccs")
    answer = await why(engine, "c1", "cu1")
    assert answer["state"] == "ended"
    assert answer["waiting"] is None
    assert kinds(answer) == ["enqueued", "offered", "assigned", "completed", "ended"]
    assert answer["decisions"][2]["reason"] == "accepted after 2 s in line"


async def test_both_engines_record_the_same_story(
    make_engine: EngineFactory, clock: FakeClock
) -> None:
    answers = []
    for kind in ("memory", "redis"):
        engine = await make_engine(kind, Policy())
        start = clock.now
        await agent(engine, "ccs", "CCS")
        await agent(engine, "sam", "SAM", available=False)
        await engine.enqueue("c1", "cu1", "chat", last_agent="sam")
        await pass_time(engine, clock, 6, keep=("ccs", "sam"), step=6)  # preference ends
        await engine.reclassify("cu1", "CSC")
        await engine.set_presence("sam", "available")
        raw = await engine.why_raw("c1", "cu1")
        trace = normalised(raw["live"][0]["trace"])
        rows = [[at - round(start * 1000), *rest] for at, *rest in trace]
        answers.append(rows)
        clock.now = start
    assert answers[0] == answers[1]
    assert [r[1] for r in answers[0]] == [
        "enqueued",
        "held",
        "requeued",
        "offered",
        "reclassified",
        "requeued",
        "offered",
    ]


async def test_a_task_keeps_its_arrival_and_its_latest_decisions(
    kind: str, make_engine: EngineFactory, clock: FakeClock
) -> None:
    engine = await make_engine(kind, Policy(explain_decisions=4))
    for name in ("a1", "a2", "a3"):
        await agent(engine, name, "CCS")
    effects = await engine.enqueue("c1", "cu1", "chat")
    for _ in range(2):  # a1 rejects, then a2
        clock.advance(1)
        effects = await engine.reject(res_of(effects, "c1"), offers(effects)[0].agent)
    raw = await engine.why_raw("c1", "cu1")
    rows = normalised(raw["live"][0]["trace"])
    # enqueued, offered a1, rejected a1, offered a2, rejected a2, offered a3: four kept
    assert [(r[1], r[2]) for r in rows] == [
        ("enqueued", ""),
        ("offered", "a2"),
        ("rejected", "a2"),
        ("offered", "a3"),
    ]


async def test_open_work_is_in_the_recording_too(
    make_engine: EngineFactory, clock: FakeClock, redis_url: str
) -> None:
    from replay.recording import from_redis

    engine = await make_engine("redis", Policy())
    await agent(engine, "a1", "CCS")
    await engine.enqueue("c1", "cu1", "chat", attrs={"top_up": True})
    recording = await from_redis(redis_url, engine.domain, engine.policy, 0)
    [(name, rows)] = recording.traces.items()
    assert name == f"c1@{round(T0 * 1000)}"
    assert [r[1] for r in rows] == ["enqueued", "offered"]
    assert rows[0][3]["attrs"] == {"top_up": True}
