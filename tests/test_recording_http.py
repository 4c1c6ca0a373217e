"""`GET /v1/recording` and `omniroute export --from http://…`: a memory engine's recording out
of the serving process, over real HTTP."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from replay.recording import parse, read
from tests.test_e2e import Server, event, make_server, make_token, server, take

__all__ = ["make_server", "server"]  # the fixtures, used by name


async def test_ops_takes_the_recording_and_nobody_else(server: Server) -> None:
    desk = await server.connect("c1", "CCS")
    conv = await server.send_event(event(body="hallo"))
    await take(desk, conv)
    status, text = await server.get("/v1/recording", server.ops_token())
    assert status == 200
    recording = parse(text, "the node")
    [(name, rows)] = recording.traces.items()
    assert name.startswith(f"{conv}@")
    assert [r[1] for r in rows] == ["enqueued", "offered", "assigned"]
    assert [(a[1], a[2]) for a in recording.actions] == [("login", "c1"), ("presence", "c1")]
    assert "hallo" not in text
    for token, code in (
        (make_token("c1", "CCS"), 403),
        (make_token("s", "SAM", "supervisor"), 403),
    ):
        status, answer = await server.get("/v1/recording", token)
        assert status == code and answer["error"]["code"] == "forbidden"
    status, answer = await server.get("/v1/recording")
    assert status == 401


async def test_export_from_a_serving_node(server: Server, tmp_path: Path) -> None:
    conv = await server.send_event(event(body="hallo"))
    out = tmp_path / "day.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIROUTE_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "router.cli", "export", "--from", server.base, "--out", str(out),
        "--token", server.ops_token(),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, stderr.decode()
    assert "1 tasks" in stdout.decode()
    assert [name.split("@")[0] for name in read(out).traces] == [conv]
