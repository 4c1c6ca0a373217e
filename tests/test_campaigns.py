"""Campaigns end to end over real sockets: `/v1/campaigns`, agents' desktops on
`/v1/agent/ws`, inbound chats on `/v1/events`, and a scripted PBX (an aiohttp server on
127.0.0.1) that records every signed `dial` and posts the call's events back on
`/v1/channels/voice/events`.

Every wait is bounded (`WAIT`, `RUN_S`); every loop counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

import queues
from router.app import SERVICE_KEY, create_app
from router.channel_voice import PATH
from router.settings import load_settings
from store.base import Store
from store.model import InboundEvent, LogEntry
from store.redis import RedisStore
from tests.support import DATA, eventually, serve_app
from tests.test_e2e import (
    WAIT,
    WEBHOOK_SECRET,
    Desk,
    QuickStore,
    base_env,
    event,
    open_desk,
    purge_domain,
    send_event,
    shut,
    sign,
)
from tests.test_voice import token

Frame = dict[str, Any]
RUN_S = 20.0  # the whole campaign must finish within this
TRUNK = "+4930901820"


def phone(i: int) -> str:
    return f"+49151000{i:05d}"


# -- the scripted PBX: records dials, answers with call events -------------------------------


@dataclass
class DialingPbx:
    """Records each signed `dial`; then, like a PBX that rang the customer, posts
    `call.answered` and `call.ended` for its `call_id` from the customer's number."""

    url: str = ""
    server: str = ""  # the omniroute base URL the events go to
    secret: str = WEBHOOK_SECRET
    dials: list[Frame] = field(default_factory=list)
    bad_signatures: int = 0
    ended: dict[str, asyncio.Event] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    http: aiohttp.ClientSession | None = None

    def ended_event(self, call: str) -> asyncio.Event:
        return self.ended.setdefault(call, asyncio.Event())

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, request.headers.get("X-Omniroute-Signature", "")):
            self.bad_signatures += 1
            return web.json_response({}, status=401)
        command = json.loads(body)
        self.dials.append(command)
        task = asyncio.create_task(self.ring(command))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return web.json_response({"ok": True})

    async def ring(self, command: Frame) -> None:
        assert self.http is not None
        for kind in ("call.answered", "call.ended"):
            payload = {"id": f"pbx-{uuid.uuid4().hex}", "type": kind, "call_id": command["call_id"]}
            payload.update({"from": command["to"], "to": TRUNK})
            raw = json.dumps(payload).encode()
            signed = sign(raw, self.secret)
            headers = {"Content-Type": "application/json", "X-Omniroute-Signature": signed}
            async with self.http.post(self.server + PATH, data=raw, headers=headers) as resp:
                assert resp.status == 202, await resp.text()
        self.ended_event(command["call_id"]).set()

    def per_claim(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for dial in self.dials:
            counts[dial["call_id"]] = counts.get(dial["call_id"], 0) + 1
        return counts


@contextlib.asynccontextmanager
async def running_pbx(secret: str = WEBHOOK_SECRET) -> AsyncIterator[DialingPbx]:
    """The scripted PBX on 127.0.0.1, checking signatures with `secret`; stopped on exit."""
    pbx = DialingPbx(secret=secret, http=aiohttp.ClientSession())
    app = web.Application()
    app.router.add_post("/cti", pbx.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    pbx.url = f"http://{host}:{port}/cti"
    try:
        yield pbx
    finally:
        for task in list(pbx.tasks):
            task.cancel()
        await asyncio.gather(*pbx.tasks, return_exceptions=True)
        assert pbx.http is not None
        await pbx.http.close()
        await asyncio.wait_for(runner.cleanup(), WAIT)


@pytest.fixture
async def dialing_pbx() -> AsyncIterator[DialingPbx]:
    async with running_pbx() as pbx:
        yield pbx


# -- the server ----------------------------------------------------------------------------------


@dataclass
class CampaignServer:
    base: str
    app: web.Application
    http: aiohttp.ClientSession
    desks: list[Desk] = field(default_factory=list)

    def ops(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {token('ops-1', 'SAM', 'ops')}"}

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        async with self.http.request(
            method, self.base + path, data=data, headers=self.ops()
        ) as resp:
            return resp.status, await asyncio.wait_for(resp.json(), WAIT)

    async def chat(self, visitor: str) -> str:
        return await send_event(self, event(visitor))

    async def connect(self, agent: str, tier: str = "CCS") -> Desk:
        capacity = {"chat": 1, "voice": 1}
        return await open_desk(self, agent, token(agent, tier, capacity=capacity))


Factory = Callable[..., Awaitable[CampaignServer]]


@pytest.fixture
async def make_server() -> AsyncIterator[Factory]:
    made: list[tuple[web.AppRunner, CampaignServer]] = []
    purges: list[tuple[str, str]] = []

    async def factory(
        pbx_url: str = "", config: str | None = None, redis_url: str = "", **env: Any
    ) -> CampaignServer:
        domain = f"cp-{uuid.uuid4().hex[:12]}"
        if redis_url:
            env["redis_url"] = redis_url
            purges.append((redis_url, domain))
        quick = {"wrapup_chat": 0, "wrapup_voice": 0, "campaigns_tick_s": 0.05}
        quick.update(env)
        settings = load_settings(
            config, base_env(domain, voice_pbx_url=pbx_url, sms_default_region="DE", **quick)
        )
        engine = queues.create_engine(settings.policy, settings.redis.url, domain=settings.domain)
        store: Store = RedisStore(redis_url, domain=domain) if redis_url else QuickStore(domain)
        app = create_app(settings, engine, store, snapshot_interval_s=0.1)
        runner, base = await serve_app(app)
        server = CampaignServer(base, app, aiohttp.ClientSession())
        made.append((runner, server))
        return server

    try:
        yield factory
    finally:
        for runner, server in reversed(made):
            await shut(runner, server)
        for url, domain in purges:  # the engine's, the store's and the campaigns' keys
            await purge_domain(url, domain)


def campaign(contacts: list[Frame], **extra: Any) -> Frame:
    body: Frame = {
        "id": "winback-1",
        "name": "Win-back Q1",
        "contacts": contacts,
        "tiers": ["CCS", "PAM", "SAM"],
        "window": {"starts_at": "2020-01-01T00:00:00Z", "ends_at": "2099-01-01T00:00:00Z"},
        "dispositions": ["won_back", "declined", "no_answer", "busy"],
        "retry": {"on": ["no_answer", "busy"], "after_s": 0.3, "max_attempts": 2},
    }
    body.update(extra)
    return body


# -- the API ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"tiers": ["XYZ"]}, "tiers"),
        ({"tiers": []}, "tiers"),
        (
            {"window": {"starts_at": "2020-01-01T00:00:00Z", "ends_at": "2019-01-01T00:00:00Z"}},
            "window.ends_at",
        ),
        (
            {
                "window": {
                    "starts_at": "2020-01-01T00:00:00Z",
                    "ends_at": "2099-01-01T00:00:00Z",
                    "hours": "18:00-09:00",
                }
            },
            "window.hours",
        ),
        (
            {
                "window": {
                    "starts_at": "2020-01-01T00:00:00Z",
                    "ends_at": "2099-01-01T00:00:00Z",
                    "hours": "09:00-18:00",
                    "timezone": "Mars/Olympus",
                }
            },
            "window.timezone",
        ),
        ({"dispositions": []}, "dispositions"),
        ({"retry": {"on": ["nope"]}}, "retry.on"),
        ({"retry": {"max_attempts": 0}}, "retry.max_attempts"),
        ({"contacts": [{"id": "k1", "phone": "not a number"}]}, "contacts[0].phone"),
        ({"contacts": [{"id": "k1"}]}, "contacts[0]"),
        ({"contacts": [{"id": "k1", "customer_id": ""}]}, "contacts[0].customer_id"),
        ({"contacts": [{"id": "k1", "customer_id": 0}]}, "contacts[0].customer_id"),
        (
            {"contacts": [{"id": "k1", "phone": "+4915100000001", "attributes": {"a": [1]}}]},
            "contacts[0].attributes",
        ),
        ({"contacts": [{"id": "k1", "phone": "+4915100000001"}] * 2}, "contacts[1].id"),
        ({"id": "has space"}, "id"),
        ({"do_not_call": {"phones": ["x"]}}, "do_not_call.phones[0]"),
    ],
)
async def test_a_bad_campaign_is_400_and_stores_nothing(
    make_server: Factory, change: Frame, field: str
) -> None:
    server = await make_server()
    status, answer = await server.call("POST", "/v1/campaigns", {**campaign([]), **change})
    assert status == 400, answer
    assert answer["error"]["code"] == "invalid" and answer["error"]["field"] == field
    assert await server.call("GET", "/v1/campaigns") == (200, {"campaigns": []})


async def test_campaign_api_create_read_pause_contacts_stop(make_server: Factory) -> None:
    server = await make_server()
    contacts = [{"id": "k1", "phone": "0151 0000 0001", "attributes": {"reason": "price"}}]
    body = campaign(contacts, state="paused", do_not_call={"customer_ids": ["x"]})
    status, made = await server.call("POST", "/v1/campaigns", body)
    assert status == 201, made
    assert made["state"] == "paused" and made["progress"]["total"] == 1
    assert made["do_not_call"] == 1
    status, again = await server.call("POST", "/v1/campaigns", body)
    assert status == 409 and again["error"]["code"] == "conflict"
    status, listed = await server.call("GET", "/v1/campaigns")
    assert [c["id"] for c in listed["campaigns"]] == ["winback-1"]
    status, added = await server.call(
        "POST", "/v1/campaigns/winback-1/contacts", {"contacts": [{"id": "k2", "customer_id": "x"}]}
    )
    assert (status, added["added"], added["duplicates"]) == (200, 1, 0)
    status, one = await server.call("GET", "/v1/campaigns/winback-1")
    assert one["progress"]["pending"] == 1 and one["progress"]["skipped"] == 1
    assert (await server.call("POST", "/v1/campaigns/winback-1/resume"))[1]["state"] == "running"
    assert (await server.call("POST", "/v1/campaigns/winback-1/stop"))[1]["state"] == "stopped"
    status, _refused = await server.call("POST", "/v1/campaigns/winback-1/resume")
    assert status == 409
    assert (await server.call("GET", "/v1/campaigns/nope"))[0] == 404
    async with server.http.get(server.base + "/v1/campaigns") as resp:
        assert resp.status == 401
    agent = {"Authorization": f"Bearer {token('a1')}"}
    async with server.http.get(server.base + "/v1/campaigns", headers=agent) as resp:
        assert resp.status == 403


# -- a 100-contact campaign blended with inbound chats ---------------------------------------------


class Worker:
    """An agent at work: one reader per desktop hands offers to the agent's loop and answers
    to the requests that wait for them, so no frame is lost between the two."""

    def __init__(
        self,
        desk: Desk,
        pbx: DialingPbx,
        offers: list[tuple[float, str, Frame]],
        store: Store | None = None,
    ) -> None:
        self.desk, self.pbx, self.offers = desk, pbx, offers
        self.store = store  # given: a contact is completed once its call is in its history
        self.back: set[asyncio.Task[Frame]] = set()  # available again after a time-out
        self.inbox: asyncio.Queue[Frame] = asyncio.Queue()
        self.waiting: dict[str, asyncio.Future[Frame]] = {}
        self.guided: list[Frame] = []  # alerts and suggestions, in order

    async def read(self) -> None:
        while True:
            msg = await self.desk.ws.receive()
            if msg.type is not aiohttp.WSMsgType.TEXT:
                return
            frame = json.loads(msg.data)
            future = self.waiting.pop(str(frame.get("ref")), None)
            if future is not None and not future.done():
                future.set_result(frame)
            elif frame["type"] == "offer":
                self.offers.append((time.time(), self.desk.agent, frame))
                self.inbox.put_nowait(frame)
            elif frame["type"] in ("alert", "suggestion"):
                self.guided.append(frame)
            elif frame["type"] == "presence" and frame["state"] == "away":
                again = asyncio.create_task(self.request("presence.set", state="available"))
                self.back.add(again)
                again.add_done_callback(self.back.discard)

    async def request(self, kind: str, **fields: Any) -> Frame:
        ref = self.desk.ref()
        self.waiting[ref] = asyncio.get_running_loop().create_future()
        await self.desk.send({"type": kind, "ref": ref, **fields})
        return await asyncio.wait_for(self.waiting[ref], WAIT)

    async def call_in_history(self, conversation: str, call: str) -> None:
        """Wait until the consumer has put the call's end into the conversation (the PBX's
        202 means stored in the log, not yet routed): an agent completes after the call."""
        store = self.store
        assert store is not None

        async def ended() -> bool:
            conv = await store.conversation(conversation)
            history = await store.history(conv.customer, 50) if conv else []
            return any(
                i.type == "call.ended" and i.meta.get("call_id") == call and
                i.conversation == conversation for i in history
            )  # fmt: skip

        await eventually(ended)

    async def work(self, stop: asyncio.Event) -> None:
        """Accept every offer; a chat is completed at once, a contact once the PBX ended its
        call, with `no_answer` for contacts that never answer, else `won_back`."""
        while not stop.is_set():
            try:
                frame = await asyncio.wait_for(self.inbox.get(), 0.2)
            except TimeoutError:
                continue
            conversation = frame["conversation"]["id"]
            assigned = await self.request("offer.accept", reservation=frame["reservation"])
            assert assigned["type"] == "assigned", assigned
            if frame.get("direction") != "outbound":
                await self.request("conversation.complete", conversation=conversation)
                continue
            assert assigned["campaign"]["name"] == "Win-back Q1"
            await asyncio.wait_for(self.pbx.ended_event(frame["call_id"]).wait(), WAIT)
            if self.store is not None:
                await self.call_in_history(conversation, frame["call_id"])
            silent = frame["contact"]["attributes"].get("answers") is False
            disposition = "no_answer" if silent else "won_back"
            answer = await self.request(
                "conversation.complete", conversation=conversation, disposition=disposition
            )
            assert answer["type"] == "ack", answer


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_a_campaign_blends_with_inbound_and_retries_and_honours_do_not_call(
    make_server: Factory, dialing_pbx: DialingPbx, kind: str, request: pytest.FixtureRequest
) -> None:
    redis_url = request.getfixturevalue("redis_url") if kind == "redis" else ""
    server = await make_server(dialing_pbx.url, redis_url=redis_url, campaigns_max_queued=10)
    dialing_pbx.server = server.base
    contacts = [
        {"id": f"k{i}", "phone": phone(i),
         "attributes": {"reason": "price" if i % 2 else "coverage", "answers": i % 10 != 3}}
        for i in range(100)
    ]  # fmt: skip
    body = campaign(contacts, do_not_call={"phones": [phone(7)]})
    desks = [await server.connect(f"a{i}") for i in range(10)]
    offers: list[tuple[float, str, Frame]] = []
    stop = asyncio.Event()
    store = server.app[SERVICE_KEY].store
    agents = [Worker(d, dialing_pbx, offers, store) for d in desks]
    readers = [asyncio.create_task(agent.read()) for agent in agents]
    workers = [asyncio.create_task(agent.work(stop)) for agent in agents]
    chats: list[str] = []

    async def inbound() -> None:
        for i in range(150):  # inbound load all along
            chats.append(await server.chat(f"visitor:{i}"))
            await asyncio.sleep(0.02)

    feeding = asyncio.create_task(inbound())
    try:
        assert (await server.call("POST", "/v1/campaigns", body))[0] == 201
        # on the list while the campaign runs: withdrawn wherever it is, never offered
        status, dnc = await server.call("POST", "/v1/campaigns/winback-1/do-not-call",
                                        {"phones": [phone(99)]})  # fmt: skip
        assert status == 200 and dnc["entries"] == 1
        deadline = time.monotonic() + RUN_S
        while True:
            view = (await server.call("GET", "/v1/campaigns/winback-1"))[1]
            p = view["progress"]
            if p["done"] + p["exhausted"] + p["skipped"] == 100 and feeding.done():
                break
            for worker in workers:
                if worker.done():
                    worker.result()  # an agent that failed says why
            assert time.monotonic() < deadline, json.dumps(p)
            await asyncio.sleep(0.1)
        await feeding
    finally:
        stop.set()
        await asyncio.gather(*workers, return_exceptions=True)
        feeding.cancel()
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, feeding, return_exceptions=True)
    p = view["progress"]
    assert p["skipped"] == 2 and p["exhausted"] == 10 and p["done"] == 88, p
    assert p["done_by_disposition"] == {"won_back": 88}
    assert p["outcomes"] == {"no_answer": 20, "won_back": 88}
    # the do-not-call contacts were never offered nor dialled
    offered_contacts = [f["contact"]["id"] for _, _, f in offers if f.get("direction")]
    assert "k7" not in offered_contacts and "k99" not in offered_contacts
    dialled = {d["contact"] for d in dialing_pbx.dials}
    assert "k7" not in dialled and "k99" not in dialled
    assert dialing_pbx.bad_signatures == 0
    # one dial per claim; a silent contact twice (max_attempts), the second after after_s
    assert set(dialing_pbx.per_claim().values()) == {1}
    service = server.app[SERVICE_KEY]
    for i in (3, 13, 93):
        contact = await service.campaigns.store.contact("winback-1", f"k{i}")
        assert contact is not None and contact["status"] == "exhausted"
        tries = contact["outcomes"]
        assert [o[1] for o in tries] == ["no_answer", "no_answer"]
        assert tries[1][2] - tries[0][2] >= 300
        assert sorted(d["call_id"] for d in dialing_pbx.dials if d["contact"] == f"k{i}") == [
            f"dial:winback-1:k{i}:1", f"dial:winback-1:k{i}:2"
        ]  # fmt: skip
    # the call's events are in the customer's conversation
    sample = next(f for _, _, f in offers if f.get("contact", {}).get("id") == "k1")
    conv = await service.store.conversation(sample["conversation"]["id"])
    assert conv is not None

    async def steps() -> list[tuple[str, Any]]:
        history = await service.store.history(conv.customer, 50)
        return [(i.type, i.meta.get("call_id")) for i in history if i.conversation == conv.id]

    async def landed() -> bool:  # routed by the consumer after the PBX's 202
        have = await steps()
        return ("call.answered", sample["call_id"]) in have and (
            "call.ended",
            sample["call_id"],
        ) in have

    assert await landed()
    # the blending rule, from the engine's own record of its decisions: no contact was offered
    # while an inbound chat waited (every chat is eligible for every agent here)
    await assert_no_dial_while_inbound_waited(server, chats, offers)


