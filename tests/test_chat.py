"""The chat channel end to end: `create_app` + `add_chat` served on 127.0.0.1, real widget
sockets on `/v1/chat/ws` and real agent desktops on `/v1/agent/ws` (tokens from PyJWT).

Every wait is bounded by `WAIT`; "nothing arrives" is checked with a `ping` whose `pong` must
come before any frame of the kind ruled out (a socket's frames are written in order).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt
import pytest
import structlog.testing
from aiohttp import WSMsgType, web

import queues
from channels.chat import VISITOR_PREFIX, ChatRefused, from_token, outbox_key
from router.app import CHAT_KEY, create_app
from router.channel_chat import ChatSocket
from router.errors import CLOSE_DRAINING, CLOSE_RATE_LIMITED
from router.limits import ChatLimits
from router.settings import load_settings
from store.base import Store
from tests.support import serve_app
from tests.test_e2e import (
    WAIT,
    Desk,
    FrameSocket,
    QuickStore,
    base_env,
    event,
    make_token,
    offered,
    sign,
    take,
)

VISITOR_SECRET = "chat-visitor-secret-" + "v" * 32
LIMITS = ChatLimits(rate=5.0, burst=10, strikes=3, ping_s=5.0)

Frame = dict[str, Any]


def visitor_token(
    sub: str,
    site: str = "shop1",
    *,
    secret: str = VISITOR_SECRET,
    exp: float | None = None,
    **claims: Any,
) -> str:
    body = {"sub": sub, "site": site, "exp": int(exp if exp is not None else time.time() + 600)}
    return jwt.encode({**body, **claims}, secret, algorithm="HS256")


class Widget(FrameSocket):
    """One customer chat socket and every frame it has read."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        super().__init__(ws, "widget")

    async def request(self, kind: str, **fields: Any) -> Frame:
        """Send a frame with a fresh ref; the answer carrying it (ack, pong or error)."""
        self._refs += 1
        ref = f"w{self._refs}"
        await self.ws.send_str(json.dumps({"type": kind, "ref": ref, **fields}))
        return await self.answer(ref)

    async def say(self, body: str) -> Frame:
        ack = await self.request("message", body=body)
        assert ack["type"] == "ack", ack
        return ack

    async def quiet(self) -> list[Frame]:
        """Every frame written before the answer to a ping."""
        start = len(self.seen)
        assert (await self.request("ping"))["type"] == "pong"
        return self.seen[start:-1]

    async def closed_with(self) -> int | None:
        async def drain() -> int | None:
            while True:
                msg = await self.ws.receive()
                if msg.type is WSMsgType.TEXT:
                    self.seen.append(json.loads(msg.data))
                    continue
                if msg.type is WSMsgType.CLOSE:
                    return int(msg.data)
                if msg.type in (WSMsgType.CLOSED, WSMsgType.CLOSING, WSMsgType.ERROR):
                    return self.ws.close_code

        return await asyncio.wait_for(drain(), WAIT)


@dataclass
class Node:
    base: str
    app: web.Application
    http: aiohttp.ClientSession
    chat: ChatSocket
    sockets: list[aiohttp.ClientWebSocketResponse] = field(default_factory=list)

    async def widget(self, query: str) -> Widget:
        ws = await self.http.ws_connect(
            f"{self.base}/v1/chat/ws?{query}", timeout=aiohttp.ClientWSTimeout(ws_close=WAIT)
        )
        self.sockets.append(ws)
        widget = Widget(ws)
        widget.welcome = await widget.until("welcome")
        return widget

    async def refused(self, query: str) -> int:
        """The HTTP status of a refused handshake."""
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await self.http.ws_connect(f"{self.base}/v1/chat/ws?{query}")
        return refused.value.status

    async def desk(self, agent: str, tier: str = "CCS") -> Desk:
        url = f"{self.base}/v1/agent/ws?token={make_token(agent, tier)}"
        ws = await self.http.ws_connect(url, timeout=aiohttp.ClientWSTimeout(ws_close=WAIT))
        self.sockets.append(ws)
        desk = Desk(ws, agent)
        desk.welcome = await desk.until("welcome")
        await desk.available()
        return desk

    async def post_event(self, payload: Frame) -> str:
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", "X-Omniroute-Signature": sign(body)}
        async with self.http.post(f"{self.base}/v1/events", data=body, headers=headers) as resp:
            answer = await asyncio.wait_for(resp.json(), WAIT)
            assert resp.status == 202, answer
            conversation: str = answer["conversations"][0]
            return conversation


NodeFactory = Callable[..., Awaitable[Node]]


