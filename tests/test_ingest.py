"""POST /v1/events over real HTTP on 127.0.0.1, backed by the real MemoryStore."""

from __future__ import annotations

import io
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import msgpack
import pytest
import structlog
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer

from router.auth import SIGNATURE_HEADER, sign
from router.ingest import MAX_BYTES, IngestHandler
from store.memory import MemoryStore
from store.model import InboundEvent, Ingested

SECRET = "whsec-test-0123456789"
NOW_MS = 1_800_000_000_000
CANARY = "CANARY-c0ffee-payload"


@dataclass
class Harness:
    client: TestClient[web.Request, web.Application]
    store: MemoryStore
    counts: Counter[str]

    async def post(
        self,
        body: bytes,
        content_type: str = "application/json",
        *,
        signature: str | None = None,
        signed: bool = True,
        headers: dict[str, str] | None = None,
    ) -> ClientResponse:
        sent = {"Content-Type": content_type, **(headers or {})}
        if signed:
            sent[SIGNATURE_HEADER] = signature or sign(body, SECRET)
        data = io.BytesIO(body) if len(body) > MAX_BYTES else body  # aiohttp warns on big bytes
        return await self.client.post("/v1/events", data=data, headers=sent)

    async def stored(self) -> list[str]:
        """Event ids in the durable log (read as a consumer would)."""
        return [entry.event.id for entry in await self.store.read_log("test", 10_000, 0)]


async def serve(
    ingest: Callable[[MemoryStore], Any] | None = None, max_bytes: int = MAX_BYTES
) -> tuple[TestClient[web.Request, web.Application], MemoryStore, Counter[str]]:
    store = MemoryStore(clock=lambda: NOW_MS / 1000)
    counts: Counter[str] = Counter()

    async def into_store(events: list[InboundEvent]) -> list[Ingested]:
        return await store.ingest(events, NOW_MS)

    def count(kind: str, n: int) -> None:
        counts[kind] += n

    app = web.Application()
    handler = ingest(store) if ingest is not None else into_store
    app.add_routes(IngestHandler(handler, SECRET, max_bytes, on_result=count).routes())
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return client, store, counts


@pytest.fixture
async def http() -> AsyncIterator[Harness]:
    client, store, counts = await serve()
    try:
        yield Harness(client, store, counts)
    finally:
        await client.close()


def event(n: int = 1, **changes: Any) -> dict[str, Any]:
    raw = {
        "id": f"ev-{n}",
        "type": "message",
        "channel": "chat",
        "from": f"visitor:{n}",
        "body": "hello",
    }
    raw.update(changes)
    return raw


def as_json(document: Any) -> bytes:
    return json.dumps(document).encode()


async def error_of(response: ClientResponse, status: int) -> dict[str, Any]:
    assert response.status == status
    assert response.content_type == "application/json"
    body = await response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "field"}
    assert body["error"]["message"]
    return dict(body["error"])


# -- accepted -----------------------------------------------------------------------------------


async def test_one_json_event_is_accepted_into_the_log(http: Harness) -> None:
    response = await http.post(as_json(event(1, **{"from": " Anna@Example.org "})))
    assert response.status == 202
    answer = await response.json()
    assert answer == {"accepted": 1, "duplicates": 0, "conversations": [answer["conversations"][0]]}
    [entry] = await http.store.read_log("test", 10, 0)
    assert entry.event.sender == "anna@example.org"
    assert entry.conversation == answer["conversations"][0]
    assert http.counts == {"accepted": 1}


async def test_one_msgpack_event_is_accepted(http: Harness) -> None:
    response = await http.post(msgpack.packb(event(1)), "application/msgpack")
    assert response.status == 202
    assert (await response.json())["accepted"] == 1
    assert await http.stored() == ["ev-1"]


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "application/msgpack"])
async def test_a_batch_gets_one_conversation_per_event_in_order(
    http: Harness, content_type: str
) -> None:
    events = [event(1), event(2), event(3, **{"from": "visitor:1"})]  # 1 and 3: one customer
    encode = msgpack.packb if "msgpack" in content_type else as_json
    response = await http.post(encode({"events": events}), content_type)
    assert response.status == 202
    answer = await response.json()
    assert (answer["accepted"], answer["duplicates"]) == (3, 0)
    first, second, third = answer["conversations"]
    assert first == third != second
    assert await http.stored() == ["ev-1", "ev-2", "ev-3"]


async def test_the_answer_is_msgpack_when_asked_for(http: Harness) -> None:
    body = msgpack.packb(event(1))
    headers = {"Accept": "application/msgpack"}
    response = await http.post(body, "application/msgpack", headers=headers)
    assert (response.status, response.content_type) == (202, "application/msgpack")
    answer = msgpack.unpackb(await response.read())
    assert (answer["accepted"], answer["duplicates"], len(answer["conversations"])) == (1, 0, 1)


