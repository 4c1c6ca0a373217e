"""Capacity per agent and channel (chat 3, sms 3, email 5, voice 1); voice blocks chat."""

from __future__ import annotations

import pytest

from queues.base import RoutingEngine
from queues.effects import Assigned, TaskEnded
from queues.policy import Policy
from tests.conformance.helpers import T0, agent, busy, load, offer, res_of, work
from tests.support import FakeClock

DEFAULT_CAP = {"chat": 3, "sms": 3, "email": 5, "voice": 1}


@pytest.mark.parametrize("channel", list(DEFAULT_CAP))
async def test_capacity_is_exhausted_per_channel(engine: RoutingEngine, channel: str) -> None:
    cap = DEFAULT_CAP[channel]
    await agent(engine, "a1", "TRN")
    for n in range(cap):
        effects = await engine.enqueue(f"t{n}", f"c{n}", channel)
        expected = [offer(f"t{n}", "a1", T0, channel)]
        assert effects == ([*expected, busy("a1")] if n == 0 else expected)
    assert await engine.enqueue("over", "cx", channel) == []
    assert await load(engine, "a1") == {channel: cap}
    view = await engine.task_view("over")
    assert view is not None
    assert view["state"] == "queued"
    # a second agent takes the overflow
    assert work(await agent(engine, "a2", "TRN")) == [offer("over", "a2", T0, channel)]


@pytest.mark.parametrize("channel", list(DEFAULT_CAP))
async def test_capacity_holds_through_accept_and_wrapup(
    engine: RoutingEngine, channel: str
) -> None:
    cap = DEFAULT_CAP[channel]
    await agent(engine, "a1", "TRN")
    effects = []
    for n in range(cap + 1):
        effects += await engine.enqueue(f"t{n}", f"c{n}", channel)
    for n in range(cap):
        await engine.accept(res_of(effects, f"t{n}"), "a1")
    await engine.complete("t0", "a1")
    # wrap-up still holds the slot
    assert await load(engine, "a1") == {channel: cap}
    assert await engine.task_view(f"t{cap}") is not None
    assert (await engine.task_view(f"t{cap}"))["state"] == "queued"  # type: ignore[index]
    assert work(await engine.wrapup_done("t0", "a1")) == [
        TaskEnded("t0", "a1", "completed"),
        offer(f"t{cap}", "a1", T0, channel),
    ]
    assert await load(engine, "a1") == {channel: cap}


async def test_channels_have_separate_capacity(engine: RoutingEngine) -> None:
    await agent(engine, "a1", "TRN")
    for n in range(3):
        await engine.enqueue(f"chat{n}", f"c{n}", "chat")
    assert work(await engine.enqueue("sms", "cs", "sms")) == [offer("sms", "a1", T0, "sms")]
    assert work(await engine.enqueue("mail", "ce", "email")) == [offer("mail", "a1", T0, "email")]
    assert await load(engine, "a1") == {"chat": 3, "sms": 1, "email": 1}


async def test_a_voice_call_blocks_new_chats(engine: RoutingEngine) -> None:
    await agent(engine, "a1", "TRN")
    effects = await engine.enqueue("call", "c1", "voice")
    assert effects == [offer("call", "a1", T0, "voice"), busy("a1")]
    # reserved voice already blocks chat; other channels stay open
    assert await engine.enqueue("chat1", "c2", "chat") == []
    assert await engine.enqueue("sms1", "c3", "sms") == [offer("sms1", "a1", T0, "sms")]
    assert await engine.accept(effects[0].reservation, "a1") == [  # type: ignore[union-attr]
        Assigned("call", "a1", "voice")
    ]
    assert await engine.enqueue("chat2", "c4", "chat") == []
    # wrap-up of the call still blocks chat
    await engine.complete("call", "a1")
    assert await engine.enqueue("chat3", "c5", "chat") == []
    # the call's end frees chat: the waiting chats are offered in line order
    assert work(await engine.wrapup_done("call", "a1")) == [
        TaskEnded("call", "a1", "completed"),
        offer("chat1", "a1", T0),
        offer("chat2", "a1", T0),
        offer("chat3", "a1", T0),
    ]


