"""`python -m chaos`: run the fault scenarios and print each one's figures and promise.

    python -m chaos                      # every scenario, full size (about 5 minutes)
    python -m chaos --only kill,pause    # some of them
    python -m chaos --quick              # small sizes (what tests/test_failover.py runs)
    python -m chaos --json out.json

Everything runs on 127.0.0.1 with its own redis-server and nodes in a temporary directory,
bounded in time; a broken promise is reported as FAILED and makes the exit status 1. Do not
run it beside a benchmark: both measure time on the same cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from chaos import edges, exposure, hostile, provider, scenarios, sentinel, slow

Run = Callable[[Path, bool], Awaitable[scenarios.Figures]]

# name → (what it does, what it promises, how to run it full or quick)
SCENARIOS: dict[str, tuple[str, str, Run]] = {
    "kill": (
        "node kill -9 under load (2 nodes)",
        "0 lost, 0 doubled, re-offered within 5 s",
        lambda d, q: scenarios.node_kill(d, events=100 if q else 400, rate=60 if q else 120),
    ),
    "pause": (
        "SIGSTOP a node 4 leases, SIGCONT",
        "0 assigned or delivered twice; the node learns it was fenced",
        lambda d, q: scenarios.node_pause(d, events=40),
    ),
    "desktops": (
        "one agent on two nodes, one desktop closed",
        "the agent stays online",
        lambda d, q: scenarios.two_desktops(d),
    ),
    "reply": (
        "SMS reply acked, its node killed -9 mid-send",
        "sent exactly once by a survivor; the agent told `sent`",
        lambda d, q: provider.reply_kill(d),
    ),
    "redis": (
        "Redis kill -9 with AOF (everysec), restart after 1 s",
        "0 acked lost; 503 while down; recovers by itself",
        lambda d, q: scenarios.redis_kill(d, seconds=4 if q else 10),
    ),
    "sentinel": (
        "Sentinel failover: SIGKILL the primary under load (replica + sentinel)",
        "the node follows by itself; 503 window and accepted lost measured",
        lambda d, q: sentinel.sentinel_failover(d, rate=100 if q else 150, after_s=7 if q else 9),
    ),
    "signatures": (
        "mutated signatures and bodies",
        "0 accepted",
        lambda d, q: hostile.signatures(d, count=1000 if q else 10_000),
    ),
    "accept-race": (
        "offer.accept sent at its reservation's deadline (timeout 1 s)",
        "exactly one outcome each: assigned XOR revoked",
        lambda d, q: edges.accept_race(d, races=100 if q else 1000, agents=16 if q else 40),
    ),
    "webhooks": (
        "the same signed event and SMS posted at once and again; SMS statuses out of order",
        "0 duplicates routed; the status never moves backwards",
        lambda d, q: edges.webhooks(d, copies=10 if q else 50),
    ),
    "tokens": (
        "expired, forged, alg none, wrong-role tokens and a foreign Origin",
        "0 let in on the agent socket or the ops endpoints",
        lambda d, q: hostile.tokens(d),
    ),
    "frames": (
        "hostile frames on the agent socket, bombs on ingest",
        "0 crashes; /healthz answers; a bystander desktop is still routed to",
        lambda d, q: hostile.frames(d, rounds=1 if q else 5),
    ),
    "slowloris": (
        "slow HTTP heads and WebSocket upgrades while a client polls /healthz",
        "every check answered; every slow connection cut at the head deadline",
        lambda d, q: slow.slowloris(d, slow=200 if q else 1000, seconds=5 if q else 15),
    ),
    "mime": (
        "hostile MIME over SMTP to the node's listener",
        "every message answered; 0 crashes; a good mail still routed",
        lambda d, q: exposure.mime(d, rounds=1 if q else 5),
    ),
    "pii": (
        "PII canaries through ingest, SMS webhooks, chat, SMTP, agent frames and 404 paths",
        "0 canaries in the node's log",
        lambda d, q: exposure.pii(d),
    ),
    "overload": (
        "open-loop load at 2x one node's capacity",
        "0 accepted lost; the accepted offered within max_backlog_s (p99_s ≤ 10); "
        "the rest refused 503",
        lambda d, q: scenarios.overload(
            d, rate=400 if q else 2000, seconds=5 if q else 60, agents=50 if q else 300
        ),
    ),
}


def options(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m chaos",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--only", default=",".join(SCENARIOS), help="scenarios, comma-separated")
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    args.names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in args.names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {unknown[0]!r}; known: {', '.join(SCENARIOS)}")
    return args


async def run(names: Sequence[str], quick: bool) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for name in names:
        what, promise, scenario = SCENARIOS[name]
        print(f"- {name}: {what} …", file=sys.stderr, flush=True)
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=f"chaos-{name}-") as tmp:
            try:
                figures: Any = await scenario(Path(tmp), quick)
                held = True
            except AssertionError as broken:
                figures, held = {"broken": str(broken)[:300]}, False
        took = round(time.monotonic() - started, 1)
        row = {"scenario": name, "what": what, "promise": promise, "held": held}
        rows.append({**row, "seconds": took, "figures": figures})
    return rows


def table(rows: Sequence[dict[str, Any]]) -> str:
    lines = ["| scenario | promise | held | figures |", "|---|---|---|---|"]
    for row in rows:
        figures = ", ".join(f"{k} {v}" for k, v in row["figures"].items())
        held = "yes" if row["held"] else "**FAILED**"
        lines.append(f"| {row['what']} | {row['promise']} | {held} | {figures} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = options(argv)
    rows = asyncio.run(run(args.names, args.quick))
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0 if all(row["held"] for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
