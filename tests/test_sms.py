"""The SMS channel against real peers on 127.0.0.1: Twilio's webhooks and Twilio's API.

Webhooks are signed with the official `twilio` package (`RequestValidator.compute_signature`)
and posted over a real socket to `create_app` + `add_sms`; agent desktops are real `/v1/agent/ws`
clients; a small aiohttp server stands in for Twilio's REST API and records what it is sent.
`[server] public_url` is an https origin, as behind the proxy a deployment puts in front: Twilio
signs that URL, the test posts the same path and query to the local port.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import random
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
import structlog
import structlog.testing
from aiohttp import web
from twilio.request_validator import RequestValidator

import queues
from channels.base import OutboundMessage
from channels.sms.form import EMPTY_TWIML, form_pairs
from channels.sms.outbound import SMS_BACKOFF, recipient
from channels.sms.signature import compute_signature, signature_ok
from router.app import create_app
from router.channel_sms import STATUS_PATH, WEBHOOK_PATH
from router.settings import load_settings
from store.model import Interaction
from tests.support import eventually, serve_app
from tests.test_e2e import (
    WAIT,
    AppServer,
    Desk,
    QuickStore,
    Running,
    base_env,
    make_token,
    offered,
    open_desk,
    take,
)

TOKEN = "twilio-auth-token-" + "t" * 14
ACCOUNT = "AC" + "0123456789abcdef" * 2
OUR_NUMBER = "+15005550006"
PUBLIC = "https://acd.example.org"
MOBILE = "+4915112345678"

Form = dict[str, str]


def sid() -> str:
    return "SM" + uuid.uuid4().hex


def inbound(body: str = "hello by SMS", sender: str = MOBILE, **extra: str) -> Form:
    """Twilio's inbound message form (the fields that matter, plus some it always sends)."""
    message = sid()
    form = {
        "ToCountry": "US",
        "SmsMessageSid": message,
        "NumMedia": "0",
        "SmsSid": message,
        "SmsStatus": "received",
        "Body": body,
        "To": OUR_NUMBER,
        "NumSegments": "1",
        "MessageSid": message,
        "AccountSid": ACCOUNT,
        "From": sender,
        "ApiVersion": "2010-04-01",
    }
    form.update(extra)
    return form


def twilio_signature(url: str, form: Form, token: str = TOKEN) -> str:
    signature: str = RequestValidator(token).compute_signature(url, form)
    return signature


# -- a stand-in for Twilio's REST API ---------------------------------------------------------


@dataclass
class TwilioApi:
    """Answers POST …/Messages.json with the next scripted status (201 once the script is out)."""

    base: str = ""
    script: list[int] = field(default_factory=list)
    requests: list[tuple[str, Form, str]] = field(default_factory=list)  # path, form, auth
    arrived: asyncio.Queue[int] = field(default_factory=asyncio.Queue)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def messages(self, request: web.Request) -> web.Response:
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        self.requests.append((request.path, form, request.headers.get("Authorization", "")))
        status = self.script.pop(0) if self.script else 201
        self.arrived.put_nowait(status)
        if status == 0:  # scripted to never answer (until the test ends)
            await self.release.wait()
        if status == 201:
            return web.json_response({"sid": sid(), "status": "queued"}, status=201)
        code = 21211 if status == 400 else 20500  # invalid 'To' number / internal error
        return web.json_response({"code": code, "message": "scripted failure"}, status=status)

    async def wait(self, n: int) -> None:
        """Until `n` requests have arrived (bounded)."""
        for _ in range(n):
            await asyncio.wait_for(self.arrived.get(), WAIT)


@pytest.fixture
async def twilio_api() -> AsyncIterator[TwilioApi]:
    api = TwilioApi()
    app = web.Application()
    app.router.add_post(r"/2010-04-01/Accounts/{account}/Messages.json", api.messages)
    runner, api.base = await serve_app(app)
    try:
        yield api
    finally:
        api.release.set()
        await asyncio.wait_for(runner.cleanup(), WAIT)