@contextlib.asynccontextmanager
async def nodes() -> AsyncIterator[NodeFactory]:
    made: list[tuple[web.AppRunner, Node]] = []

    async def factory(
        domain: str | None = None,
        store_factory: Callable[[Any], Store] | None = None,
        limits: ChatLimits = LIMITS,
        **overrides: Any,
    ) -> Node:
        domain = domain or f"chat-{uuid.uuid4().hex[:12]}"
        env = {**base_env(domain, **overrides), "OMNIROUTE_VISITOR_SECRET": VISITOR_SECRET}
        settings = load_settings(None, env)
        engine = queues.create_engine(settings.policy, settings.redis.url, domain=settings.domain)
        store = store_factory(settings) if store_factory is not None else QuickStore(domain)
        app = create_app(settings, engine, store, snapshot_interval_s=0.1, chat_limits=limits)
        chat = app[CHAT_KEY]
        runner, base = await serve_app(app)  # with the access logger of `omniroute serve`
        node = Node(base, app, aiohttp.ClientSession(), chat)
        made.append((runner, node))
        return node

    try:
        yield factory
    finally:
        for runner, node in reversed(made):
            for ws in node.sockets:
                if not ws.closed:
                    await asyncio.wait_for(ws.close(), WAIT)
            await node.http.close()
            await asyncio.wait_for(runner.cleanup(), 15)


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    async with nodes() as factory:
        yield await factory()


async def answered(widget: Widget, desk: Desk, said: str, reply: str) -> str:
    """The visitor says `said`; `desk` takes the conversation and answers `reply`. Its id."""
    await widget.say(said)
    conv: str = (await take(desk))["conversation"]["id"]
    await desk.request("message.send", conversation=conv, body=reply)
    return conv


def visitor_id() -> str:
    return uuid.uuid4().hex


# -- the main flow -----------------------------------------------------------------------------


async def test_anonymous_visitor_to_agent_and_back_and_sticky(node: Node) -> None:
    with structlog.testing.capture_logs() as logs:
        await _main_flow(node)
    # ids only in the logs: no bodies, no visitor ids
    assert {"chat.open", "chat.message", "chat.reply_queued"} <= {e["event"] for e in logs}
    for entry in logs:
        shown = json.dumps(entry, default=str)
        assert "ich komme" not in shown and "Versuchen" not in shown and "immer" not in shown
        assert VISITOR not in shown


VISITOR = "f00dfeedbeef4bad9c0ffee000000001"


async def _main_flow(node: Node) -> None:
    vid = VISITOR
    widget = await node.widget(f"site=shop1&visitor={vid}")
    assert widget.welcome["customer"] is None  # not heard from yet
    assert widget.welcome["seq"] == 0
    a1 = await node.desk("a1")

    ack = await widget.say("Hallo, ich komme nicht rein")
    customer = ack["customer"]
    assert isinstance(customer, str) and ack["id"].startswith("chat-")
    assigned = await take(a1)
    conv = assigned["conversation"]
    assert conv["customer"]["id"] == customer
    assert conv["channels"] == ["chat"]
    (first,) = conv["history"]
    assert (first["body"], first["direction"], first["channel"]) == (
        "Hallo, ich komme nicht rein",
        "in",
        "chat",
    )
    assert first["meta"]["auth"] == "visitor"

    reply = await a1.request("message.send", conversation=conv["id"], body="Versuchen Sie das")
    assert reply["type"] == "ack"
    got = await widget.until("message")
    assert got["body"] == "Versuchen Sie das"
    assert got["from"] == "agent"
    assert got["id"] == reply["interaction"]["id"]
    assert got["at"].endswith("Z") and got["seq"] == 1

    # the customer's second message goes to the same agent, as a sticky `message` frame
    await widget.say("geht immer noch nicht")
    sticky = await a1.until("message", conversation=conv["id"])
    assert sticky["interaction"]["body"] == "geht immer noch nicht"
    assert sticky["customer"] == customer


async def test_reply_while_away_is_replayed_on_reconnect(node: Node) -> None:
    vid = visitor_id()
    widget = await node.widget(f"site=shop1&visitor={vid}")
    a1 = await node.desk("a1")
    conv = await answered(widget, a1, "one question", "early answer")
    early = await widget.until("message")
    await widget.say("and another")
    await a1.until("message", conversation=conv)
    await widget.close()

    await a1.request("message.send", conversation=conv, body="answer while away")
    await a1.request("message.send", conversation=conv, body="and more")

    # without since: the replies after the customer's latest message
    again = await node.widget(f"site=shop1&visitor={vid}")
    assert again.welcome["customer"] == early["customer"]
    assert again.welcome["seq"] == 3
    replayed = [f for f in await again.quiet() if f["type"] == "message"]
    assert [(f["body"], f["seq"]) for f in replayed] == [
        ("answer while away", 2),
        ("and more", 3),
    ]
    await again.close()

    # with since: exactly what came after it
    since = await node.widget(f"site=shop1&visitor={vid}&since=1")
    assert since.welcome["recovered"] is True
    assert [f["body"] for f in await since.quiet() if f["type"] == "message"] == [
        "answer while away",
        "and more",
    ]
    caught_up = await node.widget(f"site=shop1&visitor={vid}&since=3")
    assert not [f for f in await caught_up.quiet() if f["type"] == "message"]
    # a live reply reaches both open sockets of the visitor
    await a1.request("message.send", conversation=conv, body="to every tab")
    assert (await since.until("message"))["seq"] == 4
    assert (await caught_up.until("message"))["body"] == "to every tab"


