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
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

import queues
from bench.harness import machine_facts, sigterm_as_interrupt
from bench.loops import timed_loop
from bench.match_report import render
from bench.noop import Noop
from bench.redis_local import owned_redis
from bench.redis_probe import CallCount, Delta, bracketed, calibrate, diff, snapshot
from bench.stats import summarize
from bench.workload import CALLS_PER_CYCLE, SAMPLED, BenchError, Workload, bench_policy
from queues.base import RoutingEngine


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
    parser.add_argument(
        "--skills",
        type=int,
        default=0,
        help="each waiting task asks for one of N skills; agents have them all (default 0)",
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
                args.skills,
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
    if args.skills:
        mix += f" · {args.skills} skills in play"
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
