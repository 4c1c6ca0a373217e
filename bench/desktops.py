"""Simulated agent desktops, a process of their own: `python -m bench.desktops …`.

M agents connect to `/v1/agent/ws` (spread over the given nodes), go `available`, accept each
offer after `--accept-ms`, and `conversation.complete` + `wrapup.done` each assignment after
`--hold-ms`. Client frames are paced per socket below the server's limit (20/s, burst 40).

Every event body the bench posts is its event id. The moment an event reaches a desktop is the
first `time.monotonic_ns()` at which its body arrives, inside an `offer` (the conversation's
history) or as a `message` frame. Stdout: `ready N` once all are available, then `count D`
(events delivered so far) every 100 ms. On `stop` (or EOF) on stdin it writes `--out` (JSON)
and prints `done`. With `--idle` it only connects and waits (the RSS measurement).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import aiohttp
import jwt

from bench.harness import write_json
from router.limits import TokenBucket

RATE = 15.0  # client frames per second per socket (server: 20/s sustained)
BURST = 20.0
CONNECT_TIMEOUT_S = 30.0


def token(agent: str, tier: str, secret: str) -> str:
    claims = {"sub": agent, "tier": tier, "name": agent, "role": "agent"}
    claims["exp"] = int(time.time()) + 6 * 3600  # type: ignore[assignment]
    return jwt.encode(claims, secret, algorithm="HS256")


class Desks:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.delivered: dict[str, tuple[str, int]] = {}
        self.counts: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.sockets: list[aiohttp.ClientWebSocketResponse] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.loop = asyncio.get_running_loop()

    async def connect(self, http: aiohttp.ClientSession, index: int, url: str) -> None:
        agent = f"{self.args.prefix}-a{index:05d}"
        headers = {"Authorization": f"Bearer {token(agent, self.args.tier, self.args.secret)}"}
        try:
            ws = await http.ws_connect(
                f"{url}/v1/agent/ws", headers=headers, timeout=aiohttp.ClientWSTimeout(ws_close=2)
            )
            welcome = await ws.receive_json(timeout=CONNECT_TIMEOUT_S)
            if welcome.get("type") != "welcome":
                raise RuntimeError(str(welcome.get("type")))
            await ws.send_json({"type": "presence.set", "state": "available", "ref": "p"})
        except Exception as exc:  # counted: the report says how many never connected
            self.errors[f"connect:{type(exc).__name__}"] += 1
            return
        self.sockets.append(ws)
        outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.tasks.append(asyncio.create_task(self.read(ws, outbox)))
        if not self.args.idle:
            self.tasks.append(asyncio.create_task(self.write(ws, outbox)))

    async def read(
        self, ws: aiohttp.ClientWebSocketResponse, outbox: asyncio.Queue[dict[str, Any]]
    ) -> None:
        try:
            async for message in ws:
                if message.type is not aiohttp.WSMsgType.TEXT:
                    break
                self.handle(json.loads(message.data), outbox)
        finally:
            self.counts["closed"] += 1

    def handle(self, frame: dict[str, Any], outbox: asyncio.Queue[dict[str, Any]]) -> None:
        now = time.monotonic_ns()
        kind = frame.get("type")
        self.counts[str(kind)] += 1
        if kind == "offer":
            for item in frame["conversation"].get("history", ()):
                body = item.get("body")
                if body and item.get("direction") == "in" and body not in self.delivered:
                    self.delivered[body] = ("offer", now)
            accept = {"type": "offer.accept", "reservation": frame["reservation"]}
            self.later(self.args.accept_ms, outbox, [accept])
        elif kind == "message":
            body = frame["interaction"].get("body")
            if body and body not in self.delivered:
                self.delivered[body] = ("message", now)
        elif kind == "assigned":
            conv = frame["conversation"]["id"]
            done = [
                {"type": "conversation.complete", "conversation": conv},
                {"type": "wrapup.done", "conversation": conv},
            ]
            self.later(self.args.hold_ms, outbox, done)
        elif kind == "error":
            self.errors[str(frame.get("code"))] += 1

    def later(
        self, ms: float, outbox: asyncio.Queue[dict[str, Any]], frames: list[dict[str, Any]]
    ) -> None:
        def put() -> None:
            for frame in frames:
                outbox.put_nowait(frame)

        self.loop.call_later(ms / 1000, put)

    async def write(
        self, ws: aiohttp.ClientWebSocketResponse, outbox: asyncio.Queue[dict[str, Any]]
    ) -> None:
        bucket = TokenBucket(RATE, BURST)
        while not ws.closed:
            frame = await outbox.get()
            await bucket.pace()
            try:
                await ws.send_json(frame)
            except (ConnectionError, RuntimeError):
                return

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

        async def shut(ws: aiohttp.ClientWebSocketResponse) -> None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 2.0)

        for start in range(0, len(self.sockets), 500):
            await asyncio.gather(*(shut(ws) for ws in self.sockets[start : start + 500]))

    def result(self) -> dict[str, Any]:
        return {
            "connected": len(self.sockets),
            "delivered": self.delivered,
            "frames": dict(self.counts),
            "errors": dict(self.errors),
        }


async def stdin_stop() -> None:
    """Return when stdin says `stop` or is closed (the bench went away)."""
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line or line.strip() == "stop":
            return


async def main_async(args: argparse.Namespace) -> int:
    urls = args.urls.split(",")
    desks = Desks(args)
    stop = asyncio.create_task(stdin_stop())
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as http:
        try:
            indices = list(range(args.first, args.first + args.agents))
            step = args.connect_concurrency
            for start in range(0, len(indices), step):
                if stop.done():
                    break
                chunk = indices[start : start + step]
                await asyncio.gather(*(desks.connect(http, i, urls[i % len(urls)]) for i in chunk))
            print(f"ready {len(desks.sockets)}", flush=True)
            while not stop.done():
                print(f"count {len(desks.delivered)}", flush=True)
                await asyncio.wait({stop}, timeout=0.1)
        finally:
            stop.cancel()
            await desks.close()
    if args.out:
        write_json(args.out, desks.result())
    print("done", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.desktops")
    parser.add_argument("--urls", required=True, help="node base URLs, comma-separated")
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--first", type=int, default=0, help="index of the first agent")
    parser.add_argument("--prefix", default="bench")
    parser.add_argument("--tier", default="CCS")
    parser.add_argument("--accept-ms", type=float, default=50.0)
    parser.add_argument("--hold-ms", type=float, default=1000.0)
    parser.add_argument("--connect-concurrency", type=int, default=100)
    parser.add_argument("--idle", action="store_true", help="connect only; take no work")
    parser.add_argument("--out", help="JSON file for the deliveries")
    args = parser.parse_args(argv)
    args.secret = os.environ.get("OMNIROUTE_BENCH_JWT_SECRET", "")
    from bench.harness import run_async

    return int(run_async(main_async(args)))  # type: ignore[call-overload]


if __name__ == "__main__":
    sys.exit(main())
