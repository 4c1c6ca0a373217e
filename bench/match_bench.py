"""Routing micro-benchmark: one routing decision on the Redis engine vs a no-op script call.

    python3 -m bench.match_bench [--redis URL] [--waiting 1000,100000] [--seconds S]
                                 [--concurrency N] [--json FILE]

What it measures, all in one run against one Redis (numbers drift between runs on a shared
2-core box, so compare only within a run):

* **Ceiling** — the raw round trip of `EVALSHA` of `return 0` with one key and the same four
  arguments the engine sends (prefix, now, packed policy, packed args): sequential latency and
  throughput with N calls in flight, from this one process.
* **Routing decisions** — for each W in `--waiting`: fill the queue to W waiting chat tasks
  (concurrent enqueues, no agent logged in), log in N agents (tier SAM, one chat each), then
  loop: `complete` (wrap-up 0 s) → the engine offers the agent the best of the W waiting tasks
  in that same call → `accept` → one `enqueue` keeps W constant. The deciding call is
  `complete`; its latency is what the p50/p99 columns show. Sequential and N agents in flight.
* **Enqueue with immediate match** — a free sms agent exists; `enqueue` itself offers.
* **Round trips per decision** — from `INFO commandstats`/`INFO stats` deltas around single
  calls (one request per read event when one call is in flight), plus the Redis commands the
  script ran inside and the server time it took (`cmdstat_evalsha` usec).
* The same loops on the memory engine (in-process) for comparison.

Every loop is bounded in count and time. A redis-server is started on a free 127.0.0.1 port
(no persistence) unless `--redis` is given, and is always stopped again.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped,unused-ignore]
import redis.asyncio as aioredis

import queues
from bench.harness import machine_facts, sigterm_as_interrupt
from bench.redis_local import owned_redis
from bench.redis_probe import CallCount, Delta, bracketed, calibrate, diff, snapshot
from bench.report import fmt
from bench.stats import summarize
from queues.base import Effect, Offer, RoutingEngine
from queues.policy import CHANNELS, Policy

ONE_CHAT = {"chat": 1, "sms": 0, "email": 0, "voice": 0}
ONE_SMS = {"chat": 0, "sms": 1, "email": 0, "voice": 0}
CALLS_PER_CYCLE = 3  # complete (decides) + accept + enqueue (keeps W constant)
SAMPLED = 40  # single calls bracketed by INFO to count round trips and inner commands
ACCEPTANCE = 1.5  # the issue: latency at 100k waiting within 1.5x of that at 1k
IMMEDIATE_AGENTS = 4


class BenchError(RuntimeError):
    """The engine did not do what the workload relies on (e.g. no offer after complete)."""


# -- small helpers -----------------------------------------------------------------------------


def bench_policy() -> Policy:
    """The default policy with wrap-up 0 s (complete frees at once) and long timeouts."""
    return Policy(
        wrapup_s=dict.fromkeys(CHANNELS, 0.0),
        presence_ttl_s=3600.0,
        reservation_timeout_s=600.0,
        last_agent_s=0.0,
    )


def parse_waiting(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        part = part.strip().lower()
        if not part:
            continue
        scale = 1000 if part.endswith("k") else 1
        out.append(int(float(part.rstrip("k")) * scale))
    if not out or any(w < 1 for w in out):
        raise argparse.ArgumentTypeError("--waiting needs positive integers, e.g. 1000,100000")
    return out


async def timed_loop(
    workers: int, seconds: float, max_ops: int, step: Callable[[int], Awaitable[None]]
) -> tuple[int, float]:
    """Run `step(worker)` from `workers` coroutines until `max_ops` steps or `seconds` pass."""
    started = 0
    deadline = time.perf_counter() + seconds

    async def worker(index: int) -> None:
        nonlocal started
        while started < max_ops and time.perf_counter() < deadline:
            started += 1
            await step(index)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(workers)))
    return started, time.perf_counter() - t0


# -- the redis-server this run owns -------------------------------------------------------------


# -- counting round trips on the server --------------------------------------------------------


# -- the workload ------------------------------------------------------------------------------


def offer_for(effects: Sequence[Effect], agent: str | None = None) -> Offer | None:
    for effect in effects:
        if isinstance(effect, Offer) and (agent is None or effect.agent == agent):
            return effect
    return None


class Workload:
    """W waiting chat tasks, a pool of one-chat agents, and a pool of one-sms agents."""

    GROUPS = (("normal", 80), ("SIC", 15), ("CSC", 5))
    ATTRS: tuple[tuple[dict[str, Any], int], ...] = (
        ({}, 70),
        ({"hot": True}, 20),
        ({"top_up": True}, 10),
    )

    def __init__(
        self, engine: RoutingEngine, label: str, mixed_priorities: bool = False, seed: int = 7
    ) -> None:
        self.engine = engine
        self.label = label
        self.attrs = self.ATTRS if mixed_priorities else (({}, 1),)
        self.rng = random.Random(seed)
        self.seq = 0
        self.agents: list[str] = []
        self.holding: dict[str, str] = {}
        self.immediate: list[str] = []
        self.lat: dict[str, list[int]] = {}
        self.counts: dict[str, CallCount] = {}
        self.probe: aioredis.Redis[str] | None = None
        self.base: Delta | None = None
        self.sampling = False

    def _pick(self, table: Sequence[tuple[Any, int]]) -> Any:
        return self.rng.choices([v for v, _ in table], [w for _, w in table])[0]

    def _new_task(self) -> tuple[str, str]:
        self.seq += 1
        return f"{self.label}-t{self.seq:07d}", f"c{self.seq % 20011}"

    async def _timed(self, name: str, call: Awaitable[list[Effect]]) -> list[Effect]:
        if self.sampling:
            return await bracketed(  # type: ignore[no-any-return]
                self.probe, self.base, self.counts.setdefault(name, CallCount()), call
            )
        t0 = time.perf_counter_ns()
        effects = await call
        self.lat.setdefault(name, []).append(time.perf_counter_ns() - t0)
        return effects

    def reset_latencies(self) -> None:
        self.lat = {}

    async def enqueue_waiting(self, timed: bool = True) -> None:
        task, customer = self._new_task()
        call = self.engine.enqueue(
            task, customer, "chat", self._pick(self.GROUPS), self._pick(self.attrs)
        )
        effects = await (self._timed("enqueue_wait", call) if timed else call)
        if offer_for(effects) is not None:
            raise BenchError(f"enqueue of {task} was offered although no chat agent is free")

    async def fill(self, waiting: int, workers: int, seconds: float) -> tuple[int, float]:
        return await timed_loop(
            workers, seconds, waiting, lambda _i: self.enqueue_waiting(timed=False)
        )

    async def login_pool(self, size: int) -> None:
        """Log in `size` chat agents; each takes (and accepts) one task; W is topped up."""
        for i in range(size):
            agent = f"{self.label}-a{i:04d}"
            await self.engine.login(agent, "SAM", ONE_CHAT)
            offer = offer_for(await self.engine.set_presence(agent, "available"), agent)
            if offer is None:
                raise BenchError(f"{agent} became available but was offered nothing")
            await self.engine.accept(offer.reservation, agent)
            self.holding[agent] = offer.task
            self.agents.append(agent)
            await self.enqueue_waiting(timed=False)
        for j in range(IMMEDIATE_AGENTS):
            agent = f"{self.label}-i{j}"
            await self.engine.login(agent, "SAM", ONE_SMS)
            if offer_for(await self.engine.set_presence(agent, "available")) is not None:
                raise BenchError("an sms agent was offered work before any sms task existed")
            self.immediate.append(agent)

    async def decide(self, agent: str) -> None:
        """One cycle: complete (the decision: offers the next task) → accept → enqueue."""
        effects = await self._timed("decide", self.engine.complete(self.holding[agent], agent))
        offer = offer_for(effects, agent)
        if offer is None:
            raise BenchError(f"complete by {agent} offered nothing: {effects}")
        await self._timed("accept", self.engine.accept(offer.reservation, agent))
        self.holding[agent] = offer.task
        await self.enqueue_waiting()

    def decide_step(self, workers: int) -> Callable[[int], Awaitable[None]]:
        """Worker i rotates over agents i, i+workers, …; no two workers share an agent."""
        turns = [0] * workers
        mine = [self.agents[i::workers] for i in range(workers)]

        def step(i: int) -> Awaitable[None]:
            turns[i] += 1
            return self.decide(mine[i][turns[i] % len(mine[i])])

        return step

    def immediate_step(self) -> Callable[[int], Awaitable[None]]:
        def step(_i: int) -> Awaitable[None]:
            return self.enqueue_immediate()

        return step

    async def enqueue_immediate(self) -> None:
        """A free sms agent exists: the enqueue call itself offers; then accept and complete."""
        task, customer = self._new_task()
        effects = await self._timed("enqueue_match", self.engine.enqueue(task, customer, "sms"))
        offer = offer_for(effects)
        if offer is None:
            raise BenchError(f"enqueue of {task} with a free sms agent offered nothing")
        await self.engine.accept(offer.reservation, offer.agent)
        await self.engine.complete(task, offer.agent)


# -- subjects and phases -----------------------------------------------------------------------
#
# Every subject (the no-op ceiling, each engine at each W) is set up first; then each mode runs
# the subjects in turn in 1-second slices, alternating the order, so that drift of the shared
# machine falls on all of them alike and the ratios between them stay meaningful.


@dataclass
class Options:
    redis_url: str
    waiting: list[int]
    seconds: float
    concurrency: int
    max_ops: int
    fill_seconds: float
    mixed_priorities: bool


def _rate(ops: int, elapsed: float) -> float:
    return ops / elapsed if elapsed > 0 else float("nan")


class Noop:
    """The ceiling: EVALSHA of `return 0`, 1 key, the 4 argument shapes of an engine call."""

    kind = "noop"
    name = "no-op"
    waiting = 0

    def __init__(self, url: str, policy: Policy) -> None:
        self.client: aioredis.Redis[bytes] = aioredis.from_url(url, decode_responses=False)
        self.sha = ""
        prefix = f"omniroute:{{bench-noop-{os.getpid()}}}:"
        self.keys = [prefix + "seq"]
        self.policy = msgpack.packb(policy.to_wire())
        self.args = msgpack.packb({"task": "w100000-t0000001", "agent": "w100000-a0001"})
        self.prefix = prefix
        self.lat: dict[str, list[int]] = {}

    async def start(self) -> None:
        self.sha = await self.client.script_load("return 0")  # type: ignore[no-untyped-call]
        for _ in range(200):
            await self.call()

    async def close(self) -> None:
        await self.client.connection_pool.disconnect()

    async def call(self) -> None:
        now = int(time.time() * 1000)
        await self.client.evalsha(  # type: ignore[no-untyped-call]
            self.sha, 1, *self.keys, self.prefix, now, self.policy, self.args
        )

    def argv_bytes(self) -> int:
        return len(self.prefix) + 13 + len(self.policy) + len(self.args)

    def reset_latencies(self) -> None:
        self.lat = {}

    def decide_step(self, _workers: int) -> Callable[[int], Awaitable[None]]:
        lat = self.lat.setdefault("decide", [])

        async def step(_i: int) -> None:
            t0 = time.perf_counter_ns()
            await self.call()
            lat.append(time.perf_counter_ns() - t0)

        return step


@dataclass
class Subject:
    """One engine at one W, set up and ready to decide."""

    kind: str
    waiting: int
    engine: RoutingEngine
    load: Workload
    result: dict[str, Any]

    @property
    def name(self) -> str:
        return f"{self.kind} W={self.waiting:,}"


async def setup_subject(kind: str, waiting: int, opts: Options) -> Subject:
    url = opts.redis_url if kind == "redis" else "memory"
    engine = queues.create_engine(bench_policy(), url, domain=f"bench-{waiting}-{os.getpid()}")
    await engine.start()
    subject = Subject(
        kind, waiting, engine, Workload(engine, f"w{waiting}", opts.mixed_priorities), {}
    )
    subject.result = {"engine": kind, "waiting": waiting}
    purge = getattr(engine, "purge", None)
    if purge is not None:
        await purge()
    load = subject.load
    ops, elapsed = await load.fill(waiting, max(opts.concurrency, 64), opts.fill_seconds)
    subject.result["fill"] = {"tasks": ops, "seconds": elapsed, "tasks_per_s": _rate(ops, elapsed)}
    if ops < waiting:
        print(f"  ! fill reached {ops} of {waiting} in {elapsed:.0f} s", file=sys.stderr)
        subject.result["waiting"] = ops
    pool = opts.concurrency if kind == "redis" else 1
    if ops <= pool:
        raise BenchError(f"W={ops} is not above the agent pool ({pool})")
    await load.login_pool(pool)
    warm = load.decide_step(1)
    for _ in range(min(400, 10 * pool)):  # scripts, connections, caches
        await warm(0)
    await load.enqueue_immediate()
    return subject


async def close_subject(subject: Subject) -> None:
    try:
        purge = getattr(subject.engine, "purge", None)
        if purge is not None:
            await purge()
    finally:
        await subject.engine.close()


async def sample_round_trips(subject: Subject, probe: aioredis.Redis[str], base: Delta) -> None:
    """Single calls, each between two INFO snapshots: round trips and what ran inside."""
    load = subject.load
    load.probe, load.base, load.sampling = probe, base, True
    step = load.decide_step(1)
    try:
        for _ in range(SAMPLED):
            await step(0)
            await load.enqueue_immediate()
    finally:
        load.sampling = False
    subject.result["per_call"] = {k: c.report() for k, c in load.counts.items()}


Steppable = Noop | Subject


async def rotate(
    subjects: Sequence[Steppable],
    workers: int,
    opts: Options,
    probe: aioredis.Redis[str],
    base: Delta,
    immediate: bool = False,
) -> dict[str, dict[str, Any]]:
    """Run each subject's loop for `opts.seconds` in total, in interleaved 1-s slices."""
    slices = max(1, round(opts.seconds))
    per_slice = opts.seconds / slices
    steps: dict[str, Callable[[int], Awaitable[None]]] = {}
    tally: dict[str, dict[str, Any]] = {}
    for subj in subjects:
        target = subj if isinstance(subj, Noop) else subj.load
        target.reset_latencies()
        if immediate and isinstance(subj, Subject):
            steps[subj.name] = subj.load.immediate_step()
        else:
            steps[subj.name] = target.decide_step(workers)
        tally[subj.name] = {
            "ops": 0,
            "seconds": 0.0,
            "reads": 0,
            "scripts": 0,
            "server_us": 0,
            "inner_us": 0,
            "inner": {},
        }
    for index in range(slices):
        order = list(subjects) if index % 2 == 0 else list(reversed(subjects))
        for subj in order:
            t = tally[subj.name]
            remote = subj.kind != "memory"
            before = await snapshot(probe) if remote else None
            ops, elapsed = await timed_loop(
                workers, per_slice, opts.max_ops - t["ops"], steps[subj.name]
            )
            t["ops"] += ops
            t["seconds"] += elapsed
            if before is not None:
                delta = diff(before, await snapshot(probe), base)
                t["reads"] += delta.reads
                t["scripts"] += delta.script_calls
                t["server_us"] += delta.script_usec
                t["inner_us"] += delta.inner_usec
                for k, v in delta.inner.items():
                    t["inner"][k] = t["inner"].get(k, 0) + v
    out: dict[str, dict[str, Any]] = {}
    for subj in subjects:
        t = tally[subj.name]
        lat = (subj if isinstance(subj, Noop) else subj.load).lat
        ops = t["ops"]
        calls = ops if isinstance(subj, Noop) else ops * CALLS_PER_CYCLE
        phase: dict[str, Any] = {
            "ops": ops,
            "seconds": t["seconds"],
            "ops_per_s": _rate(ops, t["seconds"]),
            "calls_per_s": _rate(calls, t["seconds"]),
        }
        if immediate:
            phase["enqueue_match"] = summarize(lat.get("enqueue_match", []))
        else:
            phase["decide"] = summarize(lat.get("decide", []))
            if not isinstance(subj, Noop):
                phase["accept"] = summarize(lat.get("accept", []))
                phase["enqueue_wait"] = summarize(lat.get("enqueue_wait", []))
        if subj.kind != "memory" and calls:
            phase["round_trips_per_call"] = t["reads"] / calls
            phase["script_calls_per_call"] = t["scripts"] / calls
            phase["server_us_per_call"] = t["server_us"] / calls
            phase["server_us_in_commands_per_call"] = t["inner_us"] / calls
            phase["inner_commands_per_op"] = {
                k: round(v / ops, 2) for k, v in sorted(t["inner"].items(), key=lambda kv: -kv[1])
            }
        out[subj.name] = phase
    return out