# -- omniroute with the SMS channel -------------------------------------------------------------


class SmsServer(AppServer):
    async def webhook(
        self,
        form: Form,
        *,
        path: str = WEBHOOK_PATH,
        signature: str | None = None,
        signed_url: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, str, str]:
        """POST a form to `path` signed for PUBLIC + path (or `signed_url`), like Twilio."""
        sent = {"Content-Type": "application/x-www-form-urlencoded"}
        if signature is None:
            signature = twilio_signature(signed_url or PUBLIC + path, form)
        if signature:
            sent["X-Twilio-Signature"] = signature
        sent.update(headers or {})
        data = io.BytesIO(urlencode(form).encode())
        async with self.http.post(self.base + path, data=data, headers=sent) as resp:
            text = await asyncio.wait_for(resp.text(), WAIT)
            return resp.status, resp.content_type, text

    async def connect(self, agent: str) -> Desk:
        return await open_desk(self, agent, make_token(agent))

    async def history(self, customer: str) -> list[Interaction]:
        return await self.service.store.history(customer, 200)


Factory = Callable[..., Awaitable[SmsServer]]


@pytest.fixture
async def make_server(twilio_api: TwilioApi) -> AsyncIterator[Factory]:
    running = Running()

    async def factory(**overrides: Any) -> SmsServer:
        domain = f"sms-{uuid.uuid4().hex[:12]}"
        env = {
            "sms_auth_token": TOKEN,
            "sms_account_sid": ACCOUNT,
            "sms_from_number": OUR_NUMBER,
            "sms_api_base_url": twilio_api.base,
            "server_public_url": PUBLIC,
            **overrides,
        }
        settings = load_settings(None, base_env(domain, **env))
        engine = queues.create_engine(settings.policy, settings.redis.url, domain=settings.domain)
        app = create_app(settings, engine, QuickStore(domain), snapshot_interval_s=0.1)
        return await running.serve(app, SmsServer)

    async with running:
        yield factory


@pytest.fixture
async def server(make_server: Factory) -> SmsServer:
    return await make_server()


async def no_offer(desk: Desk) -> None:
    """Nothing was offered to `desk` (everything pushed before a ping has arrived)."""
    assert not [f for f in await desk.quiet() if f["type"] in ("offer", "message")]


# -- signatures, against the official validator -------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://acd.example.org/v1/channels/sms/twilio",
        "https://acd.example.org:8443/v1/channels/sms/twilio/status?cu=c%3A1&ix=i-2",
        "http://127.0.0.1:8080/hook?a=1&b=%C3%A4",
    ],
)
def test_signature_is_twilios(url: str) -> None:
    validator = RequestValidator(TOKEN)
    forms: list[Form] = [
        {},
        inbound(),
        inbound(body="Grüße 👋 & a+b=c\nzweite Zeile", FromCity="KÖLN", Empty=""),
    ]
    for form in forms:
        ours = compute_signature(TOKEN, url, list(form.items()))
        assert ours == validator.compute_signature(url, form)
        assert validator.validate(url, form, ours)
        assert signature_ok(TOKEN, url, list(form.items()), validator.compute_signature(url, form))
        assert not signature_ok("other-token", url, list(form.items()), ours)
        assert not signature_ok(TOKEN, url + "x", list(form.items()), ours)
    # a form through the wire and back signs the same
    form = inbound(body="a+b & c=d ä")
    assert compute_signature(TOKEN, url, form_pairs(urlencode(form).encode())) == (
        validator.compute_signature(url, form)
    )


def test_signature_with_and_without_the_default_port() -> None:
    """Twilio signs the URL with or without :443; like its validator, both are accepted."""
    form = list(inbound().items())
    plain, ported = "https://acd.example.org/hook", "https://acd.example.org:443/hook"
    assert signature_ok(TOKEN, plain, form, compute_signature(TOKEN, ported, form))
    assert signature_ok(TOKEN, ported, form, compute_signature(TOKEN, plain, form))
    assert not signature_ok(TOKEN, plain, form, compute_signature(TOKEN, plain + "?", form))
    assert not signature_ok("", plain, form, compute_signature("", plain, form))


