"""The routing micro-benchmark's subjects and phases: the no-op ceiling and each engine at
each W, set up, measured in interleaved 1-second slices and torn down (`run`). The command
line, its options and the printed table are `bench.match_bench`'s (see its docstring for what
is measured and why).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

import queues
from bench.harness import machine_facts
from bench.loops import timed_loop
from bench.noop import Noop
from bench.redis_probe import CallCount, Delta, bracketed, calibrate, diff, snapshot
from bench.stats import summarize
from bench.workload import CALLS_PER_CYCLE, SAMPLED, BenchError, Workload, bench_policy
from queues.base import RoutingEngine

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
    skills: int = 0


def _rate(ops: int, elapsed: float) -> float:
    return ops / elapsed if elapsed > 0 else float("nan")


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
        kind,
        waiting,
        engine,
        Workload(engine, f"w{waiting}", opts.mixed_priorities, skills=opts.skills),
        {},
    )
    subject.result = {"engine": kind, "waiting": waiting, "skills": opts.skills}
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
