"""What the outside can make a node show or swallow: hostile MIME over real SMTP, and PII
canaries sent through every path a customer's data takes, then the node's log grepped.
Each scenario starts its own Redis and node (`chaos.cluster`) and raises `AssertionError`
naming the promise it broke.
"""

from __future__ import annotations

import asyncio
import smtplib
from collections import Counter
from pathlib import Path

import aiohttp

from chaos.cluster import cluster
from chaos.harness import Node, desktops, wait_until
from chaos.processes import free_port
from chaos.scenarios import Figures

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
