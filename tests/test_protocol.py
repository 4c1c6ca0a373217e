"""router.codec and router.protocol: the two codecs, strict validation of `POST /v1/events`."""

from __future__ import annotations

import json
from types import MappingProxyType
from typing import Any

import msgpack
import pytest

from router.codec import JSON, MSGPACK, Codec, codec_for, decode_frame, encode_frame
from router.errors import BadEvent, DecodeError, UnsupportedMediaType
from router.protocol import parse_events
from store.model import InboundEvent

DROP = object()  # a key to leave out of the event
CODECS = [JSON, MSGPACK]


def event(**changes: Any) -> dict[str, Any]:
    """A valid chat message, with keys changed (or dropped with DROP)."""
    raw: dict[str, Any] = {
        "id": "ev-1",
        "type": "message",
        "channel": "chat",
        "from": "visitor:7f3a",
        "body": "hello",
    }
    raw.update(changes)
    return {k: v for k, v in raw.items() if v is not DROP}


def parse(document: Any, codec: Codec = JSON) -> list[InboundEvent]:
    return parse_events(codec.encode(document), codec.content_type)


def refused_field(document: Any, codec: Codec = JSON) -> str | None:
    with pytest.raises(BadEvent) as info:
        parse(document, codec)
    assert info.value.message
    return info.value.field


# -- good events ------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_a_single_event_becomes_one_inbound_event(codec: Codec) -> None:
    [ev] = parse(event(), codec)
    assert ev == InboundEvent(
        id="ev-1", type="message", channel="chat", sender="visitor:7f3a", body="hello"
    )


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_a_batch_keeps_its_order(codec: Codec) -> None:
    events = parse({"events": [event(id=f"ev-{n}") for n in range(5)]}, codec)
    assert [e.id for e in events] == [f"ev-{n}" for n in range(5)]


def test_a_batch_of_500_is_accepted() -> None:
    assert len(parse({"events": [event(id=f"ev-{n}") for n in range(500)]})) == 500


def test_every_field_is_read() -> None:
    [ev] = parse(
        event(
            channel="email",
            **{"from": "  Anna.Muster@Example.ORG "},
            customer_id="c-42",
            site="de1",
            subject="Re: coins",
            body="text",
            message_id="<b@example.org>",
            in_reply_to="<a@example.org>",
            references=["<z@example.org>", "<a@example.org>"],
            occurred_at="2026-11-23T13:00:00.5+01:00",
            meta={"to": "support@omniroute.test", "attempt": 2, "spam": False, "x": None},
        )
    )
    assert ev.sender == "anna.muster@example.org"
    assert (ev.customer_id, ev.site, ev.subject, ev.body) == ("c-42", "de1", "Re: coins", "text")
    assert (ev.message_id, ev.in_reply_to) == ("<b@example.org>", "<a@example.org>")
    assert ev.references == ("<z@example.org>", "<a@example.org>")
    assert ev.occurred_at == "2026-11-23T12:00:00.500Z"
    assert ev.meta == {"to": "support@omniroute.test", "attempt": 2, "spam": False, "x": None}


def test_a_full_profile_is_typed_and_kept() -> None:
    profile = {
        "client_group": "SIC",
        "coins": 1200,
        "top_up": True,
        "birthday": "1990-02-28",
        "gender": "f",
        "phone_verified": False,
        "zip": "10115",
        "city": "Berlin",
        "state": "BE",
        "country": "DE",
        "hot": True,
        "online": False,
        "last_ip": "2001:DB8:0:0::1",
        "signup_date": "2024-02-29",
    }
    [ev] = parse(event(profile=profile))
    assert ev.profile == {**profile, "last_ip": "2001:db8::1"}


@pytest.mark.parametrize(
    ("given", "channel", "sender"),
    [
        ("visitor:7F3a", "chat", "visitor:7F3a"),  # visitor ids are opaque: case kept
        ("  visitor:abc\t", "chat", "visitor:abc"),
        ("Anna@Example.org", "chat", "anna@example.org"),  # a logged-in chat customer
        ("+49 151 1234-5678", "sms", "+4915112345678"),
        ("(030) 123.456/7", "voice", "0301234567"),
        ("anonymous", "voice", "anonymous"),
        ("x" * 320, "sms", "x" * 320),
    ],
)
def test_addresses_are_normalised(given: str, channel: str, sender: str) -> None:
    [ev] = parse(event(channel=channel, **{"from": given}))
    assert ev.sender == sender


