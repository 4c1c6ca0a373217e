"""A bounded backlog: past `[events] max_backlog` ingest answers 503 `overloaded` and stores
nothing; once routing has caught up it accepts again. On both stores, over real HTTP."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

import queues
from queues.policy import Policy
from router.auth import SIGNATURE_HEADER, sign
from router.ingest import ingest_routes
from router.service import Service
from router.store import Store
from router.store_memory import MemoryStore

SECRET = "whsec-test-0123456789"
BOUND = 3
KINDS = ["memory", "redis"]


@pytest.fixture(params=KINDS, ids=KINDS)
async def node(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Service, TestClient]]:  # type: ignore[type-arg]
    domain = f"t-{uuid.uuid4().hex}"
    store: Store
    if request.param == "memory":
        store = MemoryStore(domain)
    else:
        from router.store_redis import RedisStore

        store = RedisStore(request.getfixturevalue("redis_url"), domain=domain)
    engine = queues.create_engine(Policy(), "memory", domain=domain)
    service = Service(engine, store, max_backlog=BOUND)  # its loops are not running: no routing
    await service.start()
    app = web.Application()
    app.add_routes(ingest_routes(service.ingest, SECRET))
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


async def test_past_the_bound_ingest_refuses_and_stores_nothing_until_routing_catches_up(
    node: tuple[Service, TestClient],  # type: ignore[type-arg]
) -> None:
    service, client = node
    for n in range(BOUND):
        assert (await post(client, f"e{n}"))[0] == 202
    status, body, retry_after = await post(client, "late")
    assert status == 503
    assert body["error"]["code"] == "overloaded"  # type: ignore[index]
    assert retry_after == "1"
    assert await service.store.backlog() == BOUND  # the refused event was not stored
    # routing catches up (one batch), the sampler sees it, and ingest accepts again
    entries = await service.store.read_log(service.node, 100, 0)
    await service.process_batch(entries)
    assert await service.store.backlog() == 0
    service.backlog = await service.store.backlog()
    status, body, _ = await post(client, "late")
    assert status == 202 and body["accepted"] == 1