def test_reply_goes_to_the_number_they_wrote_from_while_it_is_theirs() -> None:
    def message(addresses: tuple[str, ...], meta: dict[str, Any]) -> OutboundMessage:
        return OutboundMessage("cv", "cu", "sms", "hi", "ix", "a1", addresses, meta)

    other = "+4930123456"
    assert recipient(message(("anna@example.org", MOBILE, other), {"from": other})) == other
    assert recipient(message((MOBILE,), {"from": other})) == MOBILE  # moved to someone else
    assert recipient(message(("visitor:1", MOBILE), {})) == MOBILE
    assert recipient(message((), {"from": other})) == other
    assert recipient(message(("anna@example.org",), {})) is None


def test_backoff_is_bounded() -> None:
    backoff, rng = SMS_BACKOFF, random.Random(7)
    for _ in range(100):
        waits = [backoff.delay(n, rng) for n in range(1, backoff.tries)]
        assert all(w > 0 for w in waits) and sum(waits) <= 3.0
    assert backoff.delay(1, rng, retry_after=30.0) == backoff.cap_s


# -- inbound ------------------------------------------------------------------------------------


async def test_inbound_sms_is_offered_with_its_history(server: SmsServer) -> None:
    a1 = await server.connect("a1")
    form = inbound(body="Mein Konto ist gesperrt")
    status, content_type, text = await server.webhook(form)
    assert (status, content_type, text) == (200, "text/xml", EMPTY_TWIML)

    offer = await offered(a1)
    assert offer["channel"] == "sms"
    (item,) = offer["conversation"]["history"]
    assert (item["channel"], item["direction"], item["body"]) == ("sms", "in", form["Body"])
    assert item["meta"] == {"to": OUR_NUMBER, "sid": form["MessageSid"], "from": MOBILE}
    customer = await server.service.store.customer(offer["conversation"]["customer"]["id"])
    assert customer is not None and MOBILE in customer.addresses


async def test_a_repeated_message_sid_is_routed_once(server: SmsServer) -> None:
    a1 = await server.connect("a1")
    form = inbound()
    assert (await server.webhook(form))[0] == 200
    offer = await offered(a1)
    assert (await server.webhook(form))[0] == 200  # Twilio's retry: accepted, not re-routed
    await no_offer(a1)
    history = await server.history(offer["conversation"]["customer"]["id"])
    assert [i.meta["sid"] for i in history] == [form["MessageSid"]]


async def test_mms_keeps_only_the_media_count(server: SmsServer) -> None:
    a1 = await server.connect("a1")
    media = {"MediaUrl0": "https://api.twilio.com/m/1", "MediaContentType0": "image/jpeg"}
    media |= {"MediaUrl1": "https://api.twilio.com/m/2", "MediaContentType1": "image/png"}
    assert (await server.webhook(inbound(body="", NumMedia="2", **media)))[0] == 200
    (item,) = (await offered(a1))["conversation"]["history"]
    assert item["body"] == "[2 attachments]"
    assert item["meta"]["media"] == 2
    assert "api.twilio.com" not in str(item)


