"""Edge scenarios at the protocol's rim: an accept racing its time-out, webhooks twice and out
of order, forged and misused tokens, hostile frames and payload bombs. Each starts its own
Redis and node (`chaos.cluster`), returns its figures and raises `AssertionError` naming the
promise it broke; `tests/test_chaos_edges.py` runs them small.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import itertools
import json
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import jwt

from channels.sms.status import STATUS_RANK
from chaos.cluster import cluster
from chaos.harness import (
    JWT_SECRET,
    Desktop,
    Node,
    agent_token,
    chat_event,
    desktops,
    post_raw,
    sign,
    wait_until,
)
from chaos.provider import MOBILE, SMS_ENV, Provider
from chaos.scenarios import Figures, until_drained
from chaos.signed import PUBLIC, SMS_PATH, sign_bytes, twilio_form
from store.redis import RedisStore

# -- an accept racing its reservation's time-out ------------------------------------------------

# where, around the deadline, each accept is sent (s): before, at, after it
RACE_OFFSETS = (-0.04, -0.02, -0.01, 0.0, 0.0, 0.01, 0.02, 0.04)


@dataclass
class Racer(Desktop):
    """A desktop that answers every offer at its `expires_at` (give or take `RACE_OFFSETS`),
    records each reservation's outcomes, and comes back when a time-out sent it away."""

    accept: bool = False  # not at once: at the deadline
    racing: bool = True  # False: enough races, accept what comes at once (not counted)
    outcomes: dict[str, list[str]] = field(default_factory=dict)  # reservation → outcomes
    conv_of: dict[str, str] = field(default_factory=dict)  # reservation → conversation
    _timers: list[asyncio.TimerHandle] = field(default_factory=list)

    def _handle(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind == "offer" and not self.racing:
            self.send({"type": "offer.accept", "reservation": frame["reservation"]})
        elif kind == "offer":
            reservation = frame["reservation"]
            self.conv_of[reservation] = frame["conversation"]["id"]
            self.outcomes.setdefault(reservation, [])
            expires = datetime.fromisoformat(frame["expires_at"]).timestamp()
            offset = RACE_OFFSETS[len(self.conv_of) % len(RACE_OFFSETS)]
            delay = max(0.0, expires - time.time() + offset)
            loop = asyncio.get_running_loop()
            accept = {"type": "offer.accept", "reservation": reservation}
            self._timers.append(loop.call_later(delay, self.send, accept))
        elif kind == "offer.revoked":
            self.outcomes.setdefault(frame["reservation"], []).append(f"revoked:{frame['reason']}")
        elif kind == "assigned":
            conv = frame["conversation"]["id"]
            held = [r for r, c in self.conv_of.items() if c == conv and not self.outcomes[r]]
            for reservation in held[-1:]:  # the one open reservation of this conversation
                self.outcomes[reservation].append("assigned")
        elif kind == "presence" and frame.get("state") == "away":
            self.send({"type": "presence.set", "state": "available"})  # a time-out's away
        super()._handle(frame)

    async def close(self) -> None:
        for timer in self._timers:
            timer.cancel()
        await super().close()


async def accept_race(workdir: Path, races: int = 1000, agents: int = 40) -> Figures:
    """Offers answered right at their deadline (a short reservation time-out): every
    reservation has exactly one outcome, assigned or revoked, never both, never none."""
    async with cluster(workdir) as c:
        node = await c.node("node-a", reservation_timeout_s=1.0)
        assert c.http is not None
        racers = [Racer(f"race{n}", "SAM", node, accept=False) for n in range(agents)]
        try:
            await asyncio.gather(*(r.connect(c.http) for r in racers))
            posted, deadline = 0, time.monotonic() + 30.0 + races / 10
            while sum(len(r.conv_of) for r in racers) < races:
                assert time.monotonic() < deadline, f"only {posted} posted, too few offers"
                if posted - sum(len(r.assigned) for r in racers) < 2 * agents:
                    chunk = [chat_event(f"ar-{posted + i}", f"ar-c{posted + i}", None)
                             for i in range(10)]  # fmt: skip
                    status, _ = await post_raw(c.http, node, sign({"events": chunk}))
                    assert status == 202, status
                    posted += len(chunk)
                await asyncio.sleep(0.05)
            for racer in racers:
                racer.racing = False  # re-offers of what timed out are accepted at once

            def open_races() -> int:
                return sum(not seen for r in racers for seen in r.outcomes.values())

            await wait_until(lambda: not open_races(), 15.0, lambda: f"{open_races()} open")
        finally:
            await asyncio.gather(*(r.close() for r in racers), return_exceptions=True)
    outcomes = Counter[str]()
    for racer in racers:
        for seen in racer.outcomes.values():
            outcomes["none" if not seen else "both" if len(seen) > 1 else seen[0]] += 1
    figures: Figures = {
        "races": sum(outcomes.values()),
        "assigned": outcomes["assigned"],
        "revoked_timeout": outcomes["revoked:timeout"],
        "revoked_other": sum(n for k, n in outcomes.items() if k.startswith("revoked:"))
        - outcomes["revoked:timeout"],
        "both": outcomes["both"],
        "none": outcomes["none"],
    }
    assert figures["both"] == 0, f"{figures['both']} reservations were assigned and revoked"
    assert figures["none"] == 0, f"{figures['none']} reservations never had an outcome"
    assert outcomes["assigned"] and outcomes["revoked:timeout"], f"no race on both sides {outcomes}"
    return figures


# -- duplicate and reordered webhooks ------------------------------------------------------------


async def webhooks(workdir: Path, copies: int = 20) -> Figures:
    """One signed chat event posted `copies` times at once and again in a row, one Twilio
    inbound SMS likewise, then the status callbacks of a reply out of order and twice: one
    conversation and one interaction each, and the reply's status never moves backwards."""
    provider = Provider()
    await provider.start()
    try:
        async with cluster(workdir) as c:
            env = {**SMS_ENV, "OMNIROUTE_SMS_API_BASE_URL": provider.url,
                   "OMNIROUTE_SERVER_PUBLIC_URL": PUBLIC}  # fmt: skip
            node = await c.node("node-a", env)
            assert c.http is not None
            async with desktops(c.http, [("hooks", "SAM", node, True)]) as (desk,):
                desk.finish = False
                signed = sign(chat_event("dup-1", "dup-cust", None))
                first = await asyncio.gather(
                    *(post_raw(c.http, node, signed) for _ in range(copies))
                )
                again = [await post_raw(c.http, node, signed) for _ in range(copies)]
                answers = [a for _, a in first + again]
                accepted = sum(int(a["accepted"]) for a in answers)
                chat_conv = {a["conversations"][0] for a in answers}
                sms = {"MessageSid": "SM" + "d" * 32, "From": MOBILE, "To": "+4930123456",
                       "Body": "twice?"}  # fmt: skip
                sms_status = await asyncio.gather(
                    *(twilio_form(c.http, node, SMS_PATH, sms) for _ in range(copies))
                )
                await wait_until(lambda: len(desk.assigned) >= 2, 10.0, lambda: f"{desk.frames}")
                await until_drained(
                    c.redis_url, 10.0
                )  # everything accepted is routed: a duplicate too
                sms_conv = next(a for a in desk.assigned if a not in chat_conv)
                desk.send({"type": "message.send", "conversation": sms_conv, "body": "yes",
                           "channel": "sms"})  # fmt: skip
                await wait_until(lambda: len(provider.forms) >= 1, 10.0, lambda: "never sent")
                callback = provider.forms[0]["StatusCallback"]
                path = callback.removeprefix(PUBLIC)
                sid = "SM" + "1" * 32
                order = ("delivered", "sent", "queued", "delivered", "sent")
                codes = []
                for status in order:
                    form = {"MessageSid": sid, "MessageStatus": status}
                    codes.append(await twilio_form(c.http, node, path, form))
                await wait_until(lambda: any(f.get("status") == "delivered" for f in desk.frames),
                                 10.0, lambda: "the agent never heard `delivered`")  # fmt: skip
                told = [f["status"] for f in desk.frames if f["type"] == "message.status"]
                customer = dict(p.split("=") for p in path.split("?")[1].split("&"))["cu"]
                store = RedisStore(c.redis_url)
                await store.start()
                try:
                    history = await store.history(customer, 50)
                    for conv in chat_conv:
                        held = await store.conversation(conv)
                        assert held is not None
                finally:
                    await store.close()
            offers = Counter(f["conversation"]["id"] for f in desk.frames if f["type"] == "offer")
            messages = Counter(
                f["interaction"]["id"] for f in desk.frames if f["type"] == "message"
            )
    finally:
        await provider.close()
    inbound = [i for i in history if i.direction == "in"]
    reply = next(i for i in history if i.direction == "out")
    final = str(reply.meta.get("sms_status"))
    wire = {"sent": 1, "delivered": 2, "failed": 2}
    backwards = sum(1 for a, b in itertools.pairwise(told) if wire[b] < wire[a])
    figures: Figures = {
        "posted": 3 * copies,
        "chat_accepted": accepted,
        "sms_answers": " ".join(f"{k}:{v}" for k, v in sorted(Counter(sms_status).items())),
        "duplicates_routed": (accepted - 1)
        + (len(inbound) - 1)
        + sum(n - 1 for n in offers.values())
        + sum(n - 1 for n in messages.values()),
        "callbacks": " ".join(f"{k}:{v}" for k, v in sorted(Counter(codes).items())),
        "agent_told": ",".join(told),
        "final_status": final,
        "backwards": backwards,
    }
    assert len(chat_conv) == 1, f"one event, {len(chat_conv)} conversations"
    assert figures["duplicates_routed"] == 0, f"duplicates routed: {figures}"
    assert final == "delivered" and backwards == 0, f"the status moved backwards: {figures}"
    assert STATUS_RANK[final] == max(STATUS_RANK[s] for s in order), f"final {final}"
    return figures


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