async def assert_no_dial_while_inbound_waited(
    server: CampaignServer, chats: list[str], offers: list[tuple[float, str, Frame]]
) -> None:
    engine = server.app[SERVICE_KEY].engine
    store = server.app[SERVICE_KEY].store
    waits: list[tuple[int, int]] = []  # (enqueued, first offered) of every inbound chat
    dials: list[int] = []
    conversations = set(chats) | {f["conversation"]["id"] for _, _, f in offers}
    for conv_id in sorted(conversations):
        conv = await store.conversation(conv_id)
        assert conv is not None
        raw = await engine.why_raw(conv_id, conv.customer)
        traces = [item["trace"] for item in raw["live"]] + list(raw["kept"].values())
        for trace in traces:
            enq = next(row[0] for row in trace if row[1] == "enqueued")
            offered = [row for row in trace if row[1] == "offered"]
            outbound = any(str(row[3]).startswith("outbound|") for row in offered)
            if outbound:
                dials.extend(row[0] for row in offered)
            elif offered:
                waits.append((enq, offered[0][0]))
    assert len(dials) >= 98 and len(waits) >= 150
    for dial in dials:
        waited = [(e, o) for e, o in waits if e < dial < o]
        assert not waited, f"a contact was offered at {dial} while a chat waited: {waited[:3]}"