@pytest.mark.parametrize(
    "tamper",
    ["bad", "missing", "other_url", "other_token", "changed_body", "sha256_settings"],
)
async def test_unsigned_webhooks_are_refused_and_store_nothing(
    server: SmsServer, tamper: str
) -> None:
    a1 = await server.connect("a1")
    form = inbound(body="let me in")
    kwargs: dict[str, Any] = {
        "bad": {"signature": "bm90IGEgc2lnbmF0dXJl"},
        "missing": {"signature": ""},
        "other_url": {"signed_url": f"{PUBLIC}/v1/events"},
        "other_token": {"signature": twilio_signature(PUBLIC + WEBHOOK_PATH, form, "x" * 32)},
        "changed_body": {"signature": twilio_signature(PUBLIC + WEBHOOK_PATH, inbound())},
        "sha256_settings": {
            "headers": {"X-Twilio-Webhooks-Signature-Settings": "algorithm=HMAC_SHA256"},
            "signature": RequestValidator(TOKEN).compute_signature(
                PUBLIC + WEBHOOK_PATH, form, "HMAC_SHA256"
            ),
        },
    }[tamper]
    status, _, text = await server.webhook(form, **kwargs)
    assert status == 403, text
    await no_offer(a1)
    # the same MessageSid, signed: new to the store, so nothing of the refused one was kept
    assert (await server.webhook(form))[0] == 200
    offer = await offered(a1)
    assert [i["body"] for i in offer["conversation"]["history"]] == ["let me in"]


async def test_without_an_auth_token_every_webhook_is_refused(make_server: Factory) -> None:
    server = await make_server(sms_auth_token="")
    form = inbound()
    empty_signed = RequestValidator("").compute_signature(PUBLIC + WEBHOOK_PATH, form)
    with structlog.testing.capture_logs() as logs:
        assert (await server.webhook(form, signature=empty_signed))[0] == 403
        assert (await server.webhook(form))[0] == 403
        assert (await server.webhook({"MessageSid": sid()}, path=STATUS_PATH))[0] == 403
    why = [e for e in logs if e["event"] == "sms.webhooks_off"]
    assert [e["reason"] for e in why] == ["no_token"]  # said once, not per request
    assert [e["reason"] for e in logs if e["event"] == "sms.refused"] == ["no_token"] * 3


async def test_a_national_number_is_read_in_from_country(server: SmsServer) -> None:
    a1 = await server.connect("a1")
    form = inbound(sender="0151 12345678", FromCountry="DE")
    assert (await server.webhook(form))[0] == 200
    offer = await offered(a1)
    (item,) = offer["conversation"]["history"]
    assert item["meta"]["from"] == MOBILE
    customer = await server.service.store.customer(offer["conversation"]["customer"]["id"])
    assert customer is not None and customer.addresses == (MOBILE,)
    # the same phone in international form is the same customer, the same conversation
    assert (await server.webhook(inbound(body="again", sender="+49 151 1234 5678")))[0] == 200
    history = await server.history(customer.id)
    assert [i.body for i in history] == ["hello by SMS", "again"]
    assert {i.conversation for i in history} == {offer["conversation"]["id"]}


async def test_default_region_reads_numbers_without_from_country(make_server: Factory) -> None:
    server = await make_server(sms_default_region="DE")
    a1 = await server.connect("a1")
    assert (await server.webhook(inbound(sender="015112345678")))[0] == 200
    (item,) = (await offered(a1))["conversation"]["history"]
    assert item["meta"]["from"] == MOBILE


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"From": "015112345678"}, "From"),  # national, no FromCountry, no default region
        ({"From": "+999 123"}, "From"),
        ({"From": "+49 151"}, "From"),  # too short to be a valid German mobile
        ({"From": "hello"}, "From"),
        ({"From": "whatsapp:+4915112345678"}, "From"),
        ({"From": ""}, "From"),
        ({"MessageSid": "SM/../x"}, "MessageSid"),
        ({"Body": "   "}, "Body"),
    ],
)
async def test_invalid_webhooks_are_refused_with_400(
    server: SmsServer, changes: Form, field: str
) -> None:
    a1 = await server.connect("a1")
    status, content_type, text = await server.webhook({**inbound(), **changes})
    assert status == 400 and content_type == "application/json", text
    assert f'"field": "{field}"' in text
    await no_offer(a1)


