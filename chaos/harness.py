"""The fault harness: real `omniroute serve` processes on one Redis, scripted desktops on real
WebSockets, signed adapter posts, and the checks every fault scenario ends with.

Shared by `python -m chaos` (the scenarios and their figures) and the cluster tests
(`tests/test_cluster.py`, `tests/test_failover.py`). Loopback only; every wait has a deadline;
`Node.stop` ends a process with SIGTERM, then SIGKILL (`chaos.processes.terminate`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp
import jwt
import redis.asyncio as aioredis

from chaos.processes import free_port, terminate
from router.limits import TokenBucket
from store.redis_base import GROUP

REPO = Path(__file__).resolve().parents[1]
JWT_SECRET = "cluster-test-jwt-secret-of-at-least-32-bytes"
WEBHOOK_SECRET = "cluster-test-webhook-secret-of-32-bytes-plus"
LOG_STREAM = "omniroute:{default}:log"  # the event log of the default routing domain
START_DEADLINE_S = 20.0
STOP_DEADLINE_S = 10.0
FRAME_WAIT_S = 10.0
# Who may ever hold work of a client group (the shipped `[eligibility]`).
ELIGIBLE = {"normal": {"TRN", "CCS", "PAM", "SAM"}, "SIC": {"PAM", "SAM"}, "CSC": {"SAM"}}
# The desktop keeps below the server's client-frame rate limit (20/s, burst 40).
CLIENT_RATE = 15.0
CLIENT_BURST = 20.0
# The server heartbeats a desktop's presence every 5 s (`router.limits.AgentLimits.heartbeat_s`):
# the presence TTL of these tests must stay above that (see test_presence_ttl_below_…).
PRESENCE_TTL_S = 7.0


# -- processes -----------------------------------------------------------------------------------


def _open_log(path: Path) -> IO[bytes]:
    return path.open("wb")


def _read_text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


class Node:
    """One `omniroute serve` process on a free loopback port against a shared Redis."""

    def __init__(self, name: str, redis_url: str, workdir: Path, env: Mapping[str, str]) -> None:
        self.name = name
        self.redis_url = redis_url
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"{name}.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIROUTE_")}
        self.env.update(
            {
                "OMNIROUTE_JWT_SECRET": JWT_SECRET,
                "OMNIROUTE_WEBHOOK_SECRET": WEBHOOK_SECRET,
                "OMNIROUTE_SERVER_NODE": name,
                **env,
            }
        )
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, http: aiohttp.ClientSession) -> None:
        logfile = _open_log(self.log_path)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                *("-m", "router.cli", "serve", "--host", "127.0.0.1"),
                *("--port", str(self.port), "--redis", self.redis_url),
                cwd=REPO,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=logfile,
            )
        finally:
            logfile.close()  # the child holds its own descriptor
        deadline = time.monotonic() + START_DEADLINE_S
        while True:
            assert self.proc.returncode is None, f"{self.name} exited early:\n{self.log()}"
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                async with http.get(f"{self.base}/readyz", timeout=_timeout(1.0)) as response:
                    if response.status == 200:
                        return
            assert time.monotonic() < deadline, f"{self.name} not ready in time:\n{self.log()}"
            await asyncio.sleep(0.1)

    def kill9(self) -> None:
        assert self.proc is not None and self.proc.returncode is None
        self.proc.send_signal(signal.SIGKILL)

    async def stop(self) -> int | None:
        """SIGTERM, then SIGKILL when it has not exited within STOP_DEADLINE_S."""
        if self.proc is None:
            return None
        return await terminate(self.proc, STOP_DEADLINE_S)

    def log(self) -> str:
        return self.full_log()[-4000:]

    def full_log(self) -> str:
        return _read_text(self.log_path)


def _timeout(seconds: float) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=seconds)


def timers(**overrides: float) -> dict[str, str]:
    """Short timers for these tests, as OMNIROUTE_* variables."""
    values = {
        "OMNIROUTE_RESERVATION_TIMEOUT_S": 2.0,
        "OMNIROUTE_PRESENCE_TTL_S": PRESENCE_TTL_S,
        "OMNIROUTE_EVENTS_CLAIM_IDLE_S": 1.0,
        "OMNIROUTE_AGENT_OFFLINE_GRACE_S": 1.0,
        "OMNIROUTE_AGENT_RELEASE_AFTER_S": 2.0,
    }
    values.update({f"OMNIROUTE_{k.upper()}": v for k, v in overrides.items()})
    return {k: f"{v:g}" for k, v in values.items()}


# -- adapters and desktops ---------------------------------------------------------------------


def agent_token(agent: str, tier: str) -> str:
    claims = {
        "sub": agent,
        "tier": tier,
        "name": f"Agent {agent}",
        "role": "agent",
        "exp": int(time.time()) + 3600,
    }
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


def chat_event(event_id: str, customer: str, group: str | None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "id": event_id,
        "type": "message",
        "channel": "chat",
        "from": f"visitor:{customer}",
        "body": f"hello from {customer}",
    }
    if group is not None:
        event["profile"] = {"client_group": group}
    return event


def sign(payload: Mapping[str, Any]) -> tuple[bytes, str]:
    """The body of an adapter post and its `X-Omniroute-Signature`."""
    body = json.dumps(payload).encode()
    return body, "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()


async def post_raw(
    http: aiohttp.ClientSession, node: Node, signed: tuple[bytes, str], timeout_s: float = 10.0
) -> tuple[int, Any]:
    """POST a body with a signature as given; (status, JSON answer or None)."""
    body, signature = signed
    headers = {"Content-Type": "application/json", "X-Omniroute-Signature": signature}
    async with http.post(
        f"{node.base}/v1/events", data=body, headers=headers, timeout=_timeout(timeout_s)
    ) as response:
        try:
            answer = await response.json(content_type=None)
        except (ValueError, aiohttp.ContentTypeError):
            answer = None
        return response.status, answer


async def post_events(
    http: aiohttp.ClientSession, node: Node, events: Sequence[Mapping[str, Any]]
) -> list[str]:
    """POST a signed batch; it must be accepted whole. Returns the conversation ids."""
    status, answer = await post_raw(http, node, sign({"events": list(events)}))
    assert status == 202, answer
    assert answer["accepted"] == len(events) and answer["duplicates"] == 0, answer
    conversations: list[str] = answer["conversations"]
    assert len(conversations) == len(events)
    return conversations


@dataclass
class Desktop:
    """A scripted agent desktop: records every frame; accepts, completes and ends wrap-up."""

    agent: str
    tier: str
    node: Node
    accept: bool = True
    finish: bool = True  # complete and end the wrap-up of what it was assigned
    frames: list[dict[str, Any]] = field(default_factory=list)
    offers: list[dict[str, Any]] = field(default_factory=list)  # offer frames + "at"
    assigned: list[str] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    closed: bool = False
    _ws: aiohttp.ClientWebSocketResponse | None = None
    _reader: asyncio.Task[None] | None = None
    _outbox: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    _writer: asyncio.Task[None] | None = None
    _available: asyncio.Event = field(default_factory=asyncio.Event)
    _refs: int = 0

    async def connect(self, http: aiohttp.ClientSession) -> None:
        headers = {"Authorization": f"Bearer {agent_token(self.agent, self.tier)}"}
        self._ws = await http.ws_connect(f"{self.node.base}/v1/agent/ws", headers=headers)
        welcome = await self._ws.receive_json(timeout=FRAME_WAIT_S)
        assert welcome["type"] == "welcome", welcome
        assert welcome["agent"]["id"] == self.agent and welcome["agent"]["tier"] == self.tier
        self.frames.append(welcome)
        self._reader = asyncio.create_task(self._read())
        self._writer = asyncio.create_task(self._write())
        self.send({"type": "presence.set", "state": "available"})
        try:
            await asyncio.wait_for(self._available.wait(), FRAME_WAIT_S)
        except TimeoutError:
            raise AssertionError(
                f"{self.agent}: no answer to presence.set: {self.frames}"
            ) from None

    def send(self, frame: dict[str, Any]) -> None:
        self._refs += 1
        self._outbox.put_nowait({**frame, "ref": f"{self.agent}-{self._refs}"})

    async def _write(self) -> None:
        """Send queued frames paced by a token bucket (below the server's rate limit)."""
        bucket = TokenBucket(CLIENT_RATE, CLIENT_BURST)
        assert self._ws is not None
        while True:
            frame = await self._outbox.get()
            await bucket.pace()
            try:
                await self._ws.send_json(frame)
            except (ConnectionError, RuntimeError):
                return

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for message in self._ws:
                if message.type is not aiohttp.WSMsgType.TEXT:
                    break
                self._handle(json.loads(message.data))
        finally:
            self.closed = True

    def _handle(self, frame: dict[str, Any]) -> None:
        self.frames.append(frame)
        kind = frame["type"]
        if kind == "presence" and frame.get("ref") == f"{self.agent}-1":
            self._available.set()  # the answer to presence.set (busy when work came at once)
        elif kind == "offer":
            self.offers.append({**frame, "at": time.monotonic()})
            if self.accept:
                self.send({"type": "offer.accept", "reservation": frame["reservation"]})
        elif kind == "assigned":
            conversation = frame["conversation"]["id"]
            self.assigned.append(conversation)
            if self.finish:
                self.send({"type": "conversation.complete", "conversation": conversation})
                self.send({"type": "wrapup.done", "conversation": conversation})
        elif kind == "error":
            self.errors.append(frame)

    async def close(self) -> None:
        for task in (self._writer, self._reader):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._ws is not None and not self._ws.closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws.close(), 2.0)

    def answered(self) -> bool:
        refs = {frame["ref"] for frame in self.frames if frame.get("ref") is not None}
        return len(refs) == self._refs

    def check_seq(self) -> None:
        """`seq` strictly increasing by one from the welcome's head: no gap, no repeat."""
        seqs = [frame["seq"] for frame in self.frames]
        head = seqs[0]
        assert seqs[1:] == list(range(head + 1, head + len(seqs))), (self.agent, seqs)


