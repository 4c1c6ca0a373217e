"""`omniroute export` and `omniroute replay` (the package `replay` does the work).

    omniroute export --from redis://host:6379/0 --out day.jsonl [--config FILE]
    omniroute replay --from day.jsonl|redis://… --policy new.toml [--json OUT] [--png OUT]

The domain, and for a Redis source the recorded policy, come from the settings (`--config`,
`OMNIROUTE_*`) as `omniroute serve` reads them; a file carries the policy it was recorded
under. `--policy FILE` is read on top of the shipped defaults, like any settings file. A
problem is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Mapping

from replay import compare_policies, report
from replay.recording import Recording, RecordingError, from_redis, read, write
from router.settings import Settings, load_settings

USAGE_ERROR = 2
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def _settings(args: argparse.Namespace, env: Mapping[str, str]) -> Settings:
    return load_settings(args.config or env.get("OMNIROUTE_CONFIG") or None, env)


async def _load(source: str, settings: Settings) -> Recording:
    if source.startswith(REDIS_SCHEMES):
        now_ms = round(time.time() * 1000)
        return await from_redis(source, settings.domain, settings.policy, now_ms)
    return read(source)


def export(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    settings = _settings(args, env)
    if not args.source.startswith(REDIS_SCHEMES):
        print("omniroute export: --from must be a redis:// URL", file=sys.stderr)
        return USAGE_ERROR
    try:
        recording = asyncio.run(_load(args.source, settings))
        write(recording, args.out)
    except (OSError, RecordingError) as exc:
        print(f"omniroute export: {exc}", file=sys.stderr)
        return USAGE_ERROR
    print(
        f"wrote {args.out}: {len(recording.traces)} tasks, {len(recording.actions)} agent actions"
    )
    return 0


def replay(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    settings = _settings(args, env)
    new = load_settings(args.policy, env).policy  # SettingsError: reported by the caller
    try:
        recording = asyncio.run(_load(args.source, settings))
    except (OSError, RecordingError) as exc:
        print(f"omniroute replay: {exc}", file=sys.stderr)
        return USAGE_ERROR
    result = asyncio.run(compare_policies(recording, new))
    result["policy"] = args.policy
    print(
        f"{result['conversations']} conversations, {result['agents']} agents over "
        f"{result['span_s']:g} s; service level within {result['threshold_s']:g} s; "
        f"recorded → {args.policy}"
    )
    print(report.table(result["compare"]))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            out.write(report.to_json(result) + "\n")
    if args.png:
        print(report.write_png(result["compare"], args.png))
    return 0
