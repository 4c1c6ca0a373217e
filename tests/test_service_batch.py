"""The consumer's batched path (`Service.process_batch`) on both engines and stores.

A batch is applied, enqueued and pushed in three calls; these tests pin what a user sees of
it: events of one conversation in one batch are one offer carrying all of them, a message to
a held conversation is delivered to its holder, call steps keep their place in the batch, and
every entry is acknowledged.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

import queues
from queues.policy import Policy
from router.identity import AgentIdentity
from router.service import Service
from store.base import Store
from store.memory import MemoryStore
from store.model import InboundEvent

KINDS = ["memory", "redis"]


@pytest.fixture(params=KINDS, ids=KINDS)
async def service(request: pytest.FixtureRequest) -> AsyncIterator[Service]:
    domain = f"t-{uuid.uuid4().hex}"
    store: Store
    if request.param == "memory":
        engine = queues.create_engine(Policy(), "memory", domain=domain)
        store = MemoryStore(domain)
    else:
        from store.redis import RedisStore

        url = request.getfixturevalue("redis_url")
        engine = queues.create_engine(Policy(), url, domain=domain)
        store = RedisStore(url, domain=domain)
    svc = Service(engine, store)
    await svc.start()
    yield svc
    for backend in (store, engine):
        purge = getattr(backend, "purge", None)
        if purge is not None:
            await purge()
    await svc.close()


def chat(event_id: str, sender: str, body: str | None = None) -> InboundEvent:
    return InboundEvent(id=event_id, type="message", channel="chat", sender=sender, body=body)


async def frames_of(service: Service, agent: str) -> list[dict[str, Any]]:
    frames, _ = await service.store.since(agent, 0)
    return [frame for _, frame in frames]


async def run_batch(service: Service, events: list[InboundEvent]) -> None:
    await service.ingest(events)
    entries = await service.store.read_log(service.node, 100, 0)
    assert len(entries) == len(events)
    await service.process_batch(entries)


async def available(service: Service, agent: str, tier: str = "CCS") -> None:
    identity = AgentIdentity(agent, tier, agent)
    await service.connect(identity)
    await service.presence(identity, "available")


async def test_one_conversation_in_one_batch_is_one_offer_with_all_its_messages(
    service: Service,
) -> None:
    await available(service, "a1")
    await run_batch(
        service,
        [
            chat("e1", "visitor:1", "hello"),
            chat("e2", "visitor:1", "are you there?"),
            chat("e3", "visitor:2", "hi"),
        ],
    )
    offers = [f for f in await frames_of(service, "a1") if f["type"] == "offer"]
    assert len(offers) == 2
    by_customer = {o["conversation"]["customer"]["id"]: o for o in offers}
    assert len(by_customer) == 2
    bodies = sorted([i["body"] for i in o["conversation"]["history"]] for o in by_customer.values())
    assert bodies == [["hello", "are you there?"], ["hi"]]
    # every entry was acknowledged with the push: nothing is handed out again
    service.store.claim_idle_ms = 0
    assert await service.store.read_log("another-node", 100, 0) == []


async def test_a_message_to_a_held_conversation_goes_to_its_holder(service: Service) -> None:
    await available(service, "a1")
    await run_batch(service, [chat("e1", "visitor:1", "hello")])
    [offer] = [f for f in await frames_of(service, "a1") if f["type"] == "offer"]
    identity = AgentIdentity("a1", "CCS", "a1")
    await service.accept(identity, offer["reservation"])
    await run_batch(
        service, [chat("e2", "visitor:1", "one more thing"), chat("e3", "visitor:9", "new")]
    )
    frames = await frames_of(service, "a1")
    messages = [f for f in frames if f["type"] == "message"]
    assert [m["interaction"]["body"] for m in messages] == ["one more thing"]
    assert messages[0]["conversation"] == offer["conversation"]["id"]
    assert len([f for f in frames if f["type"] == "offer"]) == 2  # visitor:9 was offered too


async def test_call_steps_keep_their_place_in_a_batch(service: Service) -> None:
    await available(service, "a1")
    call = {"call_id": "c-1"}
    events = [
        InboundEvent(id="v1", type="call.offered", channel="voice", sender="+4915112345678",
                     meta=call),
        chat("e1", "visitor:5", "hello"),
        InboundEvent(id="v2", type="call.ended", channel="voice", sender="+4915112345678",
                     meta=call),
    ]  # fmt: skip
    await run_batch(service, events)
    frames = await frames_of(service, "a1")
    kinds = [(f["type"], f.get("channel") or f.get("reason")) for f in frames]
    # the call was offered, then withdrawn when it ended unanswered; the chat was offered
    assert ("offer", "voice") in kinds and ("offer", "chat") in kinds
    assert ("offer.revoked", "withdrawn") in kinds
    service.store.claim_idle_ms = 0
    assert await service.store.read_log("another-node", 100, 0) == []


async def test_a_message_racing_another_nodes_offer_follows_that_offer(service: Service) -> None:
    """Node A has enqueued the conversation (the engine reserved it) but not yet pushed the
    offer when node B routes the customer's next message: B's enqueue is refused (held), and
    the message must reach the agent right after A's offer — not be left in history only."""
    await available(service, "a1")
    [first] = await service.ingest([chat("e1", "visitor:1", "hello")])
    entries = await service.store.read_log(service.node, 100, 0)
    applied = await service.store.apply_many(entries, service.now_ms(), 50)
    conv, customer, _, history = applied[0]  # type: ignore[misc]
    # node A, half-way: the engine decided, the push has not happened yet
    effects = await service.engine.enqueue(conv.id, customer.id, "chat", "normal")
    await service.store.ack_log([e.entry_id for e in entries])
    await run_batch(service, [chat("e2", "visitor:1", "still there?")])  # node B
    assert [f["type"] for f in await frames_of(service, "a1")] == ["presence", "presence"]
    await service.apply_effects(effects, views={conv.id: (conv, customer, history)})  # node A
    frames = [f for f in await frames_of(service, "a1") if f["type"] != "presence"]
    assert [f["type"] for f in frames] == ["offer", "message"]
    assert [i["body"] for i in frames[0]["conversation"]["history"]] == ["hello"]
    assert frames[1]["interaction"]["body"] == "still there?"
    assert first.conversation == conv.id
