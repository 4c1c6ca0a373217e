"""The email channel over real sockets: Python's `smtplib` talks to the listener of an app built
by `create_app` + `add_email` on 127.0.0.1, agents use real `/v1/agent/ws` desktops, and a local
aiosmtpd server stands in for the outbound relay. Every wait is bounded by `WAIT`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import smtplib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session

import queues
from channels.base import ChannelPorts, RecordingPort
from channels.email.outbound import reply_subject
from channels.email.parse import decode_text, html_to_text
from channels.retry import Backoff
from chaos.exposure import smtp_send
from router.app import SERVICE_KEY, create_app
from router.channel_email import EMAIL_LISTENER_KEY, EMAIL_PORT_KEY, add_email
from router.settings import load_settings
from store.model import InboundEvent, Ingested
from tests.support import eventually, free_port
from tests.test_e2e import WAIT, QuickStore, Server, base_env, offered, shut, take

SUPPORT = ("support@example.org", "help@example.org")
FROM = "support@example.org"


class RecordingStore(QuickStore):
    """The memory store, keeping what was ingested (and able to fail the next ingest)."""

    def __init__(self, domain: str) -> None:
        super().__init__(domain)
        self.ingested: list[tuple[InboundEvent, Ingested]] = []
        self.fail_next = False

    async def ingest(self, events: Sequence[InboundEvent], now_ms: int) -> list[Ingested]:
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("store down")
        out = await super().ingest(events, now_ms)
        self.ingested.extend(zip(events, out, strict=True))
        return out


class Relay:
    """A local SMTP server standing in for the relay; it can answer 451 a few times first."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.received: asyncio.Queue[Envelope] = asyncio.Queue()
        self.port = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.fail_first:
            self.fail_first -= 1
            return "451 4.3.0 busy, try again"
        await self.received.put(envelope)
        return "250 OK"

    async def next(self) -> tuple[Envelope, EmailMessage]:
        envelope = await asyncio.wait_for(self.received.get(), WAIT)
        parsed = message_from_bytes(envelope.original_content or b"", policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return envelope, parsed


@dataclass
class Mailroom:
    server: Server
    store: RecordingStore
    smtp_port: int
    relay: Relay | None

    @property
    def app(self) -> web.Application:
        return self.server.app

    async def send(
        self,
        raw: bytes,
        rcpts: Sequence[str] = SUPPORT[:1],
        mail_from: str = "anna@example.org",
        size: int | None = None,
    ) -> tuple[int, str]:
        """One SMTP transaction with smtplib (in a thread): the first non-2xx reply, or DATA's."""
        call = asyncio.to_thread(smtp_send, self.smtp_port, raw, list(rcpts), mail_from, size)
        return await asyncio.wait_for(call, WAIT)

    def events(self) -> list[InboundEvent]:
        return [event for event, _ in self.store.ingested]


Factory = Callable[..., Awaitable[Mailroom]]


@contextlib.asynccontextmanager
async def mailrooms() -> AsyncIterator[Factory]:
    """Apps with the email channel on 127.0.0.1 (and a relay when asked); all stopped on exit."""
    runners: list[tuple[web.AppRunner, Server]] = []
    relays: list[asyncio.Server] = []

    async def factory(relay: Relay | None = None, **overrides: Any) -> Mailroom:
        domain = f"email-{uuid.uuid4().hex[:12]}"
        smtp_port = free_port()
        env = base_env(domain, email_smtp_port=smtp_port, email_addresses=",".join(SUPPORT))
        env["OMNIROUTE_EMAIL_FROM_ADDRESS"] = FROM
        if relay is not None:
            loop = asyncio.get_running_loop()
            sink = await loop.create_server(
                lambda: SMTP(relay, hostname="relay.test", loop=loop), "127.0.0.1", 0
            )
            relays.append(sink)
            relay.port = sink.sockets[0].getsockname()[1]
            env["OMNIROUTE_EMAIL_RELAY_HOST"] = "127.0.0.1"
            env["OMNIROUTE_EMAIL_RELAY_PORT"] = str(relay.port)
        env.update({f"OMNIROUTE_{k.upper()}": str(v) for k, v in overrides.items()})
        settings = load_settings(None, env)
        engine = queues.create_engine(settings.policy, settings.redis.url, domain=settings.domain)
        store = RecordingStore(domain)
        app = create_app(settings, engine, store, outbound=ChannelPorts(), snapshot_interval_s=0.1)
        add_email(app, app[SERVICE_KEY], settings)
        runner = web.AppRunner(app)
        await runner.setup()
        server = Server("", app, aiohttp.ClientSession(), RecordingPort())
        runners.append((runner, server))
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        server.base = f"http://{host}:{port}"
        return Mailroom(server, store, smtp_port, relay)

    try:
        yield factory
    finally:
        for runner, server in reversed(runners):
            await shut(runner, server)
        for sink in relays:
            sink.close()
            await sink.wait_closed()


@pytest.fixture
async def make_room() -> AsyncIterator[Factory]:
    async with mailrooms() as factory:
        yield factory


@pytest.fixture
async def room(make_room: Factory) -> Mailroom:
    return await make_room()


def mail(
    body: str = "I cannot log in.",
    *,
    sender: str = "Anna Müller <Anna@Example.ORG>",
    to: str = SUPPORT[0],
    subject: str = "Login problem",
    message_id: str | None = None,
    **headers: str,
) -> EmailMessage:
    message = EmailMessage(policy=SMTP_POLICY)
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = message_id or f"<{uuid.uuid4().hex}@mail.example.org>"
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    return message


async def good_mail_still_accepted(room: Mailroom) -> None:
    before = len(room.events())
    code, _ = await room.send(mail("still there?").as_bytes())
    assert code == 250
    assert len(room.events()) == before + 1


# -- inbound -------------------------------------------------------------------------------------


async def test_multipart_with_attachment_keeps_metadata_only(room: Mailroom) -> None:
    pdf = b"%PDF-1.4 secret invoice bytes " + bytes(range(256)) * 8
    message = mail("Please see the invoice.", subject="=?utf-8?q?Rechnung_f=C3=BCr_M=C3=A4rz?=")
    message.add_alternative("<p>Please see the <b>invoice</b>.</p>", subtype="html")
    message.add_attachment(pdf, maintype="application", subtype="pdf", filename="invoice.pdf")
    code, _ = await room.send(message.as_bytes())
    assert code == 250
    [(event, result)] = room.store.ingested
    assert event.channel == "email" and event.type == "message"
    assert event.sender == "anna@example.org"
    assert event.subject == "Rechnung für März"
    assert event.body == "Please see the invoice."
    assert event.message_id == message["Message-ID"]
    assert event.id.startswith("email:")
    assert event.meta["to"] == [SUPPORT[0]]
    assert event.meta["attachments"] == [
        {
            "name": "invoice.pdf",
            "type": "application/pdf",
            "size": len(pdf),
            "sha256": hashlib.sha256(pdf).hexdigest(),
        }
    ]
    history = await room.store.history(result.customer, 10)
    assert [i.body for i in history] == ["Please see the invoice."]
    stored = json.dumps([i.wire() for i in history])
    assert "secret invoice" not in stored and "JVBERi0" not in stored  # nor its base64


@pytest.mark.parametrize(
    ("charset", "cte"),
    [("iso-8859-1", "8bit"), ("iso-8859-1", "quoted-printable"), ("windows-1252", "base64")],
)
async def test_non_utf8_charsets_are_decoded(room: Mailroom, charset: str, cte: str) -> None:
    text = "Grüße aus Köln, schöne Straße" + (", Preis 5 €" if charset == "windows-1252" else "")
    message = EmailMessage(policy=SMTP_POLICY)
    message["From"] = (
        "Jürgen <juergen@example.de>"  # an encoded word in the name, never the address
    )
    message["To"] = SUPPORT[0]
    message["Subject"] = "=?iso-8859-1?q?Gr=FC=DFe?="
    message.set_content(text.encode(charset), "text", "plain", cte=cte)
    message.set_param("charset", charset)
    code, _ = await room.send(message.as_bytes())
    assert code == 250
    [event] = room.events()
    assert event.body == text
    assert event.subject == "Grüße"


async def test_html_only_mail_is_reduced_to_text(room: Mailroom) -> None:
    message = mail(subject="Hilfe")
    html = (
        "<html><head><title>t</title><style>p {color: red}</style></head><body>"
        "<p>Hallo &amp; guten Tag,</p><p>mein Konto ist   gesperrt.<br>Bitte helfen!</p>"
        "<ul><li>Kundennr. 42</li><li>seit gestern</li></ul>"
        "<script>alert('x')</script><div>Gr&uuml;&szlig;e</div></body></html>"
    )
    message.set_content(html, subtype="html")
    code, _ = await room.send(message.as_bytes())
    assert code == 250
    [event] = room.events()
    assert event.body == (
        "Hallo & guten Tag,\n\nmein Konto ist gesperrt.\nBitte helfen!\n\n"
        "- Kundennr. 42\n- seit gestern\n\nGrüße"
    )


async def test_one_mail_to_two_support_addresses_is_one_interaction(room: Mailroom) -> None:
    message = mail(to=", ".join(SUPPORT))
    raw = message.as_bytes()
    assert (await room.send(raw, rcpts=SUPPORT))[0] == 250  # one transaction, both addresses
    assert (await room.send(raw, rcpts=SUPPORT[1:]))[0] == 250  # the MTA split it: again
    assert (await room.send(raw, rcpts=SUPPORT[:1]))[0] == 250
    results = [result for _, result in room.store.ingested]
    assert [r.duplicate for r in results] == [False, True, True]
    assert len({r.conversation for r in results}) == 1
    assert len({event.id for event in room.events()}) == 1
    assert room.events()[0].meta["to"] == sorted(SUPPORT)
    history = await room.store.history(results[0].customer, 10)
    assert len(history) == 1


async def test_mail_without_message_id_is_still_one_interaction(room: Mailroom) -> None:
    message = mail(to=", ".join(SUPPORT))
    del message["Message-ID"]
    first = b"Received: from a by b; Mon, 23 Nov 2026 12:00:00 +0000\r\n" + message.as_bytes()
    again = b"Received: from a by c; Mon, 23 Nov 2026 12:00:01 +0000\r\n" + message.as_bytes()
    assert (await room.send(first, rcpts=SUPPORT[:1]))[0] == 250
    assert (await room.send(again, rcpts=SUPPORT[1:]))[0] == 250
    assert [r.duplicate for _, r in room.store.ingested] == [False, True]


async def test_a_reply_threads_into_the_same_conversation(room: Mailroom) -> None:
    first = mail("first", message_id="<m1@mail.example.org>")
    assert (await room.send(first.as_bytes()))[0] == 250
    reply = mail(
        "second, from my other mailbox",
        sender="anna.private@example.net",
        subject="Re: Login problem",
        In_Reply_To="<m1@mail.example.org>",
        References="<m0@mail.example.org> <m1@mail.example.org>",
    )
    assert (await room.send(reply.as_bytes(), mail_from="anna.private@example.net"))[0] == 250
    (_, one), (event, two) = room.store.ingested
    assert event.in_reply_to == "<m1@mail.example.org>"
    assert event.references == ("<m0@mail.example.org>", "<m1@mail.example.org>")
    assert (two.conversation, two.customer) == (one.conversation, one.customer)
    assert not two.duplicate


async def test_unknown_recipient_is_550_at_rcpt(room: Mailroom) -> None:
    code, text = await room.send(mail().as_bytes(), rcpts=["nobody@example.org"])
    assert code == 550, text
    code, _ = await room.send(mail().as_bytes(), rcpts=[SUPPORT[0], "sales@example.org"])
    assert code == 550
    assert room.events() == []
    await good_mail_still_accepted(room)


async def test_oversized_mail_is_552_and_nothing_is_stored(make_room: Factory) -> None:
    room = await make_room(email_max_bytes=4096)

    def features() -> str:
        with smtplib.SMTP("127.0.0.1", room.smtp_port, timeout=WAIT) as client:
            client.ehlo("client.test")
            return client.esmtp_features["size"]

    assert await asyncio.wait_for(asyncio.to_thread(features), WAIT) == "4096"
    big = mail("x" * 8000).as_bytes()
    code, _ = await room.send(big, size=len(big))  # announced: refused at MAIL FROM
    assert code == 552
    code, _ = await room.send(big)  # not announced: refused after DATA
    assert code == 552
    assert room.events() == []
    await good_mail_still_accepted(room)


async def test_too_many_mime_parts_are_refused(room: Mailroom) -> None:
    message = mail("many parts")
    for n in range(120):
        message.add_attachment(
            b"x", maintype="application", subtype="octet-stream", filename=f"{n}"
        )
    code, text = await room.send(message.as_bytes())
    assert code == 552
    assert "MIME parts" in text
    assert room.events() == []
    await good_mail_still_accepted(room)


@pytest.mark.parametrize(
    "raw",
    [
        # multipart without a boundary parameter
        b"From: a@example.org\r\nTo: support@example.org\r\nSubject: broken\r\n"
        b"Content-Type: multipart/mixed\r\n\r\nhello there\r\n",
        # a boundary that never comes, broken base64, an unknown charset
        b"From: a@example.org\r\nTo: support@example.org\r\nSubject: broken\r\n"
        b'Content-Type: multipart/mixed; boundary="zz"\r\n\r\n--yy\r\n'
        b"Content-Type: text/plain; charset=x-nonsense\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n@@@not base64!!\r\n",
        # garbage headers, a non-UTF-8 byte in a header, no body at all
        b"From: =?utf-8?q?=ZZ?= <a@example.org>\r\nTo: support@example.org\r\n"
        b"Subject: caf\xe9 =?bogus?x?y?=\r\nContent-Type: text/plain; charset=\r\n\r\n",
    ],
)
async def test_malformed_mime_never_crashes(room: Mailroom, raw: bytes) -> None:
    code, _ = await room.send(raw, mail_from="a@example.org")
    assert code in (250, 552, 554)
    for event in room.events():
        assert event.sender == "a@example.org"
        assert event.body or event.subject
        json.dumps(event.meta)  # plain data, valid text
        (event.body or "").encode()
        (event.subject or "").encode()
    await good_mail_still_accepted(room)


async def test_mail_without_a_from_address_is_refused(room: Mailroom) -> None:
    raw = b"To: support@example.org\r\nSubject: who am I\r\n\r\nhi\r\n"
    code, text = await room.send(raw)
    assert code == 550 and "From" in text
    assert room.events() == []


async def test_mail_from_our_own_address_is_refused(room: Mailroom) -> None:
    code, text = await room.send(mail(sender=SUPPORT[1]).as_bytes(), mail_from=SUPPORT[1])
    assert code == 550 and "loop" in text
    assert room.events() == []


async def test_auto_replies_are_marked_and_indentation_kept(room: Mailroom) -> None:
    message = mail("Out of office.\n    Back on Monday.", Auto_Submitted="auto-replied")
    assert (await room.send(message.as_bytes()))[0] == 250
    [event] = room.events()
    assert event.meta["auto_submitted"] == "auto-replied"
    assert event.body == "Out of office.\n    Back on Monday."


async def test_a_full_listener_answers_421_then_serves_again(room: Mailroom) -> None:
    listener = room.app[EMAIL_LISTENER_KEY]
    listener.max_sessions = 0
    with pytest.raises(smtplib.SMTPConnectError) as refused:
        await room.send(mail().as_bytes())
    assert refused.value.smtp_code == 421
    listener.max_sessions = 100
    await good_mail_still_accepted(room)

    async def no_sessions() -> bool:
        return not listener.sessions

    await eventually(no_sessions)


async def test_parse_timeout_is_451(room: Mailroom) -> None:
    room.app[EMAIL_LISTENER_KEY].handler.parse_timeout_s = 0.0
    code, _ = await room.send(mail().as_bytes())
    assert code == 451
    assert room.events() == []
    room.app[EMAIL_LISTENER_KEY].handler.parse_timeout_s = 5.0
    await good_mail_still_accepted(room)


async def test_failed_ingest_is_451_and_the_retry_is_accepted(room: Mailroom) -> None:
    room.store.fail_next = True
    raw = mail().as_bytes()
    assert (await room.send(raw))[0] == 451
    assert (await room.send(raw))[0] == 250
    assert len(room.events()) == 1


async def test_no_addresses_means_no_listener() -> None:
    settings = load_settings(None, base_env("email-none"))
    engine = queues.create_engine(settings.policy, settings.redis.url, domain=settings.domain)
    app = create_app(settings, engine, QuickStore("email-none"))
    add_email(app, app[SERVICE_KEY], settings)
    assert EMAIL_LISTENER_KEY not in app
    assert EMAIL_PORT_KEY not in app


async def test_logs_carry_no_addresses_or_content(room: Mailroom) -> None:
    with structlog.testing.capture_logs() as logs:
        assert (await room.send(mail("my secret text").as_bytes()))[0] == 250
        assert (await room.send(mail().as_bytes(), rcpts=["nobody@example.org"]))[0] == 550
    text = json.dumps(logs, default=str).lower()
    assert "email.accepted" in text
    for secret in ("anna", "example.org", "my secret text", "login problem"):
        assert secret not in text


# -- outbound, end to end ------------------------------------------------------------------------


async def test_agent_reply_goes_out_threaded_and_the_answer_comes_back(make_room: Factory) -> None:
    room = await make_room(relay=Relay())
    assert room.relay is not None
    desk = await room.server.connect("a1")
    inbound = mail(
        "Where is my order?",
        subject="RE: Order 42",
        message_id="<q1@mail.example.org>",
        References="<q0@mail.example.org>",
    )
    assert (await room.send(inbound.as_bytes()))[0] == 250
    assigned = await take(desk)
    conv = assigned["conversation"]["id"]
    assert assigned["conversation"]["history"][0]["subject"] == "RE: Order 42"

    ack = await desk.request(
        "message.send", conversation=conv, body="It ships today.", channel="email"
    )
    assert ack["type"] == "ack", ack
    envelope, sent = await room.relay.next()
    assert envelope.rcpt_tos == ["anna@example.org"]
    assert envelope.mail_from == FROM
    assert sent["To"] == "anna@example.org"
    assert sent["From"] == FROM
    assert sent["Subject"] == "Re: Order 42"
    assert sent["In-Reply-To"] == "<q1@mail.example.org>"
    assert sent["References"].split() == ["<q0@mail.example.org>", "<q1@mail.example.org>"]
    assert sent["Message-ID"].endswith("@example.org>")
    assert sent.get_content().strip() == "It ships today."

    # the customer answers our mail from another mailbox: it threads back to the agent
    answer = mail(
        "Thanks!",
        sender="anna.private@example.net",
        subject="Re: Order 42",
        In_Reply_To=sent["Message-ID"],
        References=f"{sent['References']} {sent['Message-ID']}",
    )
    assert (await room.send(answer.as_bytes(), mail_from="anna.private@example.net"))[0] == 250
    message = await desk.until("message", conversation=conv)
    assert message["interaction"]["body"] == "Thanks!"


async def test_temporary_relay_failures_are_retried(make_room: Factory) -> None:
    room = await make_room(relay=Relay(fail_first=2))
    assert room.relay is not None
    room.app[EMAIL_PORT_KEY].backoff = Backoff(tries=4, base_s=0.01)
    desk = await room.server.connect("a1")
    assert (await room.send(mail().as_bytes()))[0] == 250
    conv = (await take(desk))["conversation"]["id"]
    ack = await desk.request("message.send", conversation=conv, body="On it.", channel="email")
    _envelope, sent = await room.relay.next()
    assert sent["Subject"] == "Re: Login problem"
    customer = ack["customer"]
    store = room.store

    async def sent_status() -> bool:
        history = await store.history(customer, 10)
        return history[-1].meta.get("status") == "sent"

    await eventually(sent_status)
    history = await store.history(customer, 10)
    assert history[-1].meta["message_id"] == sent["Message-ID"]


async def test_offer_shows_the_mail(room: Mailroom) -> None:
    desk = await room.server.connect("a1")
    assert (await room.send(mail("Hello?").as_bytes()))[0] == 250
    offer = await offered(desk)
    assert offer["channel"] == "email"
    [interaction] = offer["conversation"]["history"]
    assert interaction["body"] == "Hello?"
    assert interaction["meta"]["attachments"] == []


# -- pieces --------------------------------------------------------------------------------------


def test_reply_subject_never_doubles_re() -> None:
    assert reply_subject("Order 42") == "Re: Order 42"
    assert reply_subject("RE: Re:  AW: Order 42") == "Re: Order 42"
    assert reply_subject(None) == "Re: your message"
    assert reply_subject(None, parent=False) == "Your enquiry"


def test_decode_text_falls_back_sensibly() -> None:
    assert decode_text("Grüße".encode("latin-1"), "ISO-8859-1") == "Grüße"
    assert decode_text("Grüße".encode(), "us-ascii") == "Grüße"  # mislabelled UTF-8
    assert decode_text("Grüße".encode("latin-1"), "x-unknown") == "Grüße"
    assert decode_text(b"abc", "rot13") == "abc"
    assert html_to_text("<p>a&nbsp;b</p><script>x</script>").strip() == "a b"