# -- guidance on a contact's attributes -----------------------------------------------------------


async def test_guidance_rules_on_contact_attributes_fire_for_matching_contacts_only(
    make_server: Factory, dialing_pbx: DialingPbx
) -> None:
    server = await make_server(dialing_pbx.url, str(DATA / "guidance_on_contacts.toml"))
    dialing_pbx.server = server.base
    desk = await server.connect("a1")
    offers: list[tuple[float, str, Frame]] = []
    agent = Worker(desk, dialing_pbx, offers)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(agent.read()), asyncio.create_task(agent.work(stop))]
    reasons = {"k1": "price", "k2": "moved", "k3": "coverage"}
    contacts = [
        {"id": k, "phone": phone(i), "attributes": {"reason": r}}
        for i, (k, r) in enumerate(reasons.items())
    ]
    try:
        chat = await server.chat("visitor:guided")  # inbound: no contact, no campaign
        assert (await server.call("POST", "/v1/campaigns", campaign(contacts)))[0] == 201
        deadline = time.monotonic() + RUN_S
        while True:
            progress = (await server.call("GET", "/v1/campaigns/winback-1"))[1]["progress"]
            if progress["done"] == 3 and any(f["conversation"]["id"] == chat for _, _, f in offers):
                break
            assert time.monotonic() < deadline, progress
            await asyncio.sleep(0.05)
        await agent.request("ping")
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    by_conversation = {
        f["conversation"]["id"]: f.get("contact", {}).get("id") for _, _, f in offers
    }
    fired: dict[str | None, set[str]] = {}
    for frame in agent.guided:
        fired.setdefault(by_conversation.get(frame["conversation"]), set()).add(frame["rule"])
    # offered and assigned both carry them; the chat and the contact who moved get none
    assert fired == {"k1": {"price-leaver", "winback-offer"}, "k3": {"winback-offer"}}
    assert all(f["customer"] for f in agent.guided)  # the send-time tier filter judges by it


