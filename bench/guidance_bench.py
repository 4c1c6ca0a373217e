"""The guidance row of `python -m bench`: the rules for one customer, with 500 rules in play.

Issue 13: evaluating the guidance rules for one customer takes at most 1 ms at p99 with 500
rules, fast enough to use during the call. The rules are a mix of alerts and suggestions with
one to three conditions over the fields real rules use (coins, country, top-up, age, channel,
contacts today); each evaluation is `router.guidance.Guidance.frames` on the conversation
object an offer carries, for a customer drawn at random, timed one by one.

    python3 -m bench.guidance_bench [--rules 500] [--evaluations 5000] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.stats import summarize
from router.guidance import Condition, Guidance, GuidanceRule

GOAL_P99_MS = 1.0
COUNTRIES = ("DE", "AT", "CH", "FR", "NL", "PL", "IT", "ES")


def rules(count: int, rng: random.Random) -> list[GuidanceRule]:
    def condition() -> Condition:
        kind = rng.randrange(6)
        if kind == 0:
            return Condition("coins", rng.choice(("gte", "lt")), rng.randrange(0, 1000))
        if kind == 1:
            return Condition("country", "eq", rng.choice(COUNTRIES))
        if kind == 2:
            return Condition("country", "in", tuple(rng.sample(COUNTRIES, 3)))
        if kind == 3:
            return Condition("top_up", "truthy", rng.random() < 0.5)
        if kind == 4:
            return Condition("age", rng.choice(("gt", "lte")), rng.randrange(18, 80))
        return Condition("contacts_today", "gte", rng.randrange(1, 4))

    out = []
    for n in range(count):
        when = tuple(condition() for _ in range(rng.randint(1, 3)))
        if n % 2:
            offer = {"id": f"o{n}", "title": f"Offer {n}", "text": "A text of a few words."}
            out.append(GuidanceRule(f"r{n}", "suggestion", when, offer=offer, weight=n % 17))
        else:
            out.append(GuidanceRule(f"r{n}", "alert", when, text=f"Alert {n}", level="info"))
    return out


def conversation(n: int, rng: random.Random, now: datetime) -> dict[str, Any]:
    today = now.date().isoformat()
    history = [
        {"direction": "in", "at": f"{today}T0{h}:00:00.000Z", "body": "…"}
        for h in range(rng.randint(1, 4))
    ]
    customer = {
        "id": f"c{n}",
        "coins": rng.randrange(0, 1200),
        "country": rng.choice(COUNTRIES),
        "top_up": rng.random() < 0.3,
        "age": rng.randrange(16, 90),
        "messages_in": len(history),
    }
    return {"id": f"cv-{n}", "customer": customer, "last_channel": "chat", "history": history}


def guidance_speed(count: int = 500, evaluations: int = 5_000, seed: int = 13) -> dict[str, Any]:
    rng = random.Random(seed)
    guide = Guidance(rules(count, rng))
    now = datetime.now(UTC)
    convs = [conversation(n, rng, now) for n in range(200)]
    samples: list[int] = []
    shown = 0
    for n in range(evaluations):
        conv = convs[n % len(convs)]
        t0 = time.perf_counter_ns()
        frames = guide.frames(conv, now)
        samples.append(time.perf_counter_ns() - t0)
        shown += len(frames)
    summary = summarize(samples)
    return {
        "rules": count,
        "evaluations": evaluations,
        "frames_per_evaluation": round(shown / evaluations, 1),
        **summary,
        "goal_p99_ms": GOAL_P99_MS,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=500)
    parser.add_argument("--evaluations", type=int, default=5_000)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    result = guidance_speed(args.rules, args.evaluations)
    print(
        f"{result['rules']} rules, {result['evaluations']} evaluations: p50 "
        f"{result['p50_ms']:.3f} ms, p99 {result['p99_ms']:.3f} ms, max {result['max_ms']:.3f} ms "
        f"({result['frames_per_evaluation']} frames each; goal p99 <= {GOAL_P99_MS} ms)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
