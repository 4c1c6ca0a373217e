"""Replay: recorded traffic through the memory engine under another policy, compared.

    omniroute export --from REDIS_URL --out FILE       # the recording, to a file
    omniroute replay --from REDIS_URL|FILE --policy new.toml [--json OUT] [--png OUT]

`replay.recording` reads what the engines keep (`queues.trace`), `replay.model` turns it into
traffic and behaviour, `replay.simulate` runs one policy over it in simulated time and
`replay.report` compares the two runs. docs/explain.md states the model and shows a report.
"""

from __future__ import annotations

import time
from typing import Any

from queues.policy import Policy
from replay import report
from replay.model import scenario
from replay.recording import Recording
from replay.simulate import Replay

__all__ = ["Recording", "compare_policies"]


async def compare_policies(recording: Recording, new: Policy) -> dict[str, Any]:
    """Replay `recording` under its own policy and under `new`; the report (replay.report)."""
    plan = scenario(recording)
    threshold_ms = round(recording.policy.service_level_threshold_s * 1000)
    runs: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    for name, policy in (("recorded", recording.policy), ("new", new)):
        started = time.perf_counter()
        outcome = await Replay(policy, plan).run()
        seconds[name] = round(time.perf_counter() - started, 3)
        runs[name] = report.figures(outcome, threshold_ms)
    side = report.compare(runs["recorded"], runs["new"])
    return {
        "conversations": len(plan.conversations),
        "left_out_open": plan.open_tasks,
        "agents": len({a[2] for a in plan.actions}),
        "span_s": round((plan.end_ms - plan.start_ms) / 1000, 3),
        "threshold_s": threshold_ms / 1000,
        "replay_s": seconds,
        "compare": side,
    }
