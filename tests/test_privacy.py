"""Logs hold identifiers, never content: canaries through every path, then grep the logs.

Logging is configured as in production (`configure_logging(json=True)`, at debug so that every
level is checked), the access log is on (`AccessLogger`, as `omniroute serve` runs it), and the
server is the real app over real sockets (`tests.test_e2e`). Unique canary strings go through
ingest (accepted and refused), the agent socket (replies, customer edits, bad frames, refused
handshakes), the ops endpoints and error answers; none may appear in the captured output,
while the event and conversation ids must (so the capture is known to work).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
import structlog

from router.web import ASSET_PREFIX
from tests.support import logs_captured
from tests.test_e2e import (
    WAIT,
    Desk,
    Factory,
    Server,
    event,
    make_token,
    offered,
    open_desk,
    servers,
    sign,
)

BODY = "CANARY-BODY-xq8z"
SUBJECT = "CANARY-SUBJECT-xq8z"
NAME = "CANARY-NAME-xq8z"  # the agent's display name (a token claim)
EMAIL = "canary-mail-xq8z@example.org"
PHONE = "+49 151 8737 2291"  # normalised by ingest to +4915187372291
PHONE_DIGITS = "4915187372291"
VCARD = "CANARY-VCARD-xq8z likes tea"
FIRST_NAME = "CANARY-FIRSTNAME-xq8z"
CITY = "CANARY-CITY-xq8z"
JOB = "CANARY-JOB-xq8z"
ZIP = "CANARY-ZIP-xq8z"
LAST_IP = "203.0.113.87"
KEY = "CANARY-KEY-xq8z"  # an unknown field name chosen by the sender
TYPE = "CANARY-TYPE-xq8z"
BAD_TOKEN = "CANARY-TOKEN-xq8z"

CANARIES = [
    BODY,
    SUBJECT,
    NAME,
    EMAIL,
    PHONE,
    PHONE_DIGITS,
    VCARD,
    FIRST_NAME,
    CITY,
    JOB,
    ZIP,
    LAST_IP,
    KEY,
    TYPE,
    BAD_TOKEN,
    "xq8z",  # the common tail: any fragment of any canary (not hex: random ids never hold it)
]


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Production logging into a buffer; the previous configuration is restored after."""
    with logs_captured("debug") as buffer:
        yield buffer


@pytest.fixture
async def make_server() -> AsyncIterator[Factory]:
    async with servers() as factory:
        yield factory


def agent_token(agent: str, tier: str = "CCS") -> str:
    return make_token(agent, tier, name=NAME)


async def connect(server: Server, agent: str, tier: str = "CCS") -> Desk:
    return await open_desk(server, agent, agent_token(agent, tier))