@contextlib.asynccontextmanager
async def desktops(
    http: aiohttp.ClientSession, specs: Sequence[tuple[str, str, Node, bool]]
) -> AsyncIterator[list[Desktop]]:
    made = [Desktop(agent, tier, node, accept) for agent, tier, node, accept in specs]
    try:
        await asyncio.gather(*(d.connect(http) for d in made))
        yield made
    finally:
        await asyncio.gather(*(d.close() for d in made), return_exceptions=True)


async def wait_until(
    condition: Callable[[], bool], within: float, what: Callable[[], str]
) -> float:
    """Poll `condition` until true; fail with `what()` after `within` s. Returns the time taken."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > within:
            raise AssertionError(f"not within {within} s: {what()}")
        await asyncio.sleep(0.05)
    return time.monotonic() - start


def assignments(all_desktops: Sequence[Desktop]) -> Counter[str]:
    return Counter(conv for d in all_desktops for conv in d.assigned)


def check_exactly_once(expected: set[str], all_desktops: Sequence[Desktop]) -> None:
    """Each conversation assigned once, to one desktop; no reservation offered twice."""
    done = assignments(all_desktops)
    twice = {conv: n for conv, n in done.items() if n > 1}
    assert not twice, f"assigned more than once: {twice}"
    assert set(done) == expected, f"assigned but never accepted by ingest: {set(done) - expected}"
    reservations = Counter(o["reservation"] for d in all_desktops for o in d.offers)
    twice_offered = [
        (d.agent, o["reservation"], o["conversation"]["id"], o.get("seq"))
        for d in all_desktops
        for o in d.offers
        if reservations[o["reservation"]] > 1
    ]
    assert not twice_offered, f"a reservation offered twice: {twice_offered[:6]}"


async def all_assigned(expected: set[str], all_desktops: Sequence[Desktop], within: float) -> float:
    """Wait until every `expected` conversation is assigned on these desktops; the time taken."""

    def missing() -> str:
        done = assignments(all_desktops)
        left = sorted(expected - set(done))
        errors = [e for d in all_desktops for e in d.errors][:5]
        return f"{len(left)} of {len(expected)} not assigned, e.g. {left[:5]}; errors {errors}"

    return await wait_until(lambda: set(assignments(all_desktops)) >= expected, within, missing)


def check_routing(
    expected: set[str], groups: Mapping[str, str], all_desktops: Sequence[Desktop]
) -> None:
    """What every run promises: each conversation assigned exactly once (`check_exactly_once`),
    and the hard filter: no offer (so no assignment) of a group to an ineligible tier."""
    check_exactly_once(expected, all_desktops)
    for desktop in all_desktops:
        for offer in desktop.offers:
            conversation = offer["conversation"]["id"]
            group = groups[conversation]
            assert desktop.tier in ELIGIBLE[group], (desktop.agent, desktop.tier, group)
            shown = offer["conversation"]["customer"]["client_group"]
            assert shown == group, (conversation, shown, group)


async def log_backlog(redis_url: str) -> tuple[int, int]:
    """(entries in the event log stream, entries pending in its consumer group)."""
    client = aioredis.from_url(redis_url)
    try:
        length = await client.xlen(LOG_STREAM)
        pending = await client.xpending(LOG_STREAM, GROUP)  # type: ignore[no-untyped-call]
        return int(length), int(pending["pending"])
    finally:
        await client.aclose()  # type: ignore[attr-defined]  # stubs predate aclose


async def agent_rows(http: aiohttp.ClientSession, node: Node) -> dict[str, dict[str, Any]]:
    """`GET /v1/agents` of a node, by agent id."""
    token = jwt.encode(
        {"sub": "ops", "tier": "SAM", "name": "ops", "role": "ops", "exp": time.time() + 600},
        JWT_SECRET,
        algorithm="HS256",
    )
    headers = {"Authorization": f"Bearer {token}"}
    async with http.get(f"{node.base}/v1/agents", headers=headers, timeout=_timeout(5)) as r:
        assert r.status == 200, await r.text()
        return {row["id"]: row for row in (await r.json())["agents"]}


GROUP_CYCLE = ("normal", None, "SIC", "normal", "CSC", None, "SIC", "normal", "CSC", "SIC")
