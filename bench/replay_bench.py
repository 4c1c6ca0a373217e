"""The replay row of `python -m bench`: a recorded day of a centre replayed under two policies.

`omniroute replay` must take a recorded day of a 200-agent centre (about 50,000 conversations)
in at most 60 s on this machine (issue 12). The day is `replay.synthetic.recorded_day`: made
by running it through the memory engine under the shipped policy, so the recording is what an
engine keeps. It is written to a file and read back, as `omniroute export` and `replay` do;
the timed part is reading the file and replaying it under the recorded policy and under one
that opens PAM to `normal` work after 30 s instead of 60 s.

    python3 -m bench.replay_bench [--agents 200] [--conversations 50000] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from replay import compare_policies
from replay.recording import read, write
from replay.synthetic import recorded_day

GOAL_S = 60.0


async def replay_speed(
    agents: int = 200, conversations: int = 50_000, seed: int = 12
) -> dict[str, Any]:
    recording, made_s = await recorded_day(agents, conversations, seed)
    old = recording.policy
    new = dataclasses.replace(
        old, levels={**old.levels, "normal": {**old.levels["normal"], "PAM": 30.0}}
    )
    with tempfile.TemporaryDirectory(prefix="omniroute-replay-") as tmp:
        path = Path(tmp) / "day.jsonl"
        write(recording, path)
        size = path.stat().st_size
        started = time.perf_counter()
        recording = read(path)
        read_s = time.perf_counter() - started
        result = await compare_policies(recording, new)
        replay_s = time.perf_counter() - started
    total = result["compare"]["total"]
    return {
        "agents": agents,
        "conversations": result["conversations"],
        "record_s": round(made_s, 2),
        "file_mb": round(size / 1e6, 2),
        "read_s": round(read_s, 2),
        "replay_s": round(replay_s, 2),
        "per_policy_s": result["replay_s"],
        "goal_s": GOAL_S,
        "service_level": {k: total[k]["service_level"] for k in ("recorded", "new")},
        "asa_s": {k: total[k]["asa_s"] for k in ("recorded", "new")},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.replay_bench", description=__doc__)
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--conversations", type=int, default=50_000)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    row = asyncio.run(replay_speed(args.agents, args.conversations))
    print(json.dumps(row, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(row, indent=2) + "\n", "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
