"""The fault scenarios: each starts its own Redis and nodes, does one bad thing to them, and
returns its figures. A figure that breaks a promise raises `AssertionError` naming it; the
tests run the same scenarios small (`tests/test_failover.py`), `python -m chaos` runs them
full size and prints the table of `docs/reliability.md`.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from chaos.cluster import LEASE_S, cluster
from chaos.harness import (
    GROUP_CYCLE,
    STOP_DEADLINE_S,
    Desktop,
    Node,
    agent_rows,
    all_assigned,
    assignments,
    chat_event,
    check_routing,
    desktops,
    log_backlog,
    post_events,
    post_raw,
    sign,
    wait_until,
)
from queues.policy import TIERS
from store.redis import RedisStore

Figures = dict[str, float | int | str]


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
            await all_assigned(expected, living, 60.0)
            await wait_until(lambda: all(d.answered() for d in living), 10.0, lambda: "unanswered")
        first = _first_offers(living)
        late = {conv: first[conv] - killed_at for conv in before if conv in first}
        reoffer_s = max(late.values(), default=0.0)
        check_routing(expected, groups, [*dying, *living])
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
            await all_assigned(expected, living, 60.0)
            messages = 2 * events  # every customer's first and second message reach its agent
            await wait_until(
                lambda: sum(_delivered(d) for d in living) >= messages,
                30.0,
                lambda: f"{sum(_delivered(d) for d in living)} of {messages} messages delivered",
            )
            await asyncio.sleep(2 * LEASE_S)  # what the resumed node still had in hand lands now
        check_routing(expected, groups, living)
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


# -- Redis kill -9 with AOF ---------------------------------------------------------------------


RECOVER_S = 10.0  # the node accepts again within this long after the load loop


async def redis_kill(workdir: Path, seconds: float = 6.0, rate: float = 100.0) -> Figures:
    """Steady ingest while Redis is killed with SIGKILL and restarted on its append-only file
    (fsync every second) a second later. Every event answered 202 must be in Redis after the
    restart; ingest answers 503 meanwhile, and the node recovers by itself."""
    async with cluster(workdir, aof=True) as c:
        node = await c.node("node-a")
        assert c.http is not None
        accepted: dict[str, str] = {}
        statuses: Counter[int] = Counter()
        refused_at: list[float] = []
        port = int(c.redis_url.rsplit(":", 1)[1].split("/")[0])
        started = time.monotonic()
        killed = restarted = False
        n = 0
        while time.monotonic() - started < seconds:
            ev = chat_event(f"r-{n}", f"r-cust-{n}", None)
            n += 1
            try:
                status, answer = await post_raw(c.http, node, sign(ev), timeout_s=3.0)
            except (aiohttp.ClientError, TimeoutError):
                status, answer = 0, None
            statuses[status] += 1
            if status == 202 and answer:
                accepted[ev["id"]] = answer["conversations"][0]
            elif status != 202:
                refused_at.append(time.monotonic())
            elapsed = time.monotonic() - started
            if not killed and elapsed > seconds / 3:
                c.kill_redis()
                killed, killed_at = True, time.monotonic()
            if killed and not restarted and time.monotonic() - killed_at > 1.0:
                await c.start_redis(port)
                restarted = True
            await asyncio.sleep(1 / rate)
        # the node comes back by itself: one more event is accepted (a 503 meanwhile is the
        # gate waiting for the consumer to read again), and the log drains
        last, back_at = sign(chat_event("r-last", "r-last", None)), time.monotonic()
        status, answer = await post_raw(c.http, node, last)
        while status != 202 and time.monotonic() - back_at < RECOVER_S:
            await asyncio.sleep(0.1)
            status, answer = await post_raw(c.http, node, last)
        assert status == 202, f"not accepting {RECOVER_S} s after the loop: {status} {answer}"
        recovered = time.monotonic() - back_at
        drained = await until_drained(c.redis_url, 30.0)
        store = RedisStore(c.redis_url)
        await store.start()
        try:
            present = [await store.conversation(cv) for cv in accepted.values()]
        finally:
            await store.close()
        lost = sum(1 for conv in present if conv is None)
        window = (max(refused_at) - min(refused_at)) if refused_at else 0.0
    figures: Figures = {
        "posted": n,
        "acked": len(accepted),
        "acked_lost": lost,
        "refused": n - len(accepted),
        "refused_window_s": round(window, 2),
        "accepting_again_after_s": round(recovered, 2),
        "drained_after_s": round(drained, 2),
        "statuses": " ".join(f"{k}:{v}" for k, v in sorted(statuses.items())),
    }
    assert lost == 0, f"{lost} events answered 202 were not in Redis after its restart"
    return figures


async def until_drained(redis_url: str, within: float) -> float:
    """Seconds until the log holds nothing unread or unacknowledged."""
    started = time.monotonic()
    while await log_backlog(redis_url) != (0, 0):
        if time.monotonic() - started > within:
            raise AssertionError(f"the log still holds {await log_backlog(redis_url)}")
        await asyncio.sleep(0.1)
    return time.monotonic() - started


# -- overload -------------------------------------------------------------------------------------


async def overload(
    workdir: Path, rate: float = 2000.0, seconds: float = 60.0, agents: int = 300
) -> Figures:
    """An open-loop load above what one node on Redis routes (about 900/s on the benchmark's
    machine, 2026-12-04: the full run offers 2,000/s), through the benchmark's own load
    generator and desktops. With `[events] max_backlog_s` (10 s) ingest refuses what it
    cannot route in time: what was accepted is offered within the bound (post to offer on the
    desktop, p99), and nothing accepted is lost."""
    from bench import runs  # the benchmark's load generator and desktops: one way to measure
    from router.settings import EventSettings

    async with cluster(workdir) as c:
        cfg = runs.Config(
            redis_url=c.redis_url, workdir=workdir, run_id=f"chaos-{int(time.time())}",
            nodes=1, agents=agents, rates=[rate], seconds=seconds, accept_ms=50.0,
            hold_ms=1000.0, capacity=20, followup_every=4, idle_counts=[], profile_rate=0.0,
        )  # fmt: skip
        fig = await runs.routing_run(cfg, "redis", rate)
    p99_s = fig["latency"]["p99_ms"] / 1000 if fig["latency"].get("p99_ms") is not None else 0
    figures: Figures = {
        "offered_per_s": rate,
        "seconds": seconds,
        "accepted": fig["accepted"],
        "refused_503": int(fig["post_failures"].get("503", 0)),
        "other_failures": sum(v for k, v in fig["post_failures"].items() if k != "503"),
        "lost": fig["undelivered"],
        "routed_per_s": round(fig["routed_per_s"]),
        "p50_s": round(fig["latency"].get("p50_ms", 0) / 1000, 2),
        "p99_s": round(p99_s, 2),
    }
    assert figures["lost"] == 0, f"{figures['lost']} accepted events never reached a desktop"
    bound_s = EventSettings().max_backlog_s
    assert p99_s <= bound_s, f"the accepted waited p99 {p99_s:.1f} s, past the {bound_s:g} s bound"
    return figures