async def test_wrong_content_type_and_oversized_bodies_are_refused(server: SmsServer) -> None:
    form = inbound()
    status, _, _ = await server.webhook(form, headers={"Content-Type": "application/json"})
    assert status == 415
    status, _, _ = await server.webhook(inbound(body="x" * 200_000))
    assert status == 413


# -- outbound and delivery statuses ------------------------------------------------------------


async def sms_conversation(server: SmsServer, desk: Desk) -> tuple[str, str]:
    """An SMS conversation assigned to `desk`: (conversation, customer)."""
    assert (await server.webhook(inbound()))[0] == 200
    assigned = await take(desk)
    return assigned["conversation"]["id"], assigned["conversation"]["customer"]["id"]


async def test_reply_is_posted_to_twilio_with_retries_then_delivered(
    server: SmsServer, twilio_api: TwilioApi
) -> None:
    twilio_api.script = [500, 500]  # then 201
    with structlog.testing.capture_logs() as logs:
        await reply_and_delivery(server, twilio_api)
    events = {e["event"] for e in logs}
    assert {"sms.received", "sms.sent", "sms.status", "sms.status_stale"} <= events
    shown = repr(logs)
    assert "Try again now" not in shown and "hello by SMS" not in shown
    assert MOBILE not in shown and MOBILE[1:] not in shown and OUR_NUMBER not in shown


async def reply_and_delivery(server: SmsServer, twilio_api: TwilioApi) -> None:
    a1 = await server.connect("a1")
    conv, customer = await sms_conversation(server, a1)
    ack = await a1.request("message.send", conversation=conv, body="Try again now", channel="sms")
    assert ack["type"] == "ack"
    interaction = ack["interaction"]["id"]

    await twilio_api.wait(3)

    async def sid_stored() -> bool:
        (item,) = [i for i in await server.history(customer) if i.id == interaction]
        return "sms_sid" in item.meta

    await eventually(sid_stored)
    sent = await a1.until("message.status", interaction=interaction)
    assert (sent["conversation"], sent["status"]) == (conv, "sent")
    assert len(twilio_api.requests) == 3
    path, form, auth = twilio_api.requests[-1]
    assert path == f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
    assert auth == "Basic " + base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()
    assert (form["To"], form["From"], form["Body"]) == (MOBILE, OUR_NUMBER, "Try again now")
    callback = urlsplit(form["StatusCallback"])
    assert f"{callback.scheme}://{callback.netloc}{callback.path}" == PUBLIC + STATUS_PATH
    assert dict(parse_qsl(callback.query)) == {"cu": customer, "ix": interaction}

    # Twilio reports delivery on the StatusCallback URL, signed for exactly that URL
    path_qs = form["StatusCallback"][len(PUBLIC) :]
    message_sid = (await server.history(customer))[-1].meta["sms_sid"]
    delivered = {"MessageSid": message_sid, "MessageStatus": "delivered", "AccountSid": ACCOUNT}
    status, _, text = await server.webhook(
        delivered, path=path_qs, signed_url=form["StatusCallback"]
    )
    assert (status, text) == (200, "")
    told = await a1.until("message.status", interaction=interaction)
    assert (told["status"], told.get("error")) == ("delivered", None)
    # a late "sent" (callbacks come out of order) does not move it back
    late = {**delivered, "MessageStatus": "sent"}
    assert (await server.webhook(late, path=path_qs, signed_url=form["StatusCallback"]))[0] == 200
    item = (await server.history(customer))[-1]
    assert item.id == interaction
    assert item.meta["sms_status"] == "delivered"
    assert item.meta["sms_sid"] == message_sid and item.meta["sms_error"] is None


async def test_a_refused_reply_is_not_retried_and_marked_failed(
    server: SmsServer, twilio_api: TwilioApi
) -> None:
    twilio_api.script = [400]
    a1 = await server.connect("a1")
    conv, customer = await sms_conversation(server, a1)
    ack = await a1.request("message.send", conversation=conv, body="hello", channel="sms")
    interaction = ack["interaction"]["id"]

    async def failed() -> bool:
        return (await server.history(customer))[-1].meta.get("sms_status") == "failed"

    await eventually(failed)
    item = (await server.history(customer))[-1]
    assert item.id == interaction and item.meta["sms_error"] == "21211"
    told = await a1.until("message.status", interaction=interaction)
    assert (told["status"], told["error"]) == ("failed", "21211")
    assert len(twilio_api.requests) == 1