async def ingest_everything(server: Server) -> tuple[list[str], list[str]]:
    """Accepted events on every channel, and every kind of refusal; (event ids, conv ids)."""
    profile = {"city": CITY, "zip": ZIP, "last_ip": LAST_IP, "coins": 5}
    chat = event(body=BODY, profile=profile, customer_id="cust-priv-1")
    sms = event(sender=PHONE, channel="sms", body=BODY, customer_id="cust-priv-1")
    mail = event(
        sender=EMAIL,
        channel="email",
        body=BODY,
        subject=SUBJECT,
        customer_id="cust-priv-1",
        in_reply_to="<nothing@example.org>",
    )
    odd = {**event(body=BODY), "from": BODY}  # any text is an address on chat: accepted
    extras = {**event(body=BODY), "meta": {KEY: BODY}}  # channel extras: accepted
    conversations = []
    for good in (chat, sms, mail, odd, extras):
        conversations.append(await server.send_event(good))
    # a batch and a duplicate
    status, _ = await server.post({"events": [event(body=BODY), event(sender=EMAIL, body=BODY)]})
    assert status == 202
    status, _ = await server.post(chat)
    assert status == 202

    refused: list[tuple[bytes, dict[str, str], int]] = []
    good = json.dumps(event(body=BODY, subject=SUBJECT)).encode()
    json_type = {"Content-Type": "application/json"}
    refused.append((good, {**json_type, "X-Omniroute-Signature": "sha256=" + "0" * 64}, 401))
    refused.append((good, {**json_type, "X-Omniroute-Signature": BAD_TOKEN}, 401))
    refused.append((good, json_type, 401))
    for bad in (
        {**event(body=BODY), KEY: EMAIL},  # an unknown key, named by the sender
        {**event(body=BODY), "channel": BODY},
        event(sender=BODY, channel="email", body=BODY),  # not an email address
        {**event(body=BODY), "profile": {KEY: FIRST_NAME}},
        {**event(body=BODY), "profile": {"last_ip": BODY}},
        {**event(body=BODY), "meta": {KEY: 1, "x": [BODY]}},
        {**event(body=BODY), "occurred_at": BODY},
        {"events": [event(body=BODY), {**event(body=BODY), "type": BODY}]},
    ):
        raw = json.dumps(bad).encode()
        refused.append((raw, {**json_type, "X-Omniroute-Signature": sign(raw)}, 400))
    broken = b'{"body": "' + BODY.encode() + b'", '
    refused.append((broken, {**json_type, "X-Omniroute-Signature": sign(broken)}, 400))
    text = {"Content-Type": f"text/plain; {KEY}={BODY}", "X-Omniroute-Signature": sign(good)}
    refused.append((good, text, 415))
    big = (BODY * 70_000).encode()
    refused.append((big, {**json_type, "X-Omniroute-Signature": sign(big)}, 413))
    for raw, headers, status in refused:
        url = f"{server.base}/v1/events?token={BAD_TOKEN}&email={EMAIL}"
        async with server.http.post(url, data=io.BytesIO(raw), headers=headers) as resp:
            assert resp.status == status, (resp.status, await resp.text())
    return [chat["id"], sms["id"], mail["id"]], conversations[:3]


