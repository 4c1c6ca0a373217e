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
import signal
import sys
from collections.abc import Sequence

from bench.harness import loop_factory, publish, sigterm_as_interrupt
from bench.match_report import render
from bench.match_run import Options, run, say, yes
from bench.redis_local import owned_redis


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

    factory = None if args.no_uvloop else loop_factory()[0]
    say(f"# event loop: {'uvloop' if factory else 'asyncio default (uvloop not used)'}")

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
            with asyncio.Runner(loop_factory=factory) as runner:
                results = runner.run(run(opts, factory is not None, started))
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
    return publish(render(results), results, args.json)


if __name__ == "__main__":
    sys.exit(main())