# -- taking contacts back: do-not-call, pause, the window -------------------------------------


async def contact_task(server: CampaignServer, contact: str) -> str | None:
    """The engine's task of the contact's latest claim, if it has one."""
    service = server.app[SERVICE_KEY]
    found = await service.campaigns.store.contact("winback-1", contact)
    if found is None or not found["conversation"]:
        return None
    task = f"{found['conversation']}~cp:winback-1:{contact}:{found['n']}"
    return task if await service.engine.task_view(task) is not None else None


async def test_do_not_call_and_pause_withdraw_contacts_waiting_in_line(
    make_server: Factory, dialing_pbx: DialingPbx
) -> None:
    server = await make_server(dialing_pbx.url)
    busy = await server.connect("a1")  # busy with a chat: the contacts wait in line
    await server.chat("visitor:1")
    offer = await busy.until("offer")
    await busy.request("offer.accept", reservation=offer["reservation"])
    contacts = [{"id": f"k{i}", "phone": phone(i)} for i in range(3)]
    assert (await server.call("POST", "/v1/campaigns", campaign(contacts)))[0] == 201
    service = server.app[SERVICE_KEY]

    async def in_line(*ids: str) -> bool:
        return all([await contact_task(server, k) is not None for k in ids])

    await eventually(lambda: in_line("k0", "k1", "k2"))
    status, answer = await server.call(
        "POST", "/v1/campaigns/winback-1/do-not-call", {"phones": [phone(1)]}
    )
    assert (status, answer["withdrawn"]) == (200, ["k1"])
    assert await contact_task(server, "k1") is None
    # pause: every contact still in line goes back, and its task with it
    status, paused = await server.call("POST", "/v1/campaigns/winback-1/pause")
    assert status == 200 and paused["state"] == "paused"
    assert paused["progress"] == {**paused["progress"], "pending": 2, "queued": 0, "skipped": 1}
    assert await contact_task(server, "k0") is None and await contact_task(server, "k2") is None
    # resumed, they come back under a new claim; the do-not-call one never does
    await server.call("POST", "/v1/campaigns/winback-1/resume")
    await eventually(lambda: in_line("k0", "k2"))
    k0 = await service.campaigns.store.contact("winback-1", "k0")
    assert k0 is not None and k0["n"] == 2
    # the agent is free: it is offered the contacts, never k1, and nothing was dialled yet
    start = len(busy.seen)
    await busy.request("conversation.complete", conversation=offer["conversation"]["id"])
    came = [f for f in busy.seen[start:] if f["type"] == "offer"]  # before the ack, or after
    nxt = came[0] if came else await busy.until("offer")
    assert nxt["direction"] == "outbound" and nxt["contact"]["id"] in ("k0", "k2")
    assert dialing_pbx.dials == []


