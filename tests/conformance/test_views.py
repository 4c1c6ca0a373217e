"""The views: task_view, agent_view and dump agree and show the documented fields."""

from __future__ import annotations

from queues.base import RoutingEngine
from tests.conformance.helpers import T0_MS, agent, res_of
from tests.support import FakeClock

TASK_FIELDS = {
    "id",
    "customer",
    "channel",
    "group",
    "prio",
    "enq_ms",
    "state",
    "agent",
    "res",
    "restrict",
    "last",
    "held_for",
    "excluded",
}
AGENT_FIELDS = {
    "id",
    "tier",
    "chosen",
    "state",
    "cap",
    "load",
    "wrapups",
    "idle_ms",
    "exp_ms",
    "tasks",
}


async def test_unknown_ids_have_no_view(engine: RoutingEngine) -> None:
    assert await engine.task_view("ghost") is None
    assert await engine.agent_view("ghost") is None
    assert await engine.dump() == {"tasks": {}, "agents": {}}


async def test_a_queued_task_view(engine: RoutingEngine, clock: FakeClock) -> None:
    clock.advance(0.25)
    await engine.enqueue("t1", "c1", "voice", "SIC", attrs={"hot": True})
    assert await engine.task_view("t1") == {
        "id": "t1",
        "customer": "c1",
        "channel": "voice",
        "group": "SIC",
        "prio": 1,
        "enq_ms": T0_MS + 250,
        "state": "queued",
        "agent": "",
        "res": "",
        "restrict": "",
        "last": "",
        "held_for": "",
        "excluded": [],
    }


async def test_excluded_is_sorted(engine: RoutingEngine) -> None:
    for name in ("zed", "amy", "kim"):
        await agent(engine, name, "TRN", {"chat": 1})
    effects = await engine.enqueue("t1", "c1", "chat")
    for _ in range(3):
        view = await engine.task_view("t1")
        assert view is not None
        effects = await engine.reject(
            res_of(effects, "t1") if _ == 0 else view["res"], view["agent"]
        )
    view = await engine.task_view("t1")
    assert view is not None
    assert (view["state"], view["excluded"]) == ("queued", ["amy", "kim", "zed"])


async def test_dump_holds_every_task_and_agent_view(engine: RoutingEngine) -> None:
    await agent(engine, "a1", "TRN", {"chat": 1})
    await agent(engine, "a2", "SAM", available=False)
    res = res_of(await engine.enqueue("t1", "c1", "chat"), "t1")
    await engine.accept(res, "a1")
    await engine.enqueue("t2", "c2", "chat", last_agent="a1")  # held for a1
    await engine.enqueue("t3", "c3", "email", "CSC")
    dump = await engine.dump()
    assert set(dump) == {"tasks", "agents"}
    assert set(dump["tasks"]) == {"t1", "t2", "t3"}
    assert set(dump["agents"]) == {"a1", "a2"}
    for task_id, view in dump["tasks"].items():
        assert set(view) == TASK_FIELDS
        assert view == await engine.task_view(task_id)
    for agent_id, view in dump["agents"].items():
        assert set(view) == AGENT_FIELDS
        assert view == await engine.agent_view(agent_id)
    assert (dump["tasks"]["t1"]["state"], dump["tasks"]["t1"]["agent"]) == ("assigned", "a1")
    assert (dump["tasks"]["t2"]["state"], dump["tasks"]["t2"]["held_for"]) == ("queued", "a1")
    assert dump["agents"]["a1"]["state"] == "busy"
    assert dump["agents"]["a2"]["state"] == "away"


async def test_agent_view_tracks_load_and_wrapups(engine: RoutingEngine, clock: FakeClock) -> None:
    await agent(engine, "a1", "TRN")
    clock.advance(2)
    effects = await engine.enqueue("t1", "c1", "chat")
    effects += await engine.enqueue("t2", "c2", "email")
    await engine.accept(res_of(effects, "t1"), "a1")
    await engine.accept(res_of(effects, "t2"), "a1")
    await engine.complete("t2", "a1")
    view = await engine.agent_view("a1")
    assert view is not None
    assert {c: n for c, n in view["load"].items() if n} == {"chat": 1, "email": 1}
    assert (view["wrapups"], view["state"], view["idle_ms"]) == (1, "busy", T0_MS + 2000)
