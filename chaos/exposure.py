"""What the outside can make a node show or swallow: hostile MIME over real SMTP, and PII
canaries sent through every path a customer's data takes, then the node's log grepped.
Each scenario starts its own Redis and node (`chaos.cluster`) and raises `AssertionError`
naming the promise it broke.
"""

from __future__ import annotations

import asyncio
import json
import smtplib
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp

from chaos.cluster import cluster
from chaos.harness import Node, desktops, post_raw, sign, wait_until
from chaos.processes import free_port
from chaos.provider import SMS_ENV, Provider
from chaos.scenarios import Figures
from chaos.signed import PUBLIC, SMS_PATH, sign_bytes, twilio_form

SUPPORT = "support@example.org"
MAX_MAIL_BYTES = 1 << 20


def smtp_send(
    port: int, raw: bytes, rcpts: list[str], mail_from: str, size: int | None = None,
    timeout: float = 10.0,
) -> tuple[int, str]:  # fmt: skip
    """One SMTP transaction to 127.0.0.1:`port`: (the first refusal, or DATA's answer)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=timeout) as client:
        client.ehlo("client.test")
        code, text = client.mail(mail_from, [f"SIZE={size}"] if size else [])
        if code != 250:
            return code, text.decode()
        for rcpt in rcpts:
            code, text = client.rcpt(rcpt)
            if code not in (250, 251):
                return code, text.decode()
        code, text = client.data(raw)
        return code, text.decode()


def mail(*headers: str, body: bytes = b"Where is my order?\r\n") -> bytes:
    return "\r\n".join(headers).encode() + b"\r\n\r\n" + body


def hostile_mail() -> dict[str, tuple[bytes, str]]:
    """name → (the message, its recipient)."""
    base = ("From: Ann <ann@example.com>", f"To: {SUPPORT}", "Subject: hi")
    nested = "".join(
        f'Content-Type: multipart/mixed; boundary="b{n}"\r\n\r\n--b{n}\r\n' for n in range(300)
    )
    return {
        "no_headers": (b"just some text\r\n", SUPPORT),
        "no_from": (mail(f"To: {SUPPORT}", "Subject: who?"), SUPPORT),
        "two_froms": (
            mail("From: a@example.com", "From: b@example.com", f"To: {SUPPORT}"),
            SUPPORT,
        ),
        "name_is_address": (
            mail('From: "boss@example.org" <x@evil.example>', f"To: {SUPPORT}"),
            SUPPORT,
        ),
        "nested_300": (mail(*base, "MIME-Version: 1.0", body=nested.encode()), SUPPORT),
        "bad_base64": (
            mail(*base, "Content-Transfer-Encoding: base64", body=b"!!!not==b64"),
            SUPPORT,
        ),
        "unknown_charset": (
            mail(*base, "Content-Type: text/plain; charset=x-nope", body=b"\xff\xfe\xfd"),
            SUPPORT,
        ),
        "long_line": (mail(*base, "X-Long: " + "a" * 200_000), SUPPORT),
        "encoded_words": (
            mail(base[0], base[1], "Subject: " + "=?utf-8?b?w6TDtsO8?=\r\n " * 5000),
            SUPPORT,
        ),
        "nul_bytes": (mail(*base, body=b"a\x00b\x00c\r\n"), SUPPORT),
        "open_boundary": (
            mail(
                *base,
                'Content-Type: multipart/mixed; boundary="x"',
                body=b"--x\r\nContent-Type: text/plain\r\n\r\nhalf",
            ),
            SUPPORT,
        ),
        "eight_bit_header": (
            b"From: J\xc3\xb6rg <j@example.com>\r\nTo: "
            + SUPPORT.encode()
            + b"\r\nSubject: \xff\xfe\r\n\r\nhi\r\n",
            SUPPORT,
        ),
        "folded_header": (mail(*base, "X-Long: " + "a" * 70 + "\r\n a" * 3000), SUPPORT),
        "oversized": (
            mail(*base, body=(b"x" * 78 + b"\r\n") * (MAX_MAIL_BYTES // 80 + 100)),
            SUPPORT,
        ),
        "unknown_rcpt": (mail(*base), "nobody@example.org"),
    }


async def _alive(http: aiohttp.ClientSession, node: Node) -> bool:
    async with http.get(f"{node.base}/healthz") as response:
        ok = response.status == 200
    return ok and node.proc is not None and node.proc.returncode is None


async def mime(workdir: Path, rounds: int = 1) -> Figures:
    """Hostile messages to the node's SMTP listener, `rounds` times each: every one gets an
    SMTP answer (no dropped connection, no 5xx from a crash), the node lives on, and a
    well-formed mail afterwards is accepted and routed."""
    smtp = free_port()
    env = {"OMNIROUTE_EMAIL_SMTP_PORT": str(smtp), "OMNIROUTE_EMAIL_ADDRESSES": SUPPORT,
           "OMNIROUTE_EMAIL_MAX_BYTES": str(MAX_MAIL_BYTES)}  # fmt: skip
    async with cluster(workdir) as c:
        node = await c.node("node-a", env)
        assert c.http is not None
        answers: Counter[str] = Counter()
        async with desktops(c.http, [("mailer", "SAM", node, True)]) as (desk,):
            for _ in range(rounds):
                for name, (raw, rcpt) in hostile_mail().items():
                    try:
                        code, said = await asyncio.to_thread(
                            smtp_send, smtp, raw, [rcpt], "ann@example.com"
                        )
                        answer = f"{code}" + (" crashed" if "Error: (" in said else "")
                    except (smtplib.SMTPException, OSError) as exc:
                        answer = f"dropped:{type(exc).__name__}"
                    answers[f"{name} {answer}"] += 1
            good = mail("From: Bea <bea@example.com>", f"To: {SUPPORT}", "Subject: parcel")
            good_code, _ = await asyncio.to_thread(
                smtp_send, smtp, good, [SUPPORT], "bea@example.com"
            )
            await wait_until(
                lambda: len(desk.assigned) >= 1, 10.0, lambda: "the good mail not routed"
            )
            alive = await _alive(c.http, node)
        text = node.log_path.read_text(errors="replace")
    # aiosmtpd answers an exception in a handler `500 Error: (SomeError) …`; a 500 for a line
    # over RFC 5321's 1,000 characters is a refusal, not a crash
    crashes = sum(n for k, n in answers.items() if " dropped" in k or k.endswith(" crashed"))
    crashes += text.count("Traceback") + int(not alive)
    figures: Figures = {
        "sent": sum(answers.values()),
        "crashes": crashes,
        "good_mail": good_code,
        "answers": " ".join(f"{k}:{v}" for k, v in sorted(answers.items())),
    }
    assert crashes == 0 and good_code == 250, f"the listener broke: {figures}"
    return figures


# -- PII canaries through every path ------------------------------------------------------------

TAIL = "zq7k"  # in every canary (not hex, so no random id holds it): any fragment of one found
EMAIL = f"canary-mail-{TAIL}@example.org"
PHONE = "+49 151 8737 2291"  # normalised by ingest to +4915187372291
PHONE_DIGITS = "4915187372291"
BODY = f"CANARY-BODY-{TAIL}"
CANARIES = (EMAIL, EMAIL.split("@")[0], PHONE, PHONE_DIGITS, BODY, TAIL)


def _ev(n: int, **fields: Any) -> dict[str, Any]:
    return {"id": f"pii-{n}", "type": "message", "channel": "chat", "from": f"visitor:p{n}",
            "body": BODY, **fields}  # fmt: skip


async def _ingest_paths(http: aiohttp.ClientSession, node: Node) -> Counter[str]:
    """Accepted and refused posts to `/v1/events` carrying the canaries."""
    seen: Counter[str] = Counter()
    accepted = [
        _ev(1),
        _ev(2, channel="sms", **{"from": PHONE}),
        _ev(3, channel="email", subject=BODY, **{"from": EMAIL}),
        {"events": [_ev(4), _ev(5, **{"from": EMAIL})]},
        _ev(1),  # a duplicate
    ]
    refused = [
        _ev(6, **{EMAIL: BODY}),
        _ev(7, channel=BODY),
        _ev(8, channel="email", **{"from": BODY}),
    ]
    for payload in accepted + refused:
        status, _ = await post_raw(http, node, sign(payload))
        seen[f"ingest {status}"] += 1
    json_type = {"Content-Type": "application/json"}
    broken = b'{"body": "' + BODY.encode() + b'", '
    for raw, headers in (
        (broken, {**json_type, "X-Omniroute-Signature": sign_bytes(broken)}),
        (json.dumps(_ev(9)).encode(), {**json_type, "X-Omniroute-Signature": f"sha256={BODY}"}),
    ):
        url = f"{node.base}/v1/events?email={EMAIL}"
        async with http.post(url, data=raw, headers=headers) as response:
            seen[f"ingest {response.status}"] += 1
    return seen


async def _channel_paths(http: aiohttp.ClientSession, node: Node, smtp: int) -> Counter[str]:
    """The SMS webhooks, the chat widget, SMTP and unknown paths, carrying the canaries."""
    seen: Counter[str] = Counter()
    sms = {"MessageSid": "SM" + "c" * 32, "From": PHONE, "To": "+4930123456", "Body": BODY}
    for form in (sms, {**sms, "MessageSid": "SM" + "e" * 32, "From": BODY}):
        seen[f"sms {await twilio_form(http, node, SMS_PATH, form)}"] += 1
    status_path = f"{SMS_PATH}/status?{urlencode({'cu': EMAIL, 'ix': PHONE})}"
    form = {"MessageSid": "SM" + "f" * 32, "MessageStatus": "delivered"}
    seen[f"sms_status {await twilio_form(http, node, status_path, form)}"] += 1
    try:  # an address is no visitor id: refused before the upgrade
        async with http.ws_connect(f"{node.base}/v1/chat/ws?site=shop&visitor={EMAIL}"):
            seen["chat 101"] += 1
    except aiohttp.WSServerHandshakeError as refused:
        seen[f"chat {refused.status}"] += 1
    url = f"{node.base}/v1/chat/ws?site=shop&visitor=CANARY-VISITOR-{TAIL}"
    async with http.ws_connect(url) as ws:
        await ws.receive_json(timeout=5.0)
        await ws.send_json({"type": "message", "body": BODY, "ref": "c1"})
        await ws.send_json({"type": BODY, "body": BODY})
        for _ in range(2):
            seen[f"chat {(await ws.receive_json(timeout=5.0))['type']}"] += 1
    good = mail(f"From: Canary <{EMAIL}>", f"To: {SUPPORT}", f"Subject: {BODY}", body=BODY.encode())
    for rcpt in (SUPPORT, EMAIL):
        code, _ = await asyncio.to_thread(smtp_send, smtp, good, [rcpt], EMAIL)
        seen[f"smtp {code}"] += 1
    for path in (f"/v1/customers/{EMAIL}", f"/{PHONE_DIGITS}", f"/v1/{BODY}?email={EMAIL}"):
        async with http.get(node.base + path) as response:
            seen[f"http {response.status}"] += 1
    async with http.get(f"{node.base}/v1/agents?token={BODY}") as response:
        seen[f"ops {response.status}"] += 1
    return seen


async def pii(workdir: Path) -> Figures:
    """Canaries (an address, a phone number, a body marker) through ingest, the SMS webhooks,
    the chat widget, SMTP, an agent's frames and unknown paths; then the node's whole log is
    grepped: no canary in it, while the ids of what was routed are (the log is the right one)."""
    smtp = free_port()
    provider = Provider()
    await provider.start()
    env = {**SMS_ENV, "OMNIROUTE_SMS_API_BASE_URL": provider.url,
           "OMNIROUTE_SERVER_PUBLIC_URL": PUBLIC, "OMNIROUTE_EMAIL_SMTP_PORT": str(smtp),
           "OMNIROUTE_EMAIL_ADDRESSES": SUPPORT}  # fmt: skip
    try:
        async with cluster(workdir) as c:
            node = await c.node("node-a", env)
            assert c.http is not None
            async with desktops(c.http, [("privy", "SAM", node, True)]) as (desk,):
                desk.finish = False
                seen = await _ingest_paths(c.http, node)
                seen += await _channel_paths(c.http, node, smtp)
                # chat capacity 3: three chats, the SMS and the email (webhook and SMTP join them)
                await wait_until(lambda: len(desk.assigned) >= 5, 15.0, lambda: f"{desk.assigned}")
                for conv in desk.assigned:
                    desk.send({"type": "message.send", "conversation": conv, "body": BODY})
                desk.send({"type": BODY, "conversation": EMAIL})
                await wait_until(desk.answered, 10.0, lambda: "frames unanswered")
                routed = list(desk.assigned)
        text = node.log_path.read_text(errors="replace")  # whole, after the stop
    finally:
        await provider.close()
    found = {canary: text.count(canary) for canary in CANARIES if canary in text}
    lines = [line for line in text.splitlines() if any(c in line for c in CANARIES)]
    figures: Figures = {
        "paths": sum(seen.values()),
        "routed": len(routed),
        "log_lines": len(text.splitlines()),
        "canaries_in_log": sum(found.values()),
        "answers": " ".join(f"{k}:{v}" for k, v in sorted(seen.items())),
    }
    if lines:
        figures["first_leak"] = lines[0][:300]
    assert all(conv in text for conv in routed[:3]), "the log holds no ids: wrong log?"
    assert not found, f"canaries in the log: {found}: {lines[:3]}"
    return figures
