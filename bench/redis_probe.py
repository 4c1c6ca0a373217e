"""What Redis did, read from its own counters: `INFO commandstats` and `INFO stats` snapshots,
the delta between two of them, and the two meters built on those deltas.

* `CallCount` with `bracketed`: single calls, each between two snapshots (round trips, script
  calls, the commands a script ran inside, server time), for bench.match_bench.
* `RedisMeter`: one measured window of `python -m bench` (requests, commands and Redis CPU per
  routed event), minus the idle baseline (heartbeats) measured just before it.

A snapshot is itself one request and one INFO call; `calibrate` measures that footprint so that
deltas can subtract it. Imports redis and bench.stats only.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from bench.stats import nearest_rank

SCRIPT_CMDS = frozenset({"evalsha", "eval", "evalsha_ro", "eval_ro", "fcall", "fcall_ro"})
PROBE_CMDS = frozenset({"info"})


@dataclass
class Snapshot:
    calls: dict[str, int]
    usec: dict[str, int]
    reads: int


@dataclass
class Delta:
    """What Redis did between two snapshots, minus the cost of taking a snapshot."""

    reads: int
    calls: dict[str, int]
    usec: dict[str, int]

    @property
    def script_calls(self) -> int:
        return sum(n for name, n in self.calls.items() if name in SCRIPT_CMDS)

    @property
    def script_usec(self) -> int:
        return sum(n for name, n in self.usec.items() if name in SCRIPT_CMDS)

    @property
    def inner(self) -> dict[str, int]:
        """Commands that are neither script calls nor our probes: run by the scripts."""
        skip = SCRIPT_CMDS | PROBE_CMDS
        return {k: n for k, n in self.calls.items() if k not in skip and n}

    @property
    def inner_usec(self) -> int:
        """Time spent in those inner commands; the rest of the script time is Lua itself."""
        skip = SCRIPT_CMDS | PROBE_CMDS
        return sum(n for k, n in self.usec.items() if k not in skip)


async def snapshot(probe: aioredis.Redis[str]) -> Snapshot:
    info: dict[str, Any] = await probe.execute_command(  # type: ignore[no-untyped-call]
        "INFO", "commandstats", "stats"
    )
    calls: dict[str, int] = {}
    usec: dict[str, int] = {}
    for name, value in info.items():
        if name.startswith("cmdstat_") and isinstance(value, dict):
            calls[name[8:]] = int(value["calls"])
            usec[name[8:]] = int(value["usec"])
    return Snapshot(calls, usec, int(info["total_reads_processed"]))


def diff(before: Snapshot, after: Snapshot, base: Delta | None = None) -> Delta:
    names = set(before.calls) | set(after.calls)
    calls = {k: after.calls.get(k, 0) - before.calls.get(k, 0) for k in names}
    usec = {k: after.usec.get(k, 0) - before.usec.get(k, 0) for k in names}
    reads = after.reads - before.reads
    if base is not None:
        reads -= base.reads
        for k, n in base.calls.items():
            calls[k] = calls.get(k, 0) - n
    return Delta(reads, calls, usec)


async def calibrate(probe: aioredis.Redis[str]) -> Delta:
    """The footprint of one snapshot itself (its read event and INFO call)."""
    first = await snapshot(probe)
    second = await snapshot(probe)
    return diff(first, second)


@dataclass
class CallCount:
    """Single calls bracketed by snapshots, averaged."""

    n: int = 0
    reads: int = 0
    scripts: int = 0
    inner: dict[str, int] = field(default_factory=dict)
    server_us: list[int] = field(default_factory=list)
    inner_us: int = 0

    def add(self, delta: Delta) -> None:
        self.n += 1
        self.reads += delta.reads
        self.scripts += delta.script_calls
        for k, v in delta.inner.items():
            self.inner[k] = self.inner.get(k, 0) + v
        self.server_us.append(delta.script_usec)
        self.inner_us += delta.inner_usec

    def report(self) -> dict[str, Any]:
        if not self.n:
            return {}
        us = sorted(self.server_us)
        inner = {
            k: round(v / self.n, 2) for k, v in sorted(self.inner.items(), key=lambda kv: -kv[1])
        }
        return {
            "calls_sampled": self.n,
            "round_trips_per_call": self.reads / self.n,
            "script_calls_per_call": self.scripts / self.n,
            "redis_commands_inside_per_call": round(sum(self.inner.values()) / self.n, 2),
            "inner_commands": inner,
            "server_us_p50": us[nearest_rank(len(us), 50)],
            "server_us_mean": sum(us) / len(us),
            "server_us_in_commands_mean": self.inner_us / self.n,
        }


async def bracketed(
    probe: aioredis.Redis[str] | None,
    base: Delta | None,
    count: CallCount | None,
    call: Awaitable[Any],
) -> Any:
    if probe is None or count is None:
        return await call
    before = await snapshot(probe)
    result = await call
    count.add(diff(before, await snapshot(probe), base))
    return result


class RedisMeter:
    """INFO deltas of one window, minus the idle baseline measured just before it."""

    def __init__(self, url: str) -> None:
        self.client: aioredis.Redis[str] = aioredis.from_url(url, decode_responses=True)
        self.base: Delta | None = None
        self.idle_per_s: Delta | None = None
        self.before: Snapshot | None = None
        self.cpu0 = 0.0
        self.t0 = 0.0

    async def cpu(self) -> float:
        info = await self.client.info("cpu")
        return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])

    async def baseline(self, seconds: float = 1.0) -> None:
        self.base = await calibrate(self.client)
        first = await snapshot(self.client)
        await asyncio.sleep(seconds)
        self.idle_per_s = diff(first, await snapshot(self.client), self.base)
        self.idle_per_s = Delta(
            round(self.idle_per_s.reads / seconds),
            {k: round(v / seconds) for k, v in self.idle_per_s.calls.items()},
            self.idle_per_s.usec,
        )

    async def start(self) -> None:
        self.before = await snapshot(self.client)
        self.cpu0 = await self.cpu()
        self.t0 = time.monotonic()

    async def stop(self, events: int) -> dict[str, Any]:
        assert self.before is not None
        delta = diff(self.before, await snapshot(self.client), self.base)
        cpu = await self.cpu() - self.cpu0
        took = time.monotonic() - self.t0
        idle = self.idle_per_s
        reads = delta.reads - (idle.reads * took if idle else 0)
        calls = Counter(delta.calls)
        if idle:
            for k, v in idle.calls.items():
                calls[k] -= v * took
        total = sum(v for k, v in calls.items() if k != "info")
        n = max(events, 1)
        top = sorted(
            ((k, v / n) for k, v in calls.items() if v > 0 and k != "info"), key=lambda x: -x[1]
        )
        return {
            "requests_per_event": reads / n,
            "commands_per_event": total / n,
            "script_calls_per_event": sum(calls[k] for k in ("evalsha", "eval")) / n,
            "commands": {k: round(v, 2) for k, v in top[:14]},
            "idle_requests_per_s": idle.reads if idle else None,
            "cpu_s": cpu,
            "cpu_ms_per_event": cpu * 1000 / n,
        }

    async def close(self) -> None:
        await self.client.aclose()
