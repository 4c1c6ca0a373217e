"""Several router nodes on one Redis, as real `omniroute serve` processes, and `kill -9`.

What the non-negotiables of `DESIGN.md` promise with the Redis engine, checked from outside
(HTTP ingest and desktop WebSockets only, plus Redis itself for the log):

* two nodes route one domain together: every conversation a 202 named is offered and assigned
  exactly once, to an eligible tier, desktops see work ingested on the other node, and each
  desktop's `seq` has no gap;
* a node killed with SIGKILL right after its 202s loses nothing: the survivor reclaims the
  dead node's unacknowledged log entries after `[events] claim_idle_s`, and offers the dead
  node had made time out after `[reservation] timeout_s`;
* the reclaim path deterministically: log entries left pending under a consumer that never
  acknowledges (`dead-node`) are processed by a running node once they were idle long enough;
* work assigned to an agent of the dead node comes back after `[agent] release_after_s`.

Every process is started with short timers, waited on with deadlines (never a bare sleep),
and stopped in `finally`: SIGTERM, then SIGKILL after a bounded wait.
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
import pytest
import redis.asyncio as aioredis

from router.protocol import validate_events
from router.store_redis import GROUP, RedisStore
from tests.support import free_port, start_redis, stop_redis

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
# The server heartbeats a desktop's presence every 5 s (`agent_ws.Limits.heartbeat_s`): the
# presence TTL of these tests must stay above that (see test_presence_ttl_below_…).
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
        proc = self.proc
        if proc is None:
            return None
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), STOP_DEADLINE_S)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await asyncio.wait_for(proc.wait(), STOP_DEADLINE_S)
        return proc.returncode

    def log(self) -> str:
        return _read_text(self.log_path)[-4000:]


def _timeout(seconds: float) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=seconds)


@pytest.fixture
async def redis_server(tmp_path: Path) -> AsyncIterator[str]:
    """A fresh redis-server for one test (each test kills nodes: no shared state)."""
    process, url = await asyncio.to_thread(start_redis, tmp_path / "redis")
    try:
        yield url
    finally:
        await asyncio.to_thread(stop_redis, process)


@pytest.fixture
async def cluster(redis_server: str, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """`await cluster(name, **env)` starts a node; all of them are stopped on the way out."""
    nodes: list[Node] = []
    async with aiohttp.ClientSession() as http:

        async def start(name: str, **env: str) -> Node:
            node = Node(name, redis_server, tmp_path, env)
            nodes.append(node)
            await node.start(http)
            return node

        try:
            yield start
        finally:
            await asyncio.gather(*(node.stop() for node in nodes), return_exceptions=True)


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


async def post_events(
    http: aiohttp.ClientSession, node: Node, events: Sequence[Mapping[str, Any]]
) -> list[str]:
    """POST a signed batch; it must be accepted whole. Returns the conversation ids."""
    body = json.dumps({"events": list(events)}).encode()
    digest = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json", "X-Omniroute-Signature": f"sha256={digest}"}
    async with http.post(
        f"{node.base}/v1/events", data=body, headers=headers, timeout=_timeout(10)
    ) as response:
        answer = await response.json()
        assert response.status == 202, answer
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
            pytest.fail(f"{self.agent}: no answer to presence.set: {self.frames}")

    def send(self, frame: dict[str, Any]) -> None:
        self._refs += 1
        self._outbox.put_nowait({**frame, "ref": f"{self.agent}-{self._refs}"})

    async def _write(self) -> None:
        """Send queued frames paced by a token bucket (below the server's rate limit)."""
        tokens, stamp = CLIENT_BURST, time.monotonic()
        assert self._ws is not None
        while True:
            frame = await self._outbox.get()
            now = time.monotonic()
            tokens = min(CLIENT_BURST, tokens + (now - stamp) * CLIENT_RATE)
            stamp = now
            if tokens < 1.0:
                await asyncio.sleep((1.0 - tokens) / CLIENT_RATE)
                tokens, stamp = 1.0, time.monotonic()
            tokens -= 1.0
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
            pytest.fail(f"not within {within} s: {what()}")
        await asyncio.sleep(0.05)
    return time.monotonic() - start


def assignments(all_desktops: Sequence[Desktop]) -> Counter[str]:
    return Counter(conv for d in all_desktops for conv in d.assigned)


def missing(expected: set[str], all_desktops: Sequence[Desktop]) -> Callable[[], str]:
    def describe() -> str:
        done = assignments(all_desktops)
        left = sorted(expected - set(done))
        errors = [e for d in all_desktops for e in d.errors][:5]
        return f"{len(left)} of {len(expected)} not assigned, e.g. {left[:5]}; errors {errors}"

    return describe


def check_exactly_once(expected: set[str], all_desktops: Sequence[Desktop]) -> None:
    """Each conversation assigned once, to one desktop; no reservation offered twice."""
    done = assignments(all_desktops)
    twice = {conv: n for conv, n in done.items() if n > 1}
    assert not twice, f"assigned more than once: {twice}"
    assert set(done) == expected, f"assigned but never accepted by ingest: {set(done) - expected}"
    reservations = Counter(o["reservation"] for d in all_desktops for o in d.offers)
    assert all(n == 1 for n in reservations.values()), "a reservation offered twice"


def check_tiers(groups: Mapping[str, str], all_desktops: Sequence[Desktop]) -> None:
    """The hard filter: no offer (and so no assignment) of a group to an ineligible tier."""
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
        pending = await client.xpending(LOG_STREAM, GROUP)
        return int(length), int(pending["pending"])
    finally:
        await client.aclose()


# -- 1. two nodes, one domain ------------------------------------------------------------------

GROUP_CYCLE = ("normal", None, "SIC", "normal", "CSC", None, "SIC", "normal", "CSC", "SIC")
TIERS = ("TRN", "CCS", "PAM", "SAM")


async def test_two_nodes_assign_every_conversation_exactly_once(
    cluster: Callable[..., Any], redis_server: str
) -> None:
    env = timers(reservation_timeout_s=10.0)
    node_a = await cluster("node-a", **env)
    node_b = await cluster("node-b", **env)
    # 16 agents: 4 per tier, 2 of each tier on each node
    specs = [
        (f"{tier.lower()}{n}", tier, node_a if n % 2 == 0 else node_b, True)
        for tier in TIERS
        for n in range(4)
    ]
    async with aiohttp.ClientSession() as http, desktops(http, specs) as desks:
        groups: dict[str, str] = {}
        posted_to: dict[str, Node] = {}
        batch, total = 25, 300
        for start in range(0, total, batch):
            node = (node_a, node_b)[(start // batch) % 2]
            events = [
                chat_event(f"ev-{i}", f"cust-{i}", GROUP_CYCLE[i % len(GROUP_CYCLE)])
                for i in range(start, start + batch)
            ]
            conversations = await post_events(http, node, events)
            for event, conversation in zip(events, conversations, strict=True):
                assert conversation not in groups, "two customers got one conversation"
                groups[conversation] = event.get("profile", {}).get("client_group", "normal")
                posted_to[conversation] = node
        expected = set(groups)
        assert len(expected) == total
        took = await wait_until(
            lambda: set(assignments(desks)) >= expected, 60.0, missing(expected, desks)
        )
        # every client frame is answered (`ack`, `assigned`, `presence` or `error` with its
        # ref): wait for all the answers, so the checks below see the whole conversation
        await wait_until(
            lambda: all(d.answered() for d in desks), 10.0, lambda: "unanswered client frames"
        )
        closed = [d.agent for d in desks if d.closed]
        assert not closed, f"sockets closed by the server: {closed}"

    check_exactly_once(expected, desks)
    check_tiers(groups, desks)
    offered = Counter(o["conversation"]["id"] for d in desks for o in d.offers)
    assert set(offered) == expected
    revoked = [f for d in desks for f in d.frames if f["type"] == "offer.revoked"]
    # agents that accept at once never let an offer lapse: one offer per conversation
    assert all(n == 1 for n in offered.values()), (offered.most_common(3), revoked[:3])
    for desktop in desks:
        assert not desktop.errors, (desktop.agent, desktop.errors[:3])
        desktop.check_seq()
    crossed = Counter(
        (desktop.node.name, posted_to[o["conversation"]["id"]].name)
        for desktop in desks
        for o in desktop.offers
    )
    assert crossed[("node-a", "node-b")] > 0 and crossed[("node-b", "node-a")] > 0, crossed
    busy = Counter(d.tier for d in desks for _ in d.assigned)
    assert set(busy) == set(TIERS), busy
    assert await log_backlog(redis_server) == (0, 0)  # every entry processed and acknowledged
    print(f"\n300 events over 2 nodes assigned in {took:.1f} s; offers by (desk, post) {crossed}")


# -- 2. kill -9 right after the 202s --------------------------------------------------------------


async def test_sigkill_after_accepting_loses_no_event(
    cluster: Callable[..., Any], redis_server: str
) -> None:
    env = timers()
    node_a = await cluster("node-a", **env)
    async with aiohttp.ClientSession() as http:
        # node A's own desktops take offers but never answer: A's death strands them
        stranded_specs = [("a-ccs", "CCS", node_a, False), ("a-sam", "SAM", node_a, False)]
        async with desktops(http, stranded_specs) as stranded:
            events = [
                chat_event(f"k-{i}", f"kcust-{i}", GROUP_CYCLE[i % len(GROUP_CYCLE)])
                for i in range(120)
            ]
            batches = [events[i : i + 40] for i in range(0, len(events), 40)]
            results = await asyncio.gather(*(post_events(http, node_a, b) for b in batches))
            node_a.kill9()  # right after the 202s, while it is still routing them
            assert node_a.proc is not None
            await asyncio.wait_for(node_a.proc.wait(), STOP_DEADLINE_S)
            assert node_a.proc.returncode == -signal.SIGKILL
        groups = {
            conversation: event.get("profile", {}).get("client_group", "normal")
            for batch, conversations in zip(batches, results, strict=True)
            for event, conversation in zip(batch, conversations, strict=True)
        }
        expected = set(groups)
        assert len(expected) == len(events)
        length, pending = await log_backlog(redis_server)
        print(f"\nafter kill -9: log holds {length} entries, {pending} pending under node-a")

        node_b = await cluster("node-b", **env)
        specs = [(f"b-{t.lower()}{n}", t, node_b, True) for t in TIERS for n in range(2)]
        async with desktops(http, specs) as survivors:
            took = await wait_until(
                lambda: set(assignments(survivors)) >= expected,
                30.0,
                missing(expected, survivors),
            )
            # all of it comes at most one reservation time-out (2 s) plus the log's claim
            # idle time (1 s) late, with room for a slow shared machine
            assert took < 2.0 + 1.0 + 6.0, took
    everyone = [*stranded, *survivors]
    check_exactly_once(expected, everyone)
    check_tiers(groups, everyone)
    assert not any(d.assigned for d in stranded)
    for desktop in survivors:
        desktop.check_seq()
    assert await log_backlog(redis_server) == (0, 0)
    print(f"every event routed by node-b {took:.1f} s after its desktops were available")


# -- 3. the reclaim path, deterministically -------------------------------------------------------


async def test_a_running_node_reclaims_entries_a_dead_consumer_never_acknowledged(
    cluster: Callable[..., Any], redis_server: str
) -> None:
    claim_idle_s = 3.0
    store = RedisStore(redis_server)  # as an ingesting node would: log entry + conversation
    await store.start()
    try:
        events = validate_events(
            {"events": [chat_event(f"d-{i}", f"dcust-{i}", "normal") for i in range(10)]}
        )
        ingested = await store.ingest(events, int(time.time() * 1000))
    finally:
        await store.close()
    expected = {row.conversation for row in ingested}
    assert len(expected) == 10
    client = aioredis.from_url(redis_server)
    try:
        # a consumer takes every entry and dies before acknowledging any
        taken = await client.xreadgroup(GROUP, "dead-node", {LOG_STREAM: ">"}, count=100)
        taken_at = time.monotonic()
        assert len(taken[0][1]) == 10
        summary = await client.xpending(LOG_STREAM, GROUP)
        assert summary["pending"] == 10
        assert summary["consumers"] == [{"name": b"dead-node", "pending": 10}]

        node = await cluster("node-b", **timers(events_claim_idle_s=claim_idle_s))
        async with aiohttp.ClientSession() as http:
            specs = [("r-trn", "TRN", node, True), ("r-ccs", "CCS", node, True)]
            async with desktops(http, specs) as desks:
                await wait_until(
                    lambda: set(assignments(desks)) >= expected, 20.0, missing(expected, desks)
                )
        check_exactly_once(expected, desks)
        first_offer = min(o["at"] for d in desks for o in d.offers)
        # not before the entries were idle for claim_idle_s (they are not new to the group)
        assert first_offer - taken_at >= claim_idle_s - 0.2, first_offer - taken_at
        summary = await client.xpending(LOG_STREAM, GROUP)
        assert summary["pending"] == 0
        assert await client.xlen(LOG_STREAM) == 0
    finally:
        await client.aclose()


# -- 4. assigned work of an agent whose node died ------------------------------------------------


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


async def test_work_assigned_on_a_dead_node_is_released_to_a_survivor(
    cluster: Callable[..., Any],
) -> None:
    """`[agent] release_after_s`: "an agent offline this long gives its assigned conversations
    back to the queue". The agent's node died, so only another node can notice."""
    release_after_s = 2.0
    env = timers(agent_release_after_s=release_after_s)
    node_a = await cluster("node-a", **env)
    node_b = await cluster("node-b", **env)
    async with aiohttp.ClientSession() as http:
        async with desktops(http, [("gone", "CCS", node_a, True)]) as (gone,):
            gone.finish = False  # it accepts and holds the conversation
            (conversation,) = await post_events(http, node_b, [chat_event("g-1", "g-1", None)])
            await wait_until(lambda: conversation in gone.assigned, 10.0, lambda: "no assign")
            node_a.kill9()
        async with desktops(http, [("heir", "CCS", node_b, True)]) as (heir,):
            # the survivor's ticker expires the dead node's agent after the presence TTL ...
            deadline = time.monotonic() + PRESENCE_TTL_S + 5.0
            while (row := (await agent_rows(http, node_b))["gone"])["state"] != "offline":
                assert time.monotonic() < deadline, f"the dead node's agent stays {row}"
                await asyncio.sleep(0.2)
            assert row["tasks"] == [conversation]
            # ... and its assigned conversation must come back after release_after_s
            took = await wait_until(
                lambda: conversation in heir.assigned,
                release_after_s + 8.0,
                lambda: f"still held by the offline agent: {row}; heir saw {heir.frames}",
            )
    print(f"\nreleased to a survivor {took:.1f} s after its holder went offline")


# -- 5. presence TTL below the desktop heartbeat --------------------------------------------------


async def test_a_connected_agent_stays_available_with_a_short_presence_ttl(
    cluster: Callable[..., Any],
) -> None:
    """`[presence] ttl_s` is how fast a dead node's agents stop getting work, so a cluster
    wants it short; a desktop that is connected and answering must stay available anyway."""
    ttl_s = 2.0
    node = await cluster("node-a", **timers(presence_ttl_s=ttl_s))
    async with (
        aiohttp.ClientSession() as http,
        desktops(http, [("steady", "CCS", node, True)]) as (desk,),
    ):
        deadline = time.monotonic() + 3 * ttl_s
        while time.monotonic() < deadline:
            shown = [f["state"] for f in desk.frames if f["type"] == "presence"]
            assert shown[-1] == "available", f"a live desktop was dropped: presence {shown}"
            await asyncio.sleep(0.1)
        (conversation,) = await post_events(http, node, [chat_event("t-1", "t-1", None)])
        await wait_until(
            lambda: conversation in desk.assigned, 5.0, lambda: f"not routed: {desk.frames}"
        )