# -- logged-in customers -----------------------------------------------------------------------


async def test_token_visitor_is_their_customer_and_links_their_phone(node: Node) -> None:
    token = visitor_token("c-77", phone="+4915112345678", email="Anna@Example.org")
    widget = await node.widget(f"token={token}")
    assert widget.welcome["customer"] == "c-77"
    assert widget.welcome["site"] == "shop1"
    a1 = await node.desk("a1")
    ack = await widget.say("logged in and writing")
    assert ack["customer"] == "c-77"
    assigned = await take(a1)
    conv = assigned["conversation"]
    assert conv["customer"]["id"] == "c-77"
    assert conv["history"][0]["meta"]["auth"] == "token"

    # the site vouched for the phone number: an SMS from it joins the same conversation
    sms = event(sender="+4915112345678", channel="sms", body="per SMS")
    assert await node.post_event(sms) == conv["id"]
    message = await a1.until("message", conversation=conv["id"])
    assert message["customer"] == "c-77"
    assert message["interaction"]["channel"] == "sms"

    # a chat reply reaches the logged-in socket
    await widget.say("back in chat")
    await a1.until("message", conversation=conv["id"])
    await a1.request("message.send", conversation=conv["id"], body="hello c-77", channel="chat")
    assert (await widget.until("message"))["body"] == "hello c-77"


async def test_anonymous_visitor_cannot_pose_as_a_logged_in_customer(node: Node) -> None:
    logged_in = await node.widget(f"token={visitor_token('c-5')}")
    a1 = await node.desk("a1")
    await logged_in.say("private")
    conv = (await take(a1))["conversation"]["id"]
    # the same id as an anonymous visitor is another address, so another customer
    poser = await node.widget("site=shop1&visitor=c-5")
    assert (await poser.say("let me in"))["customer"] != "c-5"
    await a1.request("message.send", conversation=conv, body="only for c-5")
    assert (await logged_in.until("message"))["body"] == "only for c-5"
    assert not [f for f in await poser.quiet() if f["type"] == "message"]


async def test_handshake_refusals(node: Node) -> None:
    assert await node.refused("visitor=abc") == 400  # no site
    assert await node.refused("site=shop1") == 400  # no visitor
    assert await node.refused("site=shop1&visitor=") == 400
    assert await node.refused("site=shop1&visitor=a%20b") == 400
    assert await node.refused("site=shop%2F1&visitor=abc") == 400
    assert await node.refused(f"site=shop1&visitor={'x' * 65}") == 400
    assert await node.refused("site=shop1&visitor=abc&since=-1") == 400
    wrong = visitor_token("c-1", secret="another-secret-" + "x" * 32)
    assert await node.refused(f"token={wrong}") == 401
    expired = visitor_token("c-1", exp=time.time() - 60)
    assert await node.refused(f"token={expired}") == 401
    assert await node.refused("token=not-a-jwt") == 401
    no_site = jwt.encode({"sub": "c-1", "exp": int(time.time()) + 60}, VISITOR_SECRET, "HS256")
    assert await node.refused(f"token={no_site}") == 401
    no_sub = jwt.encode({"site": "shop1", "exp": int(time.time()) + 60}, VISITOR_SECRET, "HS256")
    assert await node.refused(f"token={no_sub}") == 401
    assert await node.refused(f"token={visitor_token('c-1', phone='0151 123')}") == 401
    assert await node.refused(f"token={visitor_token('c-1')}&visitor=abc") == 400
    assert await node.refused(f"token={visitor_token('c-1')}&site=other") == 400


def test_a_token_with_the_contracts_claims_only_is_taken() -> None:
    """The contract names `sub` and `site`; `exp` is the site's choice (checked when there)."""
    bare = jwt.encode({"sub": "c-8", "site": "shop1"}, VISITOR_SECRET, "HS256")
    visitor = from_token(bare, VISITOR_SECRET)
    assert (visitor.customer, visitor.site, visitor.address) == ("c-8", "shop1", "visitor:@c-8")