@pytest.mark.parametrize("kind", ["call.offered", "call.answered", "call.ended"])
def test_call_events_need_no_body(kind: str) -> None:
    [ev] = parse(event(type=kind, channel="voice", body=DROP, **{"from": "+4930123"}))
    assert (ev.type, ev.channel, ev.body) == (kind, "voice", None)


def test_a_subject_alone_makes_a_message_and_nulls_mean_absent() -> None:
    [ev] = parse(event(body=None, subject="hi", customer_id=None, profile=None, meta=None))
    assert (ev.subject, ev.body, ev.customer_id, ev.profile, ev.meta) == ("hi", None, None, {}, {})


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("2026-11-23T12:00:00Z", "2026-11-23T12:00:00.000Z"),
        ("2026-11-23t12:00:00z", "2026-11-23T12:00:00.000Z"),
        ("2026-11-23T12:00:00.123456789Z", "2026-11-23T12:00:00.123Z"),
        ("2026-11-23T00:30:00-02:30", "2026-11-23T03:00:00.000Z"),
        ("2024-02-29T23:59:59+00:00", "2024-02-29T23:59:59.000Z"),
    ],
)
def test_occurred_at_is_parsed_into_utc(given: str, stored: str) -> None:
    [ev] = parse(event(occurred_at=given))
    assert ev.occurred_at == stored


def test_body_limit_counts_utf8_bytes() -> None:
    assert parse(event(body="a" * 65_536))[0].body == "a" * 65_536
    assert parse(event(body="ä" * 32_768))[0].body == "ä" * 32_768  # 2 bytes each
    assert refused_field(event(body="ä" * 32_769)) == "body"


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "Application/JSON; charset=UTF-8",
        'application/json; charset="utf-8"',
        "application/msgpack",
        "application/x-msgpack; charset=binary",
    ],
)
def test_content_types_with_parameters(content_type: str) -> None:
    codec = codec_for(content_type)
    assert parse_events(codec.encode(event()), content_type)[0].id == "ev-1"


# -- bad events: every refusal names its field --------------------------------------------------


LONG = "x" * 201
BAD: list[tuple[str, dict[str, Any], str]] = [
    ("no id", event(id=DROP), "id"),
    ("null id", event(id=None), "id"),
    ("empty id", event(id=""), "id"),
    ("long id", event(id=LONG), "id"),
    ("numeric id", event(id=7), "id"),
    ("id with newline", event(id="a\nb"), "id"),
    ("unknown type", event(type="chat"), "type"),
    ("no type", event(type=DROP), "type"),
    ("call on chat", event(type="call.offered"), "type"),
    ("unknown channel", event(channel="fax"), "channel"),
    ("channel as list", event(channel=["chat"]), "channel"),
    ("no from", event(**{"from": DROP}), "from"),
    ("empty from", event(**{"from": ""}), "from"),
    ("blank from", event(**{"from": "   "}), "from"),
    ("long from", event(**{"from": "x" * 321}), "from"),
    ("numeric from", event(**{"from": 4930}), "from"),
    ("bare visitor", event(**{"from": "visitor:"}), "from"),
    ("phone on email", event(channel="email", **{"from": "+4930123"}), "from"),
    ("two @ on email", event(channel="email", **{"from": "a@b@c"}), "from"),
    ("empty customer_id", event(customer_id=""), "customer_id"),
    ("long customer_id", event(customer_id=LONG), "customer_id"),
    ("numeric customer_id", event(customer_id=42), "customer_id"),
    ("long site", event(site=LONG), "site"),
    ("profile as list", event(profile=["coins"]), "profile"),
    ("unknown profile field", event(profile={"first_name": "Anna"}), "profile.first_name"),
    ("bad group", event(profile={"client_group": "VIP"}), "profile.client_group"),
    ("negative coins", event(profile={"coins": -1}), "profile.coins"),
    ("fractional coins", event(profile={"coins": 1.5}), "profile.coins"),
    ("boolean coins", event(profile={"coins": True}), "profile.coins"),
    ("coins as text", event(profile={"coins": "5"}), "profile.coins"),
    ("top_up as text", event(profile={"top_up": "yes"}), "profile.top_up"),
    ("online as 1", event(profile={"online": 1}), "profile.online"),
    ("no 30 February", event(profile={"birthday": "2000-02-30"}), "profile.birthday"),
    ("short date", event(profile={"birthday": "2000-1-1"}), "profile.birthday"),
    ("future birthday", event(profile={"birthday": "2999-01-01"}), "profile.birthday"),
    ("date with time", event(profile={"signup_date": "2024-01-01T00:00"}), "profile.signup_date"),
    ("bad ip", event(profile={"last_ip": "999.1.1.1"}), "profile.last_ip"),
    ("ip as number", event(profile={"last_ip": 167772161}), "profile.last_ip"),
    ("long city", event(profile={"city": LONG}), "profile.city"),
    ("numeric zip", event(profile={"zip": 10115}), "profile.zip"),
    ("null in profile", event(profile={"gender": None}), "profile.gender"),
    ("long subject", event(subject="s" * 1001), "subject"),
    ("numeric subject", event(subject=1), "subject"),
    ("long body", event(body="b" * 65_537), "body"),
    ("body as object", event(body={"text": "hi"}), "body"),
    ("NUL in body", event(body="a\x00b"), "body"),
    ("message without text", event(body=DROP), "body"),
    ("message with empty texts", event(body="", subject=""), "body"),
    ("long message_id", event(message_id="m" * 999), "message_id"),
    ("numeric in_reply_to", event(in_reply_to=5), "in_reply_to"),
    ("references as text", event(references="<a@b>"), "references"),
    ("101 references", event(references=[f"<{n}@b>" for n in range(101)]), "references"),
    ("bad reference", event(references=["<a@b>", 5]), "references[1]"),
    ("occurred_at in words", event(occurred_at="yesterday"), "occurred_at"),
    ("no month 13", event(occurred_at="2026-13-01T00:00:00Z"), "occurred_at"),
    ("no offset", event(occurred_at="2026-11-23T12:00:00"), "occurred_at"),
    ("space separator", event(occurred_at="2026-11-23 12:00:00Z"), "occurred_at"),
    ("hour 24", event(occurred_at="2026-11-23T24:00:00Z"), "occurred_at"),
    ("offset minutes 60", event(occurred_at="2026-11-23T12:00:00+01:60"), "occurred_at"),
    ("epoch number", event(occurred_at=1_800_000_000), "occurred_at"),
    ("unknown key", event(text="hi"), "text"),
    ("meta as list", event(meta=[1]), "meta"),
    ("33 meta keys", event(meta={f"k{n}": n for n in range(33)}), "meta"),
    ("nested meta", event(meta={"call": {"id": 1}}), "meta.call"),
    ("long meta text", event(meta={"note": "n" * 1001}), "meta.note"),
    ("empty meta key", event(meta={"": 1}), "meta."),
]


