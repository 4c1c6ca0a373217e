"""The ceiling on this machine: what the bare tools do, measured in the same run.

* Redis: raw redis-py no-op script calls (`bench.noop.Noop`: EVALSHA of `return 0`
  with an engine call's argument shapes) from one process, one at a time and 64 in flight.
* WebSocket: a bare aiohttp server process pushes ~200-byte text frames to M clients in
  another process: paced at each offered rate (latency), then as fast as it can (frames/s).
  `python -m bench.ceiling serve --port P` and `python -m bench.ceiling clients …` are the
  two processes; `POST /blast?rate=R&seconds=S&phase=X` on the server runs one phase, and
  `ws_ceiling` drives both from `python -m bench`.

Imports bench.harness, bench.noop, bench.workload (the policy the no-op packs), bench.stats;
bench.runs only for the type of its Config, so that the two child processes stay light.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from bench.harness import Proc, bench_child, free_port, read_json, write_json
from bench.harness import stop_all as stop_procs
from bench.loops import timed_loop
from bench.noop import Noop
from bench.stats import percentile, summarize
from bench.workload import bench_policy

if TYPE_CHECKING:
    from bench.runs import Config

PAD = "x" * 150
MAX_FRAMES = 5_000_000


async def redis_ceiling(url: str, seconds: float, concurrency: int = 64) -> dict[str, Any]:
    noop = Noop(url, bench_policy())
    try:
        await noop.start()
        step = noop.decide_step(1)
        ops, took = await timed_loop(1, seconds / 2, 1_000_000, step)
        sequential = {"calls_per_s": ops / took, **summarize(noop.lat["decide"])}
        noop.reset_latencies()
        step = noop.decide_step(concurrency)
        ops, took = await timed_loop(concurrency, seconds / 2, 1_000_000, step)
        inflight = {"calls_per_s": ops / took, **summarize(noop.lat["decide"])}
    finally:
        await noop.close()
    return {"sequential": sequential, f"{concurrency} in flight": inflight}


async def ws_ceiling(cfg: Config, phase_s: float) -> dict[str, Any]:
    port = free_port()
    out = cfg.workdir / "ws-ceiling.json"
    server = Proc("ws-server", bench_child("bench.ceiling", "serve", "--port", str(port)),
                  cfg.workdir / "ws-server.log")  # fmt: skip
    clients = Proc(
        "ws-clients",
        bench_child("bench.ceiling", "clients", "--url", f"http://127.0.0.1:{port}",
                    "--clients", str(cfg.agents), "--out", str(out)),
        cfg.workdir / "ws-clients.log",
    )  # fmt: skip
    sent: dict[str, Any] = {}
    try:
        await server.start(stdin=True)
        await server.wait_line("ready", 30)
        await clients.start(stdin=True)
        await clients.wait_line("ready", 60 + cfg.agents / 50)
        async with aiohttp.ClientSession() as http:
            phases = [(f"{r:g}", r) for r in cfg.rates] + [("max", 0.0)]
            for name, rate in phases:
                params = {"rate": f"{rate:g}", "seconds": f"{phase_s:g}", "phase": name}
                timeout = aiohttp.ClientTimeout(total=phase_s + 30)
                async with http.post(f"http://127.0.0.1:{port}/blast", params=params,
                                     timeout=timeout) as response:  # fmt: skip
                    sent[name] = await response.json()
                await asyncio.sleep(0.5)
        await clients.say("stop")
        await clients.wait_line("done", 30)
        got = read_json(out)
    finally:
        await stop_procs([clients, server])
    result: dict[str, Any] = {"clients": cfg.agents, "phases": {}}
    for name in sent:
        g = got.get(name, {})
        span = g.get("span_s") or 0
        result["phases"][name] = {
            "sent": sent[name]["sent"],
            "received": g.get("received", 0),
            "frames_per_s": g.get("received", 0) / span if span else 0.0,
            "p50_ms": g.get("p50_ms"),
            "p95_ms": g.get("p95_ms"),
            "p99_ms": g.get("p99_ms"),
            "max_ms": g.get("max_ms"),
        }
    return result


# -- the bare WebSocket server --------------------------------------------------------------


def make_app() -> web.Application:
    clients: list[web.WebSocketResponse] = []

    async def ws_handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        clients.append(ws)
        try:
            async for _message in ws:
                pass
        finally:
            clients.remove(ws)
        return ws

    async def blast(request: web.Request) -> web.Response:
        rate = float(request.query.get("rate", "0"))
        seconds = float(request.query["seconds"])
        phase = request.query.get("phase", "x")
        targets = list(clients)
        sent = 0
        t0 = time.monotonic_ns()
        end = t0 + int(seconds * 1e9)
        while sent < MAX_FRAMES and targets:
            now = time.monotonic_ns()
            if now >= end:
                break
            if rate > 0:
                due = t0 + int(sent * 1e9 / rate)
                if due > now:
                    await asyncio.sleep((due - now) / 1e9)
            ws = targets[sent % len(targets)]
            frame = f'{{"p":"{phase}","t":{time.monotonic_ns()},"pad":"{PAD}"}}'
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_str(frame)
            sent += 1
        took = (time.monotonic_ns() - t0) / 1e9
        return web.json_response({"sent": sent, "seconds": took, "clients": len(targets)})

    app = web.Application()
    app.add_routes([web.get("/ws", ws_handler), web.post("/blast", blast)])
    return app


async def serve(port: int) -> int:
    runner = web.AppRunner(make_app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    print("ready 1", flush=True)
    try:
        await stdin_closed()
    finally:
        await runner.cleanup()
    return 0


async def stdin_closed() -> None:
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line or line.strip() == "stop":
            return


# -- the clients ----------------------------------------------------------------------------


async def clients(url: str, count: int, out: str) -> int:
    lat: dict[str, list[int]] = {}
    first_last: dict[str, list[int]] = {}

    async def read(ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            now = time.monotonic_ns()
            frame = json.loads(message.data)
            phase = frame["p"]
            lat.setdefault(phase, []).append(now - frame["t"])
            span = first_last.setdefault(phase, [now, now])
            span[1] = now

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        sockets = []
        for start in range(0, count, 100):
            batch = range(start, min(count, start + 100))
            sockets += await asyncio.gather(*(http.ws_connect(f"{url}/ws") for _ in batch))
        readers = [asyncio.create_task(read(ws)) for ws in sockets]
        print(f"ready {len(sockets)}", flush=True)
        await stdin_closed()
        for task in readers:
            task.cancel()
        for ws in sockets:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 1.0)
    result = {
        phase: {
            "received": len(values),
            "span_s": (first_last[phase][1] - first_last[phase][0]) / 1e9,
            **summarize(values),
            "p95_ms": percentile(sorted(values), 95),
        }
        for phase, values in lat.items()
    }
    write_json(out, result)
    print("done", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling")
    parser.add_argument("command", choices=["serve", "clients"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--url", default="")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--out", default=os.devnull)
    args = parser.parse_args(argv)
    from bench.harness import run_async

    if args.command == "serve":
        return int(run_async(serve(args.port)))  # type: ignore[call-overload]
    return int(run_async(clients(args.url, args.clients, args.out)))  # type: ignore[call-overload]


if __name__ == "__main__":
    sys.exit(main())
