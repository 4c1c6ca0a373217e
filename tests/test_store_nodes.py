"""Node leases, takeover, fencing and desktops across nodes (`store.base`), both backends.

Two nodes are two stores on one domain for Redis, and one shared memory store (a memory store
is one process's memory). A lease lapses when the test says so: the memory
store's clock is the test's (`FakeClock`); Redis expires keys by its own clock, so there the
test waits out a short lease (Redis reports a key past its PX as gone, never "maybe").
"""

from __future__ import annotations

import asyncio

import pytest

from store.base import Store
from store.errors import Fenced
from store.memory import MemoryStore
from tests.conftest import StoreFactory
from tests.support import FakeClock
from tests.test_store import ev

LEASE_MS = 300


async def lapse(node: Store, clock: FakeClock) -> None:
    """Let every lease of LEASE_MS taken before now lapse."""
    if isinstance(node, MemoryStore):
        clock.advance(LEASE_MS / 1000 + 0.1)
    else:
        await asyncio.sleep(LEASE_MS / 1000 + 0.1)


async def two(make_store: StoreFactory, domain: str) -> tuple[Store, Store]:
    a = await make_store(domain=domain)
    return (a, a) if isinstance(a, MemoryStore) else (a, await make_store(domain=domain))


async def _read_all(node: Store, consumer: str) -> list[str]:
    return [e.entry_id for e in await node.read_log(consumer, 100, 0)]


async def test_a_node_whose_lease_lapsed_is_taken_over(
    make_store: StoreFactory, clock: FakeClock
) -> None:
    a, b = await two(make_store, "nodes-1")
    assert (await a.beat("a", "tok-a", LEASE_MS, first=True)).dead == ()
    assert (await b.beat("b", "tok-b", LEASE_MS, first=True)).dead == ()
    await a.ingest([ev("e1"), ev("e2", sender="bob@example.org")], 1)
    held = await _read_all(a, "a")
    assert len(held) == 2
    await a.desktop("agent-a", "a", 1)  # connected to a only
    await a.desktop("agent-ab", "a", 1)
    assert await b.desktop("agent-ab", "b", 1) == 1  # also on b: one other live node (a)

    found = await b.beat("b", "tok-b", LEASE_MS)
    assert found.dead == () and found.claimed == 0, "a live lease is never taken over"
    assert await _read_all(b, "b") == []

    await lapse(a, clock)  # a stops beating; b's lease lapses too ...
    found = await b.beat("b", "tok-b", LEASE_MS)  # ... but b beats now: it is the taker
    assert found.dead == ("a",) and found.claimed == 2
    assert found.orphans == ("agent-a",), "agent-ab still has a desktop on b"
    again = await b.read_log("b", 100, 0)
    assert [e.entry_id for e in again] == held and all(e.reclaimed for e in again)
    assert await b.desktop("agent-ab", "b", 0) == 0  # a's desktops are forgotten
    assert (await b.beat("b", "tok-b", LEASE_MS)).dead == (), "taken over once"


async def test_a_fenced_push_changes_nothing(make_store: StoreFactory, clock: FakeClock) -> None:
    """A node paused past its lease comes back with a batch in hand: its push that finishes
    those entries is refused, no frame is delivered, no state changed; the taker's goes."""
    a, b = await two(make_store, "nodes-2")
    await a.beat("a", "tok-a", LEASE_MS, first=True)
    [row] = await a.ingest([ev("e1")], 1)
    [entry] = await a.read_log("a", 10, 0)
    await lapse(a, clock)
    assert (await b.beat("b", "tok-b", LEASE_MS, first=True)).claimed == 1
    [taken] = await b.read_log("b", 10, 0)
    assert taken.entry_id == entry.entry_id

    frame = {"type": "message", "conversation": row.conversation}
    with pytest.raises(Fenced):
        await a.push(
            [("agent-1", frame)],
            [(row.conversation, "assigned", "agent-1")],
            ack=[entry.entry_id],
            consumer="a",
        )
    assert await a.head("agent-1") == 0
    conv = await a.conversation(row.conversation)
    assert conv is not None and conv.state == "queued"
    assert (await a.beat("a", "tok-a", LEASE_MS)).fenced, "a learns it was presumed dead"

    assert await b.push([("agent-1", frame)], ack=[taken.entry_id], consumer="b") == [1]
    assert await b.read_log("b", 10, 0) == []  # acknowledged: never handed out again


async def test_a_push_of_entries_still_held_goes_through(store: Store) -> None:
    await store.beat("n", "tok", LEASE_MS, first=True)
    await store.ingest([ev("e1")], 1)
    [entry] = await store.read_log("n", 10, 0)
    assert await store.push([("x", {"type": "t"})], ack=[entry.entry_id], consumer="n") == [1]
    with pytest.raises(Fenced):  # finished already: a second push of it is refused
        await store.push([("x", {"type": "t"})], ack=[entry.entry_id], consumer="n")
    assert await store.head("x") == 1


async def test_a_restart_under_the_same_name_is_not_fenced_and_rereads_its_entries(
    make_store: StoreFactory,
) -> None:
    a, restarted = await two(make_store, "nodes-3")
    await a.beat("a", "tok-1", LEASE_MS, first=True)
    await a.ingest([ev("e1")], 1)
    [entry] = await a.read_log("a", 10, 0)
    found = await restarted.beat("a", "tok-2", LEASE_MS, first=True)
    assert not found.fenced and found.clash  # the old process's lease was still alive
    again = await restarted.read_log("a", 10, 0)
    assert [e.entry_id for e in again] == [entry.entry_id]
    assert (await a.beat("a", "tok-1", LEASE_MS)).fenced, "the old process is the stale one"


async def test_desktops_count_per_node_and_only_live_nodes_count(
    make_store: StoreFactory, clock: FakeClock
) -> None:
    a, b = await two(make_store, "nodes-4")
    await a.beat("a", "tok-a", LEASE_MS, first=True)
    await b.beat("b", "tok-b", LEASE_MS, first=True)
    assert await a.desktop("ag", "a", 1) == 0
    assert await a.desktop("ag", "a", 1) == 0
    assert await b.desktop("ag", "b", 1) == 1
    assert await a.desktop("ag", "a", 0, count=0) == 1  # a's last closed; b still has one
    assert await b.desktop("ag", "b", -1) == 0
    await a.desktop("ag", "a", 1)
    await lapse(a, clock)  # a's lease lapses: its desktop no longer counts
    await b.beat("b", "tok-b", LEASE_MS)
    assert await b.desktop("ag", "b", 0) == 0
