"""`python -m bench --quick` runs end to end, reports every figure and leaves nothing running.

No timing assertions: the figures of a smoke run on a shared machine mean nothing. What must
hold: the table names every figure, the JSON has every key, and no process the bench started
(nodes, desktops, poster, saq, the ceiling servers, its redis-server) is alive afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bench.report import GOALS, ROW_KEYS

REPO = Path(__file__).resolve().parents[1]
LATENCY_KEYS = ("p50_ms", "p95_ms", "p99_ms", "max_ms")


def in_session(sid: int) -> set[int]:
    """Live processes of session `sid` (the bench runs in a session of its own, so its
    children stay in it even when they are orphaned), from /proc."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            found.add(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="the bench reads /proc")
def test_quick_bench_reports_every_figure_and_stops_everything(tmp_path: Path) -> None:
    out_json, out_png = tmp_path / "bench.json", tmp_path / "bench.png"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIROUTE_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", "--quick", "--json", str(out_json), "--png", str(out_png)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        left = in_session(proc.pid)
        for pid in left:  # never leave them behind, even when the test fails
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert proc.returncode == 0, stderr[-4000:]
    assert not left, f"still running after the bench (redis-server, nodes, helpers): {left}"

    for heading in (
        "routed/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "message p99",
        "Redis req/event",
        "Redis cmds/event",
        "CPU ms/event",
        "÷ peer routed/s",
        "÷ script calls/s ceiling",
        "p99 ÷ WS p99 ceiling",
        "peer: saq",
        "ceiling: no-op script",
        "ceiling: aiohttp WS frames",
        "idle sockets",
        "waiting tasks",
        "Redis requests of one routed event",
        "Replay of a recorded day",
    ):
        assert heading in stdout, heading
    for goal in GOALS:
        assert goal in stdout, goal

    results = json.loads(out_json.read_text())
    assert {"machine", "options", "ceiling", "routing", "peer", "idle", "goals"} <= set(results)
    engines = {row["engine"] for row in results["routing"]}
    assert engines == {"redis", "memory"}
    for row in results["routing"]:
        for key in ROW_KEYS:
            assert key in row, key
        for name in ("latency", "latency_offer", "latency_message"):
            assert set(LATENCY_KEYS) <= set(row[name]), name
        assert row["routed"] > 0, row
        if row["engine"] == "redis":
            assert {"requests_per_event", "commands_per_event"} <= set(row["redis"])
        assert {"node-0", "desktops", "load"} <= set(row["cpu_ms_per_event"])
    assert results["peer"] and all(p["received"] > 0 for p in results["peer"])
    assert {"sequential", "64 in flight"} <= set(results["ceiling"]["redis"])
    assert "max" in results["ceiling"]["ws"]["phases"]
    assert {i["engine"] for i in results["idle"]} == {"redis", "memory"}
    assert all(i["points"] and i["points"][-1]["rss_mb"] > 0 for i in results["idle"])
    decided = {
        (r["engine"], r["waiting"], r["skills"]) for r in results["decision_latency"]["rows"]
    }
    assert len(decided) == 8, decided  # two engines, two W, without and with 50 skills
    assert results["round_trips"]["per_event"]
    assert results["replay"]["conversations"] > 0 and results["replay"]["replay_s"] > 0
    assert set(GOALS) == set(results["goals"])
    assert out_png.exists() or "matplotlib is not installed" in results["png_note"]
