"""The measurements beside the routing table: node RSS and CPU with idle sockets, decision
latency with few vs many waiting tasks (bench.match_bench as a subprocess), and the list of
Redis requests one routed event costs (MONITOR during a tiny load).

Each starts its own processes through bench.harness and stops them in `finally`. Imports
bench.harness and bench.runs (the run's Config); the engine's script names from queues and
router, to name each EVALSHA/FCALL.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections import Counter
from typing import Any

import redis.asyncio as aioredis

from bench.harness import (
    Node,
    Proc,
    bench_child,
    cpu_seconds,
    read_json,
    rss_bytes,
    start_nodes,
    wait_count,
)
from bench.harness import stop_all as stop_procs
from bench.runs import Config


async def idle_run(cfg: Config, engine: str) -> dict[str, Any]:
    domain = f"bench-{cfg.run_id}-idle-{engine}"
    url = cfg.redis_url if engine == "redis" else ""
    nodes: list[Node] = []
    groups: list[Proc] = []
    result: dict[str, Any] = {"engine": engine, "points": []}
    try:
        nodes = await start_nodes(1, url, cfg.workdir, domain, cfg.capacity)
        node = nodes[0]
        await asyncio.sleep(cfg.settle_s / 2)
        result["rss_mb_empty"] = rss_bytes(node.pid) / 2**20
        have = 0
        for target in sorted(cfg.idle_counts):
            more = target - have
            if more <= 0:
                continue
            proc = Proc(
                f"idle-{target}",
                bench_child("bench.desktops", "--urls", node.base, "--agents", str(more),
                            "--first", str(have), "--prefix", f"idle-{engine}", "--idle",
                            "--connect-concurrency", "200"),
                cfg.workdir / f"idle-{engine}-{target}.log",
            )  # fmt: skip
            groups.append(proc)
            t0 = time.monotonic()
            await proc.start(stdin=True)
            line = await proc.wait_line("ready", 60 + more / 20)
            took = time.monotonic() - t0
            have += int(line.split()[1])
            await asyncio.sleep(cfg.settle_s)
            c0, w0 = cpu_seconds(node.pid), time.monotonic()
            await asyncio.sleep(1.5 * cfg.settle_s)
            cpu_rate = (cpu_seconds(node.pid) - c0) / (time.monotonic() - w0)
            result["points"].append(
                {
                    "target": target,
                    "sockets": have,
                    "rss_mb": rss_bytes(node.pid) / 2**20,
                    "connect_s": took,
                    "node_cpu_share_idle": cpu_rate,
                }
            )
    finally:
        for proc in groups:
            if proc.proc is not None and proc.proc.returncode is None:
                with contextlib.suppress(Exception):
                    await proc.say("stop")
        await stop_procs([*groups, *nodes])
    return result


async def decision_latency(
    cfg: Config, waiting: str, seconds: float, skills: int = 0
) -> dict[str, Any]:
    """bench.match_bench as a subprocess; with `skills`, each waiting task asks for one of
    that many skills (the decision cost with skills in play)."""
    out = cfg.workdir / f"match-bench-{skills}.json"
    proc = Proc(
        "match_bench",
        bench_child("bench.match_bench", "--redis", cfg.redis_url, "--waiting", waiting,
                    "--seconds", f"{seconds:g}", "--json", str(out), "--fill-seconds", "60",
                    "--skills", str(skills)),
        cfg.workdir / f"match-bench-{skills}.log",
    )  # fmt: skip
    try:
        await proc.start()
        await proc.wait(300)
    finally:
        await proc.stop()
    if not out.exists():
        return {"error": proc.tail(500)}
    data = read_json(out)
    rows = []
    for run in data["runs"]:
        seq = run.get("sequential", {}).get("decide", {})
        rows.append({"engine": run["engine"], "waiting": run["waiting"], "skills": skills,
                     "p50_ms": seq.get("p50_ms"), "p99_ms": seq.get("p99_ms"),
                     "decisions_per_s": run.get("sequential", {}).get("ops_per_s")})  # fmt: skip
    return {"rows": rows}


def script_names() -> dict[str, str]:
    """sha1 or function name → "store:NAME" / "engine:NAME" for every script and function the
    server calls."""
    from queues import redis as engine_redis
    from store import redis_base

    names = {}
    for name in redis_base.SCRIPTS.ops:
        names[hashlib.sha1(redis_base.SCRIPTS.source(name).encode()).hexdigest()] = f"store:{name}"
    library, _code = engine_redis.LIBRARY.library()
    for name in (*engine_redis.OPS, *engine_redis.VIEWS):
        names[f"{library}_{name}"] = f"engine:{name}"
    return names


async def round_trip_list(cfg: Config, events: int = 40) -> dict[str, Any]:
    """MONITOR a tiny load on one node: every request a routed event costs, by name."""
    tag = "monitor"
    domain = f"bench-{cfg.run_id}-{tag}"
    names = script_names()
    client: aioredis.Redis[str] = aioredis.from_url(cfg.redis_url, decode_responses=True)
    seen: Counter[str] = Counter()
    nodes: list[Node] = []
    desk = load = None
    out_desk, out_load = cfg.workdir / "desk-monitor.json", cfg.workdir / "load-monitor.json"
    try:
        nodes = await start_nodes(1, cfg.redis_url, cfg.workdir, domain, cfg.capacity)
        desk = Proc("desktops", bench_child("bench.desktops", "--urls", nodes[0].base,
                    "--agents", "20", "--prefix", tag, "--accept-ms", "20", "--hold-ms", "300",
                    "--out", str(out_desk)), cfg.workdir / "desk-monitor.log")  # fmt: skip
        await desk.start(stdin=True)
        await desk.wait_line("ready", 60)
        await asyncio.sleep(0.5)
        stop = asyncio.Event()

        async def watch() -> None:
            async with client.monitor() as monitor:
                while not stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        item = await asyncio.wait_for(monitor.next_command(), 0.5)
                        if item.get("client_type") == "lua":
                            continue
                        command = str(item["command"])
                        parts = command.split(" ")
                        verb = parts[0].upper()
                        if verb in ("EVALSHA", "FCALL") and len(parts) > 1:
                            verb = names.get(parts[1].strip("'\""), f"{verb} ?")
                        seen[verb] += 1

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0.3)
        seconds = events / 20
        load = Proc("load", bench_child("bench.load", "--urls", nodes[0].base, "--rate", "20",
                    "--seconds", f"{seconds:g}", "--prefix", f"{cfg.run_id}-{tag}",
                    "--followup-every", "0", "--out", str(out_load)),
                    cfg.workdir / "load-monitor.log")  # fmt: skip
        t0 = time.monotonic()
        await load.start()
        await load.wait_line("done", seconds + 30)
        posted = len(read_json(out_load))
        await wait_count(desk, posted, 10)
        await asyncio.sleep(0.3 + cfg.accept_ms / 1000 + 0.3 + 1.2)  # complete + wrap-up end
        took = time.monotonic() - t0
        stop.set()
        await asyncio.wait_for(watcher, 5)
        routed = desk.count()
        await desk.say("stop")
        await desk.wait_line("done", 30)
    finally:
        await stop_procs([load, desk, *nodes])
        await client.aclose()
    n = max(routed, 1)
    rows = {k: round(v / n, 2) for k, v in seen.most_common() if k not in ("MONITOR", "INFO")}
    return {"events": routed, "seconds": took, "agents": 20, "per_event": rows,
            "total_per_event": round(sum(rows.values()), 2)}  # fmt: skip
