"""A bounded backlog: while the oldest event no node has read yet has waited `[events]
max_backlog_s`, ingest answers 503 `overloaded` and stores nothing; once routing has caught up
it accepts again. On both stores, over real HTTP, on `/v1/events` and on the PBX's webhook."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from structlog.testing import capture_logs

import queues
from queues.policy import Policy
from router.admission import HEADROOM
from router.auth import SIGNATURE_HEADER, sign
from router.channel_voice import PATH as VOICE_PATH
from router.channel_voice import VoiceEvents
from router.ingest import IngestHandler
from router.service import Service
from store.base import Store
from store.memory import MemoryStore

SECRET = "whsec-test-0123456789"
BOUND_S = 0.3
KINDS = ["memory", "redis"]


@pytest.fixture(params=KINDS, ids=KINDS)
async def node(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Service, TestClient]]:  # type: ignore[type-arg]
    domain = f"t-{uuid.uuid4().hex}"
    store: Store
    if request.param == "memory":
        store = MemoryStore(domain)
    else:
        from store.redis import RedisStore

        store = RedisStore(request.getfixturevalue("redis_url"), domain=domain)
    engine = queues.create_engine(Policy(), "memory", domain=domain)
    service = Service(engine, store, max_backlog_s=BOUND_S)  # no loops running: no routing
    await service.start()
    app = web.Application()
    app.add_routes(IngestHandler(service.ingest, SECRET, admit=service.admit).routes())
    app.router.add_post(
        VOICE_PATH, VoiceEvents(service.ingest, SECRET, "DE", admit=service.admit).handle
    )
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield service, client
    purge = getattr(store, "purge", None)
    if purge is not None:
        await purge()
    await service.close()


async def post(client: TestClient, event_id: str) -> tuple[int, dict[str, object], str]:  # type: ignore[type-arg]
    body = json.dumps(
        {
            "id": event_id,
            "type": "message",
            "channel": "chat",
            "from": f"visitor:{event_id}",
            "body": "hello",
        }
    ).encode()
    headers = {SIGNATURE_HEADER: sign(body, SECRET), "Content-Type": "application/json"}
    async with client.post("/v1/events", data=body, headers=headers) as response:
        return response.status, await response.json(), response.headers.get("Retry-After", "")


async def sample_until(service: Service, behind: bool) -> None:
    """Sample the backlog as the node's loop does until it is (not) past the bound."""
    deadline = asyncio.get_running_loop().time() + 5.0
    while True:
        service.admission.sample(await service.store.backlog())
        if (service.admission.wait_s >= HEADROOM * BOUND_S) == behind:
            return
        assert asyncio.get_running_loop().time() < deadline, f"wait {service.admission.wait_s} s"
        await asyncio.sleep(0.05)


async def test_past_the_bound_ingest_refuses_and_stores_nothing_until_routing_catches_up(
    node: tuple[Service, TestClient],  # type: ignore[type-arg]
) -> None:
    service, client = node
    for n in range(3):
        assert (await post(client, f"e{n}"))[0] == 202
    await sample_until(service, behind=True)  # nobody routes: the oldest event waits
    assert (await service.store.backlog()).unread == 3
    status, body, retry_after = await post(client, "late")
    assert status == 503
    assert body["error"]["code"] == "overloaded"  # type: ignore[index]
    assert retry_after == "1"
    assert (await service.store.backlog()).unread == 3  # the refused event was not stored
    # routing catches up (one batch), the sampler sees it, and ingest accepts again
    entries = await service.store.read_log(service.node, 100, 0)
    assert len(entries) == 3
    await service.process_batch(entries)
    await sample_until(service, behind=False)
    status, body, _ = await post(client, "late")
    assert status == 202 and body["accepted"] == 1


async def test_entries_a_node_holds_are_not_behind(node: tuple[Service, TestClient]) -> None:  # type: ignore[type-arg]
    """Entries read by a node that then died are reclaimed later; they must not shut ingest."""
    service, client = node
    assert (await post(client, "held"))[0] == 202
    assert len(await service.store.read_log("a-node-that-dies", 100, 0)) == 1
    await asyncio.sleep(BOUND_S)  # older than the bound now, but in hand
    await sample_until(service, behind=False)
    assert (await post(client, "next"))[0] == 202


async def test_past_the_bound_a_post_is_refused_before_its_body_is_read(
    node: tuple[Service, TestClient],  # type: ignore[type-arg]
) -> None:
    """Refusing must cost less than routing: no signature check, no parse, no wait for a body
    that is still arriving — and a flood of refusals is a line per burst, not one per post."""
    service, client = node
    assert (await post(client, "first"))[0] == 202
    await sample_until(service, behind=True)
    headers = {SIGNATURE_HEADER: "sha256=" + "0" * 64, "Content-Type": "application/json"}
    with capture_logs() as logs:
        async with client.post("/v1/events", data=b"{not json", headers=headers) as response:
            assert response.status == 503  # not 401: the signature was never looked at
            assert (await response.json())["error"]["code"] == "overloaded"

        async def trickle() -> AsyncIterator[bytes]:
            yield b'{"id": '
            await asyncio.sleep(30)  # the rest never comes in this test's time
            yield b"}"

        async with asyncio.timeout(5):  # answered now, not after the body deadline
            async with client.post("/v1/events", data=trickle(), headers=headers) as response:
                assert response.status == 503
        for n in range(20):
            assert (await post(client, f"flood{n}"))[0] == 503
    refused = [line for line in logs if line["event"] == "ingest.refused"]
    assert len(refused) == 1 and refused[0]["reason"] == "overloaded" and refused[0]["count"] == 1
    assert (await service.store.backlog()).unread == 1  # none of them was stored


async def test_the_backlog_counts_what_the_consumers_have_read(
    node: tuple[Service, TestClient],  # type: ignore[type-arg]
) -> None:
    """The read counter is what the gate learns routing's speed from, on both stores."""
    service, client = node
    before = (await service.store.backlog()).read or 0
    for n in range(4):
        assert (await post(client, f"r{n}"))[0] == 202
    assert (await service.store.backlog()).unread == 4
    assert len(await service.store.read_log(service.node, 3, 0)) == 3
    after = await service.store.backlog()
    assert after.unread == 1 and after.read == before + 3


async def test_the_pbx_webhook_is_refused_the_same_way(
    node: tuple[Service, TestClient],  # type: ignore[type-arg]
) -> None:
    """A call event past the bound: 503 `overloaded` with `Retry-After`, nothing stored; the
    same event once routing caught up: 202."""
    service, client = node
    assert (await post(client, "first"))[0] == 202
    await sample_until(service, behind=True)
    call = {
        "id": "pbx-1",
        "type": "call.offered",
        "call_id": "call-1",
        "from": "+4915122334455",
        "to": "+4930901820",
    }
    body = json.dumps(call).encode()
    headers = {SIGNATURE_HEADER: sign(body, SECRET), "Content-Type": "application/json"}
    async with client.post(VOICE_PATH, data=body, headers=headers) as response:
        assert response.status == 503
        assert (await response.json())["error"]["code"] == "overloaded"
        assert response.headers.get("Retry-After") == "1"
    assert (await service.store.backlog()).unread == 1
    await service.process_batch(await service.store.read_log(service.node, 100, 0))
    await sample_until(service, behind=False)
    async with client.post(VOICE_PATH, data=body, headers=headers) as response:
        assert response.status == 202 and (await response.json())["accepted"] == 1