async def test_an_unreachable_api_is_retried_a_bounded_number_of_times(
    make_server: Factory,
) -> None:
    with contextlib.closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"  # bound, never listening
        server = await make_server(sms_api_base_url=dead)
        a1 = await server.connect("a1")
        conv, customer = await sms_conversation(server, a1)
        await a1.request("message.send", conversation=conv, body="hello", channel="sms")

        async def failed() -> bool:
            return (await server.history(customer))[-1].meta.get("sms_status") == "failed"

        await eventually(failed)
        assert (await server.history(customer))[-1].meta["sms_error"] == "unreachable"


async def test_status_callbacks_for_unknown_ids_are_answered_and_bad_ones_refused(
    server: SmsServer,
) -> None:
    form = {"MessageSid": sid(), "MessageStatus": "delivered"}
    path = f"{STATUS_PATH}?cu=nobody&ix=nothing"
    assert (await server.webhook(form, path=path))[:3:2] == (200, "")
    assert (await server.webhook(form, path=path, signature="Zm9v"))[0] == 403
    assert (await server.webhook(form, path=STATUS_PATH))[0] == 400  # names no interaction
    bad_status = {**form, "MessageStatus": "exploded"}
    assert (await server.webhook(bad_status, path=path))[0] == 400


async def test_a_flood_of_webhooks_keeps_the_server_serving(server: SmsServer) -> None:
    gate = asyncio.Semaphore(16)

    async def one(n: int) -> int:
        async with gate:
            sender = f"+49151{10_000_000 + n}"
            return (await server.webhook(inbound(body=f"message {n}", sender=sender)))[0]

    statuses = await asyncio.wait_for(asyncio.gather(*(one(n) for n in range(120))), 30)
    assert statuses == [200] * 120
    async with server.http.get(server.base + "/healthz") as resp:
        assert resp.status == 200
    a1 = await server.connect("a1")
    assert (await offered(a1))["channel"] == "sms"


async def test_a_delivery_stuck_on_twilio_does_not_hold_shutdown(
    server: SmsServer, twilio_api: TwilioApi
) -> None:
    twilio_api.script = [0]  # Twilio takes the request and never answers
    a1 = await server.connect("a1")
    conv, _ = await sms_conversation(server, a1)
    ack = await a1.request("message.send", conversation=conv, body="hello", channel="sms")
    assert ack["type"] == "ack"  # the agent is not kept waiting for Twilio
    await twilio_api.wait(1)
    # what shutdown does, with a short drain: the stuck send is cancelled, not waited for
    await asyncio.wait_for(server.service.close(drain_s=0.1), WAIT)


async def test_past_the_backlog_bound_a_webhook_is_refused_before_it_is_read(
    server: SmsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While routing is at its bound Twilio gets 503 (it retries), even for a request whose
    signature would fail: the form is not read or verified, and nothing is stored."""
    from router.errors import Overloaded

    def behind() -> None:
        raise Overloaded(12.0, 10.0)

    a1 = await server.connect("a1")
    form = inbound(body="later, please")
    monkeypatch.setattr(server.service, "admit", behind)
    assert (await server.webhook(form))[0] == 503
    assert (await server.webhook(form, signature="bm90IGEgc2lnbmF0dXJl"))[0] == 503
    await no_offer(a1)
    monkeypatch.undo()  # routing caught up: Twilio's retry of the same MessageSid is taken
    assert (await server.webhook(form))[0] == 200
    offer = await offered(a1)
    assert [i["body"] for i in offer["conversation"]["history"]] == ["later, please"]