async def run(opts: Options, uvloop_used: bool, started_redis: bool) -> dict[str, Any]:
    probe: aioredis.Redis[str] = aioredis.from_url(opts.redis_url, decode_responses=True)
    noop = Noop(opts.redis_url, bench_policy())
    subjects: list[Subject] = []
    try:
        facts = machine_facts(await probe.info("server"), uvloop_used)
        facts["redis_started_by_bench"] = started_redis
        say(
            f"# Redis {facts['redis_server']} at {opts.redis_url}, Python {facts['python']}, "
            f"{facts['cpus_usable']} usable cores, uvloop {yes(uvloop_used)}, "
            f"hiredis {yes(facts['hiredis'])}"
        )
        base = await calibrate(probe)
        await noop.start()
        count = CallCount()
        for _ in range(SAMPLED):
            await bracketed(probe, base, count, noop.call())
        for waiting in opts.waiting:
            for kind in ("redis", "memory"):
                say(f"- set up {kind} engine, W={waiting:,} (fill, agents, warm-up) …")
                subjects.append(await setup_subject(kind, waiting, opts))
        for subj in subjects:
            if subj.kind == "redis":
                await sample_round_trips(subj, probe, base)
        redis_subjects = [s for s in subjects if s.kind == "redis"]
        inflight = f"{opts.concurrency} in flight"
        say(f"- sequential decisions ({opts.seconds:g} s each, interleaved) …")
        phases = {"sequential": await rotate([noop, *subjects], 1, opts, probe, base)}
        if opts.concurrency > 1:
            say(f"- {inflight} ({opts.seconds:g} s each, interleaved) …")
            phases[inflight] = await rotate(
                [noop, *redis_subjects], opts.concurrency, opts, probe, base
            )
        say(f"- enqueue with immediate match ({opts.seconds:g} s each, interleaved) …")
        phases["enqueue_match"] = await rotate(subjects, 1, opts, probe, base, immediate=True)

        ceiling: dict[str, Any] = {"argv_bytes": noop.argv_bytes(), "round_trips": count.report()}
        for mode in ("sequential", inflight):
            if mode in phases:
                ceiling[mode] = phases[mode][noop.name]
        runs = []
        for subj in subjects:
            for mode, by_name in phases.items():
                if subj.name in by_name:
                    subj.result[mode] = by_name[subj.name]
            stats = await subj.engine.queue_stats()
            subj.result["waiting_at_end"] = {s.name: s.waiting for s in stats if s.waiting}
            runs.append(subj.result)
        return {
            "machine": facts,
            "options": {
                "waiting": opts.waiting,
                "seconds": opts.seconds,
                "concurrency": opts.concurrency,
                "max_ops": opts.max_ops,
                "mixed_priorities": opts.mixed_priorities,
            },
            "ceiling": ceiling,
            "runs": runs,
        }
    finally:
        for subj in subjects:
            await close_subject(subj)
        await noop.close()
        await probe.connection_pool.disconnect()


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def yes(flag: Any) -> str:
    return "yes" if flag else "no"


