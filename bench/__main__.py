"""End-to-end benchmark: `python -m bench [--quick] [--json FILE] [--png FILE] …`.

Starts its own Redis on a free port (unless `--redis URL`), `omniroute serve` nodes, a
process of simulated agent desktops (real WebSockets) and an open-loop poster, and measures
at each offered rate: routed events/s, post → desktop latency, Redis requests and commands
per routed event, CPU per routed event and process. In the same run: the ceilings (raw
redis-py script calls/s, raw aiohttp WebSocket frames/s to as many clients), the peer (the
same flow on saq), node RSS with idle sockets, decision latency with few vs many waiting
tasks (bench.match_bench), the list of Redis requests of one routed event (MONITOR), and
the replay of a recorded day of a 200-agent centre under two policies (bench.replay_bench).
Everything is bounded in count and time and everything it starts is stopped at the end.
Compare figures only within one run: the machine's 2 cores are shared. See
docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bench import probes, report, runs
from bench.ceiling import redis_ceiling, ws_ceiling
from bench.guidance_bench import guidance_speed
from bench.harness import loop_factory, machine_facts, publish, sigterm_as_interrupt
from bench.redis_local import owned_redis
from bench.replay_bench import replay_speed

STARTED = time.monotonic()
SKILLS_IN_PLAY = 50  # issue 13: the decision cost stays flat with this many skills in play


def say(text: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f} s] {text}", file=sys.stderr, flush=True)


def parse_list(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError("needs positive numbers, comma-separated")
    return values


def options(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--redis", metavar="URL", help="use this Redis instead of starting one")
    parser.add_argument("--nodes", type=int, default=1, help="omniroute serve nodes (Redis)")
    parser.add_argument("--workers", default="1,2",
                        help="processes per node (serve --workers), run side by side")  # fmt: skip
    parser.add_argument("--agents", type=int, default=500, help="simulated desktops")
    parser.add_argument("--rates", type=parse_list, default=[250, 500, 1000, 2000])
    parser.add_argument("--seconds", type=float, default=8.0, help="load time per rate")
    parser.add_argument("--engines", default="redis,memory")
    parser.add_argument("--accept-ms", type=float, default=50.0)
    parser.add_argument("--hold-ms", type=float, default=1000.0)
    parser.add_argument("--capacity", type=int, default=20, help="chat capacity per agent")
    parser.add_argument("--followup-every", type=int, default=4,
                        help="every Nth conversation: a 2nd message")  # fmt: skip
    parser.add_argument("--idle", default="1000,10000", help="idle socket counts for RSS")
    parser.add_argument("--waiting", default="1000,100000", help="match_bench waiting tasks")
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--png", metavar="FILE")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy the node at 1,000/s (or the top rate)")  # fmt: skip
    parser.add_argument("--skip-peer", action="store_true")
    parser.add_argument("--skip-idle", action="store_true")
    parser.add_argument("--skip-ceiling", action="store_true")
    parser.add_argument("--skip-decision", action="store_true")
    parser.add_argument("--skip-monitor", action="store_true")
    parser.add_argument("--skip-replay", action="store_true",
                        help="skip replaying a recorded day (bench.replay_bench)")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="seconds, tiny load (smoke run)")
    args = parser.parse_args(argv)
    args.engine_list = [e.strip() for e in args.engines.split(",") if e.strip()]
    if not set(args.engine_list) <= {"redis", "memory"} or not args.engine_list:
        parser.error("--engines takes redis and/or memory")
    if args.quick:
        args.agents, args.rates, args.seconds = 8, [25.0], 1.0
        args.idle, args.waiting, args.hold_ms, args.accept_ms = "20,50", "100,300", 200.0, 20.0
    try:
        args.worker_list = sorted({int(x) for x in args.workers.split(",") if x.strip()})
    except ValueError:
        parser.error("--workers takes positive integers, comma-separated")
    if not args.worker_list or min(args.worker_list) < 1:
        parser.error("--workers takes positive integers, comma-separated")
    if args.quick:
        args.worker_list = [1]
    if args.nodes < 1 or args.agents < 1 or args.seconds <= 0:
        parser.error("--nodes, --agents and --seconds must be positive")
    return args


async def run(args: argparse.Namespace, url: str, started: bool, workdir: Path) -> dict[str, Any]:
    probe: aioredis.Redis[str] = aioredis.from_url(url, decode_responses=True)
    try:
        facts = machine_facts(await probe.info("server"), loop_factory()[0] is not None)
    finally:
        await probe.aclose()
    facts["redis_started_by_bench"] = started
    top = 1000.0 if 1000.0 in args.rates else max(args.rates)
    cfg = runs.Config(
        redis_url=url, workdir=workdir, run_id=f"{os.getpid()}-{int(time.time())}",
        nodes=args.nodes, agents=args.agents, rates=args.rates, seconds=args.seconds,
        accept_ms=args.accept_ms, hold_ms=args.hold_ms, capacity=args.capacity,
        followup_every=args.followup_every,
        idle_counts=[int(x) for x in parse_list(args.idle)],
        profile_rate=top if args.profile else 0.0,
        settle_s=0.3 if args.quick else 2.0,
    )  # fmt: skip
    results: dict[str, Any] = {"machine": facts, "options": {
        k: v for k, v in vars(args).items() if k not in ("json", "png")}}  # fmt: skip
    phase_s = min(args.seconds, 3.0)
    ceiling: dict[str, Any] = {"redis": None, "ws": None}
    if not args.skip_ceiling:
        say("- ceiling: raw script calls …")
        ceiling["redis"] = await redis_ceiling(url, 2 * phase_s)
        say(f"- ceiling: raw WebSocket frames to {args.agents} clients …")
        ceiling["ws"] = await ws_ceiling(cfg, phase_s)
    results["ceiling"] = ceiling
    results["routing"] = []
    for engine in args.engine_list:
        for workers in args.worker_list if engine == "redis" else [1]:
            for rate in args.rates:
                say(f"- {engine} engine, {workers} worker(s), at {rate:g} events/s …")
                results["routing"].append(await runs.routing_run(cfg, engine, rate, workers))
    results["peer"] = []
    if not args.skip_peer:
        for rate in args.rates:
            say(f"- peer (saq) at {rate:g} jobs/s …")
            results["peer"].append(await runs.peer_run(cfg, rate))
    results["idle"] = []
    if not args.skip_idle:
        for engine in args.engine_list:
            say(f"- idle sockets ({args.idle}) on the {engine} engine …")
            results["idle"].append(await probes.idle_run(cfg, engine))
    results["decision_latency"] = None
    if not args.skip_decision:
        say(f"- decision latency with {args.waiting} waiting (bench.match_bench) …")
        seconds = 0.3 if args.quick else 1.0
        plain = await probes.decision_latency(cfg, args.waiting, seconds)
        say(f"- decision latency with {args.waiting} waiting and {SKILLS_IN_PLAY} skills …")
        skilled = await probes.decision_latency(cfg, args.waiting, seconds, SKILLS_IN_PLAY)
        rows = plain.get("rows", []) + skilled.get("rows", [])
        errors = [e for e in (plain.get("error"), skilled.get("error")) if e]
        results["decision_latency"] = {"rows": rows, **({"error": errors[0]} if errors else {})}
    results["round_trips"] = None
    if not args.skip_monitor and "redis" in args.engine_list:
        say("- Redis requests of one routed event (MONITOR, tiny load) …")
        results["round_trips"] = await probes.round_trip_list(cfg, 10 if args.quick else 40)
    results["replay"] = None
    if not args.skip_replay:
        size = (20, 2000) if args.quick else (200, 50_000)
        say(f"- replay of a recorded day: {size[0]} agents, {size[1]} conversations …")
        results["replay"] = await replay_speed(*size)
    say("- guidance rules for one customer, 500 rules in play …")
    results["guidance"] = guidance_speed(500, 1_000 if args.quick else 5_000)
    report.add_ratios(results)
    results["goals"] = report.goals(results)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = options(argv)
    factory, loop_name = loop_factory()
    say(f"# event loop: {loop_name}")
    previous = signal.signal(signal.SIGTERM, sigterm_as_interrupt)
    t0 = time.monotonic()
    try:
        with (
            tempfile.TemporaryDirectory(prefix="omniroute-bench-") as tmp,
            owned_redis(args.redis) as (url, started),
            asyncio.Runner(loop_factory=factory) as runner,
        ):
            results = runner.run(run(args, url, started, Path(tmp)))
    except KeyboardInterrupt:
        say("interrupted; everything this run started was stopped")
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    results["elapsed_s"] = time.monotonic() - t0
    if args.png:
        results["png_note"] = report.write_png(results, args.png)
    else:
        results["png_note"] = "PNG skipped: no --png FILE given."
    took = f"; run took {results['elapsed_s']:.0f} s"
    return publish(report.render(results), results, args.json, took)


if __name__ == "__main__":
    sys.exit(main())
