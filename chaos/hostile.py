"""Hostile input at the protocol's rim: forged and misused tokens and foreign origins, hostile
frames and payload bombs, near-miss signatures. Each scenario starts its own Redis and node
(`chaos.cluster`), returns its figures and raises `AssertionError` naming the promise it broke;
`tests/test_chaos_edges.py` and `tests/test_failover.py` run them small.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import jwt

from chaos.cluster import cluster
from chaos.harness import (
    JWT_SECRET,
    Node,
    agent_token,
    chat_event,
    desktops,
    post_raw,
    sign,
    wait_until,
)
from chaos.scenarios import Figures
from chaos.signed import sign_bytes

# -- forged and misused tokens, foreign origins ---------------------------------------------------

ORIGIN = "https://desk.example.org"


def _token(secret: str = JWT_SECRET, alg: str = "HS256", **claims: Any) -> str:
    base = {"sub": "tok", "tier": "CCS", "name": "Tok", "role": "agent",
            "exp": int(time.time()) + 600}  # fmt: skip
    base.update(claims)
    if alg == "none":
        return jwt.encode(base, None, algorithm="none")  # type: ignore[arg-type]
    with warnings.catch_warnings():  # HS512 with a 44-byte key: PyJWT warns, we mean it
        warnings.simplefilter("ignore")
        return jwt.encode(base, secret, algorithm=alg)


def abuses() -> dict[str, tuple[str, dict[str, str]]]:
    """name → (token, extra headers) of what must never open a socket or an ops endpoint."""
    return {
        "expired": (_token(exp=int(time.time()) - 60), {}),
        "wrong_secret": (_token(secret="another-secret-of-at-least-32-bytes!!"), {}),
        "alg_none": (_token(alg="none"), {}),
        "hs512": (_token(alg="HS512"), {}),
        "no_sub": (_token(sub=""), {}),
        "bad_role": (_token(role="root"), {}),
        "garbage": ("not.a.jwt", {}),
        "empty": ("", {}),
        "bad_origin": (_token(), {"Origin": "https://evil.example.com"}),
    }


async def tokens(workdir: Path) -> Figures:
    """Forged, expired and misused tokens and a foreign Origin, on the agent socket (header
    and `?token=`) and on the ops endpoints: none is let in; the right ones are (a check
    that the refusals were not for some other reason)."""
    async with cluster(workdir) as c:
        node = await c.node("node-a", {"OMNIROUTE_SERVER_ALLOWED_ORIGINS": ORIGIN})
        http = c.http
        assert http is not None

        async def socket(token: str, headers: dict[str, str], query: bool = False) -> int:
            url, sent = f"{node.base}/v1/agent/ws", dict(headers)
            if query:
                url += f"?token={token}"
            elif token:
                sent["Authorization"] = f"Bearer {token}"
            try:
                async with http.ws_connect(url, headers=sent) as ws:
                    await ws.close()
                    return 101
            except aiohttp.WSServerHandshakeError as refused:
                return refused.status

        async def ops(path: str, token: str, headers: dict[str, str]) -> int:
            sent = {**headers, **({"Authorization": f"Bearer {token}"} if token else {})}
            async with http.get(node.base + path, headers=sent) as response:
                return response.status

        statuses: Counter[str] = Counter()
        let_in: list[str] = []
        cases = abuses()
        cases["ops_on_socket"] = (_token(role="ops"), {})
        for name, (token, headers) in cases.items():
            for how, status in (
                ("header", await socket(token, headers)),
                ("query", await socket(token, headers, query=True)),
            ):
                statuses[f"ws {status}"] += 1
                if status == 101:
                    let_in.append(f"{name} ({how})")
        ops_cases = {k: v for k, v in abuses().items() if k != "bad_origin"}
        ops_cases["agent_on_ops"] = (_token(), {})
        for name, (token, headers) in ops_cases.items():
            for path in ("/v1/agents", "/v1/queues"):
                status = await ops(path, token, headers)
                statuses[f"ops {status}"] += 1
                if status < 400:
                    let_in.append(f"{name} on {path}")
        good_ws = await socket(agent_token("tok", "CCS"), {"Origin": ORIGIN})
        good_ops = await ops("/v1/agents", _token(role="ops"), {})
    figures: Figures = {
        "tried": sum(statuses.values()),
        "accepted": len(let_in),
        "answers": " ".join(f"{k}:{v}" for k, v in sorted(statuses.items())),
        "good_ws": good_ws,
        "good_ops": good_ops,
    }
    assert not let_in, f"let in: {let_in}"
    assert good_ws == 101 and good_ops == 200, f"the good tokens were refused: {figures}"
    return figures


# -- hostile frames and payload bombs ------------------------------------------------------------


def hostile_frames() -> dict[str, str | bytes]:
    """name → what a desktop sends on a fresh socket (text, or bytes as a binary frame)."""
    return {
        "oversized": json.dumps({"type": "presence.set", "pad": "x" * 70_000}),
        "deep_json": "[" * 30_000 + "]" * 30_000,  # under the 64 KiB frame limit
        "deep_object": '{"type":"x","a":' * 3_500 + "1" + "}" * 3_500,
        "unknown_type": json.dumps({"type": "self.destruct", "ref": "u1"}),
        "no_type": json.dumps({"ref": "n1"}),
        "not_json": "{{{{ nope",
        "huge_number": '{"type":"offer.accept","reservation":' + "9" * 10_000 + "}",
        "binary_on_json": b"\x93\xa4junk\xff\xfe",
        "lone_surrogate": '{"type":"message.send","body":"\\ud800","conversation":"c"}',
    }


def bombs() -> dict[str, tuple[bytes, dict[str, str]]]:
    """name → (body, headers) posted to ingest."""
    zeros = gzip.compress(b"0" * (64 << 20), compresslevel=9)  # 64 MiB in about 64 KiB
    malformed = b"\x1f\x8b\x08\x00garbage"
    deep = b"[" * 100_000 + b"]" * 100_000
    body, signature = sign(chat_event("bomb-1", "bomb", None))
    big = b" " * (1 << 20) + body  # past the 1 MiB default limit (1 MiB aiohttp warns at)
    plain = {"Content-Type": "application/json"}
    gz = {**plain, "Content-Encoding": "gzip"}
    return {
        "gzip_bomb_signed": (zeros, {**gz, "X-Omniroute-Signature": sign_bytes(zeros)}),
        "gzip_bomb_unsigned": (zeros, {**gz, "X-Omniroute-Signature": signature}),
        "gzip_malformed": (malformed, {**gz, "X-Omniroute-Signature": sign_bytes(malformed)}),
        "deep_json": (deep, {**plain, "X-Omniroute-Signature": sign_bytes(deep)}),
        "too_large": (big, {**plain, "X-Omniroute-Signature": sign_bytes(big)}),
    }


async def _hostile(http: aiohttp.ClientSession, node: Node, frame: str | bytes) -> str:
    """Send one frame on a fresh socket; what came back: `error:<code>`, `close:<code>`."""
    token = agent_token("hostile", "CCS")
    url = f"{node.base}/v1/agent/ws"
    async with http.ws_connect(url, headers={"Authorization": f"Bearer {token}"}) as ws:
        await ws.receive_json(timeout=5.0)  # welcome
        if isinstance(frame, bytes):
            await ws.send_bytes(frame)
        else:
            await ws.send_str(frame)
        try:
            message = await ws.receive(timeout=5.0)
        except TimeoutError:
            return "silence"
        if message.type is aiohttp.WSMsgType.TEXT:
            answer = json.loads(message.data)
            return f"{answer['type']}:{answer.get('code', '')}"
        return f"close:{ws.close_code}"


async def frames(workdir: Path, rounds: int = 1) -> Figures:
    """Hostile frames on the agent socket and bombs on ingest, `rounds` times each, while a
    bystander desktop holds its socket: the node still answers, the bystander is still
    routed to, and no request crashed (no 500, no traceback)."""
    async with cluster(workdir) as c:
        node = await c.node("node-a")
        assert c.http is not None
        answers: Counter[str] = Counter()
        async with desktops(c.http, [("bystander", "SAM", node, True)]) as (bystander,):
            for _ in range(rounds):
                for name, frame in hostile_frames().items():
                    answers[f"ws {name} {await _hostile(c.http, node, frame)}"] += 1
                for name, (body, headers) in bombs().items():
                    url = f"{node.base}/v1/events"
                    async with c.http.post(url, data=io.BytesIO(body), headers=headers) as response:
                        answers[f"ingest {name} {response.status}"] += 1
            async with c.http.get(f"{node.base}/healthz") as response:
                health = response.status
            (conv,) = (await post_raw(c.http, node, sign(chat_event("after", "after", None))))[1][
                "conversations"
            ]
            await wait_until(lambda: conv in bystander.assigned, 10.0, lambda: "not routed")
            unaffected = not bystander.closed and not bystander.errors
        log = node.log()
        alive = node.proc is not None and node.proc.returncode is None
    crashes = sum(n for k, n in answers.items() if k.endswith(" 500") or "internal" in k)
    crashes += log.count("Traceback") + int(not alive)
    figures: Figures = {
        "sent": sum(answers.values()),
        "crashes": crashes,
        "healthz": health,
        "bystander_ok": int(unaffected),
        "answers": " ".join(f"{k}:{v}" for k, v in sorted(answers.items())),
    }
    assert crashes == 0 and health == 200 and unaffected, f"the node broke: {figures}"
    return figures


# -- signatures -----------------------------------------------------------------------------------


def _mutations(body: bytes, signature: str, count: int) -> list[tuple[bytes, str]]:
    """Deterministic near misses: one hex digit changed, truncated, other prefixes, a
    signature over another body, the right signature over a changed body."""
    digest = signature.removeprefix("sha256=")
    out: list[tuple[bytes, str]] = []
    i = 0
    while len(out) < count:
        pos, kind = i % len(digest), i % 6
        flipped = digest[:pos] + ("0" if digest[pos] != "0" else "1") + digest[pos + 1 :]
        if kind == 0:
            out.append((body, "sha256=" + flipped))
        elif kind == 1:
            out.append((body, "sha256=" + digest[: pos or 1]))
        elif kind == 2:
            out.append((body, ("sha1=", "SHA256=", "", "sha256:")[i % 4] + digest))
        elif kind == 3:
            out.append((body + b" ", signature))
        elif kind == 4:
            out.append((body.replace(b"hello", b"hellO", 1), signature))
        else:
            out.append((body, "sha256=" + digest.upper()[: len(digest) - 1] + flipped[-1]))
        i += 1
    return out


async def signatures(workdir: Path, count: int = 10_000, concurrency: int = 32) -> Figures:
    """`count` posts with a near-miss signature or a body changed under a good one: none may
    be accepted (the good post is, afterwards)."""
    async with cluster(workdir) as c:
        node = await c.node("node-a")
        assert c.http is not None
        body, signature = sign(chat_event("s-1", "s-cust", None))
        tries = _mutations(body, signature, count)
        statuses: Counter[int] = Counter()
        gate = asyncio.Semaphore(concurrency)

        async def attempt(signed: tuple[bytes, str]) -> None:
            async with gate:
                status, _answer = await post_raw(c.http, node, signed)  # type: ignore[arg-type]
                statuses[status] += 1

        started = time.monotonic()
        await asyncio.gather(*(attempt(t) for t in tries))
        took = time.monotonic() - started
        good, _ = await post_raw(c.http, node, (body, signature))
    figures: Figures = {
        "mutated": count,
        "accepted": statuses[202],
        "statuses": " ".join(f"{k}:{v}" for k, v in sorted(statuses.items())),
        "per_s": round(count / took),
        "good_after": good,
    }
    assert statuses[202] == 0, f"{statuses[202]} mutated signatures were accepted"
    assert good == 202, f"the good signature was answered {good}"
    return figures
