"""Replay on a built scenario whose answer is known by hand, recorded on both engines.

The centre: one CCS agent logged in but away all day (so the PAM level does not open early),
two idle PAM agents. Five chats of `normal` customers arrive 100 s apart. Each PAM agent
accepts 2 s after an offer, talks 50 s and wraps up 10 s. The fifth customer hangs up after
45 s. The service-level threshold is 40 s.

Recorded policy, PAM after 60 s: c1-c4 are answered at 60 + 2 = 62 s → ASA 62 s, none within
40 s; c5 leaves at 45 s, before PAM opens → SL 0 / 5 = 0 %, one abandon.
New policy, PAM after 30 s: every chat is answered at 30 + 2 = 32 s, c5 too (before its 45 s)
→ ASA 32 s, SL 5 / 5 = 100 %, no abandon. Occupancy of the PAM tier: recorded 4 * 62 s of
2 * 1000 s logged in = 12.4 %; new 5 * 62 s = 15.5 %.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from queues.base import RoutingEngine
from queues.effects import Offer
from queues.policy import Policy
from replay import compare_policies
from replay.recording import from_engine, from_redis, read, write
from replay.synthetic import recorded_day
from tests.conftest import EngineFactory
from tests.support import EPOCH, FakeClock

OLD = Policy(service_level_threshold_s=40.0, presence_ttl_s=3600.0)  # desktops beat: no lapse
NEW = dataclasses.replace(
    OLD, levels={**OLD.levels, "normal": {**OLD.levels["normal"], "PAM": 30.0}}
)


async def record_day(engine: RoutingEngine, clock: FakeClock) -> None:
    """Drive the engine through the centre's day (module docstring) as its desktops would."""

    def at(seconds: float) -> None:
        clock.now = EPOCH + seconds

    at(0)
    await engine.login("ccs1", "CCS")
    for name in ("pam1", "pam2"):
        await engine.login(name, "PAM")
        await engine.set_presence(name, "available")
    offers: dict[str, Offer] = {}
    # the real order of things, by time: ticks open the PAM level at enq + 60
    steps: list[tuple[float, str, str]] = [(100 * i, "arrive", f"c{i + 1}") for i in range(5)]
    for i in range(4):
        t0 = 100 * i
        task = f"c{i + 1}"
        steps += [(t0 + 60, "tick", task), (t0 + 62, "accept", task)]
        steps += [(t0 + 112, "complete", task), (t0 + 122, "done", task)]
    steps.append((445, "withdraw", "c5"))
    for seconds, what, task in sorted(steps):
        at(seconds)
        if what == "arrive":
            await engine.enqueue(task, "cu" + task, "chat")
        elif what == "tick":
            for effect in await engine.tick():
                if isinstance(effect, Offer):
                    offers[effect.task] = effect
        elif what == "accept":
            await engine.accept(offers[task].reservation, offers[task].agent)
        elif what == "complete":
            await engine.complete(task, offers[task].agent)
        elif what == "done":
            await engine.wrapup_done(task, offers[task].agent)
        else:
            await engine.withdraw(task)
    assert sorted(offers) == ["c1", "c2", "c3", "c4"]
    at(1000)
    for name in ("ccs1", "pam1", "pam2"):
        await engine.logout(name)


def check_hand_computation(report: dict[str, Any]) -> None:
    chat = report["compare"]["queues"]["chat"]
    old, new = chat["recorded"], chat["new"]
    assert (old["answered"], old["abandoned"]) == (4, 1)
    assert old["service_level"] == 0.0
    assert old["asa_s"] == 62.0
    assert old["longest_wait_s"] == 62.0
    assert (new["answered"], new["abandoned"]) == (5, 0)
    assert new["service_level"] == 1.0
    assert new["asa_s"] == 32.0
    assert new["longest_wait_s"] == 32.0
    pam = report["compare"]["tiers"]["PAM"]
    assert pam["recorded"]["occupancy"] == 0.124
    assert pam["new"]["occupancy"] == 0.155
    assert report["compare"]["tiers"]["CCS"]["new"]["occupancy"] == 0.0
    assert report["conversations"] == 5 and report["agents"] == 3


async def test_opening_pam_earlier_matches_the_hand_computation_on_the_memory_engine(
    make_engine: EngineFactory, clock: FakeClock, tmp_path: Path
) -> None:
    engine = await make_engine("memory", OLD)
    await record_day(engine, clock)
    recording = await from_engine(engine, exported_ms=round(clock.now * 1000))  # type: ignore[arg-type]
    report = await compare_policies(recording, NEW)
    check_hand_computation(report)
    # the file round trip gives the same report, and the same inputs the same report
    write(recording, tmp_path / "day.jsonl")
    again = await compare_policies(read(tmp_path / "day.jsonl"), NEW)
    for key in ("replay_s",):
        report.pop(key), again.pop(key)
    assert json.dumps(again, sort_keys=True) == json.dumps(report, sort_keys=True)


async def test_a_recording_on_redis_replays_the_same(
    make_engine: EngineFactory, clock: FakeClock, redis_url: str
) -> None:
    engine = await make_engine("redis", OLD)
    await record_day(engine, clock)
    recording = await from_redis(redis_url, engine.domain, OLD, round(clock.now * 1000))
    assert len(recording.traces) == 5
    assert [a[1] for a in recording.actions].count("login") == 3
    check_hand_computation(await compare_policies(recording, NEW))


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "router.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_export_and_replay_from_the_command_line(
    make_engine: EngineFactory, clock: FakeClock, redis_url: str, tmp_path: Path
) -> None:
    engine = await make_engine("redis", OLD)
    await record_day(engine, clock)
    old_toml, new_toml = tmp_path / "old.toml", tmp_path / "new.toml"
    old_toml.write_text("[service_level]\nthreshold_s = 40\n[presence]\nttl_s = 3600\n")
    new_toml.write_text(old_toml.read_text() + "[levels.normal]\nPAM = 30\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIROUTE_")}
    env["OMNIROUTE_ROUTING_DOMAIN"] = engine.domain
    day = tmp_path / "day.jsonl"
    done = run_cli(
        "export", "--from", redis_url, "--out", str(day), "--config", str(old_toml), env=env
    )
    assert done.returncode == 0, done.stderr
    assert "5 tasks" in done.stdout
    out = tmp_path / "report.json"
    done = run_cli(
        "replay", "--from", str(day), "--policy", str(new_toml), "--json", str(out), env=env
    )
    assert done.returncode == 0, done.stderr
    assert "| queue chat | 4 → 5 | 1 → 0 | 0.0 % → 100.0 % | 62.0 s → 32.0 s |" in done.stdout
    check_hand_computation(json.loads(out.read_text()))
    done = run_cli(
        "replay", "--from", str(tmp_path / "missing.jsonl"), "--policy", str(new_toml), env=env
    )
    assert done.returncode == 2 and "missing.jsonl" in done.stderr


async def test_a_replay_in_two_processes_reports_the_same_as_in_one() -> None:
    recording, _ = await recorded_day(agents=20, conversations=1500, seed=3)
    reports = [await compare_policies(recording, NEW, parallel=p) for p in (False, True)]
    for r in reports:
        del r["replay_s"], r["parallel"]
    assert reports[0] == reports[1]
    assert reports[0]["conversations"] > 1000
