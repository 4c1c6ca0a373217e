"""Open-loop event poster, a process of its own: `python -m bench.load …`.

Events are posted at fixed offsets from the start (`--rate` per second for `--seconds`): the
schedule never waits for answers, so a slow server cannot slow the load down. One event per
POST, signed with the webhook secret, spread over the nodes. Each event's body is its id.
Every `--followup-every`-th new conversation gets a second message from the same customer
`--followup-ms` later, meant to land while the conversation is assigned (the sticky path).

Writes `--out` (JSON): per event [id, kind, scheduled_ns, posted_ns, answered_ns, status,
conversation], all `time.monotonic_ns()`; prints `done N CPU_SECONDS`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp

from bench.harness import write_json

DRAIN_S = 15.0  # in-flight posts after the last one is sent


def schedule(
    rate: float, seconds: float, prefix: str, every: int, followup_ms: float
) -> list[tuple[int, str, str, str]]:
    """(offset_ns, event id, kind, customer) sorted by offset; about `rate` events/s in all."""
    share = every / (every + 1) if every > 0 else 1.0
    first_rate = rate * share
    out: list[tuple[int, str, str, str]] = []
    horizon = int(seconds * 1e9)
    n = int(first_rate * seconds)
    for i in range(n):
        at = int(i * 1e9 / first_rate)
        customer = f"{prefix}-c{i}"
        out.append((at, f"{prefix}-e{i}", "first", customer))
        follow = at + int(followup_ms * 1e6)
        if every > 0 and i % every == every - 1 and follow < horizon:
            out.append((follow, f"{prefix}-e{i}-f", "followup", customer))
    out.sort()
    return out


async def post_all(args: argparse.Namespace) -> list[list[Any]]:
    urls = args.urls.split(",")
    secret = os.environ.get("OMNIROUTE_BENCH_WEBHOOK_SECRET", "").encode()
    plan = schedule(args.rate, args.seconds, args.prefix, args.followup_every, args.followup_ms)
    plan = plan[: args.max_events]
    records: list[list[Any]] = []
    connector = aiohttp.TCPConnector(limit=args.connections)
    timeout = aiohttp.ClientTimeout(total=DRAIN_S)

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:

        async def post(index: int, event_id: str, kind: str, customer: str, due: int) -> None:
            event = {
                "id": event_id,
                "type": "message",
                "channel": "chat",
                "from": f"visitor:{customer}",
                "body": event_id,
            }
            body = json.dumps(event).encode()
            sig = hmac.new(secret, body, hashlib.sha256).hexdigest()
            headers = {"Content-Type": "application/json", "X-Omniroute-Signature": f"sha256={sig}"}
            record: list[Any] = [event_id, kind, due, time.monotonic_ns(), 0, 0, None]
            records.append(record)
            try:
                async with http.post(
                    f"{urls[index % len(urls)]}/v1/events", data=body, headers=headers
                ) as response:
                    answer = await response.json(content_type=None)
                    record[4], record[5] = time.monotonic_ns(), response.status
                    if response.status == 202:
                        record[6] = answer["conversations"][0]
            except Exception as exc:  # kept: the report counts failed posts
                record[4], record[5] = time.monotonic_ns(), f"{type(exc).__name__}"

        def launch(index: int, due: int) -> Awaitable[None]:
            _offset, event_id, kind, customer = plan[index]
            return post(index, event_id, kind, customer, due)

        await open_loop([offset for offset, *_ in plan], launch)
    return records


async def open_loop(
    offsets_ns: Sequence[int], launch: Callable[[int, int], Awaitable[None]]
) -> None:
    """Start `launch(i, due)` at each offset from now (+50 ms), never waiting for earlier ones
    (open loop: a slow server cannot slow the load down), then let those in flight finish for
    at most DRAIN_S and cancel the rest. omniroute's load and the saq peer share it, so both
    see the same schedule."""
    tasks: set[asyncio.Task[None]] = set()
    start = time.monotonic_ns() + 50_000_000
    for index, offset in enumerate(offsets_ns):
        due = start + offset
        delay = (due - time.monotonic_ns()) / 1e9
        if delay > 0.0002:
            await asyncio.sleep(delay)
        task = asyncio.ensure_future(launch(index, due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        _done, pending = await asyncio.wait(set(tasks), timeout=DRAIN_S)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def main_async(args: argparse.Namespace) -> int:
    cpu0 = time.process_time()
    records = await post_all(args)
    cpu = time.process_time() - cpu0
    write_json(args.out, records)
    print(f"done {len(records)} {cpu:.4f}", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load")
    parser.add_argument("--urls", required=True, help="node base URLs, comma-separated")
    parser.add_argument("--rate", type=float, required=True, help="events per second")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--prefix", default="bench")
    parser.add_argument("--followup-every", type=int, default=4)
    parser.add_argument("--followup-ms", type=float, default=550.0)
    parser.add_argument("--max-events", type=int, default=200_000)
    parser.add_argument("--connections", type=int, default=256)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    from bench.harness import run_async

    return int(run_async(main_async(args)))  # type: ignore[call-overload]


if __name__ == "__main__":
    sys.exit(main())