async def test_a_repeat_is_a_duplicate_with_the_same_conversation(http: Harness) -> None:
    first = await (await http.post(as_json(event(1)))).json()
    again = await http.post(msgpack.packb(event(1)), "application/msgpack")  # any codec
    assert again.status == 202
    assert await again.json() == {
        "accepted": 0,
        "duplicates": 1,
        "conversations": first["conversations"],
    }
    mixed = await (await http.post(as_json({"events": [event(1), event(2)]}))).json()
    assert (mixed["accepted"], mixed["duplicates"]) == (1, 1)
    assert mixed["conversations"][0] == first["conversations"][0]
    assert await http.stored() == ["ev-1", "ev-2"]  # nothing appended twice
    assert http.counts == {"accepted": 2, "duplicate": 2}


# -- refused: nothing stored ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("signature", "reason"),
    [
        (None, "no_signature"),
        ("", "no_signature"),
        ("sha256=" + "0" * 64, "bad_signature"),
        (sign(b'{"id": "another body"}', SECRET), "bad_signature"),
        (sign(as_json(event(1)), "another-secret"), "bad_signature"),
        (sign(as_json(event(1)), SECRET).removeprefix("sha256="), "bad_signature"),
        (sign(as_json(event(1)), SECRET).upper(), "bad_signature"),
    ],
    ids=["missing", "empty", "zeros", "other body", "other secret", "bare hex", "upper case"],
)
async def test_a_bad_signature_is_401_and_stores_nothing(
    http: Harness, signature: str | None, reason: str
) -> None:
    body = as_json(event(1))
    headers = {} if signature is None else {SIGNATURE_HEADER: signature}
    response = await http.client.post(
        "/v1/events", data=body, headers={"Content-Type": "application/json", **headers}
    )
    error = await error_of(response, 401)
    assert (error["code"], error["field"]) == ("unauthorized", None)
    assert await http.stored() == []
    assert http.counts == {reason: 1}


async def test_the_signature_is_checked_before_anything_is_parsed(http: Harness) -> None:
    for body, content_type in [(b"{not json", "application/json"), (b"x", "text/plain")]:
        response = await http.post(body, content_type, signature="sha256=00")
        assert (await error_of(response, 401))["code"] == "unauthorized"


async def test_without_a_configured_secret_everything_is_refused() -> None:
    store = MemoryStore()
    app = web.Application()
    app.add_routes(IngestHandler(lambda events: store.ingest(events, NOW_MS), "").routes())
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        body = as_json(event(1))
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, "")}
        response = await client.post("/v1/events", data=body, headers=headers)
        assert (await error_of(response, 401))["code"] == "unauthorized"
    assert await store.read_log("test", 10, 0) == []


async def test_one_bad_event_refuses_the_whole_batch(http: Harness) -> None:
    batch = {"events": [event(1), event(2, channel="fax"), event(3)]}
    error = await error_of(await http.post(as_json(batch)), 400)
    assert error == {"code": "invalid", "message": error["message"], "field": "events[1].channel"}
    assert await http.stored() == []
    assert http.counts == {"invalid": 1}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{", None),
        (as_json([event(1)]), None),
        (as_json(event(1, type="call.offered")), "type"),
        (as_json({"events": [event(1), event(1)]}), "events[1].id"),
        (msgpack.packb(event(1, profile={"coins": -5})), "profile.coins"),
    ],
    ids=["broken", "list", "call on chat", "repeated id", "negative coins"],
)
async def test_malformed_bodies_are_400_with_the_field(
    http: Harness, body: bytes, field: str | None
) -> None:
    content_type = "application/json" if body[:1] in (b"{", b"[") else "application/msgpack"
    error = await error_of(await http.post(body, content_type), 400)
    assert (error["code"], error["field"]) == ("invalid", field)
    assert await http.stored() == []


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/xml", "", "application/json; charset=latin-1"]
)
async def test_other_content_types_are_415(http: Harness, content_type: str) -> None:
    error = await error_of(await http.post(as_json(event(1)), content_type), 415)
    assert error["code"] == "invalid"
    assert await http.stored() == []
    assert http.counts == {"unsupported_media_type": 1}


async def test_a_body_over_one_mib_is_413(http: Harness) -> None:
    body = as_json(event(1, body="x" * MAX_BYTES))
    error = await error_of(await http.post(body), 413)
    assert error["code"] == "too_large"
    assert await http.stored() == []


