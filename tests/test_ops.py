"""The ops endpoints over real HTTP on 127.0.0.1: auth, rows, metrics, the stream, health."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import jwt
import pytest
from aiohttp import WSMsgType, WSServerHandshakeError, web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

import queues
from queues.base import RoutingEngine
from queues.policy import Policy
from router.errors import CLOSE_DRAINING, CLOSE_RATE_LIMITED
from router.metrics import Metrics
from router.ops import OPS_KEY, add_ops_routes
from router.ops_views import OpsHub
from tests.support import FakeClock

SECRET = "ops-test-signing-secret-of-32-bytes-or-more"
INTERVAL_S = 0.2
WAIT_S = 5.0  # bound on every wait for a frame


def token(role: str, *, sub: str = "u1", secret: str = SECRET, ttl: int = 3600) -> str:
    claims = {"sub": sub, "tier": "SAM", "name": "Someone", "role": role}
    return jwt.encode({**claims, "exp": int(time.time()) + ttl}, secret, algorithm="HS256")


def bearer(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(role)}"}


async def populated_engine(clock: FakeClock) -> RoutingEngine:
    """a1 (CCS, one chat) holds c1; c2 (chat) and c3 (email) wait 30 s; a2 (PAM) is away."""
    engine = queues.create_engine(Policy(), "memory", clock=clock, domain="ops-test")
    await engine.start()
    await engine.login("a1", "CCS", capacity={"chat": 1, "sms": 0, "email": 0, "voice": 0})
    await engine.login("a2", "PAM")
    await engine.set_presence("a1", "available")
    await engine.enqueue("c1", "cu1", "chat")
    await engine.enqueue("c2", "cu2", "chat")
    await engine.enqueue("c3", "cu3", "email")
    clock.advance(5)
    await engine.accept("R1", "a1")
    clock.advance(25)
    return engine


def make_app(engine: RoutingEngine, metrics: Metrics | None = None) -> web.Application:
    app = web.Application()
    add_ops_routes(
        app, engine, SECRET, metrics=metrics or Metrics(), snapshot_interval_s=INTERVAL_S
    )
    return app


@pytest.fixture
async def engine(clock: FakeClock) -> AsyncIterator[RoutingEngine]:
    made = await populated_engine(clock)
    yield made
    await made.close()


@pytest.fixture
async def client(engine: RoutingEngine) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with TestClient(TestServer(make_app(engine), host="127.0.0.1")) as c:
        yield c


# -- auth ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/queues", "/v1/agents"])
@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "unauthorized"),
        ({"Authorization": "Bearer not-a-jwt"}, 401, "unauthorized"),
        ({"Authorization": f"Bearer {token('ops', secret='x' * 40)}"}, 401, "unauthorized"),
        ({"Authorization": f"Bearer {token('ops', ttl=-60)}"}, 401, "unauthorized"),
        ({"Authorization": f"Basic {token('ops')}"}, 401, "unauthorized"),
        (bearer("agent"), 403, "forbidden"),
    ],
    ids=["none", "garbage", "wrong-secret", "expired", "not-bearer", "agent"],
)
async def test_views_refuse_without_an_ops_token(
    client: TestClient[web.Request, web.Application],
    path: str,
    headers: dict[str, str],
    status: int,
    code: str,
) -> None:
    response = await client.get(path, headers=headers)
    assert response.status == status
    body = await response.json()
    assert set(body["error"]) == {"code", "message", "field"}
    assert body["error"]["code"] == code


@pytest.mark.parametrize("path", ["/v1/queues", "/v1/agents"])
@pytest.mark.parametrize("role", ["ops", "supervisor"])
async def test_views_answer_ops_and_supervisors(
    client: TestClient[web.Request, web.Application], path: str, role: str
) -> None:
    response = await client.get(path, headers=bearer(role))
    assert response.status == 200


async def test_a_query_token_is_only_for_the_stream(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.get("/v1/queues", params={"token": token("ops")})
    assert response.status == 401


# -- rows ------------------------------------------------------------------------------------


async def test_queue_rows(client: TestClient[web.Request, web.Application]) -> None:
    response = await client.get("/v1/queues", headers=bearer("ops"))
    rows = {row["name"]: row for row in (await response.json())["queues"]}
    assert list(rows) == ["chat", "sms", "email", "voice"]
    assert rows["chat"] == {
        "name": "chat",
        "waiting": 1,
        "longest_wait_s": 30.0,
        "agents": {"TRN": {}, "CCS": {"busy": 1}, "PAM": {"away": 1}, "SAM": {}},
        "offered": 1,
        "answered": 1,
        "abandoned": 0,
        "service_level": 1.0,
        "answered_in_threshold": 1,
        "average_speed_of_answer_s": 5.0,  # accepted 5 s after it arrived
    }
    assert rows["email"]["average_speed_of_answer_s"] is None
    assert rows["email"]["waiting"] == 1
    assert rows["email"]["longest_wait_s"] == 30.0
    assert rows["email"]["service_level"] is None  # nothing answered or abandoned yet
    assert rows["sms"]["agents"]["CCS"] == {}  # a1 has no sms capacity


async def test_agent_rows(client: TestClient[web.Request, web.Application]) -> None:
    response = await client.get("/v1/agents", headers=bearer("supervisor"))
    agents = (await response.json())["agents"]
    assert agents == [
        {
            "id": "a1",
            "tier": "CCS",
            "state": "busy",
            "chosen": "available",
            "capacity": {"chat": 1, "sms": 0, "email": 0, "voice": 0},
            "load": {"chat": 1, "sms": 0, "email": 0, "voice": 0},
            "tasks": ["c1"],
        },
        {
            "id": "a2",
            "tier": "PAM",
            "state": "away",
            "chosen": "away",
            "capacity": {"chat": 3, "sms": 3, "email": 5, "voice": 1},
            "load": {"chat": 0, "sms": 0, "email": 0, "voice": 0},
            "tasks": [],
        },
    ]


# -- metrics ---------------------------------------------------------------------------------


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_metrics_carry_queue_gauges_and_counters(engine: RoutingEngine) -> None:
    metrics = Metrics()
    metrics.ingested("accepted", 3)
    metrics.ingested("duplicate")
    metrics.ingested("bad_signature")  # a refusal reason, as router.ingest reports it
    metrics.offered()
    metrics.sent("agent", 2)
    async with TestClient(TestServer(make_app(engine, metrics), host="127.0.0.1")) as client:
        response = await client.get("/metrics")  # open to scrapers: counts only, no ids
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await response.text()
    got = samples(text)

    def one(name: str, **labels: str) -> float:
        return got[(name, frozenset(labels.items()))]

    assert one("omniroute_queue_waiting", queue="chat") == 1
    assert one("omniroute_queue_waiting", queue="sms") == 0
    assert one("omniroute_queue_longest_wait_seconds", queue="email") == 30.0
    assert one("omniroute_queue_agents", queue="chat", tier="CCS", state="busy") == 1
    assert one("omniroute_queue_offered_total", queue="chat") == 1
    assert one("omniroute_queue_answered_in_threshold_total", queue="chat") == 1
    assert one("omniroute_engine_up") == 1
    assert one("omniroute_events_ingested_total", result="accepted") == 3
    assert one("omniroute_events_ingested_total", result="refused") == 1
    assert one("omniroute_ingest_refused_total", reason="bad_signature") == 1
    assert one("omniroute_offers_total") == 1
    assert one("omniroute_frames_sent_total", kind="agent") == 2
    assert one("omniroute_ws_sessions", kind="ops") == 0
    assert "a1" not in text and "c1" not in text  # no id is ever a label


async def test_two_apps_keep_their_own_counters(engine: RoutingEngine) -> None:
    first, second = Metrics(), Metrics()
    first.offered(5)
    make_app(engine, first), make_app(engine, second)  # no duplicate-registration error
    async with TestClient(TestServer(make_app(engine, second), host="127.0.0.1")) as client:
        text = await (await client.get("/metrics")).text()
    assert samples(text)[("omniroute_offers_total", frozenset())] == 0


async def test_metrics_say_when_the_engine_does_not_answer(engine: RoutingEngine) -> None:
    async def broken() -> list[Any]:
        raise ConnectionError("down")

    engine.queue_stats = broken  # type: ignore[method-assign,assignment]
    async with TestClient(TestServer(make_app(engine), host="127.0.0.1")) as client:
        response = await client.get("/metrics")
        assert response.status == 200
        got = samples(await response.text())
    assert got[("omniroute_engine_up", frozenset())] == 0
    assert not any(name == "omniroute_queue_waiting" for name, _ in got)


def test_metric_labels_are_a_fixed_set() -> None:
    metrics = Metrics()
    with pytest.raises(ValueError, match="reason"):
        metrics.ingested("Bad reason!")
    with pytest.raises(ValueError, match="kind"):
        metrics.sent("a1")


# -- stream ----------------------------------------------------------------------------------


async def receive_snapshot(ws: Any) -> dict[str, Any]:
    msg = await asyncio.wait_for(ws.receive(), WAIT_S)
    assert msg.type == WSMsgType.TEXT, msg
    frame: dict[str, Any] = json.loads(msg.data)
    assert frame["type"] == "snapshot"
    return frame


async def test_stream_sends_a_snapshot_at_once_and_then_every_interval(
    client: TestClient[web.Request, web.Application], clock: FakeClock
) -> None:
    started = time.monotonic()
    async with client.ws_connect("/v1/ops/stream", params={"token": token("ops")}) as ws:
        first = await receive_snapshot(ws)
        clock.advance(1)
        second = await receive_snapshot(ws)
        elapsed = time.monotonic() - started
    assert elapsed < WAIT_S
    assert datetime.fromisoformat(first["at"]).timestamp() == clock.now - 1
    assert first["at"].endswith("Z")
    assert second["at"] > first["at"]
    chat = next(q for q in first["queues"] if q["name"] == "chat")
    assert chat["waiting"] == 1 and chat["longest_wait_s"] == 30.0
    assert [a["id"] for a in first["agents"]] == ["a1", "a2"]
    assert first["agents"][0]["tasks"] == ["c1"]


async def test_stream_accepts_a_bearer_header(
    client: TestClient[web.Request, web.Application],
) -> None:
    async with client.ws_connect("/v1/ops/stream", headers=bearer("supervisor")) as ws:
        await receive_snapshot(ws)


@pytest.mark.parametrize(
    ("params", "status"),
    [({}, 401), ({"token": "garbage"}, 401), ({"token": token("agent")}, 403)],
    ids=["none", "garbage", "agent"],
)
async def test_stream_refuses_without_an_ops_token(
    client: TestClient[web.Request, web.Application], params: dict[str, str], status: int
) -> None:
    with pytest.raises(WSServerHandshakeError) as refused:
        await client.ws_connect("/v1/ops/stream", params=params)
    assert refused.value.status == status


async def test_one_producer_serves_every_subscriber(
    client: TestClient[web.Request, web.Application],
) -> None:
    hub = client.app[OPS_KEY].hub
    url = "/v1/ops/stream"
    async with (
        client.ws_connect(url, params={"token": token("ops")}) as one,
        client.ws_connect(url, params={"token": token("ops")}) as two,
        client.ws_connect(url, params={"token": token("ops")}) as three,
    ):
        for _ in range(3):
            frames = [await receive_snapshot(ws) for ws in (one, two, three)]
        reads = hub.snapshots
    assert frames[0]["at"] <= frames[2]["at"]
    # Three sockets, three frames each: one read per interval, not one per socket.
    assert reads <= 5, reads


async def test_a_slow_subscriber_is_dropped_not_waited_on(engine: RoutingEngine) -> None:
    hub = OpsHub(engine, 0.05, Metrics())
    slow, fast = hub.subscribe(), hub.subscribe()
    got = 0
    async with asyncio.timeout(WAIT_S):
        while slow in hub.subscribers:
            assert await fast.queue.get() is not None
            got += 1
        assert await slow.queue.get() is None
        assert slow.close_code == CLOSE_RATE_LIMITED
        for _ in range(2):  # the others go on receiving
            assert await fast.queue.get() is not None
    assert got >= 2
    hub.unsubscribe(fast)
    await hub.close()


async def test_close_all_closes_streams_with_4000_and_stops_the_producer(
    engine: RoutingEngine,
) -> None:
    app = make_app(engine)
    server = TestServer(app, host="127.0.0.1")
    async with TestClient(server) as client:
        ws = await client.ws_connect("/v1/ops/stream", params={"token": token("ops")})
        await receive_snapshot(ws)
        hub = app[OPS_KEY].hub
        closing = asyncio.create_task(server.close())  # runs on_shutdown → close_all
        msg = await asyncio.wait_for(ws.receive(), WAIT_S)
        while msg.type == WSMsgType.TEXT:
            msg = await asyncio.wait_for(ws.receive(), WAIT_S)
        assert msg.type == WSMsgType.CLOSE
        assert msg.data == CLOSE_DRAINING
        await asyncio.wait_for(closing, WAIT_S)
        await ws.close()
        assert not hub.subscribers
        assert hub._task is None


# -- health ----------------------------------------------------------------------------------


async def test_healthz_and_readyz(client: TestClient[web.Request, web.Application]) -> None:
    response = await client.get("/healthz")
    assert (response.status, await response.json()) == (200, {"status": "ok"})
    response = await client.get("/readyz")
    ready = {"status": "ready", "engine": "memory"}
    assert (response.status, await response.json()) == (200, ready)


@pytest.mark.parametrize("failure", ["false", "raises"])
async def test_readyz_is_503_when_the_engine_does_not_answer(
    engine: RoutingEngine, failure: str
) -> None:
    async def ping() -> bool:
        if failure == "raises":
            raise ConnectionError("refused")
        return False

    engine.ping = ping  # type: ignore[method-assign]
    async with TestClient(TestServer(make_app(engine), host="127.0.0.1")) as client:
        response = await client.get("/readyz")
        assert response.status == 503
        assert await response.json() == {"status": "unavailable", "engine": "memory"}