def test_the_window_holds_its_days_and_its_daily_hours_in_its_time_zone() -> None:
    from datetime import datetime

    from router.campaign_spec import in_window, window_of

    window = window_of(
        {
            "starts_at": "2027-01-04T00:00:00+01:00",
            "ends_at": "2027-02-01T00:00:00+01:00",
            "hours": "09:00-18:00",
            "timezone": "Europe/Berlin",
        }
    )
    record = {"window": window}

    def at(text: str) -> float:
        return datetime.fromisoformat(text).timestamp()

    assert in_window(record, at("2027-01-12T08:30:00+00:00"))  # 09:30 in Berlin
    assert not in_window(record, at("2027-01-12T07:59:00+00:00"))  # 08:59 in Berlin
    assert not in_window(record, at("2027-01-12T17:00:00+00:00"))  # 18:00 in Berlin
    assert not in_window(record, at("2027-01-03T10:00:00+00:00"))  # before it starts
    assert not in_window(record, at("2027-02-01T10:00:00+00:00"))  # after it ends
    assert in_window({"window": {**window, "hours": None}}, at("2027-01-12T03:00:00+00:00"))


async def test_a_contact_with_wrap_up_time_completes_then_finishes_wrap_up(
    make_server: Factory, dialing_pbx: DialingPbx
) -> None:
    server = await make_server(dialing_pbx.url, wrapup_voice=30)
    dialing_pbx.server = server.base
    desk = await server.connect("a1")
    body = campaign([{"id": "k1", "phone": phone(1)}])
    assert (await server.call("POST", "/v1/campaigns", body))[0] == 201
    offer = await desk.until("offer")
    conversation = offer["conversation"]["id"]
    assert (await desk.request("offer.accept", reservation=offer["reservation"]))["type"] == (
        "assigned"
    )
    await asyncio.wait_for(dialing_pbx.ended_event(offer["call_id"]).wait(), WAIT)
    bad = await desk.request("conversation.complete", conversation=conversation, disposition="x")
    assert bad["type"] == "error" and bad["code"] == "invalid"
    done = await desk.request(
        "conversation.complete", conversation=conversation, disposition="won_back"
    )
    assert done["type"] == "ack"
    again = await desk.request(
        "conversation.complete", conversation=conversation, disposition="won_back"
    )
    assert again["type"] == "ack"  # a repeat is answered again, and counted once
    finished = await desk.request("wrapup.done", conversation=conversation)
    assert finished["type"] == "ack", finished
    view = (await server.call("GET", "/v1/campaigns/winback-1"))[1]
    assert view["progress"]["done_by_disposition"] == {"won_back": 1}
    assert view["progress"]["outcomes"] == {"won_back": 1}
    agent = await server.app[SERVICE_KEY].engine.agent_view("a1")
    assert agent is not None and agent["tasks"] == []


