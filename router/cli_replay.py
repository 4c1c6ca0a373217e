"""`omniroute export` and `omniroute replay` (the package `replay` does the work).

    omniroute export --from redis://host:6379/0 --out day.jsonl [--config FILE]
    omniroute export --from http://127.0.0.1:8080 --token OPS_JWT --out day.jsonl  # memory
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

import aiohttp

from replay import compare_policies, report
from replay.recording import Recording, RecordingError, from_redis, parse, read, write
from router.settings import Settings, load_settings

USAGE_ERROR = 2
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
HTTP_SCHEMES = ("http://", "https://")
FETCH_TIMEOUT_S = 300.0


def _settings(args: argparse.Namespace, env: Mapping[str, str]) -> Settings:
    return load_settings(args.config or env.get("OMNIROUTE_CONFIG") or None, env)


async def _load(source: str, settings: Settings, token: str | None = None) -> Recording:
    if source.startswith(REDIS_SCHEMES):
        now_ms = round(time.time() * 1000)
        return await from_redis(source, settings.domain, settings.policy, now_ms)
    if source.startswith(HTTP_SCHEMES):
        return await _fetch(source, token or "")
    return read(source)


async def _fetch(base: str, token: str) -> Recording:
    """A serving node's recording (`GET /v1/recording`, ops token): the only way out of a
    memory engine, which keeps it in the serving process."""
    if not token:
        raise RecordingError("an http(s) source needs --token: a token with role ops")
    url = base.rstrip("/") + "/v1/recording"
    timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S)
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.get(url, headers={"Authorization": f"Bearer {token}"}) as answer,
    ):
        if answer.status != 200:
            raise RecordingError(f"{url}: the server answered {answer.status}")
        return parse(await answer.text(), url)


def export(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    settings = _settings(args, env)
    if not args.source.startswith(REDIS_SCHEMES + HTTP_SCHEMES):
        print("omniroute export: --from must be a redis:// or http(s):// URL", file=sys.stderr)
        return USAGE_ERROR
    token = args.token
    try:
        recording = asyncio.run(_load(args.source, settings, token))
        write(recording, args.out)
    except (OSError, RecordingError, aiohttp.ClientError) as exc:
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