# -- report ------------------------------------------------------------------------------------


_fmt = fmt  # one number format for both benchmarks (bench/report.py)


def render(results: dict[str, Any]) -> str:
    ceiling = results["ceiling"]
    inflight = f"{results['options']['concurrency']} in flight"
    noop_rt = ceiling["round_trips"]
    head = (
        "| engine | W waiting | call timed | mode | decisions/s | engine calls/s | p50 ms | p99 ms"
        " | round trips / decision | Redis µs / cycle | p50 ÷ no-op p50"
        " | calls/s ÷ no-op calls/s |"
    )
    lines = [head, "|" + "---|" * 12]

    def row(
        engine: str,
        w: str,
        what: str,
        mode: str,
        per_s: Any,
        calls: Any,
        lat: dict[str, Any],
        rt: Any,
        us: Any,
        ref: dict[str, Any] | None,
    ) -> None:
        ratio = tput = None
        if ref and engine == "redis":
            ratio = lat["p50_ms"] / ref["decide"]["p50_ms"]
            tput = calls / ref["calls_per_s"]
        lines.append(
            f"| {engine} | {w} | {what} | {mode} | {_fmt(per_s)} | {_fmt(calls)} | "
            f"{_fmt(lat['p50_ms'])} | {_fmt(lat['p99_ms'])} | {_fmt(rt)} | {_fmt(us)} | "
            f"{_fmt(ratio)} | {_fmt(tput)} |"
        )

    for mode in ("sequential", inflight):
        if mode in ceiling:
            data = ceiling[mode]
            row(
                "redis",
                "-",
                "no-op EVALSHA (ceiling)",
                mode,
                None,
                data["calls_per_s"],
                data["decide"],
                noop_rt.get("round_trips_per_call"),
                data.get("server_us_per_call"),
                data,
            )
    for res in results["runs"]:
        w = f"{res['waiting']:,}"
        kind = res["engine"]
        per_call = res.get("per_call", {})
        dec = per_call.get("decide", {})
        for mode in ("sequential", inflight):
            if mode in res:
                ph = res[mode]
                row(
                    kind,
                    w,
                    "complete → offer",
                    mode,
                    ph["ops_per_s"],
                    ph["calls_per_s"],
                    ph["decide"],
                    dec.get("round_trips_per_call"),
                    _cycle_us(ph),
                    ceiling.get(mode),
                )
        if "enqueue_match" in res:
            em = res["enqueue_match"]
            imm = per_call.get("enqueue_match", {})
            row(
                kind,
                w,
                "enqueue → offer",
                "sequential",
                em["ops_per_s"],
                em["calls_per_s"],
                em["enqueue_match"],
                imm.get("round_trips_per_call"),
                _cycle_us(em),
                ceiling.get("sequential"),
            )

    out = ["\n".join(lines), ""]
    fills = [
        f"{r['engine']} W={r['waiting']:,}: {_fmt(r['fill']['tasks_per_s'])} tasks/s "
        f"({r['fill']['seconds']:.1f} s)"
        for r in results["runs"]
    ]
    out.append("Fill (concurrent enqueues, no routable agent): " + "; ".join(fills) + ".")
    out.append("")
    out.extend(ratio_lines(results))
    inner = []
    for res in results["runs"]:
        dec = res.get("per_call", {}).get("decide")
        seq = res.get("sequential", {})
        if dec and "server_us_per_call" in seq:
            cmds = ", ".join(f"{k} {_fmt(v)}" for k, v in dec["inner_commands"].items())
            total, in_cmds = seq["server_us_per_call"], seq["server_us_in_commands_per_call"]
            walks = seq["inner_commands_per_op"].get("zrangebyscore")
            inner.append(
                f"* W={res['waiting']:,}: {_fmt(total)} µs per engine call, of which "
                f"{_fmt(in_cmds)} µs inside Redis commands and {_fmt(total - in_cmds)} µs Lua "
                f"and call overhead; {_fmt(walks)} ZRANGEBYSCORE per cycle. The deciding "
                f"`complete` alone runs {_fmt(dec['redis_commands_inside_per_call'])} "
                f"commands: {cmds}"
            )
    if inner:
        out.append("")
        out.append(
            "Redis server time in the sequential loop (commandstats), and the commands one "
            f"deciding script runs ({SAMPLED} single calls sampled):"
        )
        out.extend(inner)
    return "\n".join(out)


