"""Replay: recorded traffic through the memory engine under another policy, compared.

    omniroute export --from REDIS_URL --out FILE       # the recording, to a file
    omniroute replay --from REDIS_URL|FILE --policy new.toml [--json OUT] [--png OUT]

`replay.recording` reads what the engines keep (`queues.trace`), `replay.model` turns it into
traffic and behaviour, `replay.simulate` runs one policy over it in simulated time and
`replay.report` compares the two runs; `replay.synthetic` makes a recorded day from a seed
(for the benchmark). docs/explain.md states the model and shows a report.

May import `queues` (the policy, the memory engine, its trace) and nothing else of omniroute:
`router.cli_replay` and `bench` call it, never the other way (tests/test_layout.py).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from queues.policy import Policy
from replay import report
from replay.model import Scenario, scenario
from replay.recording import Recording
from replay.simulate import Outcome, Replay

__all__ = ["Recording", "compare_policies"]


PARALLEL_FROM = 2_000  # conversations: below this, a second process costs more than it saves


def _run_one(policy: Policy, plan: Scenario) -> tuple[Outcome, float]:
    """One replay, timed; a whole process of its own when run in parallel."""
    started = time.perf_counter()
    outcome = asyncio.run(Replay(policy, plan).run())
    return outcome, round(time.perf_counter() - started, 3)


async def compare_policies(
    recording: Recording, new: Policy, *, parallel: bool | None = None
) -> dict[str, Any]:
    """Replay `recording` under its own policy and under `new`; the report (replay.report).

    The two replays are independent: with `parallel` (default: a large recording on a machine
    with more than one core) each runs in a process of its own, side by side. Every replay is
    deterministic, so where it runs changes nothing in the report.
    """
    plan = scenario(recording)
    threshold_ms = round(recording.policy.service_level_threshold_s * 1000)
    policies = {"recorded": recording.policy, "new": new}
    if parallel is None:
        parallel = (os.cpu_count() or 1) > 1 and len(plan.conversations) >= PARALLEL_FROM
    results: dict[str, tuple[Outcome, float]] = {}
    if parallel:
        loop = asyncio.get_running_loop()
        spawn = multiprocessing.get_context("spawn")  # no fork of a process with a running loop
        with ProcessPoolExecutor(max_workers=2, mp_context=spawn) as pool:
            futures = {
                n: loop.run_in_executor(pool, _run_one, p, plan) for n, p in policies.items()
            }
            for name, future in futures.items():
                results[name] = await future
    else:
        for name, policy in policies.items():
            started = time.perf_counter()
            outcome = await Replay(policy, plan).run()
            results[name] = (outcome, round(time.perf_counter() - started, 3))
    runs = {name: report.figures(out, threshold_ms) for name, (out, _s) in results.items()}
    seconds = {name: secs for name, (_out, secs) in results.items()}
    side = report.compare(runs["recorded"], runs["new"])
    return {
        "conversations": len(plan.conversations),
        "left_out_open": plan.open_tasks,
        "agents": len({a[2] for a in plan.actions}),
        "span_s": round((plan.end_ms - plan.start_ms) / 1000, 3),
        "threshold_s": threshold_ms / 1000,
        "replay_s": seconds,
        "parallel": parallel,
        "compare": side,
    }