async def test_the_contact_holder_completes_while_the_customer_writes_in(
    make_server: Factory, dialing_pbx: DialingPbx
) -> None:
    """The customer of a contact waiting in line writes in: the conversation gets its own
    inbound task beside the outbound one. Inbound first: a1 takes the message, a2 the contact.
    a2 completes the contact with a disposition although the conversation's own task is a1's;
    an offer not yet accepted records no outcome."""
    server = await make_server(dialing_pbx.url)
    dialing_pbx.server = server.base
    engine = server.app[SERVICE_KEY].engine
    assert (
        await server.call("POST", "/v1/campaigns", campaign([{"id": "k1", "phone": phone(1)}]))
    )[0] == 201

    async def contact_in_line() -> bool:
        return any("~cp:" in task for task in (await engine.dump())["tasks"])

    await eventually(contact_in_line)
    conversation = await send_event(server, event(phone(1), channel="sms"))
    a1 = await server.connect("a1")
    taken = await a1.until("offer")
    assert taken["conversation"]["id"] == conversation and not taken.get("direction")
    assert (await a1.request("offer.accept", reservation=taken["reservation"]))[
        "type"
    ] == "assigned"
    a2 = await server.connect("a2")
    contact = await a2.until("offer")
    assert contact["direction"] == "outbound" and contact["conversation"]["id"] == conversation
    early = await a2.request(
        "conversation.complete", conversation=conversation, disposition="won_back"
    )
    assert early["type"] == "error" and early["code"] == "conflict", early
    assert (await server.call("GET", "/v1/campaigns/winback-1"))[1]["progress"]["outcomes"] == {}
    assert (await a2.request("offer.accept", reservation=contact["reservation"]))[
        "type"
    ] == "assigned"
    await asyncio.wait_for(dialing_pbx.ended_event(contact["call_id"]).wait(), WAIT)
    done = await a2.request(
        "conversation.complete", conversation=conversation, disposition="won_back"
    )
    assert done["type"] == "ack", done
    view = (await server.call("GET", "/v1/campaigns/winback-1"))[1]
    assert view["progress"]["done_by_disposition"] == {"won_back": 1}
    mine = await engine.agent_view("a1")
    assert mine is not None and mine["tasks"] == [conversation]  # a1's own work untouched


