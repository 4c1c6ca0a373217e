"""A bounded backlog: while the oldest event no node has read yet has waited `[events]
max_backlog_s`, ingest answers 503 `overloaded` and stores nothing; once routing has caught up
it accepts again. On both stores, over real HTTP."""

from __future__ import annotations

import asyncio
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
BOUND_S = 0.3
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
    service = Service(engine, store, max_backlog_s=BOUND_S)  # no loops running: no routing
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


async def sample_until(service: Service, behind: bool) -> None:
    """Sample the backlog as the node's loop does until it is (not) past the bound."""
    deadline = asyncio.get_running_loop().time() + 5.0
    while True:
        _, service.behind_s = await service.store.backlog()
        if (service.behind_s >= BOUND_S) == behind:
            return
        assert asyncio.get_running_loop().time() < deadline, f"behind {service.behind_s} s"
        await asyncio.sleep(0.05)


async def test_past_the_bound_ingest_refuses_and_stores_nothing_until_routing_catches_up(
    node: tuple[Service, TestClient],  # type: ignore[type-arg]
) -> None:
    service, client = node
    for n in range(3):
        assert (await post(client, f"e{n}"))[0] == 202
    await sample_until(service, behind=True)  # nobody routes: the oldest event waits
    assert (await service.store.backlog())[0] == 3
    status, body, retry_after = await post(client, "late")
    assert status == 503
    assert body["error"]["code"] == "overloaded"  # type: ignore[index]
    assert retry_after == "1"
    assert (await service.store.backlog())[0] == 3  # the refused event was not stored
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
