"""The peer: "event in, worker gets it" built the obvious way on saq, on the same Redis.

* Worker, as saq's docs run it: `python -m saq bench.peer.settings --quiet` (one process,
  saq's default concurrency 10, its own event loop choice). The job function `got` records
  `time.monotonic_ns()` when it runs; the shutdown hook writes what it got to the file named
  by `OMNIROUTE_BENCH_PEER_OUT`. Stdout: `count N` every 100 ms.
* Producer: `python -m bench.peer produce --url URL --rate R --seconds S`: one
  `Queue.enqueue("got", …)` per event, at fixed offsets (open loop, one task per enqueue).

Latency = the worker's receipt minus the moment the producer called `enqueue`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from saq import Queue

from bench.harness import write_json
from bench.load import open_loop

QUEUE_NAME = "omniroute-bench-peer"
URL = os.environ.get("OMNIROUTE_BENCH_PEER_URL", "redis://127.0.0.1:6379/0")
RECEIVED: list[tuple[str, int, int]] = []


async def got(_ctx: Any, *, n: str, posted: int) -> None:
    RECEIVED.append((n, posted, time.monotonic_ns()))


async def _report(_ctx: Any) -> None:
    async def loop() -> None:
        while True:
            print(f"count {len(RECEIVED)}", flush=True)
            await asyncio.sleep(0.1)

    print("ready 1", flush=True)
    _ctx["reporter"] = asyncio.create_task(loop())


async def _dump(ctx: Any) -> None:
    reporter = ctx.get("reporter")
    if reporter is not None:
        reporter.cancel()
    path = os.environ.get("OMNIROUTE_BENCH_PEER_OUT")
    if path:
        write_json(path, RECEIVED)
    print("done", flush=True)


settings = {
    "queue": Queue.from_url(URL, name=QUEUE_NAME),
    "functions": [got],
    "startup": _report,
    "shutdown": _dump,
}


async def produce(args: argparse.Namespace) -> int:
    cpu0 = time.process_time()
    queue = Queue.from_url(args.url, name=QUEUE_NAME)
    await queue.connect()
    failed = 0

    async def one(n: str) -> None:
        nonlocal failed
        try:
            await queue.enqueue("got", n=n, posted=time.monotonic_ns())
        except Exception:
            failed += 1

    total = min(int(args.rate * args.seconds), args.max_events)
    try:
        step = 1e9 / args.rate
        await open_loop(
            [int(i * step) for i in range(total)],
            lambda i, _due: one(f"{args.prefix}-{i}"),
        )
    finally:
        await queue.disconnect()
    print(f"done {total} {failed} {time.process_time() - cpu0:.4f}", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peer")
    parser.add_argument("command", choices=["produce"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--prefix", default="p")
    parser.add_argument("--max-events", type=int, default=200_000)
    args = parser.parse_args(argv)
    from bench.harness import run_async

    return int(run_async(produce(args)))  # type: ignore[call-overload]


if __name__ == "__main__":
    sys.exit(main())