def _cycle_us(phase: dict[str, Any]) -> float | None:
    """Redis server time of one decision cycle (3 engine calls), from the phase's deltas."""
    per_call = phase.get("server_us_per_call")
    return per_call * CALLS_PER_CYCLE if per_call is not None else None


def ratio_lines(results: dict[str, Any]) -> list[str]:
    out = []
    for engine in ("redis", "memory"):
        runs = [r for r in results["runs"] if r["engine"] == engine]
        if len(runs) < 2:
            continue
        low = min(runs, key=lambda r: r["waiting"])
        high = max(runs, key=lambda r: r["waiting"])
        wl, wh = _short(low["waiting"]), _short(high["waiting"])
        modes = ("sequential", f"{results['options']['concurrency']} in flight")
        for mode in [m for m in modes if m in low and m in high]:
            a, b = low[mode]["decide"], high[mode]["decide"]
            r50, r99 = b["p50_ms"] / a["p50_ms"], b["p99_ms"] / a["p99_ms"]
            verdict = "within" if max(r50, r99) <= ACCEPTANCE else "NOT within"
            out.append(
                f"{engine.capitalize()} decision latency, {mode}: p50({wh})/p50({wl}) = "
                f"{r50:.2f}, p99({wh})/p99({wl}) = {r99:.2f} ({verdict} {ACCEPTANCE}x)."
            )
        sa = low.get("sequential", {}).get("server_us_per_call")
        sb = high.get("sequential", {}).get("server_us_per_call")
        if sa and sb:
            out.append(
                f"Redis server time per engine call in the sequential loop: {sa:.0f} µs at {wl}, "
                f"{sb:.0f} µs at {wh} ({sb / sa:.2f}x)."
            )
    return out


