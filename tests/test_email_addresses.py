"""A reply goes to an address, never to a display name: hostile From and Reply-To headers.

The headers are written as raw bytes (a mail library would quote or encode them for us) and
go through the real SMTP listener; replies come out through a local relay (aiosmtpd).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from email import policy
from email.parser import BytesParser

import pytest

from channels.email.parse import mailbox, mailboxes
from tests.test_e2e import take
from tests.test_email import SUPPORT, Factory, Relay, mailrooms

CUSTOMER = "real@customer.example"


@pytest.fixture
async def make_room() -> AsyncIterator[Factory]:
    async with mailrooms() as factory:
        yield factory


def raw_mail(*headers: str, body: str = "Where is my order?") -> bytes:
    """A mail as bytes, the headers exactly as given (UTF-8 where they are not ASCII)."""
    lines = [
        *headers,
        f"To: {SUPPORT[0]}",
        "Subject: Order 42",
        f"Message-ID: <{uuid.uuid4().hex}@customer.example>",
        "Content-Type: text/plain; charset=utf-8",
        "",
        body,
        "",
    ]
    return "\r\n".join(lines).encode()


def parsed(*headers: str) -> object:
    return BytesParser(policy=policy.default).parsebytes(raw_mail(*headers))


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (f'From: "victim@evil.example" <{CUSTOMER}>', CUSTOMER),
        (f"From: =?utf-8?q?victim=40evil.example?= <{CUSTOMER}>", CUSTOMER),
        (f"From: =?utf-8?b?PHZpY3RpbUBldmlsLmV4YW1wbGU+?= <{CUSTOMER}>", CUSTOMER),  # <victim@…>
        (f"From: =?utf-8?q?victim=40evil.example_=3Cx=40evil.example=3E?= <{CUSTOMER}>", CUSTOMER),
        (f"From: {CUSTOMER} (victim@evil.example)", CUSTOMER),  # a comment is not an address
        (f"From: Real Customer <{CUSTOMER.upper()}>", CUSTOMER),
        (f"From: victim@evil.example <{CUSTOMER}>", None),  # unquoted @: ambiguous, refused
        (f"From: {CUSTOMER}, victim@evil.example", None),  # two mailboxes: which one?
        (f"From: group: {CUSTOMER}, victim@evil.example;", None),
        ('From: "x" <>', None),
        ("From: =?utf-8?q?victim=40evil.example?=@customer.example", None),  # encoded address
        ("From: jürgen@example.de", "jürgen@example.de"),  # SMTPUTF8: raw UTF-8 is an address
        ("From: not an address", None),
    ],
)
def test_the_address_comes_from_the_address_part(header: str, expected: str | None) -> None:
    assert mailbox(parsed(header), "From") == expected  # type: ignore[arg-type]


def test_a_repeated_header_is_ambiguous() -> None:
    message = parsed(f"From: {CUSTOMER}", "From: victim@evil.example")
    assert mailbox(message, "From") is None  # type: ignore[arg-type]
    assert mailboxes(parsed(f"From: {CUSTOMER}"), "Reply-To") is None  # type: ignore[arg-type]


async def reply_recipients(make_room: Factory, *headers: str) -> list[str]:
    """Mail in with `headers`, an agent answers it; the envelope recipients of the reply."""
    room = await make_room(relay=Relay())
    assert room.relay is not None
    desk = await room.server.connect("a1")
    code, text = await room.send(raw_mail(*headers), mail_from=CUSTOMER)
    assert code == 250, text
    conv = (await take(desk))["conversation"]["id"]
    ack = await desk.request("message.send", conversation=conv, body="Today.", channel="email")
    assert ack["type"] == "ack", ack
    envelope, sent = await room.relay.next()
    assert sent["To"] == envelope.rcpt_tos[0]
    return list(envelope.rcpt_tos)


async def test_a_display_name_that_looks_like_an_address_gets_no_reply(
    make_room: Factory,
) -> None:
    recipients = await reply_recipients(
        make_room,
        f'From: "victim@evil.example" <{CUSTOMER}>',
        "Reply-To: =?utf-8?q?victim=40evil.example?= <reply@customer.example>",
    )
    assert recipients == ["reply@customer.example"]


async def test_an_ambiguous_reply_to_is_ignored_for_the_from(make_room: Factory) -> None:
    recipients = await reply_recipients(
        make_room,
        f"From: =?utf-8?q?victim=40evil.example?= <{CUSTOMER}>",
        "Reply-To: reply@customer.example, victim@evil.example",
    )
    assert recipients == [CUSTOMER]


async def test_an_ambiguous_from_is_refused(make_room: Factory) -> None:
    room = await make_room()
    code, _ = await room.send(raw_mail(f"From: victim@evil.example <{CUSTOMER}>"))
    assert code == 550
    assert room.events() == []
