"""The voice (CTI) channel over real sockets: a scripted PBX (a local aiohttp server that records
`connect` commands and checks their signature) and real agent desktops on `/v1/agent/ws`
against `create_app` + `add_voice` on 127.0.0.1.

Every wait is bounded (`WAIT`); "nothing arrives" is a desktop `ping` round trip. The parsing of
PBX events and the E.164 normalisation are also checked as plain functions.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import aiohttp
import jwt
import pytest
import redis.asyncio as aioredis
import structlog
from aiohttp import web

import queues
from channels.voice import e164
from router.app import create_app
from router.channel_voice import PATH, VOICE_KEY, VoiceConnector, parse_call_event
from router.errors import BadEvent
from router.settings import load_settings
from store.base import Store
from store.redis import RedisStore
from tests.support import eventually, free_port, serve_app
from tests.test_e2e import (
    JWT_SECRET,
    WAIT,
    WEBHOOK_SECRET,
    AppServer,
    Desk,
    QuickStore,
    Running,
    base_env,
    event,
    open_desk,
    purge_domain,
    send_event,
    sign,
)

Frame = dict[str, Any]
PHONE = "+49 151 2233 4455"  # the caller, as a PBX may write it
E164 = "+4915122334455"
TRUNK = "+4930901820"  # the number the customer dialled
ENDPOINT_X = "sip:x@pbx.test"


def token(
    agent: str,
    tier: str = "CCS",
    role: str = "agent",
    *,
    endpoint: str | None = None,
    capacity: dict[str, int] | None = None,
) -> str:
    claims: dict[str, Any] = {
        "sub": agent,
        "tier": tier,
        "name": f"Agent {agent}",
        "role": role,
        "exp": int(time.time() + 3600),
    }
    if endpoint is not None:
        claims["endpoint"] = endpoint
    if capacity is not None:
        claims["capacity"] = capacity
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


def call(kind: str, call_id: str, sender: str = PHONE, **extra: Any) -> Frame:
    out: Frame = {"id": f"pbx-{uuid.uuid4().hex}", "type": kind, "call_id": call_id}
    out.update({"from": sender, "to": TRUNK, **extra})
    return out


# -- the scripted PBX --------------------------------------------------------------------------


@dataclass
class Pbx:
    """Answers each `connect` with the next scripted status (then 200), a `held` call only
    once its event is set; records every one."""

    url: str = ""
    script: list[int] = field(default_factory=list)
    received: list[tuple[Frame, bool, bytes]] = field(default_factory=list)  # command, signed ok
    arrived: asyncio.Queue[Frame] = field(default_factory=asyncio.Queue)
    held: dict[str, asyncio.Event] = field(default_factory=dict)  # call_id → answer once set

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        expected = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
        header = request.headers.get("X-Omniroute-Signature", "")
        command = json.loads(body)
        self.received.append((command, hmac.compare_digest(expected, header), body))
        self.arrived.put_nowait(command)
        if command["call_id"] in self.held:
            await self.held[command["call_id"]].wait()
        status = self.script.pop(0) if self.script else 200
        return web.json_response({"ok": status < 300}, status=status)

    async def next(self) -> Frame:
        return await asyncio.wait_for(self.arrived.get(), WAIT)


@pytest.fixture
async def pbx() -> AsyncIterator[Pbx]:
    scripted = Pbx()
    app = web.Application()
    app.router.add_post("/cti/connect", scripted.handle)
    runner, base = await serve_app(app)
    scripted.url = f"{base}/cti/connect"
    try:
        yield scripted
    finally:
        await asyncio.wait_for(runner.cleanup(), WAIT)


# -- the server --------------------------------------------------------------------------------


class VoiceServer(AppServer):
    @property
    def connector(self) -> VoiceConnector:
        return self.app[VOICE_KEY]

    async def post_raw(self, body: bytes, signature: str | None = None) -> tuple[int, Frame]:
        headers = {"Content-Type": "application/json"}
        headers["X-Omniroute-Signature"] = sign(body) if signature is None else signature
        async with self.http.post(self.base + PATH, data=body, headers=headers) as resp:
            return resp.status, await asyncio.wait_for(resp.json(), WAIT)

    async def post(self, payload: Any, signature: str | None = None) -> tuple[int, Frame]:
        return await self.post_raw(json.dumps(payload).encode(), signature)

    async def send(self, payload: Frame) -> str:
        status, answer = await self.post(payload)
        assert status == 202, answer
        assert answer["accepted"] == 1 and answer["duplicates"] == 0
        conversation: str = answer["conversations"][0]
        return conversation

    async def chat(self, visitor: str, customer_id: str) -> str:
        """A chat message through `/v1/events` (the other channel of the same customer)."""
        return await send_event(self, event(visitor, customer_id=customer_id))

    async def connect(
        self,
        agent: str,
        *,
        endpoint: str | None = None,
        capacity: dict[str, int] | None = None,
    ) -> Desk:
        capacity = capacity or {"chat": 3, "voice": 1}
        return await open_desk(self, agent, token(agent, endpoint=endpoint, capacity=capacity))

    async def settled(self, n: int = 1) -> dict[str, int]:
        """The outcomes of the node's `connect`s ("sent", "failed") once `n` of them are done:
        the job loop sends them, after the agent heard `assigned`."""
        connects = self.connector.connects

        async def finished() -> bool:
            return sum(connects.values()) >= n

        await eventually(finished)
        return dict(connects)

    async def queues(self) -> dict[str, Frame]:
        headers = {"Authorization": f"Bearer {token('ops-1', 'SAM', 'ops')}"}
        async with self.http.get(self.base + "/v1/queues", headers=headers) as resp:
            assert resp.status == 200
            rows = (await asyncio.wait_for(resp.json(), WAIT))["queues"]
            return {row["name"]: row for row in rows}


Factory = Callable[..., Awaitable[VoiceServer]]


@pytest.fixture
async def make_server() -> AsyncIterator[Factory]:
    running = Running()

    async def factory(
        pbx_url: str = "", region: str = "DE", redis_url: str = "", domain: str = "", node: str = ""
    ) -> VoiceServer:
        """A node; given one `domain` and their own `node` names, several nodes on one Redis."""
        domain = domain or f"voice-{uuid.uuid4().hex[:12]}"
        env = base_env(domain, voice_pbx_url=pbx_url, sms_default_region=region)
        if redis_url:
            env["OMNIROUTE_REDIS_URL"] = redis_url
        if node:
            env["OMNIROUTE_SERVER_NODE"] = node
        settings = load_settings(None, env)
        engine = queues.create_engine(settings.policy, settings.redis.url, domain=settings.domain)
        store: Store = QuickStore(domain)
        if redis_url:
            store = RedisStore(redis_url, domain=domain)
            running.after(lambda: purge_domain(redis_url, domain))
        app = create_app(settings, engine, store, snapshot_interval_s=0.1)
        return await running.serve(app, VoiceServer)

    async with running:
        yield factory


async def offered(desk: Desk, conversation: str | None = None) -> Frame:
    while True:
        frame = await desk.until("offer")
        if conversation is None or frame["conversation"]["id"] == conversation:
            return frame


# -- the flows ---------------------------------------------------------------------------------


async def test_offered_call_is_offered_on_voice_and_accept_connects_the_agent(
    make_server: Factory, pbx: Pbx
) -> None:
    server = await make_server(pbx.url)
    agent = await server.connect("x", endpoint=ENDPOINT_X)
    conv = await server.send(call("call.offered", "call-1"))

    offer = await offered(agent, conv)
    assert offer["channel"] == "voice"
    (step,) = offer["conversation"]["history"]
    assert (step["channel"], step["type"], step["direction"]) == ("voice", "call.offered", "in")
    assert step["meta"] == {"call_id": "call-1", "to": TRUNK}
    assigned = await agent.request("offer.accept", reservation=offer["reservation"])
    assert assigned["type"] == "assigned"

    command = await pbx.next()
    assert command == {"type": "connect", "call_id": "call-1", "agent": "x", "endpoint": ENDPOINT_X}
    ((_, signed_ok, _),) = pbx.received
    assert signed_ok
    assert await server.settled() == {"sent": 1}


async def test_national_caller_is_the_same_customer_as_e164(make_server: Factory) -> None:
    server = await make_server()
    first = await server.send(call("call.offered", "call-a", sender="+4915122334455"))
    again = await server.send(call("call.answered", "call-a", sender="0151 22334455"))
    assert again == first  # "0151…" read in [sms] default_region DE: the same caller


async def test_unanswered_call_that_ends_is_withdrawn_and_counted_abandoned(
    make_server: Factory,
) -> None:
    server = await make_server()
    agent = await server.connect("x")
    conv = await server.send(call("call.offered", "call-2"))
    offer = await offered(agent, conv)

    await server.send(call("call.ended", "call-2"))
    revoked = await agent.until("offer.revoked", reservation=offer["reservation"])
    assert revoked["reason"] == "withdrawn"

    async def counted() -> bool:
        return bool((await server.queues())["voice"]["abandoned"] == 1)

    await eventually(counted)


async def test_answered_then_ended_call_records_talk_time_and_starts_wrapup(
    make_server: Factory, pbx: Pbx
) -> None:
    server = await make_server(pbx.url)
    agent = await server.connect("x", endpoint=ENDPOINT_X)
    offered_at = "2026-11-23T12:00:00Z"
    conv = await server.send(call("call.offered", "call-3", occurred_at=offered_at))
    offer = await offered(agent, conv)
    await agent.request("offer.accept", reservation=offer["reservation"])
    await pbx.next()

    await server.send(call("call.answered", "call-3", occurred_at="2026-11-23T12:00:05Z"))
    await server.send(call("call.ended", "call-3", occurred_at="2026-11-23T12:00:47.500+00:00"))
    customer = offer["conversation"]["customer"]["id"]

    async def talk_time() -> bool:
        history = await server.service.store.history(customer, 50)
        ended = [i for i in history if i.type == "call.ended"]
        return bool(ended) and ended[0].meta.get("talk_s") == 42.5

    await eventually(talk_time)
    await agent.until("presence", state="wrapup")  # an answered call that ends: after-call work


async def test_call_from_a_customer_whose_chat_is_assigned_goes_to_that_agent_first(
    make_server: Factory, pbx: Pbx
) -> None:
    server = await make_server(pbx.url)
    x = await server.connect("x", endpoint=ENDPOINT_X)
    chat = await server.chat("visitor:c77", "cust-77")
    chat_offer = await offered(x, chat)
    assert chat_offer["channel"] == "chat"
    await x.request("offer.accept", reservation=chat_offer["reservation"])
    y = await server.connect("y", endpoint="sip:y@pbx.test")  # free, and would take a new call

    conv = await server.send(call("call.offered", "call-4", customer_id="cust-77"))
    assert conv == chat  # one conversation across channels
    offer = await offered(x, chat)
    assert offer["channel"] == "voice"
    assert [i["channel"] for i in offer["conversation"]["history"]] == ["chat", "voice"]
    assert not [f for f in await y.quiet() if f["type"] == "offer"]

    await x.request("offer.accept", reservation=offer["reservation"])
    command = await pbx.next()
    assert command == {"type": "connect", "call_id": "call-4", "agent": "x", "endpoint": ENDPOINT_X}


async def test_pbx_failing_once_is_retried_with_the_same_signed_command(
    make_server: Factory, pbx: Pbx
) -> None:
    pbx.script = [500]
    server = await make_server(pbx.url)
    agent = await server.connect("x", endpoint=ENDPOINT_X)
    conv = await server.send(call("call.offered", "call-5"))
    offer = await offered(agent, conv)
    await agent.request("offer.accept", reservation=offer["reservation"])

    first, second = await pbx.next(), await pbx.next()
    assert first == second == {**first, "call_id": "call-5", "agent": "x"}
    assert [ok for _, ok, _ in pbx.received] == [True, True]
    assert pbx.received[0][2] == pbx.received[1][2]  # the very same bytes
    assert await server.settled() == {"sent": 1}


async def test_a_connect_the_pbx_holds_does_not_hold_up_the_next(
    make_server: Factory, pbx: Pbx
) -> None:
    """The PBX has not answered the first call's connect yet: the second call's connect goes
    out meanwhile (each job is a task of its own in the job loop)."""
    first_answered = pbx.held["slow-1"] = asyncio.Event()
    server = await make_server(pbx.url)
    calls = [("x", "slow-1", "+4915122334001"), ("y", "next-2", "+4915122334002")]
    for agent_id, call_id, sender in calls:
        agent = await server.connect(agent_id, endpoint=f"sip:{agent_id}@pbx.test")
        conv = await server.send(call("call.offered", call_id, sender=sender))
        offer = await offered(agent, conv)
        await agent.request("offer.accept", reservation=offer["reservation"])
        assert (await pbx.next())["call_id"] == call_id  # the second while the first waits
    first_answered.set()
    assert await server.settled(2) == {"sent": 2}


async def test_a_connect_in_flight_when_the_job_loop_stops_is_let_finish() -> None:
    """A node stopping cancels its job loop (after the loops' drain); the connect it was
    waiting on goes on, acknowledges its job, and cleanup's `drain` lets it finish, so no
    other node sends it again."""
    acked: list[str] = []

    async def ack_jobs(job_ids: list[str]) -> None:
        acked.extend(job_ids)

    async def call_id_of(task: str) -> str:
        return "call-1"

    store = SimpleNamespace(ack_jobs=ack_jobs)
    service = SimpleNamespace(identities={}, call_id_of=call_id_of, store=store)
    connector = VoiceConnector(service, "http://pbx.invalid/connect", "secret")  # type: ignore[arg-type]
    connector._session = object()  # type: ignore[assignment] - started
    asked, answer = asyncio.Event(), asyncio.Event()

    async def pbx_answers_when_told(url: str, body: bytes, headers: Any) -> int:
        asked.set()
        await answer.wait()
        return 200

    object.__setattr__(connector.client, "transport", pbx_answers_when_told)
    job = asyncio.create_task(connector.run_job("7-0", {"task": "t", "agent": "x"}))
    await asyncio.wait_for(asked.wait(), WAIT)
    job.cancel()  # the job loop, cancelled while the PBX has not answered
    with pytest.raises(asyncio.CancelledError):
        await job
    connector._session = None  # cleanup: the session goes after the drain
    answer.set()
    await connector.drain(wait_s=WAIT)
    assert connector.connects == {"sent": 1} and acked == ["7-0"]


async def test_a_node_stopping_lets_a_connect_in_flight_note_its_job_before_the_store_closes(
    pbx: Pbx, redis_url: str
) -> None:
    """Cleanup begins while the PBX has not answered a connect: the connect finishes and its
    job is noted done in the store before the service closes it (nothing left for another
    node to send again, no store opened again after its close)."""
    answer = pbx.held["stop-1"] = asyncio.Event()
    domain = f"voice-{uuid.uuid4().hex[:12]}"
    env = {**base_env(domain, voice_pbx_url=pbx.url), "OMNIROUTE_REDIS_URL": redis_url}
    settings = load_settings(None, env)
    engine = queues.create_engine(settings.policy, redis_url, domain=domain)
    store = RedisStore(redis_url, domain=domain)
    runner, base = await serve_app(create_app(settings, engine, store, snapshot_interval_s=0.1))
    server = VoiceServer(base, runner.app, aiohttp.ClientSession())
    try:
        agent = await server.connect("x", endpoint=ENDPOINT_X)
        conv = await server.send(call("call.offered", "stop-1"))
        offer = await offered(agent, conv)
        await agent.request("offer.accept", reservation=offer["reservation"])
        assert (await pbx.next())["call_id"] == "stop-1"  # asked, not answered yet
        await agent.close()
        stopping = asyncio.create_task(runner.cleanup())

        async def settling() -> bool:
            return not server.connector.running

        await eventually(settling)
        answer.set()
        await asyncio.wait_for(stopping, 3 * WAIT)
        assert server.connector.connects == {"sent": 1}
        assert not store._rt.started  # closed, and not opened again by a late note
        redis = aioredis.from_url(redis_url)
        assert await redis.xlen(f"omniroute:{{{domain}}}:out") == 0  # none left to send again
        await redis.aclose()
    finally:
        await server.http.close()
        await purge_domain(redis_url, domain)


async def test_pbx_retries_are_bounded_and_a_refusal_is_final(
    make_server: Factory, pbx: Pbx
) -> None:
    server = await make_server(pbx.url)
    client = server.connector.client
    assert client is not None
    client.backoff_s = 0.01  # the bound is what is tested here, not the waiting
    pbx.script = [503] * client.attempts
    agent = await server.connect("x")  # no endpoint claim: sent as null
    conv = await server.send(call("call.offered", "call-6"))
    offer = await offered(agent, conv)
    await agent.request("offer.accept", reservation=offer["reservation"])
    assert await server.settled() == {"failed": 1}
    assert len(pbx.received) == client.attempts
    assert pbx.received[0][0]["endpoint"] is None

    pbx.received.clear()
    pbx.script = [404]
    assert await server.connector.connect(conv, "x") is False
    assert len(pbx.received) == 1


async def test_unreachable_pbx_is_retried_then_given_up(make_server: Factory) -> None:
    server = await make_server(f"http://127.0.0.1:{free_port()}/cti")  # nothing listens there
    client = server.connector.client
    assert client is not None
    client.backoff_s = 0.01
    agent = await server.connect("x", endpoint=ENDPOINT_X)
    conv = await server.send(call("call.offered", "call-7"))
    offer = await offered(agent, conv)
    with structlog.testing.capture_logs() as logs:
        await agent.request("offer.accept", reservation=offer["reservation"])
        assert await server.settled() == {"failed": 1}
    tries = [e for e in logs if e["event"] in ("voice.connect_retry", "voice.connect_failed")]
    assert len(tries) == client.attempts
    assert tries[-1]["event"] == "voice.connect_failed"


async def test_without_pbx_url_accept_still_works_and_nothing_is_sent(
    make_server: Factory,
) -> None:
    server = await make_server("")
    agent = await server.connect("x", endpoint=ENDPOINT_X)
    conv = await server.send(call("call.offered", "call-8"))
    offer = await offered(agent, conv)
    assigned = await agent.request("offer.accept", reservation=offer["reservation"])
    assert assigned["type"] == "assigned"
    assert server.connector.client is None  # and so no connect job was written


async def test_a_reply_on_voice_is_refused_to_the_agent(make_server: Factory) -> None:
    server = await make_server()
    agent = await server.connect("x")
    conv = await server.send(call("call.offered", "call-9"))
    offer = await offered(agent, conv)
    await agent.request("offer.accept", reservation=offer["reservation"])
    answer = await agent.request("message.send", conversation=conv, body="hi", channel="voice")
    assert answer["type"] == "error" and answer["code"] == "invalid"


async def test_voice_over_redis(make_server: Factory, pbx: Pbx, redis_url: str) -> None:
    """The main voice flow with the durable engine and store: a caller whose chat is held by x
    comes to x, the PBX is told to connect, talk time is recorded, the call ends in wrap-up."""
    server = await make_server(pbx.url, redis_url=redis_url)
    x = await server.connect("x", endpoint=ENDPOINT_X)
    chat = await server.chat("visitor:r1", "cust-r1")
    chat_offer = await offered(x, chat)
    await x.request("offer.accept", reservation=chat_offer["reservation"])

    opened = "2026-11-23T12:00:00Z"
    assert await server.send(call("call.offered", "r-1", customer_id="cust-r1")) == chat
    offer = await offered(x, chat)
    assert offer["channel"] == "voice"
    await x.request("offer.accept", reservation=offer["reservation"])
    assert await pbx.next() == {
        "type": "connect",
        "call_id": "r-1",
        "agent": "x",
        "endpoint": ENDPOINT_X,
    }
    await server.send(call("call.answered", "r-1", occurred_at=opened))
    await server.send(call("call.ended", "r-1", occurred_at="2026-11-23T12:01:00Z"))
    customer = offer["conversation"]["customer"]["id"]

    async def talk_time() -> bool:
        history = await server.service.store.history(customer, 50)
        return any(i.type == "call.ended" and i.meta.get("talk_s") == 60 for i in history)

    await eventually(talk_time)


async def test_two_nodes_send_each_connect_once(
    make_server: Factory, pbx: Pbx, redis_url: str
) -> None:
    """Two nodes on one Redis, the agents on one of them, the calls posted to both: every
    accepted call is connected exactly once, whichever node's job loop reads its job (the log
    hands new jobs to the job loops in turn, so about half go to the node that did not write
    them)."""
    domain = f"voice-{uuid.uuid4().hex[:12]}"
    nodes = [
        await make_server(pbx.url, redis_url=redis_url, domain=domain, node=f"voice-{name}")
        for name in ("a", "b")
    ]
    calls = [f"once-{i}" for i in range(12)]
    for i, call_id in enumerate(calls):
        agent = await nodes[0].connect(f"x{i}", endpoint=f"sip:x{i}@pbx.test")  # the one idle
        conv = await nodes[i % 2].send(call("call.offered", call_id, sender=f"+4915122334{i:03d}"))
        offer = await offered(agent, conv)
        await agent.request("offer.accept", reservation=offer["reservation"])

    async def all_done() -> bool:
        done = sum(sum(n.connector.connects.values()) for n in nodes)
        return done >= len(calls) and not any(n.connector.pending for n in nodes)

    await eventually(all_done)
    assert sorted(command["call_id"] for command, _, _ in pbx.received) == sorted(calls)
    assert all(signed_ok for _, signed_ok, _ in pbx.received)
    by_call = {command["call_id"]: command["endpoint"] for command, _, _ in pbx.received}
    assert by_call == {f"once-{i}": f"sip:x{i}@pbx.test" for i in range(len(calls))}
    # the log handed jobs to both nodes' loops: each sent some, none failed
    assert [n.connector.connects["failed"] for n in nodes] == [0, 0]
    assert all(n.connector.connects["sent"] > 0 for n in nodes)


# -- refusals ----------------------------------------------------------------------------------


async def test_bad_signature_is_401_and_stores_nothing(make_server: Factory) -> None:
    server = await make_server()
    agent = await server.connect("x")
    payload = call("call.offered", "call-10")
    body = json.dumps(payload).encode()
    for signature in ("sha256=" + "0" * 64, "", sign(body, "another-secret")):
        status, answer = await server.post_raw(body, signature)
        assert status == 401
        assert answer["error"]["code"] == "unauthorized"
    assert not [f for f in await agent.quiet() if f["type"] == "offer"]
    # the same event, signed: new (nothing of the refused ones was stored under its id)
    status, answer = await server.post_raw(body)
    assert status == 202 and answer["accepted"] == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"type": "call.transferred"}, "type"),
        ({"type": None}, "type"),
        ({"call_id": None}, "call_id"),
        ({"call_id": ""}, "call_id"),
        ({"call_id": 42}, "call_id"),
        ({"to": None}, "to"),
        ({"id": None}, "id"),
        ({"id": "x" * 200}, "id"),
        ({"from": "anonymous"}, "from"),
        ({"from": "+49"}, "from"),
        ({"from": None}, "from"),
        ({"occurred_at": "yesterday"}, "occurred_at"),
        ({"customer_id": ""}, "customer_id"),
    ],
)
async def test_malformed_event_is_400_naming_the_field(
    make_server: Factory, change: Frame, field: str
) -> None:
    server = await make_server()
    payload = {**call("call.offered", "call-11"), **change}
    status, answer = await server.post({k: v for k, v in payload.items() if v is not None})
    assert status == 400, answer
    assert answer["error"]["code"] == "invalid"
    assert answer["error"]["field"] == field
    assert PHONE not in answer["error"]["message"] and E164 not in answer["error"]["message"]
    if payload["id"]:  # the id is free: nothing was stored
        fixed = {**call("call.offered", "call-11"), "id": payload["id"]}
        if len(fixed["id"]) < 190:
            assert (await server.post(fixed))[1]["accepted"] == 1


async def test_not_json_and_too_large_are_refused(make_server: Factory) -> None:
    server = await make_server()
    for raw in (b"not json", b"[]", b'{"id": "a"'):
        status, answer = await server.post_raw(raw)
        assert (status, answer["error"]["code"]) == (400, "invalid")
    big = json.dumps({**call("call.offered", "call-12"), "pad": "x" * 70_000}).encode()
    status, answer = await server.post_raw(big)
    assert (status, answer["error"]["code"]) == (413, "too_large")


async def test_national_number_without_a_region_is_refused(make_server: Factory) -> None:
    server = await make_server(region="")
    status, answer = await server.post(call("call.offered", "call-13", sender="0151 22334455"))
    assert (status, answer["error"]["field"]) == (400, "from")
    assert (await server.post(call("call.offered", "call-13")))[0] == 202


async def test_logs_carry_no_numbers(make_server: Factory, pbx: Pbx) -> None:
    server = await make_server(pbx.url)
    agent = await server.connect("x", endpoint=ENDPOINT_X)
    with structlog.testing.capture_logs() as logs:
        conv = await server.send(call("call.offered", "call-14"))
        offer = await offered(agent, conv)
        await agent.request("offer.accept", reservation=offer["reservation"])
        await pbx.next()
        await server.post(call("call.offered", "call-15", sender="anonymous-" + E164))
        await server.settled()
    assert {"voice.connected", "ingest.refused"} <= {e["event"] for e in logs}  # captured
    text = json.dumps(logs, default=str)
    for secret in (E164, E164[1:], TRUNK, TRUNK[1:], ENDPOINT_X):
        assert secret not in text


# -- parsing, as functions ---------------------------------------------------------------------


def test_parse_call_event_builds_the_inbound_event() -> None:
    raw = call("call.answered", "c-1", occurred_at="2026-11-23T13:00:00+01:00", customer_id="k")
    raw["vendor_extra"] = {"ignored": True}
    event = parse_call_event(json.dumps(raw).encode(), "DE")
    assert event.id == "voice:" + raw["id"]
    assert (event.type, event.channel, event.sender) == ("call.answered", "voice", E164)
    assert event.occurred_at == "2026-11-23T12:00:00.000Z"
    assert event.customer_id == "k"
    assert event.meta == {"call_id": "c-1", "to": TRUNK}


@pytest.mark.parametrize(
    ("text", "region", "expected"),
    [
        ("+49 151 2233 4455", "", E164),
        ("tel:+4915122334455", "", E164),
        ("0151/22334455", "DE", E164),
        ("0049 151 22334455", "DE", E164),
        ("(030) 901820", "DE", "+4930901820"),
    ],
)
def test_e164(text: str, region: str, expected: str) -> None:
    assert e164(text, region) == expected


@pytest.mark.parametrize(
    ("text", "region"),
    [("0151 22334455", ""), ("anonymous", "DE"), ("", ""), ("Anna +4915122334455", "DE")],
)
def test_e164_refuses(text: str, region: str) -> None:
    with pytest.raises(ValueError) as caught:
        e164(text, region)
    assert "0151" not in str(caught.value)


def test_parse_refuses_a_document_that_is_not_an_object() -> None:
    with pytest.raises(BadEvent):
        parse_call_event(b"[1, 2]", "DE")


async def test_a_connect_job_left_by_a_dead_node_is_sent_by_this_one(
    make_server: Factory, pbx: Pbx
) -> None:
    """A node wrote the connect's job and died before the PBX answered; this node took the job
    over (leases: tests/test_store_nodes.py) and sends it, with the endpoint the job names."""
    server = await make_server(pbx.url)
    agent = await server.connect("x", endpoint=ENDPOINT_X)
    conv = await server.send(call("call.offered", "call-9"))
    await offered(agent, conv)
    job = {"kind": "connect", "task": conv, "agent": "y", "endpoint": "sip:y@pbx.test"}
    await server.service.store.add_job(job)
    command = await pbx.next()
    assert command == {"type": "connect", "call_id": "call-9", "agent": "y",
                       "endpoint": "sip:y@pbx.test"}  # fmt: skip