async def test_no_customer_content_in_logs(
    captured: io.StringIO, make_server: Factory, capsys: pytest.CaptureFixture[str]
) -> None:
    server = await make_server()
    c1 = await connect(server, "priv-ccs")
    event_ids, conversations = await ingest_everything(server)
    conv = conversations[0]
    assert set(conversations) == {conv}
    offer = await offered(c1, conv)
    assigned = await c1.request("offer.accept", reservation=offer["reservation"])
    customer = assigned["conversation"]["customer"]
    assert customer["city"] == CITY  # the content did travel, to the desktop only

    # the agent socket: replies, edits, a stale edit (the error carries the customer), bad frames
    await c1.request("message.send", conversation=conv, body=BODY)
    await c1.request("message.send", conversation=conv, body=BODY, channel="email")
    fields = {"vcard": VCARD, "first_name": FIRST_NAME, "residence_city": CITY, "job": JOB}
    ok = await c1.request(
        "customer.update", customer=customer["id"], version=customer["version"], fields=fields
    )
    assert ok["type"] == "customer"
    stale = await c1.request(
        "customer.update", customer=customer["id"], version=customer["version"], fields=fields
    )
    assert stale["code"] == "conflict" and stale["customer"]["vcard"] == VCARD
    for bad in (
        {"type": TYPE, "body": BODY},
        {"type": "message.send", "conversation": conv, "body": BODY, "channel": EMAIL},
        {"type": "message.send", "conversation": BODY, "body": BODY},
        {"type": "customer.update", "customer": customer["id"], "version": 1, "fields": {KEY: 1}},
        {"type": "customer.update", "customer": BODY, "version": 1, "fields": {"vcard": VCARD}},
        {"type": "customer.get", "customer": EMAIL},
        {"type": "offer.reject", "reservation": "rs-no-such-1", "reason": VCARD},
        {"type": "conversation.complete", "conversation": conv, "disposition": VCARD},
        # free text where an id belongs: a transfer target, a reservation, a conversation
        {"type": "conversation.transfer", "conversation": conv, "to_agent": EMAIL},
        {"type": "conversation.transfer", "conversation": conv, "to_agent": PHONE_DIGITS},
        {"type": "offer.accept", "reservation": EMAIL},
        {"type": "wrapup.done", "conversation": PHONE_DIGITS},
        {"type": "customer.classify", "customer": EMAIL, "group": "SIC"},
    ):
        answer = await c1.request(bad.pop("type"), **bad)
        assert answer["type"] in ("error", "ack", "presence"), answer
    await c1.ws.send_str('{"type": "message.send", "body": "' + BODY)  # not JSON
    await c1.until("error")
    await c1.ws.send_bytes(BODY.encode())  # binary on a JSON socket
    await c1.until("error")

    # a second desktop: a reply too big for a frame (closed 1009)
    c2 = await connect(server, "priv-ccs-2")
    await c2.ws.send_str(json.dumps({"type": "message.send", "body": BODY * 5000}))
    closing = await asyncio.wait_for(c2.ws.receive(), WAIT)
    assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)

    # refused handshakes and ops calls with canaries in tokens, headers and queries
    socket_url = f"{server.base}/v1/agent/ws"
    for query in (f"?token={BAD_TOKEN}", f"?token={agent_token('x')}&since={BODY}"):
        async with server.http.get(socket_url + query) as resp:
            assert resp.status in (400, 401)
    async with server.http.get(socket_url, headers={"Authorization": f"Bearer {BAD_TOKEN}"}) as r:
        assert r.status == 401
    ops = make_token("priv-ops", "SAM", "ops", name=NAME)
    # (paths are logged as route templates: an id in a path, or an unknown path, is not)
    for path in (
        "/v1/queues",
        "/v1/agents",
        "/v1/ops/stream",
        "/no-such-path",
        f"/v1/customers/{EMAIL}",  # no such route: the path is a customer's address
        f"{ASSET_PREFIX}{EMAIL}",  # a route, with free text where its name goes
    ):
        async with server.http.get(f"{server.base}{path}?token={BAD_TOKEN}&q={EMAIL}") as resp:
            assert resp.status in (401, 404)
        headers = {"Authorization": f"Bearer {ops}"}
        async with server.http.get(f"{server.base}{path}?x={PHONE}", headers=headers) as resp:
            assert resp.status in (200, 400, 404)
    stream = await server.http.ws_connect(f"{server.base}/v1/ops/stream?token={ops}")
    assert json.loads((await asyncio.wait_for(stream.receive(), WAIT)).data)["type"] == "snapshot"
    await asyncio.wait_for(stream.close(), WAIT)
    async with server.http.get(f"{server.base}/metrics") as resp:
        assert resp.status == 200

    # the refused desktop token carries a canary name; and the real token must not be logged
    tokens = [agent_token("priv-ccs"), agent_token("priv-ccs-2"), ops]
    await c1.close()
    await server.http.close()
    for desk in server.desks:  # stop now, so the close and shutdown logs are captured too
        if not desk.ws.closed:
            await desk.close()

    output = captured.getvalue() + "".join(capsys.readouterr())
    lines = [json.loads(line) for line in captured.getvalue().splitlines() if line.strip()]
    assert len(lines) > 20
    leaks = [c for c in [*CANARIES, *tokens] if c.lower() in output.lower()]
    leaking = [
        line for line in output.splitlines() if any(c.lower() in line.lower() for c in leaks)
    ]
    assert not leaks, f"customer content or secrets in the logs: {leaks}: {leaking[:5]}"
    # the capture works: identifiers are there
    # ids a client names are logged as ids (an unknown reservation, an unknown path)
    for identifier in (*event_ids, conv, "priv-ccs", "rs-no-such-1"):
        assert identifier in output, identifier
    # paths are logged as the route's template; free text in an id field as a digest
    paths = {line["path"] for line in lines if line["event"] == "http.request"}
    assert {ASSET_PREFIX + "{name}", "[unmatched]", "/v1/queues"} <= paths, paths
    assert not any(path.startswith("/no-such") for path in paths)
    refusals = [line for line in lines if line["event"] == "routing.refused"]
    targets = {line["to_agent"] for line in refusals if "to_agent" in line}
    assert len(targets) == 2 and all(t.startswith("h:") for t in targets), targets
    events = {line["event"] for line in lines}
    assert {"events.routed", "ingest.refused", "message.sent", "http.request"} <= events
    assert any(line.get("status") == 413 for line in lines)


async def test_a_leak_would_be_caught(captured: io.StringIO) -> None:
    """The capture sees structlog and stdlib records, and redaction is the only filter."""
    structlog.get_logger("omniroute.test").info("probe", conversation="cv-probe", body=BODY)
    logging.getLogger("aiohttp.server").warning("probe %s", "cv-stdlib-probe")
    output = captured.getvalue()
    assert "cv-probe" in output and "cv-stdlib-probe" in output
    assert BODY not in output
