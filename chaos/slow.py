"""Slow connections: clients that trickle a request head (plain HTTP or a WebSocket upgrade)
a byte a second, and a normal client polling `/healthz` meanwhile. Shared by the `slowloris`
scenario and tests/test_connections.py.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp

from chaos.cluster import cluster
from chaos.harness import agent_token
from chaos.scenarios import Figures

HTTP_HEAD = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "


def upgrade_head() -> bytes:
    """The start of a WebSocket upgrade of the agent socket, left open in its last header."""
    return (
        b"GET /v1/agent/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Authorization: Bearer " + agent_token("slow", "CCS").encode() + b"\r\nX-Slow: "
    )


async def slow_client(
    port: int, until: float, lifetimes: list[float], head: bytes = HTTP_HEAD
) -> None:
    """Trickle a request head, a byte a second, reconnecting (after 0.2 s) whenever the server
    cuts it off; each cut's connection lifetime goes to `lifetimes`."""
    while time.monotonic() < until:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        opened = time.monotonic()
        try:
            writer.write(head)
            while time.monotonic() < until:
                writer.write(b"a")
                try:
                    if await asyncio.wait_for(reader.read(100), 1.0) == b"":
                        lifetimes.append(time.monotonic() - opened)  # the server closed it
                        break
                except TimeoutError:
                    continue
        except OSError:  # reset by the server
            lifetimes.append(time.monotonic() - opened)
        finally:
            writer.close()
        await asyncio.sleep(0.2)


async def health_checks(base: str, until: float) -> list[tuple[int, float]]:
    """A fresh connection per check, every 0.1 s: (status or 0, seconds)."""
    out: list[tuple[int, float]] = []
    timeout = aiohttp.ClientTimeout(total=3)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(force_close=True), timeout=timeout
    ) as http:
        while time.monotonic() < until:
            start = time.monotonic()
            try:
                async with http.get(f"{base}/healthz") as resp:
                    out.append((resp.status, time.monotonic() - start))
            except (aiohttp.ClientError, TimeoutError):
                out.append((0, time.monotonic() - start))
            await asyncio.sleep(0.1)
    return out


async def slowloris(
    workdir: Path, slow: int = 200, seconds: float = 5.0, head_timeout_s: float = 2.0
) -> Figures:
    """`slow` connections, half trickling an HTTP head and half a WebSocket upgrade, for
    `seconds` (longer than the head deadline), while a normal client polls `/healthz`: every
    health check answers 200, and every slow connection is cut at the head deadline."""
    async with cluster(workdir) as c:
        env = {"OMNIROUTE_CONNECTIONS_IDLE_TIMEOUT_S": f"{head_timeout_s:g}"}
        node = await c.node("node-a", env)
        until = time.monotonic() + seconds
        cut_http: list[float] = []
        cut_ws: list[float] = []
        ws_head = upgrade_head()
        attack = [
            asyncio.create_task(slow_client(node.port, until, cut_http)) for _ in range(slow // 2)
        ] + [
            asyncio.create_task(slow_client(node.port, until, cut_ws, ws_head))
            for _ in range(slow - slow // 2)
        ]
        try:
            await asyncio.sleep(0.5)  # the slow clients are in
            checks = await health_checks(node.base, until)
            await asyncio.wait_for(asyncio.gather(*attack), seconds + 5)
        finally:
            for task in attack:
                task.cancel()
    text = node.log_path.read_text(errors="replace")  # whole, after the stop: bursts flushed
    lines = [json.loads(s) for s in text.splitlines() if s.startswith("{")]
    took = sorted(seconds for _, seconds in checks)
    p99 = took[max(0, int(len(took) * 0.99) - 1)]
    failed = sum(1 for status, _ in checks if status != 200)
    logged = sum(
        int(line.get("count", 1)) for line in lines if line["event"] == "connections.head_timeout"
    )
    lifetimes = cut_http + cut_ws
    figures: Figures = {
        "slow": slow,
        "checks": len(checks),
        "check_failures": failed,
        "check_p99_s": round(p99, 3),
        "cut_http": len(cut_http),
        "cut_ws": len(cut_ws),
        "cut_logged_head_timeout": logged,
        "longest_held_s": round(max(lifetimes, default=0.0), 2),
    }
    assert len(checks) >= 10 and failed == 0, f"health checks failed: {figures}"
    assert len(cut_http) >= slow // 2 and len(cut_ws) >= slow - slow // 2, f"not cut: {figures}"
    assert max(lifetimes) < head_timeout_s + 1.5, f"a slow head was held too long: {figures}"
    return figures
