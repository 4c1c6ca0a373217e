"""The runs at one offered rate: routing (our nodes, desktops and poster) with its figures and
its py-spy summary, and the same flow on the saq peer, both measured the same way (post or
enqueue → receipt latency, bench.redis_probe's RedisMeter, CPU per event from /proc).

`Config` is the configuration of one `python -m bench` run, shared by every driver (bench.probes,
bench.ceiling's ws_ceiling, chaos's overload scenario). Imports bench.harness, bench.redis_probe
and bench.stats.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.harness import (
    Node,
    Proc,
    bench_child,
    bench_env,
    cpu_of,
    read_json,
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
    """One `python -m bench` run: where, how many, how fast, how long."""

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
