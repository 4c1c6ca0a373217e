"""Differential property test: random operation sequences against both engines and a model.

A hypothesis state machine drives the memory engine and the Redis engine with the same calls
at the same (fake) time. After every call both must return the same effects (or refuse with
the same error) - docs/routing.md says they make the same decisions in the same order - and
`tests.model.Model`, driven by the calls and effects, checks the guarantees of `queues.base`
on every effect. After every step both `dump()`s must be equal and agree with the model
(nothing lost, loads equal the held tasks, capacity, hard filter), and the queue stats equal.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import queues
from queues.base import RoutingEngine
from queues.effects import Effect
from queues.errors import RoutingError
from queues.policy import CHANNELS, GROUPS, TIERS, Policy
from queues.trace import normalised
from tests.model import Model
from tests.support import FakeClock

AGENTS = ("a0", "a1", "a2", "a3", "a4")
CUSTOMERS = ("c0", "c1", "c2", "c3")
ATTRS: tuple[dict[str, Any] | None, ...] = (
    None,
    {"hot": True},
    {"top_up": True},
    {"coins": 250, "hot": True},
    {"coins": 5},
)
POLICIES = {
    "default": Policy(),  # every skill preferred, widening after 60 s
    # no widening by empty levels, instant sms wrap-up, voice blocks two channels, no preference
    "variant": Policy(
        open_empty_levels=False,
        wrapup_s={"chat": 30.0, "sms": 0.0, "email": 60.0, "voice": 60.0},
        voice_blocks=("chat", "sms"),
        last_agent_s=0.0,
        reservation_timeout_s=15.0,
        skills_hard=("de",),
        skills_widen_s=20.0,
        skills_widen_by={"fr": 45.0},
    ),
}
AGENT_SKILLS = st.sampled_from([None, None, ["de"], {"de": 3}, ["fr"], {"de": 5, "fr": 2}])
WORK_SKILLS = st.sampled_from(
    [None, None, None, {"de": 1}, {"de": 4}, {"fr": 1}, {"de": 2, "fr": 2}]
)
CAPACITY = st.none() | st.dictionaries(
    st.sampled_from(CHANNELS), st.integers(min_value=0, max_value=3), max_size=4
)
STEPS_MS = st.sampled_from([0, 1, 999, 1000, 4999, 5000, 15000, 20000, 30000, 60000, 120000])
ADVANCE_MS = STEPS_MS | st.integers(0, 10_000) | st.integers(0, 130_000)


class RoutingMachine(RuleBasedStateMachine):
    """Both engines and the model, one call at a time."""

    def __init__(self, kinds: tuple[str, ...], redis_url: str | None, runner: asyncio.Runner):
        super().__init__()
        self.kinds = kinds
        self.redis_url = redis_url
        self.runner = runner
        self.engines: list[tuple[str, RoutingEngine, FakeClock]] = []
        self.model: Model | None = None
        self.next_task = 0
        self.enqueued: dict[str, str] = {}  # task → customer: whose routing story to compare

    # -- plumbing --------------------------------------------------------------------------------

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return self.runner.run(coro)

    @property
    def m(self) -> Model:
        assert self.model is not None
        return self.model

    @property
    def now_ms(self) -> int:
        return round(self.engines[0][2].now * 1000)

    def call(self, method: str, **kwargs: Any) -> list[Effect] | None:
        """Make the same call on every engine; they must agree; the model follows it."""
        outcomes: list[tuple[str, Any]] = []
        for _kind, engine, _clock in self.engines:
            fn: Callable[..., Coroutine[Any, Any, list[Effect]]] = getattr(engine, method)
            try:
                outcomes.append(("ok", self.run(fn(**kwargs))))
            except RoutingError as exc:
                outcomes.append(("refused", exc.code))
        first = outcomes[0]
        for (kind, _e, _c), other in zip(self.engines[1:], outcomes[1:], strict=True):
            assert other == first, (
                f"ENGINES DISAGREE on {method}({kwargs}) at {self.now_ms}:\n"
                f"  {self.engines[0][0]}: {first}\n  {kind}: {other}"
            )
        if first[0] != "ok":
            self.m.refused(method, kwargs, first[1], self.now_ms)
            return None
        self.m.apply(method, kwargs, first[1], self.now_ms)
        effects: list[Effect] = first[1]
        return effects

    # -- setup and teardown ------------------------------------------------------------------

    @initialize(
        policy=st.sampled_from(sorted(POLICIES)),
        staff=st.lists(
            st.tuples(st.sampled_from(TIERS), CAPACITY, AGENT_SKILLS), min_size=1, max_size=4
        ),
    )
    def start(self, policy: str, staff: list[tuple[str, dict[str, int] | None, Any]]) -> None:
        """Both engines on one fresh domain, and a few agents logged in and available."""
        self.model = Model(POLICIES[policy])
        domain = f"p-{uuid.uuid4().hex}"
        for kind in self.kinds:
            clock = FakeClock()
            url = self.redis_url if kind == "redis" else "memory"
            engine = queues.create_engine(POLICIES[policy], url, clock=clock, domain=domain)
            self.engines.append((kind, engine, clock))
            self.run(engine.start())
        for n, (tier, capacity, skills) in enumerate(staff):
            self.call("login", agent=AGENTS[n], tier=tier, capacity=capacity, skills=skills)
            self.call("set_presence", agent=AGENTS[n], state="available")

    def teardown(self) -> None:
        async def stop() -> None:
            for kind, engine, _clock in reversed(self.engines):
                try:
                    if kind == "redis":
                        await engine.purge()  # type: ignore[attr-defined]
                finally:
                    await engine.close()

        self.run(stop())
        self.engines = []

    # -- agents ------------------------------------------------------------------------------

    @rule(
        agent=st.sampled_from(AGENTS),
        tier=st.sampled_from(TIERS),
        capacity=CAPACITY,
        skills=AGENT_SKILLS,
    )
    def login(self, agent: str, tier: str, capacity: dict[str, int] | None, skills: Any) -> None:
        self.call("login", agent=agent, tier=tier, capacity=capacity, skills=skills)

    @rule(
        agent=st.sampled_from(AGENTS),
        tier=st.sampled_from(TIERS),
        capacity=CAPACITY,
        skills=AGENT_SKILLS,
    )
    def login_available(
        self, agent: str, tier: str, capacity: dict[str, int] | None, skills: Any
    ) -> None:
        self.call("login", agent=agent, tier=tier, capacity=capacity, skills=skills)
        self.call("set_presence", agent=agent, state="available")

    @rule(agent=st.sampled_from(AGENTS), state=st.sampled_from(["available", "available", "away"]))
    def set_presence(self, agent: str, state: str) -> None:
        self.call("set_presence", agent=agent, state=state)

    @rule(agent=st.sampled_from(AGENTS))
    def heartbeat(self, agent: str) -> None:
        self.call("heartbeat", agent=agent)

    @rule(agent=st.sampled_from(AGENTS))
    def logout(self, agent: str) -> None:
        self.call("logout", agent=agent)

    # -- tasks -------------------------------------------------------------------------------

    @rule(
        customer=st.sampled_from(CUSTOMERS),
        channel=st.sampled_from(CHANNELS),
        group=st.sampled_from(GROUPS),
        attrs=st.sampled_from(ATTRS),
        last_agent=st.none() | st.sampled_from((*AGENTS, "ghost")),
        skills=WORK_SKILLS,
    )
    def enqueue(
        self,
        customer: str,
        channel: str,
        group: str,
        attrs: dict[str, Any] | None,
        last_agent: str | None,
        skills: dict[str, int] | None = None,
    ) -> None:
        task = f"t{self.next_task}"
        self.next_task += 1
        self.enqueued[task] = customer
        self.call(
            "enqueue",
            task=task,
            customer=customer,
            channel=channel,
            group=group,
            attrs=attrs,
            last_agent=last_agent,
            skills=skills,
        )

    @precondition(lambda self: self.model is not None and bool(self.m.tasks))
    @rule(data=st.data())
    def enqueue_duplicate(self, data: st.DataObject) -> None:
        task = data.draw(st.sampled_from(sorted(self.m.tasks)))
        self.call("enqueue", task=task, customer="c0", channel="chat", group="normal")

    def _live(self) -> bool:
        return self.model is not None and bool(self.m.res)

    def _reservation(self, data: st.DataObject) -> tuple[str, str]:
        live = sorted((r.id, r.agent) for r in self.m.res.values())
        return data.draw(st.sampled_from(live), label="reservation")

    @precondition(lambda self: self._live())
    @rule(data=st.data())
    def accept(self, data: st.DataObject) -> None:
        res, agent = self._reservation(data)
        self.call("accept", reservation=res, agent=agent)

    @precondition(lambda self: self._live())
    @rule(data=st.data())
    def reject(self, data: st.DataObject) -> None:
        res, agent = self._reservation(data)
        self.call("reject", reservation=res, agent=agent)

    @precondition(lambda self: self.model is not None)
    @rule(
        data=st.data(),
        method=st.sampled_from(["accept", "reject"]),
        agent=st.sampled_from(AGENTS),
        bogus=st.sampled_from(["R999999", "R0", "x"]),
    )
    def answer_wrongly(self, data: st.DataObject, method: str, agent: str, bogus: str) -> None:
        """A reservation that is not the agent's, or one that does not exist (any more)."""
        known = sorted(self.m.res) + sorted(self.m.spent_res)
        res = data.draw(st.sampled_from(known), label="res") if known else bogus
        self.call(method, reservation=res, agent=agent)

    def _held(self, data: st.DataObject, state: str) -> tuple[str, str]:
        held = sorted((t.id, t.agent) for t in self.m.tasks.values() if t.state == state)
        task, agent = data.draw(st.sampled_from(held), label=f"{state} task")
        if data.draw(st.integers(0, 9), label="wrong agent?") == 0:
            agent = data.draw(st.sampled_from(AGENTS), label="wrong agent")
        return task, agent

    def _has(self, state: str) -> bool:
        return self.model is not None and any(t.state == state for t in self.m.tasks.values())

    @precondition(lambda self: self._has("assigned"))
    @rule(data=st.data())
    def complete(self, data: st.DataObject) -> None:
        task, agent = self._held(data, "assigned")
        self.call("complete", task=task, agent=agent)

    @precondition(lambda self: self._has("wrapup"))
    @rule(data=st.data())
    def wrapup_done(self, data: st.DataObject) -> None:
        task, agent = self._held(data, "wrapup")
        self.call("wrapup_done", task=task, agent=agent)

    @precondition(lambda self: self.model is not None)
    @rule(data=st.data())
    def withdraw(self, data: st.DataObject) -> None:
        task = data.draw(st.sampled_from([*sorted(self.m.tasks), "nope"]), label="task")
        self.call("withdraw", task=task)

    @precondition(lambda self: self._has("assigned"))
    @rule(
        data=st.data(), to_agent=st.sampled_from((*AGENTS, "ghost")), to_tier=st.sampled_from(TIERS)
    )
    def transfer(self, data: st.DataObject, to_agent: str, to_tier: str) -> None:
        task, agent = self._held(data, "assigned")
        if data.draw(st.booleans(), label="to an agent?"):
            self.call("transfer", task=task, agent=agent, to_agent=to_agent)
        else:
            self.call("transfer", task=task, agent=agent, to_tier=to_tier)

    @precondition(lambda self: self._has("assigned"))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        task, agent = self._held(data, "assigned")
        self.call("release", task=task, agent=agent)

    @precondition(lambda self: self.model is not None)
    @rule(customer=st.sampled_from((*CUSTOMERS, "nobody")), group=st.sampled_from(GROUPS))
    def reclassify(self, customer: str, group: str) -> None:
        self.call("reclassify", customer=customer, group=group)

    # -- time --------------------------------------------------------------------------------

    @precondition(lambda self: self.model is not None)
    @rule(
        ms=ADVANCE_MS,
        limit=st.sampled_from([500, 500, 500, 1, 2]),
        heartbeats=st.sampled_from(["none", "before", "after"]),
    )
    def advance_and_tick(self, ms: int, limit: int, heartbeats: str) -> None:
        """Time passes (0-130 s); maybe every desktop beats (before, or late: after); tick."""
        if heartbeats == "before":
            self._heartbeat_everyone()
        for _kind, _engine, clock in self.engines:
            clock.advance(ms / 1000)
        if heartbeats == "after":
            self._heartbeat_everyone()
        self.call("tick", limit=limit)

    def _heartbeat_everyone(self) -> None:
        for agent in AGENTS:
            self.call("heartbeat", agent=agent)

    # -- weights: the same rule under more names is drawn more often (work flows) -----------

    enqueue_2 = enqueue
    enqueue_3 = enqueue
    enqueue_4 = enqueue
    accept_2 = accept
    accept_3 = accept
    complete_2 = complete
    wrapup_done_2 = wrapup_done
    login_available_2 = login_available
    advance_and_tick_2 = advance_and_tick

    # -- after every step ----------------------------------------------------------------------

    @invariant()
    def engines_agree_with_each_other_and_the_model(self) -> None:
        if not self.engines:
            return
        dumps = [self.run(engine.dump()) for _kind, engine, _clock in self.engines]
        stats = [self.run(engine.queue_stats()) for _kind, engine, _clock in self.engines]
        for (kind, _e, _c), dump, stat in zip(self.engines[1:], dumps[1:], stats[1:], strict=True):
            assert dump == dumps[0], (
                f"ENGINES DISAGREE on dump() at {self.now_ms}:\n"
                f"  {self.engines[0][0]}: {dumps[0]}\n  {kind}: {dump}"
            )
            assert stat == stats[0], (
                f"ENGINES DISAGREE on queue_stats() at {self.now_ms}:\n"
                f"  {self.engines[0][0]}: {stats[0]}\n  {kind}: {stat}"
            )
        self.m.check_dump(dumps[0], f"dump() at {self.now_ms}")
        for task, customer in self.enqueued.items():
            whys = [
                comparable(self.run(engine.why_raw(task, customer)))
                for _kind, engine, _clock in self.engines
            ]
            for (kind, _e, _c), why in zip(self.engines[1:], whys[1:], strict=True):
                assert why == whys[0], (
                    f"ENGINES DISAGREE on why_raw({task}) at {self.now_ms}:\n"
                    f"  {self.engines[0][0]}: {whys[0]}\n  {kind}: {why}"
                )


def comparable(raw: dict[str, Any]) -> dict[str, Any]:
    """A `why` view with what cmsgpack cannot tell apart made equal (an empty map packs as an
    empty list; a missing position is false in Lua, None here)."""
    live = [{"view": i["view"], "trace": normalised(i["trace"])} for i in raw["live"]]
    kept = {k: normalised(v) for k, v in (raw["kept"] or {}).items()}
    waiting = [
        {**w, "opens": dict(w["opens"] or {}), "eligible": list(w["eligible"] or []),
         "agents": [list(a) for a in w["agents"] or []], "position": w["position"] or None}
        for w in raw["waiting"]
    ]  # fmt: skip
    return {"live": live, "kept": kept, "waiting": waiting}


SETTINGS = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    report_multiple_bugs=False,
)


def run_machine(kinds: tuple[str, ...], redis_url: str | None, config: settings) -> None:
    with asyncio.Runner() as runner:
        run_state_machine_as_test(lambda: RoutingMachine(kinds, redis_url, runner), settings=config)


def test_memory_and_redis_make_the_same_decisions_and_keep_every_guarantee(
    redis_url: str,
) -> None:
    run_machine(("memory", "redis"), redis_url, SETTINGS)