@pytest.mark.parametrize(("document", "field"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_a_bad_event_is_refused_naming_its_field(
    codec: Codec, document: dict[str, Any], field: str
) -> None:
    assert refused_field(document, codec) == field
    batch = {"events": [event(id="ok-1"), document]}
    assert refused_field(batch, codec) == f"events[1].{field}"


BAD_BATCHES: list[tuple[str, Any, str | None]] = [
    ("events as object", {"events": {"id": "x"}}, "events"),
    ("empty batch", {"events": []}, "events"),
    ("501 events", {"events": [event(id=f"e{n}") for n in range(501)]}, "events"),
    ("event as text", {"events": [event(), "ev"]}, "events[1]"),
    ("extra key beside events", {"events": [event()], "source": "x"}, "source"),
    ("repeated id", {"events": [event(id="a"), event(id="b"), event(id="a")]}, "events[2].id"),
    ("a list at the top", [event()], None),
    ("a string at the top", "ev-1", None),
    ("null at the top", None, None),
]


@pytest.mark.parametrize(
    ("document", "field"), [c[1:] for c in BAD_BATCHES], ids=[c[0] for c in BAD_BATCHES]
)
@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_a_bad_batch_is_refused_whole(codec: Codec, document: Any, field: str | None) -> None:
    assert refused_field(document, codec) == field


def nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


BAD_BYTES: list[tuple[str, bytes, str]] = [
    ("broken JSON", b'{"id": ', "application/json"),
    ("trailing JSON", json.dumps(event()).encode() + b" {}", "application/json"),
    (
        "latin-1 JSON",
        json.dumps(event(body="ä"), ensure_ascii=False).encode("latin-1"),
        "application/json",
    ),
    ("JSON with a BOM", b"\xef\xbb\xbf" + json.dumps(event()).encode(), "application/json"),
    ("NaN", json.dumps(event(meta={"x": float("nan")})).encode(), "application/json"),
    ("huge integer", b'{"id": "a", "meta": {"n": 1' + b"0" * 40 + b"}}", "application/json"),
    ("21-digit integer", json.dumps(event(profile={"coins": 10**20})).encode(), "application/json"),
    ("lone surrogate", json.dumps(event(body="\ud800")).encode(), "application/json"),
    ("JSON nested 40 deep", json.dumps(event(meta={"x": nested(40)})).encode(), "application/json"),
    ("JSON nested 100000 deep", b"[" * 100_000 + b"]" * 100_000, "application/json"),
    ("broken msgpack", b"\x85\xa2id", "application/msgpack"),
    ("trailing msgpack", msgpack.packb(event()) + b"\xc0", "application/msgpack"),
    ("msgpack binary", msgpack.packb(event(body=b"hi"), use_bin_type=True), "application/msgpack"),
    (
        "msgpack extension",
        msgpack.packb(event(body=msgpack.ExtType(5, b"x"))),
        "application/msgpack",
    ),
    ("msgpack integer key", msgpack.packb({1: "x"}), "application/msgpack"),
    ("msgpack invalid UTF-8", b"\x81\xa2id\xa2\xff\xfe", "application/msgpack"),
    ("msgpack infinity", msgpack.packb(event(meta={"x": float("inf")})), "application/msgpack"),
    ("msgpack nested 40 deep", msgpack.packb(event(meta={"x": nested(40)})), "application/msgpack"),
    ("msgpack nested 5000 deep", b"\x91" * 5000 + b"\xc0", "application/msgpack"),
]


@pytest.mark.parametrize(
    ("body", "content_type"), [c[1:] for c in BAD_BYTES], ids=[c[0] for c in BAD_BYTES]
)
def test_undecodable_bodies_are_refused_without_a_field(body: bytes, content_type: str) -> None:
    with pytest.raises(BadEvent) as info:
        parse_events(body, content_type)
    assert info.value.field is None


@pytest.mark.parametrize(
    "content_type",
    ["", "text/plain", "application/xml", "application/json; charset=latin-1", "json"],
)
def test_other_content_types_are_unsupported(content_type: str) -> None:
    with pytest.raises(UnsupportedMediaType):
        parse_events(JSON.encode(event()), content_type)


def test_errors_never_echo_values_and_mask_unknown_keys_for_logs() -> None:
    canary = "CANARY-7f3a"
    for document in (
        event(body=canary * 10_000),
        event(**{"from": canary, "channel": "email"}),
        event(profile={"coins": canary}),
        event(occurred_at=canary),
    ):
        with pytest.raises(BadEvent) as info:
            parse(document)
        assert canary not in info.value.message
        assert canary not in str(info.value.log_field)
    with pytest.raises(BadEvent) as info:
        parse({"events": [event(**{canary: 1})]})
    assert info.value.field == f"events[0].{canary}"  # the adapter is told which key
    assert info.value.log_field == "events[0].<unknown>"  # the log is not
    with pytest.raises(BadEvent) as info:
        parse(event(meta={canary: [1]}))
    assert info.value.log_field == "meta.<key>"


# -- codecs and frames ------------------------------------------------------------------------


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_codecs_round_trip_plain_data(codec: Codec) -> None:
    value = {"a": [1, -2, 2**64 - 1, 1.5, True, None, "ü"], "b": {"c": ""}}
    assert codec.decode(codec.encode(value)) == value
    assert codec.decode_map(codec.encode(value)) == value


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_codecs_encode_tuples_and_mappings(codec: Codec) -> None:
    value = {"t": (1, 2), "m": MappingProxyType({"k": "v"})}
    assert codec.decode(codec.encode(value)) == {"t": [1, 2], "m": {"k": "v"}}


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_decode_map_refuses_other_tops(codec: Codec) -> None:
    for top in ([1], "x", 3, None):
        with pytest.raises(DecodeError):
            codec.decode_map(codec.encode(top))


def test_frames_are_text_for_json_and_bytes_for_msgpack() -> None:
    frame = {"type": "welcome", "seq": 3, "agent": {"id": "a1"}}
    text = encode_frame(JSON, frame)
    assert isinstance(text, str)
    assert json.loads(text) == frame
    packed = encode_frame(MSGPACK, frame)
    assert isinstance(packed, bytes)
    assert msgpack.unpackb(packed) == frame
    assert decode_frame(JSON, text) == frame
    assert decode_frame(MSGPACK, packed) == frame
    assert (JSON.subprotocol, MSGPACK.subprotocol) == ("omniroute.v1.json", "omniroute.v1.msgpack")
    with pytest.raises(DecodeError):
        decode_frame(JSON, "[]")


def test_encoding_refuses_what_the_wire_cannot_carry() -> None:
    with pytest.raises(ValueError):
        JSON.encode({"x": float("nan")})
    with pytest.raises(TypeError):
        JSON.encode({"x": object()})
    with pytest.raises(TypeError):
        MSGPACK.encode({"x": object()})
