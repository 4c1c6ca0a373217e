"""The desktop socket over real TCP: a real server on 127.0.0.1, real clients, the real Service
on the memory engine and memory store. Every wait is bounded."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import jwt
import msgpack
import pytest
from aiohttp import WSMsgType, web
from yarl import URL

import queues
from queues.policy import Policy
from router.agent_session import CLOSE_SLOW
from router.agent_ws import (
    SUBPROTOCOL_JSON,
    SUBPROTOCOL_MSGPACK,
    AgentSocket,
    add_agent_ws,
    close_all,
    sessions,
)
from router.errors import CLOSE_DRAINING, CLOSE_RATE_LIMITED
from router.limits import AgentLimits
from router.service import Service
from store.base import Store
from store.memory import MemoryStore
from store.model import InboundEvent
from store.redis import RedisStore
from tests.support import WAIT, FakeClock, eventually

SECRET = "test-secret-" + "x" * 32
ORIGIN = "https://desk.example.org"


def token(
    agent: str = "a1",
    tier: str = "CCS",
    role: str = "agent",
    exp: float | None = None,
    secret: str = SECRET,
) -> str:
    claims = {
        "sub": agent,
        "tier": tier,
        "name": f"Agent {agent}",
        "role": role,
        "exp": int(exp if exp is not None else time.time() + 3600),
    }
    return jwt.encode(claims, secret, algorithm="HS256")


@dataclass
class Server:
    url: str
    app: web.Application
    service: Service
    store: Store
    http: aiohttp.ClientSession

    async def connect(
        self,
        agent: str = "a1",
        tier: str = "CCS",
        query: str = "",
        protocols: tuple[str, ...] = (),
        **kwargs: Any,
    ) -> aiohttp.ClientWebSocketResponse:
        url = f"{self.url}?token={token(agent, tier)}{query}"
        timeout = aiohttp.ClientWSTimeout(ws_close=WAIT)
        ws: aiohttp.ClientWebSocketResponse = await self.http.ws_connect(
            url, protocols=protocols, timeout=timeout, **kwargs
        )
        return ws

    async def route(self, event: InboundEvent) -> str:
        """Ingest one event and process the log at once (no consumer task to wait for)."""
        (done,) = await self.service.ingest([event])
        for entry in await self.store.read_log("test", 100, 0):
            await self.service.process(entry)
            await self.store.ack_log([entry.entry_id])
        return done.conversation


Factory = Callable[..., Awaitable[Server]]


@pytest.fixture
async def make_server() -> AsyncIterator[Factory]:
    made: list[tuple[web.AppRunner, Service, aiohttp.ClientSession]] = []

    async def factory(
        limits: AgentLimits | None = None,
        origins: tuple[str, ...] = (),
        outbox_keep: int | None = None,
        grace_s: float = 10.0,
        clock: Callable[[], float] = time.time,
        redis_url: str = "",
    ) -> Server:
        domain = f"t-{uuid.uuid4().hex}"
        store: Store = MemoryStore(domain, outbox_keep=outbox_keep, clock=clock)
        if redis_url:  # the Redis store and engine instead
            store = RedisStore(redis_url, domain=domain, outbox_keep=outbox_keep, clock=clock)
        engine = queues.create_engine(Policy(), redis_url or "memory", domain=domain, clock=clock)
        service = Service(engine, store, offline_grace_s=grace_s, clock=clock)
        await service.start()
        app = web.Application()
        app.add_routes(
            AgentSocket(service, store, SECRET, origins, limits or AgentLimits()).routes()
        )
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        http = aiohttp.ClientSession()
        made.append((runner, service, http))
        return Server(f"http://{host}:{port}/v1/agent/ws", app, service, store, http)

    yield factory
    for runner, service, http in reversed(made):
        await http.close()
        await close_all(runner.app)
        await runner.cleanup()
        await service.close()


@pytest.fixture
async def server(make_server: Factory) -> Server:
    return await make_server()


async def recv(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    msg = await asyncio.wait_for(ws.receive(), WAIT)
    if msg.type is WSMsgType.TEXT:
        frame = json.loads(msg.data)
    elif msg.type is WSMsgType.BINARY:
        frame = msgpack.unpackb(msg.data, raw=False)
    else:
        raise AssertionError(f"expected a frame, got {msg.type!r} {msg.data!r}")
    assert isinstance(frame, dict)
    return frame


async def until(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    """Frames up to and including the first of `kind` (bounded by WAIT in all)."""

    async def scan() -> dict[str, Any]:
        while True:
            frame = await recv(ws)
            if frame["type"] == kind:
                return frame

    return await asyncio.wait_for(scan(), WAIT)


async def closed_with(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    """Read until the server closes; the close code it sent."""

    async def drain() -> int | None:
        while True:
            msg = await ws.receive()
            if msg.type is WSMsgType.CLOSE:
                return int(msg.data)
            if msg.type in (WSMsgType.CLOSED, WSMsgType.CLOSING, WSMsgType.ERROR):
                return ws.close_code

    return await asyncio.wait_for(drain(), WAIT)


def chat(n: int = 1, sender: str = "visitor:1", body: str = "hello") -> InboundEvent:
    return InboundEvent(
        id=f"ev-{uuid.uuid4().hex}-{n}", type="message", channel="chat", sender=sender, body=body
    )


# -- handshake ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "headers", "status", "code"),
    [
        ("", {}, 401, "unauthorized"),
        ("?token=not-a-jwt", {}, 401, "unauthorized"),
        (f"?token={token(secret='wrong-secret-' + 'y' * 32)}", {}, 401, "unauthorized"),
        (f"?token={token(exp=time.time() - 60)}", {}, 401, "unauthorized"),
        (f"?token={token(role='ops')}", {}, 403, "forbidden"),
        (f"?token={token()}&since=-1", {}, 400, "invalid"),
        (f"?token={token()}&since=abc", {}, 400, "invalid"),
        ("", {"Authorization": "Bearer nope"}, 401, "unauthorized"),
    ],
    ids=[
        "no-token",
        "bad-token",
        "wrong-secret",
        "expired",
        "ops-role",
        "since-neg",
        "since-text",
        "bad-bearer",
    ],
)
async def test_handshake_refusals_answer_json_before_any_upgrade(
    server: Server, query: str, headers: dict[str, str], status: int, code: str
) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await server.http.ws_connect(server.url + query, headers=headers)
    assert refused.value.status == status
    async with server.http.get(server.url + query, headers=headers) as response:
        assert response.status == status
        body = await response.json()
    assert body["error"]["code"] == code
    assert sessions(server.app) == []


async def test_bearer_header_and_supervisor_role_are_accepted(server: Server) -> None:
    headers = {"Authorization": f"Bearer {token('s1', 'SAM', role='supervisor')}"}
    ws = await server.http.ws_connect(server.url, headers=headers)
    welcome = await recv(ws)
    assert welcome["agent"] == {"id": "s1", "tier": "SAM", "name": "Agent s1"}
    await ws.close()


async def test_origin_allow_list(make_server: Factory) -> None:
    server = await make_server(origins=(ORIGIN,))
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await server.connect(headers={"Origin": "https://evil.example.com"})
    assert refused.value.status == 403
    ws = await server.connect(headers={"Origin": ORIGIN})
    assert (await recv(ws))["type"] == "welcome"
    await ws.close()
    ws = await server.connect()  # desktop apps send no Origin
    assert (await recv(ws))["type"] == "welcome"
    await ws.close()


async def test_unknown_subprotocol_is_refused_and_known_ones_are_chosen(server: Server) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await server.connect(protocols=("chat.v9",))
    assert refused.value.status == 400
    ws = await server.connect(protocols=("chat.v9", SUBPROTOCOL_JSON))
    assert ws.protocol == SUBPROTOCOL_JSON
    await ws.close()
    ws = await server.connect()
    assert ws.protocol is None  # no subprotocol asked: JSON text frames
    msg = await asyncio.wait_for(ws.receive(), WAIT)
    assert msg.type is WSMsgType.TEXT
    await ws.close()


# -- session -----------------------------------------------------------------------------------


async def test_welcome_then_presence_away(server: Server) -> None:
    ws = await server.connect("a1", "TRN")
    welcome = await recv(ws)
    assert welcome["type"] == "welcome"
    assert welcome["agent"] == {"id": "a1", "tier": "TRN", "name": "Agent a1"}
    assert welcome["seq"] == 0 and welcome["recovered"] is False
    uuid.UUID(welcome["session"])
    presence = await recv(ws)
    assert presence == {"type": "presence", "state": "away", "seq": 1}
    await ws.close()


async def test_msgpack_subprotocol_round_trip(server: Server) -> None:
    ws = await server.connect(protocols=(SUBPROTOCOL_MSGPACK,))
    assert ws.protocol == SUBPROTOCOL_MSGPACK
    msg = await asyncio.wait_for(ws.receive(), WAIT)
    assert msg.type is WSMsgType.BINARY
    assert msgpack.unpackb(msg.data)["type"] == "welcome"
    await ws.send_bytes(msgpack.packb({"type": "ping", "ref": "p1"}))
    ack = await until(ws, "ack")
    assert ack["ref"] == "p1" and isinstance(ack["seq"], int)
    await ws.send_str(json.dumps({"type": "ping", "ref": "p2"}))  # text on the binary protocol
    error = await until(ws, "error")
    assert error["code"] == "invalid"
    await ws.close()


async def test_live_delivery_in_order(server: Server) -> None:
    ws = await server.connect()
    await until(ws, "presence")
    for n in range(20):
        await ws.send_json({"type": "ping", "ref": n})
    seqs = []
    for n in range(20):
        ack = await until(ws, "ack")
        assert ack["ref"] == n
        seqs.append(ack["seq"])
    assert seqs == sorted(seqs) and len(set(seqs)) == 20
    await ws.close()


async def test_replay_with_since(server: Server) -> None:
    ws = await server.connect()
    await until(ws, "presence")  # seq 1
    await ws.send_json({"type": "ping", "ref": "x"})
    assert (await until(ws, "ack"))["seq"] == 2
    await ws.close()
    await server.store.push([("a1", {"type": "ack", "ref": "missed"})])  # seq 3, while away
    ws = await server.connect(query="&since=1")
    welcome = await recv(ws)
    assert welcome["recovered"] is True and welcome["seq"] == 3
    assert [(f["seq"], f["ref"]) for f in [await recv(ws), await recv(ws)]] == [
        (2, "x"),
        (3, "missed"),
    ]
    await ws.send_json({"type": "ping", "ref": "live"})  # then live delivery goes on
    assert (await recv(ws))["seq"] == 4
    await ws.close()
    ws = await server.connect(query="&since=4")  # nothing missed: still recovered
    welcome = await recv(ws)
    assert welcome["recovered"] is True and welcome["seq"] == 4
    await ws.send_json({"type": "ping", "ref": "live"})
    assert (await recv(ws))["seq"] == 5
    await ws.close()


async def test_replay_after_trimming_is_not_recovered(make_server: Factory) -> None:
    server = await make_server(outbox_keep=3)
    await server.store.push([("a1", {"type": "ack", "ref": n}) for n in range(1, 7)])  # 1…6
    ws = await server.connect(query="&since=1")
    welcome = await recv(ws)
    assert welcome["recovered"] is False and welcome["seq"] == 6
    assert [(await recv(ws))["seq"] for _ in range(3)] == [4, 5, 6]
    await ws.close()
    ws = await server.connect(query="&since=99")  # a seq this store never gave
    welcome = await recv(ws)
    assert welcome["recovered"] is False
    await ws.send_json({"type": "ping", "ref": "live"})
    assert (await recv(ws))["seq"] == 8  # 7 was the first session's presence: on from the head
    await ws.close()


# -- the tier filter ---------------------------------------------------------------------------


async def test_offer_is_withheld_from_a_trainee_once_the_customer_is_sic(server: Server) -> None:
    ws = await server.connect("t1", "TRN")
    await until(ws, "presence")
    await ws.send_json({"type": "presence.set", "state": "available", "ref": "p"})
    assert (await until(ws, "presence"))["state"] == "available"
    conversation = await server.route(chat())
    offer = await until(ws, "offer")
    customer = offer["conversation"]["customer"]["id"]
    assert offer["conversation"]["id"] == conversation
    await ws.close()
    # Reclassified while the desktop is away; then a frame about the customer that was pushed
    # before the change reaches the outbox (a race the session must close).
    await server.store.set_group(customer, "SIC")
    late = {"type": "message", "conversation": conversation, "customer": customer}
    (late_seq,) = await server.store.push([("t1", {**late, "interaction": {"body": "secret"}})])
    ws = await server.connect("t1", "TRN", query=f"&since={offer['seq'] - 1}")
    assert (await recv(ws))["recovered"] is True
    replayed = [await recv(ws) for _ in range(late_seq - offer["seq"] + 1)]
    assert replayed[0] == {"type": "withheld", "seq": offer["seq"], "reason": "reclassified"}
    assert replayed[-1] == {"type": "withheld", "seq": late_seq, "reason": "reclassified"}
    assert "secret" not in json.dumps(replayed)
    await ws.close()


async def test_a_trainee_marking_sic_loses_the_offer_but_gets_its_ack(server: Server) -> None:
    ws = await server.connect("t2", "TRN")
    await until(ws, "presence")
    await ws.send_json({"type": "presence.set", "state": "available"})
    await until(ws, "presence")
    await server.route(chat(sender="visitor:sic"))
    offer = await until(ws, "offer")
    customer = offer["conversation"]["customer"]["id"]
    await ws.send_json(
        {"type": "customer.classify", "customer": customer, "group": "SIC", "ref": 9}
    )
    revoked = await until(ws, "offer.revoked")
    assert revoked["reason"] == "reclassified"
    ack = await until(ws, "ack")
    assert ack["ref"] == 9 and ack["client_group"] == "SIC"
    await ws.send_json({"type": "customer.get", "customer": customer, "ref": "g"})
    assert (await until(ws, "error"))["code"] == "forbidden"
    await ws.close()


async def test_frames_without_an_attributable_customer_fail_closed(server: Server) -> None:
    ws = await server.connect()
    await until(ws, "presence")
    await server.store.push([("a1", {"type": "assigned", "conversation": {"id": "nowhere"}})])
    assert (await until(ws, "withheld"))["reason"] == "reclassified"
    await ws.close()


# -- client frames -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "code", "field"),
    [
        ({"type": "nope", "ref": "r"}, "invalid", "type"),
        ({"ref": "r"}, "invalid", "type"),
        ({"type": "presence.set", "state": "asleep", "ref": "r"}, "invalid", "state"),
        ({"type": "offer.accept", "ref": "r"}, "invalid", "reservation"),
        ({"type": "message.send", "conversation": "c", "ref": "r"}, "invalid", "body"),
        ({"type": "message.send", "conversation": "c", "body": 5, "ref": "r"}, "invalid", "body"),
        ({"type": "conversation.transfer", "conversation": "c", "ref": "r"}, "invalid", "to_agent"),
        (
            {"type": "customer.update", "customer": "c", "version": "1", "fields": {}, "ref": "r"},
            "invalid",
            "version",
        ),
        (
            {
                "type": "customer.update",
                "customer": "c",
                "version": 1,
                "fields": {"coins": "9"},
                "ref": "r",
            },
            "invalid",
            "fields.coins",
        ),
        (
            {
                "type": "customer.update",
                "customer": "c",
                "version": 1,
                "fields": {"vcard": "x" * 20_001},
                "ref": "r",
            },
            "invalid",
            "fields.vcard",
        ),
        (
            {"type": "customer.classify", "customer": "c", "group": "VIP", "ref": "r"},
            "invalid",
            "group",
        ),
        ({"type": "customer.get", "customer": "nobody", "ref": "r"}, "not_found", None),
        ({"type": "offer.accept", "reservation": "r-none", "ref": "r"}, "not_found", None),
    ],
)
async def test_bad_frames_get_error_frames_with_code_and_ref(
    server: Server, frame: dict[str, Any], code: str, field: str | None
) -> None:
    ws = await server.connect()
    await until(ws, "presence")
    await ws.send_json(frame)
    error = await until(ws, "error")
    assert error["code"] == code and error["ref"] == "r"
    if field is not None:
        assert error["field"] == field
    assert isinstance(error["seq"], int)
    await ws.send_json({"type": "ping", "ref": "still-here"})
    assert (await until(ws, "ack"))["ref"] == "still-here"
    await ws.close()


@pytest.mark.parametrize("data", ["{not json", "[1, 2]", '"text"', '{"type": 7}'])
async def test_undecodable_or_shapeless_frames_are_invalid(server: Server, data: str) -> None:
    ws = await server.connect()
    await until(ws, "presence")
    await ws.send_str(data)
    error = await until(ws, "error")
    assert error["code"] == "invalid" and error["ref"] is None
    await ws.close()


async def test_oversized_frame_closes_with_1009(server: Server) -> None:
    ws = await server.connect()
    await until(ws, "presence")
    await ws.send_str("x" * (64 * 1024 + 1))
    assert await closed_with(ws) == 1009


async def test_frame_of_exactly_64_kib_is_read(server: Server) -> None:
    ws = await server.connect()
    await until(ws, "presence")
    frame = {"type": "ping", "ref": "big", "pad": ""}
    frame["pad"] = "x" * (64 * 1024 - len(json.dumps(frame, separators=(",", ":"))))
    await ws.send_str(json.dumps(frame, separators=(",", ":")))
    assert (await until(ws, "ack"))["ref"] == "big"
    await ws.close()


async def test_rate_limit_answers_then_closes(make_server: Factory) -> None:
    server = await make_server(limits=AgentLimits(rate=1, burst=2, strikes=2))
    ws = await server.connect()
    await until(ws, "presence")
    for n in range(8):
        await ws.send_json({"type": "ping", "ref": n})
    frames = []
    code = None
    while code is None:
        msg = await asyncio.wait_for(ws.receive(), WAIT)
        if msg.type is WSMsgType.TEXT:
            frames.append(json.loads(msg.data))
        else:
            assert msg.type is WSMsgType.CLOSE
            code = msg.data
    assert code == CLOSE_RATE_LIMITED
    assert [f["ref"] for f in frames if f["type"] == "ack"] == [0, 1]
    limited = [f for f in frames if f["type"] == "error"]
    assert [f["code"] for f in limited] == ["rate_limited", "rate_limited"]
    assert [f["ref"] for f in limited] == [2, 3]


# -- liveness and drain ------------------------------------------------------------------------


async def test_disconnect_reaches_the_service_and_the_agent_goes_offline(
    make_server: Factory,
) -> None:
    server = await make_server(grace_s=0.1)
    ws = await server.connect("a7", "CCS")
    await until(ws, "presence")
    await ws.send_json({"type": "presence.set", "state": "available"})
    assert (await until(ws, "presence"))["state"] == "available"
    await ws.close()

    async def offline() -> bool:
        view = await server.service.engine.agent_view("a7")
        return view is None or view["state"] == "offline"

    await eventually(offline)
    assert sessions(server.app) == []


async def test_the_session_keeps_presence_alive_with_service_heartbeats(
    make_server: Factory,
) -> None:
    clock = FakeClock(time.time())
    server = await make_server(limits=AgentLimits(heartbeat_s=0.02), clock=clock)
    ws = await server.connect("h1")
    await until(ws, "presence")
    view = await server.service.engine.agent_view("h1")
    assert view is not None
    first = view["exp_ms"]
    clock.advance(30)

    async def refreshed() -> bool:
        now = await server.service.engine.agent_view("h1")
        return now is not None and now["exp_ms"] >= first + 30_000

    await eventually(refreshed)
    await ws.close()


async def test_second_desktop_keeps_the_agent_online(make_server: Factory) -> None:
    server = await make_server(grace_s=0.05)
    one, two = await server.connect("a8"), await server.connect("a8")
    await until(one, "presence")
    await one.send_json({"type": "presence.set", "state": "available", "ref": 1})
    await until(one, "presence")
    await one.close()
    await eventually(lambda: _count(server, 1))
    await two.send_json({"type": "ping", "ref": "after"})
    assert (await until(two, "ack"))["ref"] == "after"
    view = await server.service.engine.agent_view("a8")
    assert view is not None and view["state"] == "available"
    await two.close()


async def _count(server: Server, n: int) -> bool:
    return len(sessions(server.app)) == n


async def test_close_all_drains_with_4000(server: Server) -> None:
    ws = await server.connect()
    await until(ws, "presence")
    assert await asyncio.wait_for(close_all(server.app), WAIT) == 1
    assert await closed_with(ws) == CLOSE_DRAINING
    assert sessions(server.app) == []
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:  # no new ones while draining
        await server.connect()
    assert refused.value.status == 503


async def stalled_desktop(server: Server, agent: str) -> socket.socket:
    """A desktop that completes the handshake and then never reads (a tiny receive buffer)."""
    url = URL(server.url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await asyncio.wait_for(loop.sock_connect(sock, (url.host, url.port)), WAIT)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {url.path}?token={token(agent)} HTTP/1.1\r\nHost: {url.host}:{url.port}\r\n"
        f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 1), WAIT)
        assert chunk, "server closed during the handshake"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


async def test_a_stalled_desktop_is_dropped_without_holding_up_anyone(make_server: Factory) -> None:
    server = await make_server(limits=AgentLimits(send_timeout_s=0.3, close_timeout_s=0.3))
    sock = await stalled_desktop(server, "slow")
    try:
        other = await server.connect("fast")
        await until(other, "presence")
        await eventually(lambda: _count(server, 2))
        (slow,) = [s for s in sessions(server.app) if s.identity.id == "slow"]
        big = {"type": "ack", "ref": "big", "pad": "x" * (4 << 20)}
        # the pusher never waits for a socket
        await asyncio.wait_for(server.store.push([("slow", big)] * 4), 1.0)
        await other.send_json({"type": "ping", "ref": "fast"})
        assert (await until(other, "ack"))["ref"] == "fast"
        await asyncio.wait_for(slow.wait_closed(), WAIT)
        assert slow.close_code == CLOSE_SLOW
        await other.send_json({"type": "ping", "ref": "still"})
        assert (await until(other, "ack"))["ref"] == "still"
        await other.close()
    finally:
        sock.close()


# -- the flow through the real Service ---------------------------------------------------------


async def test_offer_accept_message_complete_wrapup(server: Server) -> None:
    ws = await server.connect("c1", "CCS")
    await until(ws, "presence")
    await ws.send_json({"type": "presence.set", "state": "available", "ref": "av"})
    assert (await until(ws, "presence"))["ref"] == "av"
    conversation = await server.route(chat(body="where is my order?"))
    offer = await until(ws, "offer")
    assert offer["conversation"]["history"][-1]["body"] == "where is my order?"
    customer = offer["conversation"]["customer"]["id"]
    await ws.send_json({"type": "offer.accept", "reservation": offer["reservation"], "ref": "acc"})
    assigned = await until(ws, "assigned")
    assert assigned["ref"] == "acc" and assigned["conversation"]["id"] == conversation
    await ws.send_json(
        {"type": "message.send", "conversation": conversation, "body": "on its way", "ref": "m1"}
    )
    ack = await until(ws, "ack")
    assert ack["ref"] == "m1" and ack["interaction"]["direction"] == "out"
    await server.route(chat(n=2, body="thanks"))
    message = await until(ws, "message")
    assert message["interaction"]["body"] == "thanks"
    await ws.send_json({"type": "customer.get", "customer": customer, "ref": "g"})
    current = (await until(ws, "customer"))["customer"]
    edit = {"type": "customer.update", "customer": customer, "fields": {"job": "pilot"}}
    await ws.send_json({**edit, "version": current["version"], "ref": "u1"})
    assert (await until(ws, "customer"))["customer"]["job"] == "pilot"
    await ws.send_json({**edit, "version": current["version"], "ref": "u2"})  # stale
    stale = await until(ws, "error")
    assert stale["code"] == "conflict" and stale["ref"] == "u2"
    assert stale["customer"]["job"] == "pilot"  # the current text comes with the refusal
    await ws.send_json({"type": "conversation.complete", "conversation": conversation, "ref": "c"})
    assert (await until(ws, "ack"))["ref"] == "c"
    await ws.send_json({"type": "wrapup.done", "conversation": conversation, "ref": "w"})
    assert (await until(ws, "ack"))["ref"] == "w"
    await ws.close()


async def test_app_shutdown_drains_sockets_before_the_service_closes() -> None:
    store = MemoryStore(f"t-{uuid.uuid4().hex}")
    engine = queues.create_engine(Policy(), "memory", domain=f"t-{uuid.uuid4().hex}")
    service = Service(engine, store, offline_grace_s=0)
    await service.start()
    app = web.Application()
    add_agent_ws(app, AgentSocket(service, store, SECRET))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        async with aiohttp.ClientSession() as http:
            url = f"http://{host}:{port}/v1/agent/ws?token={token('d1')}"
            ws = await http.ws_connect(url)
            await until(ws, "presence")
            cleanup = asyncio.create_task(runner.cleanup())
            assert await closed_with(ws) == CLOSE_DRAINING
            await asyncio.wait_for(cleanup, WAIT)
        assert sessions(app) == []

        async def offline() -> bool:  # the disconnect reached the Service (grace 0)
            view = await engine.agent_view("d1")
            return view is None or view["state"] == "offline"

        await eventually(offline)
    finally:
        await runner.cleanup()
        await service.close()
