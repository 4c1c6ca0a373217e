"""One customer writes on chat, then by SMS, then by email, then calls: one conversation, one
agent. Every channel speaks its real protocol over a real socket on 127.0.0.1: a widget
WebSocket, a Twilio-signed webhook, SMTP, a signed PBX event; the agent is a real desktop."""

from __future__ import annotations

import asyncio
import json
import smtplib
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from email.message import EmailMessage

import aiohttp
import jwt
import pytest
from aiohttp import web
from twilio.request_validator import RequestValidator

import queues
from router.app import SERVICE_KEY, create_app
from router.settings import load_settings
from tests.support import free_port
from tests.test_e2e import WAIT, Desk, QuickStore, base_env, make_token, sign, take

VISITOR_SECRET = "omni-visitor-secret-" + "v" * 32
TWILIO_TOKEN = "twilio-auth-token-for-tests"
PUBLIC_URL = "https://acd.example.org"
SUPPORT = "support@example.org"
PHONE = "+4915112345678"
MAIL = "anna@example.org"


@pytest.fixture
async def node() -> AsyncIterator[tuple[str, int, web.Application]]:
    domain = f"omni-{uuid.uuid4().hex[:10]}"
    smtp_port = free_port()
    env = {
        **base_env(domain),
        "OMNIROUTE_VISITOR_SECRET": VISITOR_SECRET,
        "OMNIROUTE_SMS_AUTH_TOKEN": TWILIO_TOKEN,
        "OMNIROUTE_SERVER_PUBLIC_URL": PUBLIC_URL,
        "OMNIROUTE_EMAIL_SMTP_HOST": "127.0.0.1",
        "OMNIROUTE_EMAIL_SMTP_PORT": str(smtp_port),
        "OMNIROUTE_EMAIL_ADDRESSES": SUPPORT,
    }
    settings = load_settings(None, env)
    engine = queues.create_engine(settings.policy, None, domain=domain)
    app = create_app(settings, engine, QuickStore(domain), snapshot_interval_s=0.1)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}", smtp_port, app
    finally:
        await asyncio.wait_for(runner.cleanup(), 15)


def visitor_token() -> str:
    claims = {"sub": "c-42", "site": "shop1", "exp": int(time.time()) + 600}
    return jwt.encode({**claims, "phone": PHONE, "email": MAIL}, VISITOR_SECRET, "HS256")


def send_mail(port: int) -> None:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = MAIL, SUPPORT, "Still stuck"
    mail["Message-ID"] = f"<{uuid.uuid4().hex}@example.org>"
    mail.set_content("now by mail")
    with smtplib.SMTP("127.0.0.1", port, timeout=WAIT) as smtp:
        smtp.send_message(mail)


async def test_chat_then_sms_then_email_then_a_call_is_one_conversation_with_one_agent(
    node: tuple[str, int, web.Application],
) -> None:
    base, smtp_port, app = node
    ws_base = base.replace("http://", "ws://")
    async with aiohttp.ClientSession() as http:
        socket = await http.ws_connect(f"{ws_base}/v1/agent/ws?token={make_token('a1')}")
        desk = Desk(socket, "a1")
        desk.welcome = await desk.recv()
        await desk.available()
        widget = await http.ws_connect(f"{ws_base}/v1/chat/ws?token={visitor_token()}")
        welcome = json.loads((await widget.receive(timeout=WAIT)).data)
        assert welcome["type"] == "welcome"

        # 1. chat: the conversation is offered and taken
        await widget.send_str(json.dumps({"type": "message", "body": "hello from chat"}))
        assigned = await take(desk)
        conversation = assigned["conversation"]["id"]
        assert assigned["conversation"]["customer"]["id"] == "c-42"

        # 2. SMS from the phone the site vouched for: sticky to the same agent
        form = {"From": PHONE, "To": "+4930123456", "Body": "now by sms", "MessageSid": "SM1"}
        url = f"{PUBLIC_URL}/v1/channels/sms/twilio"
        signature = RequestValidator(TWILIO_TOKEN).compute_signature(url, form)
        async with http.post(
            f"{base}/v1/channels/sms/twilio",
            data=urllib.parse.urlencode(form),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": signature,
            },
        ) as reply:
            assert reply.status == 200
        sms = await desk.until("message", conversation=conversation)
        assert (sms["interaction"]["channel"], sms["interaction"]["body"]) == ("sms", "now by sms")

        # 3. email from the vouched-for address: same conversation, same agent
        await asyncio.to_thread(send_mail, smtp_port)
        mail = await desk.until("message", conversation=conversation)
        assert mail["interaction"]["channel"] == "email"
        assert "now by mail" in mail["interaction"]["body"]

        # 4. a call from the phone: offered to the same agent, in the same conversation
        call = {"id": "pbx-1", "type": "call.offered", "call_id": "call-9", "from": PHONE}
        body = json.dumps({**call, "to": "+4930123456"}).encode()
        async with http.post(
            f"{base}/v1/channels/voice/events",
            data=body,
            headers={"Content-Type": "application/json", "X-Omniroute-Signature": sign(body)},
        ) as reply:
            assert reply.status == 202
            assert (await reply.json())["conversations"] == [conversation]
        offer = await desk.until("offer", channel="voice")
        assert offer["conversation"]["id"] == conversation
        answer = await desk.request("offer.accept", reservation=offer["reservation"])
        assert answer["type"] == "assigned"
        assert answer["conversation"]["id"] == conversation

        history = await app[SERVICE_KEY].store.history("c-42", 50)
        inbound = [(i.channel, i.conversation) for i in history if i.direction == "in"]
        assert inbound == [
            ("chat", conversation),
            ("sms", conversation),
            ("email", conversation),
            ("voice", conversation),
        ]
        offers = [f for f in desk.seen if f["type"] == "offer"]
        assert {f["conversation"]["id"] for f in offers} == {conversation}
        await widget.close()
        await desk.close()
