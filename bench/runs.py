"""The measured runs: routing at each offered rate, the saq peer, the ceilings, idle sockets,
decision latency (match_bench), and the list of Redis round trips of one routed event."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from bench.harness import (
    Node,
    Proc,
    bench_child,
    bench_env,
    cpu_of,
    cpu_seconds,
    free_port,
    read_json,
    rss_bytes,
    start_nodes,
    tree_rss_bytes,
    wait_count,
)
from bench.harness import stop_all as stop_procs
from bench.redis_probe import RedisMeter
from bench.stats import latency

DRAIN_MIN_S = 10.0


@dataclass
class Config:
    redis_url: str
    workdir: Path
    run_id: str
    nodes: int
    agents: int
    rates: list[float]
    seconds: float
    accept_ms: float
    hold_ms: float
    capacity: int
    followup_every: int
    idle_counts: list[int]
    profile_rate: float  # py-spy the first node at this offered rate (0: never)
    settle_s: float = 2.0  # idle sockets: wait after connecting, then measure CPU this long


# -- routing at one offered rate -----------------------------------------------------------------


async def routing_run(cfg: Config, engine: str, rate: float, workers: int = 1) -> dict[str, Any]:
    tag = f"{engine}-w{workers}-{rate:g}"
    domain = f"bench-{cfg.run_id}-{tag}"
    nodes_n = cfg.nodes if engine == "redis" else 1
    url = cfg.redis_url if engine == "redis" else ""
    out_desk, out_load = cfg.workdir / f"desk-{tag}.json", cfg.workdir / f"load-{tag}.json"
    nodes: list[Node] = []
    desk = load = None
    prof = None
    meter = RedisMeter(cfg.redis_url) if engine == "redis" else None
    try:
        nodes = await start_nodes(nodes_n, url, cfg.workdir, domain, cfg.capacity, workers)
        urls = ",".join(n.base for n in nodes)
        desk = Proc(
            "desktops",
            bench_child(
                "bench.desktops",
                *("--urls", urls, "--agents", str(cfg.agents), "--prefix", f"{tag}"),
                *("--accept-ms", str(cfg.accept_ms), "--hold-ms", str(cfg.hold_ms)),
                *("--out", str(out_desk)),
            ),
            cfg.workdir / f"desk-{tag}.log",
        )
        await desk.start(stdin=True)
        ready = await desk.wait_line("ready", 60 + cfg.agents / 50)
        if meter is not None:
            await meter.baseline()
            await meter.start()
        watched: dict[str, Proc] = {n.name: n for n in nodes}
        watched["desktops"] = desk
        load = Proc(
            "load",
            bench_child(
                "bench.load",
                *("--urls", urls, "--rate", f"{rate:g}", "--seconds", f"{cfg.seconds:g}"),
                *("--prefix", f"{cfg.run_id}-{tag}", "--out", str(out_load)),
                *("--followup-every", str(cfg.followup_every)),
                *("--followup-ms", f"{cfg.accept_ms + cfg.hold_ms / 2:g}"),
            ),
            cfg.workdir / f"load-{tag}.log",
        )
        await load.start()
        cpu0 = cpu_of(watched)
        profiled = cfg.profile_rate == rate and workers == 1
        if profiled and shutil.which("py-spy"):
            prof_out = cfg.workdir / f"profile-{tag}.txt"
            prof = Proc(
                "py-spy",
                ["py-spy", "record", "-p", str(nodes[0].pid), "-d", f"{cfg.seconds:g}", "-f", "raw",
                 "-r", "200", "-o", str(prof_out), "--nonblocking"],
                cfg.workdir / "py-spy.log",
            )  # fmt: skip
            await prof.start()
        load_cpu = float((await load.wait_line("done", cfg.seconds + 40)).split()[2])
        records = read_json(out_load)
        accepted = sum(1 for r in records if r[5] == 202)
        await wait_count(desk, accepted, max(DRAIN_MIN_S, cfg.seconds))
        await asyncio.sleep(0.2)
        cpu1 = cpu_of(watched)
        redis_fig = await meter.stop(desk.count()) if meter is not None else None
        rss = {n.name: tree_rss_bytes(n.pid) for n in nodes}
        await desk.say("stop")
        await desk.wait_line("done", 60)
        deskres = read_json(out_desk)
        if prof is not None:
            await prof.wait(30)
    finally:
        await stop_procs([prof, load, desk, *nodes])
        if meter is not None:
            await meter.close()
    fig = figures(records, deskres, rate)
    fig["engine"], fig["rate"], fig["nodes"], fig["workers"] = engine, rate, nodes_n, workers
    fig["agents_connected"] = int(ready.split()[1])
    fig["redis"] = redis_fig
    routed = max(fig["routed"], 1)
    fig["cpu_ms_per_event"] = {k: (cpu1[k] - cpu0[k]) * 1000 / routed for k in cpu0}
    fig["cpu_ms_per_event"]["load"] = load_cpu * 1000 / routed
    if redis_fig is not None:
        fig["cpu_ms_per_event"]["redis-server"] = redis_fig["cpu_ms_per_event"]
    fig["node_rss_mb"] = {k: v / 2**20 for k, v in rss.items()}
    fig["desktop_frames"] = deskres["frames"]
    fig["desktop_errors"] = deskres["errors"]
    if prof is not None:
        fig["profile"] = summarize_profile(cfg.workdir / f"profile-{tag}.txt")
    return fig


def figures(records: list[list[Any]], desk: dict[str, Any], rate: float) -> dict[str, Any]:
    delivered: dict[str, list[Any]] = desk["delivered"]
    inf = float("inf")
    lat_all: list[float] = []
    by_kind: dict[str, list[float]] = {"offer": [], "message": []}
    lag: list[float] = []
    answer: list[float] = []
    first_post, last_seen, routed, failed = None, 0, 0, Counter[str]()
    for event_id, _kind, due, posted, answered, status, _conv in records:
        lag.append(posted - due)
        if status != 202:
            failed[str(status)] += 1
            continue
        answer.append(answered - posted)
        first_post = posted if first_post is None else min(first_post, posted)
        got = delivered.get(event_id)
        if got is None:
            lat_all.append(inf)
            continue
        routed += 1
        how, at = got
        last_seen = max(last_seen, at)
        lat_all.append(at - posted)
        by_kind[how].append(at - posted)
    span = (last_seen - first_post) / 1e9 if first_post is not None and last_seen else 0
    return {
        "offered_per_s": rate,
        "posted": len(records),
        "accepted": len(answer),
        "post_failures": dict(failed),
        "routed": routed,
        "undelivered": len(answer) - routed,
        "routed_per_s": routed / span if span > 0 else 0.0,
        "latency": latency(lat_all),
        "latency_offer": latency(by_kind["offer"]),
        "latency_message": latency(by_kind["message"]),
        "post_lag": latency(lag),
        "ingest_202": latency(answer),
    }


def summarize_profile(path: Path, top: int = 25) -> dict[str, Any]:
    """py-spy raw (collapsed) stacks → self and inclusive share per function."""
    selfs: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    with contextlib.suppress(OSError):
        for line in path.read_text(errors="replace").splitlines():
            stack, _, n = line.rpartition(" ")
            if not n.isdigit():
                continue
            count = int(n)
            total += count
            frames = [f.split(" (")[0] + " (" + f.split(" (")[-1].split(":")[0].split("/")[-1] + ")"
                      for f in stack.split(";") if f]  # fmt: skip
            if frames:
                selfs[frames[-1]] += count
            for f in set(frames):
                incl[f] += count
    if not total:
        return {}
    return {
        "samples": total,
        "self": {k: round(v / total, 4) for k, v in selfs.most_common(top)},
        "inclusive": {k: round(v / total, 4) for k, v in incl.most_common(top * 2)},
    }


# -- the peer -----------------------------------------------------------------------------------


async def peer_run(cfg: Config, rate: float) -> dict[str, Any]:
    tag = f"peer-{rate:g}"
    out = cfg.workdir / f"{tag}.json"
    env = bench_env()
    env["OMNIROUTE_BENCH_PEER_URL"] = cfg.redis_url
    env["OMNIROUTE_BENCH_PEER_OUT"] = str(out)
    worker = Proc("saq-worker", bench_child("saq", "bench.peer.settings", "--quiet"),
                  cfg.workdir / f"{tag}-worker.log", env)  # fmt: skip
    producer = Proc(
        "saq-producer",
        bench_child(
            "bench.peer", "produce", "--url", cfg.redis_url, "--rate", f"{rate:g}",
            "--seconds", f"{cfg.seconds:g}", "--prefix", f"{cfg.run_id}-{tag}",
        ),
        cfg.workdir / f"{tag}-producer.log",
    )  # fmt: skip
    meter = RedisMeter(cfg.redis_url)
    try:
        await worker.start()
        await worker.wait_line("ready", 30)
        await meter.baseline()
        await meter.start()
        await producer.start()
        watched = {"saq-worker": worker}
        cpu0 = cpu_of(watched)
        done = (await producer.wait_line("done", cfg.seconds + 40)).split()
        total, producer_cpu = int(done[1]) - int(done[2]), float(done[3])
        await wait_count(worker, total, max(DRAIN_MIN_S, cfg.seconds))
        cpu1 = cpu_of(watched)
        redis_fig = await meter.stop(worker.count())
        await worker.stop()
        got = read_json(out) if out.exists() else []
    finally:
        await stop_procs([producer, worker])
        await meter.close()
    lat = [recv - posted for _n, posted, recv in got]
    first = min((p for _n, p, _r in got), default=0)
    last = max((r for _n, _p, r in got), default=0)
    n = len(got)
    return {
        "rate": rate,
        "enqueued": total,
        "received": n,
        "per_s": n / ((last - first) / 1e9) if n and last > first else 0.0,
        "latency": latency([*lat, *[float("inf")] * max(0, total - n)]),
        "redis": redis_fig,
        "cpu_ms_per_event": {k: (cpu1[k] - cpu0[k]) * 1000 / max(n, 1) for k in cpu0}
        | {"saq-producer": producer_cpu * 1000 / max(n, 1)}
        | {"redis-server": redis_fig["cpu_ms_per_event"]},
    }


# -- the ceilings ---------------------------------------------------------------------------------


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


# -- idle sockets ---------------------------------------------------------------------------------


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


# -- decision latency and the list of round trips -------------------------------------------------


async def decision_latency(cfg: Config, waiting: str, seconds: float) -> dict[str, Any]:
    out = cfg.workdir / "match-bench.json"
    proc = Proc(
        "match_bench",
        bench_child("bench.match_bench", "--redis", cfg.redis_url, "--waiting", waiting,
                    "--seconds", f"{seconds:g}", "--json", str(out), "--fill-seconds", "60"),
        cfg.workdir / "match-bench.log",
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
        rows.append({"engine": run["engine"], "waiting": run["waiting"],
                     "p50_ms": seq.get("p50_ms"), "p99_ms": seq.get("p99_ms"),
                     "decisions_per_s": run.get("sequential", {}).get("ops_per_s")})  # fmt: skip
    return {"rows": rows}


def script_names() -> dict[str, str]:
    """sha1 or function name → "store:NAME" / "engine:NAME" for every script and function the
    server calls."""
    from queues import redis as engine_redis
    from router import store_redis

    names = {}
    for name in store_redis.SCRIPTS:
        names[hashlib.sha1(store_redis.script_source(name).encode()).hexdigest()] = f"store:{name}"
    library, _code = engine_redis.library()
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