async def test_a_streamed_body_is_cut_off_at_the_limit(http: Harness) -> None:
    async def chunks() -> AsyncIterator[bytes]:  # chunked: no Content-Length to trust
        for _ in range(64):
            yield b"x" * 65_536

    with structlog.testing.capture_logs() as logs:
        response = await http.client.post(
            "/v1/events",
            data=chunks(),
            headers={"Content-Type": "application/json", SIGNATURE_HEADER: "sha256=00"},
        )
    assert (await error_of(response, 413))["code"] == "too_large"
    [refusal] = [e for e in logs if e["event"] == "ingest.refused"]
    assert refusal["bytes"] == MAX_BYTES + 1  # read up to one byte past the limit, no further
    assert response.headers.get("Connection", "").lower() == "close"
    assert http.counts == {"too_large": 1}


async def test_the_limit_is_inclusive() -> None:
    body = as_json(event(1))
    for limit, status in [(len(body), 202), (len(body) - 1, 413)]:
        client, _, _ = await serve(max_bytes=limit)
        try:
            headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, SECRET)}
            response = await client.post("/v1/events", data=body, headers=headers)
            assert response.status == status
        finally:
            await client.close()


async def test_a_store_failure_is_503_and_the_adapter_may_retry() -> None:
    calls = 0

    def failing_then_working(store: MemoryStore) -> Any:
        async def ingest(events: list[InboundEvent]) -> list[Ingested]:
            nonlocal calls
            calls += 1
            if calls == 1:  # the store's connection drops before anything was written
                raise ConnectionError("redis went away")
            return await store.ingest(events, NOW_MS)

        return ingest

    client, store, counts = await serve(failing_then_working)
    harness = Harness(client, store, counts)
    try:
        body = as_json({"events": [event(1), event(2)]})
        with structlog.testing.capture_logs() as logs:
            response = await harness.post(body)
        error = await error_of(response, 503)
        [refusal] = logs
        assert (refusal["event"], refusal["log_level"]) == ("ingest.refused", "error")
        assert (refusal["reason"], refusal["error"]) == ("unavailable", "ConnectionError")
        assert "redis went away" not in json.dumps(logs)
        assert error["code"] == "unavailable"
        assert response.headers["Retry-After"] == "1"
        assert await harness.stored() == []
        retried = await harness.post(body)
        assert (await retried.json())["accepted"] == 2
        assert counts == {"unavailable": 1, "accepted": 2}
    finally:
        await client.close()


# -- logs -----------------------------------------------------------------------------------------


async def test_refusals_are_logged_without_payload_headers_or_signature(
    http: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    signature = sign(as_json(event(1, body=CANARY)), SECRET)
    requests: list[tuple[bytes, str, str | None]] = [
        (as_json(event(1, body=CANARY)), "application/json", "sha256=" + "f" * 64),  # 401
        (as_json(event(1, body=CANARY, channel="fax")), "application/json", None),  # 400
        (as_json({"events": [event(1, **{CANARY: CANARY})]}), "application/json", None),  # 400
        (msgpack.packb(event(1, profile={"city": CANARY * 20})), "application/msgpack", None),
        (as_json(event(1, body=CANARY)), f"text/{CANARY}", None),  # 415
        (as_json(event(1, body=CANARY * 60_000)), "application/json", None),  # 413
        (b'{"id": "' + CANARY.encode(), "application/json", None),  # undecodable
    ]
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as logs:
        for body, content_type, bad_signature in requests:
            response = await http.post(body, content_type, signature=bad_signature)
            assert response.status in (400, 401, 413, 415)
    refusals = [entry for entry in logs if entry["event"] == "ingest.refused"]
    assert len(refusals) == len(requests)
    for entry in refusals:
        assert {"reason", "code", "field", "bytes"} <= set(entry)
        assert entry["bytes"] > 0
    assert [e["reason"] for e in refusals] == [
        "bad_signature",
        "invalid",
        "invalid",
        "invalid",
        "unsupported_media_type",
        "too_large",
        "invalid",
    ]
    assert refusals[1]["field"] == "channel"
    assert refusals[2]["field"] == "events[0].<unknown>"
    rendered = json.dumps(logs, default=str) + caplog.text
    for secret in (CANARY, SECRET, signature, "f" * 64):
        assert secret not in rendered
    assert await http.stored() == []


async def test_a_failing_metrics_hook_never_changes_the_answer() -> None:
    store = MemoryStore()

    def broken(kind: str, n: int) -> None:
        raise RuntimeError("metrics backend down")

    app = web.Application()
    app.add_routes(
        IngestHandler(
            lambda events: store.ingest(events, NOW_MS), SECRET, on_result=broken
        ).routes()
    )
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        body = as_json(event(1))
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, SECRET)}
        response = await client.post("/v1/events", data=body, headers=headers)
        assert response.status == 202
    assert [e.event.id for e in await store.read_log("test", 10, 0)] == ["ev-1"]