def test_token_claims_are_checked() -> None:
    visitor = from_token(visitor_token("c-9", email=["A@B.org", "a@b.org"]), VISITOR_SECRET)
    assert visitor.address == VISITOR_PREFIX + "@c-9"
    assert visitor.linked == ("a@b.org",)
    assert outbox_key(visitor.address) == "chat:visitor:@c-9"
    with pytest.raises(ChatRefused) as refused:
        from_token(visitor_token("c-9"), "")
    assert refused.value.code == "unauthorized"


# -- limits and bad frames ---------------------------------------------------------------------


async def test_bad_frames_are_refused_and_store_nothing() -> None:
    async with nodes() as factory:
        node = await factory(limits=ChatLimits(rate=100.0, burst=100))
        await _bad_frames(node)


async def _bad_frames(node: Node) -> None:
    widget = await node.widget(f"site=shop1&visitor={visitor_id()}")
    await widget.ws.send_str("{not json")
    assert (await widget.until("error"))["code"] == "invalid"
    cases: list[tuple[Frame, str]] = [
        ({"type": "typing"}, "type"),
        ({"body": "no type"}, "type"),
        ({"type": "message"}, "body"),
        ({"type": "message", "body": ""}, "body"),
        ({"type": "message", "body": "   "}, "body"),
        ({"type": "message", "body": "x" * 4001}, "body"),
        ({"type": "message", "body": 42}, "body"),
        ({"type": "message", "body": "nul\x00"}, "body"),
        ({"type": "message", "body": "ok", "ref": ["no"]}, "ref"),
    ]
    for frame, culprit in cases:
        await widget.ws.send_str(json.dumps(frame))
        error = await widget.until("error")
        assert (error["code"], error["field"]) == ("invalid", culprit), frame
    await widget.ws.send_bytes(b"{}")
    assert (await widget.until("error"))["code"] == "invalid"
    assert (await widget.say("x" * 4000))["type"] == "ack"  # the longest body is fine

    a1 = await node.desk("a1")
    offer = await offered(a1)
    assert [i["body"] for i in offer["conversation"]["history"]] == ["x" * 4000]


async def test_oversized_frame_closes_with_1009(node: Node) -> None:
    widget = await node.widget(f"site=shop1&visitor={visitor_id()}")
    await widget.ws.send_str("x" * (64 * 1024 + 1))
    assert await widget.closed_with() == 1009


async def test_flood_is_rate_limited_then_closed(node: Node) -> None:
    widget = await node.widget(f"site=shop1&visitor={visitor_id()}")
    for n in range(LIMITS.burst + LIMITS.strikes + 10):
        await widget.ws.send_str(json.dumps({"type": "ping", "ref": n}))
    assert await widget.closed_with() == CLOSE_RATE_LIMITED
    codes = [f.get("code") for f in widget.seen if f["type"] == "error"]
    assert codes and set(codes) == {"rate_limited"}
    assert len([f for f in widget.seen if f["type"] == "pong"]) >= LIMITS.burst


async def test_shutdown_asks_widgets_to_reconnect(node: Node) -> None:
    widget = await node.widget(f"site=shop1&visitor={visitor_id()}")
    await asyncio.wait_for(node.chat.close_all(), WAIT)
    assert await widget.closed_with() == CLOSE_DRAINING
    assert await node.refused(f"site=shop1&visitor={visitor_id()}") == 503


# -- across nodes, on Redis --------------------------------------------------------------------


async def test_reply_from_another_node_over_redis(redis_url: str) -> None:
    from store.redis import RedisStore

    domain = f"chat-{uuid.uuid4().hex[:12]}"
    try:
        async with nodes() as factory:

            def store(settings: Any) -> Store:
                return RedisStore(settings.redis.url, domain=settings.domain)

            front = await factory(domain, store, redis_url=redis_url)  # the widget's node
            back = await factory(domain, store, redis_url=redis_url)  # the agent's node
            vid = visitor_id()
            widget = await front.widget(f"site=shop1&visitor={vid}")
            a1 = await back.desk("a1")
            conv = await answered(widget, a1, "over two nodes", "from node two")
            assert (await widget.until("message"))["body"] == "from node two"
            await widget.close()
            await a1.request("message.send", conversation=conv, body="while away")
            again = await back.widget(f"site=shop1&visitor={vid}&since=1")
            assert (await again.until("message"))["body"] == "while away"
    finally:
        engine = queues.create_engine(queues.Policy(), redis_url, domain=domain)
        leftovers = RedisStore(redis_url, domain=domain)
        try:
            await engine.purge()  # type: ignore[attr-defined]
            await leftovers.purge()
        finally:
            await engine.close()
            await leftovers.close()
