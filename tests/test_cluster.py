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
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from chaos.harness import (
    GROUP_CYCLE,
    LOG_STREAM,
    PRESENCE_TTL_S,
    STOP_DEADLINE_S,
    Node,
    agent_rows,
    all_assigned,
    chat_event,
    check_exactly_once,
    check_routing,
    desktops,
    log_backlog,
    post_events,
    timers,
    wait_until,
)
from queues.policy import TIERS
from router.protocol import validate_events
from store.redis import RedisStore
from store.redis_base import GROUP


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


# -- 1. two nodes, one domain ------------------------------------------------------------------


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
        took = await all_assigned(expected, desks, 60.0)
        # every client frame is answered (`ack`, `assigned`, `presence` or `error` with its
        # ref): wait for all the answers, so the checks below see the whole conversation
        await wait_until(
            lambda: all(d.answered() for d in desks), 10.0, lambda: "unanswered client frames"
        )
        closed = [d.agent for d in desks if d.closed]
        assert not closed, f"sockets closed by the server: {closed}"

    check_routing(expected, groups, desks)
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
            took = await all_assigned(expected, survivors, 30.0)
            # all of it comes at most one reservation time-out (2 s) plus the log's claim
            # idle time (1 s) late, with room for a slow shared machine
            assert took < 2.0 + 1.0 + 6.0, took
    everyone = [*stranded, *survivors]
    check_routing(expected, groups, everyone)
    assert not any(d.assigned for d in stranded)
    for desktop in survivors:
        desktop.check_seq()
    assert await log_backlog(redis_server) == (0, 0)
    print(f"every event routed by node-b {took:.1f} s after its desktops were available")


# -- 3. the takeover and the reclaim path, deterministically ------------------------------------


async def _entries_taken_by(redis_url: str, consumer: str, n: int) -> set[str]:
    """Ingest `n` events as a node would, then let `consumer` read them all and never ack."""
    store = RedisStore(redis_url)
    await store.start()
    try:
        events = validate_events(
            {"events": [chat_event(f"d-{i}", f"dcust-{i}", "normal") for i in range(n)]}
        )
        ingested = await store.ingest(events, int(time.time() * 1000))
    finally:
        await store.close()
    client = aioredis.from_url(redis_url)
    try:
        taken = await client.xreadgroup(GROUP, consumer, {LOG_STREAM: ">"}, count=100)
        assert len(taken[0][1]) == n
        summary = await client.xpending(LOG_STREAM, GROUP)
        assert summary["consumers"] == [{"name": consumer.encode(), "pending": n}]
    finally:
        await client.aclose()
    return {row.conversation for row in ingested}


@pytest.mark.parametrize("leased", [False, True], ids=["no-lease", "live-lease"])
async def test_entries_of_a_consumer_without_a_lease_are_taken_over_at_once(
    cluster: Callable[..., Any], redis_server: str, leased: bool
) -> None:
    """A consumer without a lease (`[events] lease_s`) is dead: a running node takes its
    entries over on its next beat. One whose lease is alive keeps them until they were idle
    for `claim_idle_s` (the backstop for a node alive but stuck)."""
    claim_idle_s = 4.0
    consumer = "other-node"
    expected = await _entries_taken_by(redis_server, consumer, 10)
    client = aioredis.from_url(redis_server)
    try:
        if leased:  # as a live node's beat would leave it, renewed below while the test runs
            await client.set(f"omniroute:{{default}}:node:{consumer}", "token", px=60_000)
        taken_at = time.monotonic()
        node = await cluster("node-b", **timers(events_claim_idle_s=claim_idle_s))
        async with aiohttp.ClientSession() as http:
            specs = [("r-trn", "TRN", node, True), ("r-ccs", "CCS", node, True)]
            async with desktops(http, specs) as desks:
                await all_assigned(expected, desks, 20.0)
        check_exactly_once(expected, desks)
        first_offer = min(o["at"] for d in desks for o in d.offers) - taken_at
        if leased:  # not before the entries were idle for claim_idle_s
            assert first_offer >= claim_idle_s - 0.2, first_offer
        else:  # the node's first beat (at its start) took them: well before claim_idle_s
            assert first_offer < claim_idle_s - 0.5, first_offer
        summary = await client.xpending(LOG_STREAM, GROUP)
        assert summary["pending"] == 0
        assert await client.xlen(LOG_STREAM) == 0
        print(f"\n{'leased' if leased else 'unleased'}: first offer after {first_offer:.2f} s")
    finally:
        await client.aclose()


# -- 4. assigned work of an agent whose node died ------------------------------------------------


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