async def test_a_contact_entry_read_again_leaves_the_live_offer_alone(
    make_server: Factory, dialing_pbx: DialingPbx
) -> None:
    """A node that routed a contact died before acknowledging its log entry; the survivor
    reads the entry again while the contact's offer is on a desktop. The contact stays in
    line at its claim (not taken back as "customer busy"), and the agent's call goes ahead."""
    server = await make_server(dialing_pbx.url)
    dialing_pbx.server = server.base
    service = server.app[SERVICE_KEY]
    desk = await server.connect("a1")
    assert (
        await server.call("POST", "/v1/campaigns", campaign([{"id": "k1", "phone": phone(1)}]))
    )[0] == 201
    offer = await desk.until("offer")
    conv = await service.store.conversation(offer["conversation"]["id"])
    customer = await service.store.customer(conv.customer) if conv is not None else None
    assert conv is not None and customer is not None
    meta = {"campaign": "winback-1", "contact": "k1", "n": 1}
    again = InboundEvent("cp:winback-1:k1:1", "campaign.contact", "voice", phone(1), meta=meta)
    await service.campaigns.route(
        LogEntry("1-0", again, conv.id, customer.id, True), conv, customer
    )
    contact = await service.campaigns.store.contact("winback-1", "k1")
    assert contact is not None and (contact["status"], contact["n"]) == ("queued", 1)
    assert (await desk.request("offer.accept", reservation=offer["reservation"]))[
        "type"
    ] == "assigned"
    await asyncio.wait_for(dialing_pbx.ended_event(offer["call_id"]).wait(), WAIT)
    done = await desk.request("conversation.complete", conversation=conv.id, disposition="won_back")
    assert done["type"] == "ack", done
    view = (await server.call("GET", "/v1/campaigns/winback-1"))[1]
    assert view["progress"]["done_by_disposition"] == {"won_back": 1}
