"""The fault scenarios: each starts its own Redis and nodes, does one bad thing to them, and
returns its figures. A figure that breaks a promise raises `AssertionError` naming it; the
tests run the same scenarios small (`tests/test_failover.py`), `python -m chaos` runs them
full size and prints the table of `docs/reliability.md`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from chaos.harness import (
    GROUP_CYCLE,
    STOP_DEADLINE_S,
    TIERS,
    Desktop,
    Node,
    agent_rows,
    assignments,
    chat_event,
    check_exactly_once,
    check_tiers,
    desktops,
    log_backlog,
    missing,
    post_events,
    timers,
    wait_until,
)
from chaos.processes import start_redis, stop_redis

Figures = dict[str, float | int | str]

# A node's lease, short enough to see a takeover in a test, long enough for a shared machine.
LEASE_S = 1.0
# Reservations last long here: a conversation re-offered fast was re-offered by the takeover,
# not by a time-out.
RESERVATION_S = 20.0


@dataclass
class Cluster:
    """One Redis and the nodes started on it; `close` stops them all."""

    workdir: Path
    aof: bool = False
    redis_url: str = ""
    nodes: list[Node] = field(default_factory=list)
    http: aiohttp.ClientSession | None = None
    _redis: Any = None

    async def start_redis(self, port: int | None = None) -> None:
        self._redis, self.redis_url = await asyncio.to_thread(
            start_redis, self.workdir / "redis", 10.0, self.aof, port
        )

    def kill_redis(self) -> None:
        self._redis.kill()
        self._redis.wait(5)

    async def node(self, name: str, **overrides: float) -> Node:
        assert self.http is not None
        env = timers(
            **{
                "events_lease_s": LEASE_S,
                "reservation_timeout_s": RESERVATION_S,
                "agent_offline_grace_s": 1.0,
                "agent_release_after_s": 30.0,
                **overrides,
            }
        )
        node = Node(name, self.redis_url, self.workdir, env)
        self.nodes.append(node)
        await node.start(self.http)
        return node

    async def close(self) -> None:
        await asyncio.gather(*(n.stop() for n in self.nodes), return_exceptions=True)
        if self.http is not None:
            await self.http.close()
        if self._redis is not None:
            await asyncio.to_thread(stop_redis, self._redis)


@contextlib.asynccontextmanager
async def cluster(workdir: Path, aof: bool = False) -> AsyncIterator[Cluster]:
    made = Cluster(workdir, aof)
    try:
        await made.start_redis()
        made.http = aiohttp.ClientSession()
        yield made
    finally:
        await made.close()


def _team(
    node: Node, prefix: str, per_tier: int, accept: bool = True
) -> list[tuple[str, str, Node, bool]]:
    return [
        (f"{prefix}-{tier.lower()}{n}", tier, node, accept)
        for tier in TIERS
        for n in range(per_tier)
    ]


def _events(prefix: str, start: int, count: int) -> list[dict[str, Any]]:
    return [
        chat_event(f"{prefix}-{i}", f"{prefix}-cust-{i}", GROUP_CYCLE[i % len(GROUP_CYCLE)])
        for i in range(start, start + count)
    ]


def _groups(events: Sequence[dict[str, Any]], conversations: Sequence[str]) -> dict[str, str]:
    return {
        conv: ev.get("profile", {}).get("client_group", "normal")
        for ev, conv in zip(events, conversations, strict=True)
    }


def _first_offers(desks: Sequence[Desktop]) -> dict[str, float]:
    first: dict[str, float] = {}
    for desk in desks:
        for offer in desk.offers:
            conv = offer["conversation"]["id"]
            first[conv] = min(first.get(conv, offer["at"]), offer["at"])
    return first


def _message_doubles(desks: Sequence[Desktop]) -> int:
    """Customer messages a desktop was handed twice (one interaction id, two `message` frames)."""
    doubled = 0
    for desk in desks:
        seen = Counter(f["interaction"]["id"] for f in desk.frames if f["type"] == "message")
        doubled += sum(n - 1 for n in seen.values() if n > 1)
    return doubled


# -- node kill -9 under load ---------------------------------------------------------------------


async def node_kill(workdir: Path, events: int = 160, rate: float = 60.0) -> Figures:
    """Two nodes routing a steady load; one is killed with SIGKILL halfway. Its desktops die
    with it (they never accept, so what it offered them is stranded). Every event accepted
    before the kill must be offered to a surviving desktop within 5 s of the kill; nothing is
    lost, nothing assigned twice."""
    async with cluster(workdir) as c:
        a, b = await c.node("node-a"), await c.node("node-b")
        assert c.http is not None
        async with (
            desktops(c.http, _team(a, "a", 1, accept=False)) as dying,
            desktops(c.http, _team(b, "b", 4)) as living,
        ):
            groups: dict[str, str] = {}
            before: set[str] = set()
            killed_at = 0.0
            batch = 10
            for start in range(0, events, batch):
                node = b if killed_at else (a, b)[(start // batch) % 2]
                chunk = _events("k", start, batch)
                convs = await post_events(c.http, node, chunk)
                groups.update(_groups(chunk, convs))
                if not killed_at:
                    before.update(convs)
                if not killed_at and start + batch >= events // 2:
                    a.kill9()
                    killed_at = time.monotonic()
                    assert a.proc is not None
                    await asyncio.wait_for(a.proc.wait(), STOP_DEADLINE_S)
                await asyncio.sleep(batch / rate)
            expected = set(groups)
            await wait_until(
                lambda: set(assignments(living)) >= expected, 60.0, missing(expected, living)
            )
            await wait_until(lambda: all(d.answered() for d in living), 10.0, lambda: "unanswered")
        first = _first_offers(living)
        late = {conv: first[conv] - killed_at for conv in before if conv in first}
        reoffer_s = max(late.values(), default=0.0)
        check_exactly_once(expected, [*dying, *living])
        check_tiers(groups, [*dying, *living])
        length, pending = await log_backlog(c.redis_url)
        figures: Figures = {
            "accepted": len(expected),
            "lost": len(expected - set(assignments(living))),
            "doubled": sum(n - 1 for n in assignments(living).values() if n > 1),
            "reoffer_max_s": round(reoffer_s, 2),
            "log_left": length + pending,
        }
    assert reoffer_s <= 5.0, (
        f"an event accepted before the kill was offered {reoffer_s:.1f} s after it"
    )
    return figures


# -- SIGSTOP / SIGCONT --------------------------------------------------------------------------


async def node_pause(workdir: Path, events: int = 40, pause_s: float = 4 * LEASE_S) -> Figures:
    """A node is paused (SIGSTOP) with work in hand for several leases, the other takes over,
    then it resumes (SIGCONT). Nothing it does on stale state may offer, assign or deliver
    twice; it must learn it was fenced and go on routing."""
    async with cluster(workdir) as c:
        a, b = await c.node("node-a"), await c.node("node-b")
        assert c.http is not None
        async with desktops(c.http, _team(b, "b", 4)) as living:
            for desk in living:
                desk.finish = False  # they hold their conversations: follow-ups are messages
            first = _events("p", 0, events)
            convs = await post_events(c.http, a, first)
            groups = _groups(first, convs)
            assert a.proc is not None
            a.proc.send_signal(signal.SIGSTOP)
            stopped_at = time.monotonic()
            try:
                # follow-up messages from the same customers, through the other node
                follow = [{**ev, "id": f"{ev['id']}-2", "body": "are you there?"} for ev in first]
                await post_events(c.http, b, follow[: events // 2])
                await asyncio.sleep(max(0.0, pause_s - (time.monotonic() - stopped_at)))
            finally:
                a.proc.send_signal(signal.SIGCONT)
            await post_events(c.http, a, follow[events // 2 :])
            expected = set(groups)
            await wait_until(
                lambda: set(assignments(living)) >= expected, 60.0, missing(expected, living)
            )
            messages = 2 * events  # every customer's first and second message reach its agent
            await wait_until(
                lambda: sum(_delivered(d) for d in living) >= messages,
                30.0,
                lambda: f"{sum(_delivered(d) for d in living)} of {messages} messages delivered",
            )
            await asyncio.sleep(2 * LEASE_S)  # what the resumed node still had in hand lands now
        check_exactly_once(expected, living)
        check_tiers(groups, living)
        log_a = a.log()
        figures: Figures = {
            "accepted": len(expected) + len(follow),
            "doubled_assignments": sum(n - 1 for n in assignments(living).values() if n > 1),
            "doubled_messages": _message_doubles(living),
            "fenced": int("node.fenced" in log_a),
        }
    assert figures["doubled_messages"] == 0, (
        f"{figures['doubled_messages']} messages delivered twice"
    )
    assert figures["fenced"] == 1, "the resumed node never learnt it had been fenced"
    return figures


def _delivered(desk: Desktop) -> int:
    """Customer messages a desktop has: those in its `assigned` frames' history (first
    messages) and `message` frames, by interaction id."""
    seen: set[str] = set()
    for frame in desk.frames:
        if frame["type"] == "message":
            seen.add(frame["interaction"]["id"])
        elif frame["type"] in ("assigned", "offer"):
            conv = frame["conversation"]
            for item in conv.get("history", []):
                if item.get("direction") == "in" and item.get("conversation") == conv["id"]:
                    seen.add(item["id"])
    return len(seen)


# -- one agent, two nodes -----------------------------------------------------------------------


async def two_desktops(workdir: Path) -> Figures:
    """An agent with a desktop on each node closes the one on node A: after A's offline
    grace it is still online, and new work still reaches it on node B."""
    async with cluster(workdir) as c:
        a, b = await c.node("node-a"), await c.node("node-b")
        assert c.http is not None
        async with desktops(c.http, [("both", "CCS", b, True)]) as (on_b,):
            async with desktops(c.http, [("both", "CCS", a, True)]):
                pass  # closed again at once
            await asyncio.sleep(1.0 + 2 * LEASE_S)  # past A's grace: A would log it out now
            state = (await agent_rows(c.http, b))["both"]["state"]
            (conv,) = await post_events(c.http, a, [chat_event("t-1", "t-cust-1", None)])
            await wait_until(lambda: conv in on_b.assigned, 10.0, lambda: f"{on_b.frames}")
    assert state != "offline", f"closing one of two desktops took the agent {state}"
    return {"state_after": state, "routed": 1}