async def test_chats_do_not_block_a_voice_call(engine: RoutingEngine) -> None:
    await agent(engine, "a1", "TRN")
    for n in range(3):
        await engine.enqueue(f"chat{n}", f"c{n}", "chat")
    assert await engine.enqueue("call", "cv", "voice") == [offer("call", "a1", T0, "voice")]
    assert await load(engine, "a1") == {"chat": 3, "voice": 1}


async def test_one_chat_then_a_call_closes_chat(engine: RoutingEngine) -> None:
    await agent(engine, "a1", "TRN")
    await engine.enqueue("chat0", "c0", "chat")
    assert await engine.enqueue("call", "cv", "voice") == [offer("call", "a1", T0, "voice")]
    # chat load 1 of 3, but a call is on: no new chat
    assert await engine.enqueue("chat1", "c1", "chat") == []


async def test_voice_blocks_can_be_turned_off(make_engine, kind: str) -> None:
    engine = await make_engine(kind, Policy(voice_blocks=()))
    await agent(engine, "a1", "TRN")
    await engine.enqueue("call", "cv", "voice")
    assert await engine.enqueue("chat", "c1", "chat") == [offer("chat", "a1", T0)]


async def test_per_agent_capacity_overrides(engine: RoutingEngine) -> None:
    await agent(engine, "one", "TRN", {"chat": 1, "voice": 0, "email": 7})
    await agent(engine, "two", "TRN", {"chat": 0})
    assert work(await engine.enqueue("chat0", "c0", "chat")) == [offer("chat0", "one", T0)]
    # one is full on chat, two takes no chat at all
    assert await engine.enqueue("chat1", "c1", "chat") == []
    # one takes no voice: two gets it though one has waited as long
    assert work(await engine.enqueue("call", "cv", "voice")) == [offer("call", "two", T0, "voice")]
    for n in range(7):
        await engine.enqueue(f"mail{n}", f"m{n}", "email")
    assert await load(engine, "one") == {"chat": 1, "email": 7}
    assert await load(engine, "two") == {"voice": 1}


async def test_policy_capacity_defaults(make_engine, kind: str) -> None:
    engine = await make_engine(kind, Policy(capacity={"chat": 2, "sms": 0, "email": 1, "voice": 1}))
    await agent(engine, "a1", "TRN")
    for n in range(3):
        await engine.enqueue(f"t{n}", f"c{n}", "chat")
    assert await engine.enqueue("s", "cs", "sms") == []
    assert await load(engine, "a1") == {"chat": 2}


async def test_capacity_never_exceeded_by_agent_side_matching(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    for n in range(5):
        await engine.enqueue(f"chat{n}", f"c{n}", "chat")
        clock.advance(1)
    for n in range(2):
        await engine.enqueue(f"call{n}", f"v{n}", "voice")
        clock.advance(1)
    await engine.login("a1", "TRN")
    effects = work(await engine.set_presence("a1", "available"))
    # line order: chat0..chat4 then the calls; three chats fill chat, then one call
    assert effects == [
        offer("chat0", "a1", T0 + 7),
        offer("chat1", "a1", T0 + 7),
        offer("chat2", "a1", T0 + 7),
        offer("call0", "a1", T0 + 7, "voice"),
    ]
    assert await load(engine, "a1") == {"chat": 3, "voice": 1}


async def test_a_call_first_in_line_blocks_the_chats_behind_it(
    engine: RoutingEngine, clock: FakeClock
) -> None:
    await engine.enqueue("call", "v", "voice")
    clock.advance(1)
    await engine.enqueue("chat", "c", "chat")
    await engine.login("a1", "TRN")
    assert work(await engine.set_presence("a1", "available")) == [
        offer("call", "a1", T0 + 1, "voice")
    ]