def _short(w: int) -> str:
    return f"{w // 1000}k" if w >= 1000 and w % 1000 == 0 else str(w)


# -- main --------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m bench.match_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--redis", metavar="URL", help="use this Redis instead of starting one")
    parser.add_argument(
        "--waiting",
        type=parse_waiting,
        default=[1000, 100000],
        help="waiting-task counts W, comma-separated (default 1000,100000)",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=5.0,
        help="time of each measured phase per subject (default 5)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=32, help="calls / agents in flight (default 32)"
    )
    parser.add_argument(
        "--max-ops",
        type=int,
        default=200_000,
        help="count bound of each measured phase (default 200000)",
    )
    parser.add_argument(
        "--fill-seconds", type=float, default=120.0, help="time bound of one fill (default 120)"
    )
    parser.add_argument(
        "--mixed-priorities",
        action="store_true",
        help="tasks get priority 0/1/2 (70/20/10 %%): more partitions",
    )
    parser.add_argument("--json", metavar="FILE", help="write every figure here")
    parser.add_argument("--no-uvloop", action="store_true", help="use the default event loop")
    args = parser.parse_args(argv)
    if args.concurrency < 1 or args.seconds <= 0:
        parser.error("--concurrency must be >= 1 and --seconds > 0")

    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if not args.no_uvloop:
        try:
            import uvloop

            loop_factory = uvloop.new_event_loop
        except ImportError:
            loop_factory = None
    say(f"# event loop: {'uvloop' if loop_factory else 'asyncio default (uvloop not used)'}")

    previous = signal.signal(signal.SIGTERM, sigterm_as_interrupt)
    try:
        with owned_redis(args.redis) as (url, started):
            opts = Options(
                url,
                args.waiting,
                args.seconds,
                args.concurrency,
                args.max_ops,
                args.fill_seconds,
                args.mixed_priorities,
            )
            with asyncio.Runner(loop_factory=loop_factory) as runner:
                results = runner.run(run(opts, loop_factory is not None, started))
    except KeyboardInterrupt:
        say("interrupted; the redis-server this run started (if any) was stopped")
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    facts = results["machine"]
    mix = "priorities 0/1/2" if args.mixed_priorities else "priority 0"
    print(
        f"\n{facts['date']} · {facts['cpus_usable']} usable cores of {facts['cpu_count']} · "
        f"Python {facts['python']} · Redis {facts['redis_server']} · uvloop "
        f"{yes(facts['uvloop'])} · hiredis {yes(facts['hiredis'])} · "
        f"{args.seconds:g} s per subject and phase, interleaved in 1-s slices · {mix}\n"
    )
    print(render(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str) + "\n", "utf-8")
        print(f"\n(all figures in {args.json})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
