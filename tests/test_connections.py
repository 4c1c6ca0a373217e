"""Slow and surplus connections against a real `omniroute serve` with a low `ulimit -n`.

1,000 slowloris clients (a request head trickled a byte at a time, reconnecting when cut off)
against a node whose open-files limit is 1,024: its health check must keep answering, every
slow connection must be closed at the head deadline, and the log must hold a few lines with
counts, not one per refusal. The rest are the guard's parts on their own.
"""

from __future__ import annotations

import asyncio
import errno
import io
import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import structlog

from chaos.slow import health_checks, slow_client
from router.connections import BurstLog, connection_cap, quiet_accept_errors
from router.logs import configure_logging
from tests.support import free_port

REPO = Path(__file__).resolve().parents[1]
SECRET = "test-signing-secret-of-at-least-32-bytes"
HEAD_TIMEOUT_S = 2.0
NOFILE = 1024
SLOW = 1000
ATTACK_S = 6.0  # longer than the head deadline: every slow client is cut off at least once


@contextmanager
def serve(tmp_path: Path, **env: str) -> Iterator[tuple[str, Path]]:
    """`omniroute serve` with RLIMIT_NOFILE = NOFILE, its log in a file (never a full pipe)."""
    port = free_port()
    log = tmp_path / "serve.log"
    full = {k: v for k, v in os.environ.items() if not k.startswith("OMNIROUTE_")}
    full.update({"OMNIROUTE_JWT_SECRET": SECRET, **env})

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))

    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "router.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                f"{port}",
            ],
            cwd=REPO,
            env=full,
            stdout=subprocess.DEVNULL,
            stderr=out,
            preexec_fn=limit,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while not log.read_text().count('"connections.limits"'):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "serve did not start"
            time.sleep(0.1)
        yield base, log
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0, log.read_text()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


@pytest.mark.slow
async def test_slowloris_neither_holds_the_node_nor_starves_health_checks(
    tmp_path: Path,
) -> None:
    env = {"OMNIROUTE_CONNECTIONS_IDLE_TIMEOUT_S": str(HEAD_TIMEOUT_S)}
    with serve(tmp_path, **env) as (base, log):
        port = int(base.rsplit(":", 1)[1])
        until = time.monotonic() + ATTACK_S
        lifetimes: list[float] = []
        attack = [asyncio.create_task(slow_client(port, until, lifetimes)) for _ in range(SLOW)]
        await asyncio.sleep(1.0)  # the slow clients are in
        checks = await health_checks(base, until)
        await asyncio.wait_for(asyncio.gather(*attack), ATTACK_S + 5)
    text = log.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    statuses = [status for status, _ in checks]
    took = sorted(seconds for _, seconds in checks)
    p99 = took[int(len(took) * 0.99) - 1]
    print(f"health checks {len(checks)}, all 200: {set(statuses) == {200}}, p99 {p99:.3f} s")
    print(f"slow connections cut {len(lifetimes)}, longest {max(lifetimes):.2f} s")
    assert len(checks) >= 10 and set(statuses) == {200}, checks
    assert len(lifetimes) >= SLOW  # every slow client was cut off at least once
    # at the head deadline (or earlier, evicted for a newcomer at the cap), never held longer
    assert max(lifetimes) < HEAD_TIMEOUT_S + 1.5
    assert "Too many open files" not in text
    burst = [line for line in lines if line["event"].startswith("connections.")]
    kinds = {line["event"] for line in burst}
    assert sum(line["count"] for line in burst if "count" in line) >= SLOW
    assert len(burst) < 40, [line["event"] for line in burst]  # counts, not a line each
    limits = next(line for line in lines if line["event"] == "connections.limits")
    assert limits["cap"] == connection_cap(0, NOFILE) < SLOW  # so the cap was reached too
    assert "connections.evicted" in kinds  # slow ones made room for the health checks


@pytest.mark.slow
async def test_a_slow_request_head_is_cut_at_the_deadline(tmp_path: Path) -> None:
    env = {"OMNIROUTE_CONNECTIONS_IDLE_TIMEOUT_S": str(HEAD_TIMEOUT_S)}
    with serve(tmp_path, **env) as (base, log):
        port = int(base.rsplit(":", 1)[1])
        lifetimes: list[float] = []
        until = time.monotonic() + HEAD_TIMEOUT_S + 1.0  # one connection each
        await asyncio.wait_for(
            asyncio.gather(*(slow_client(port, until, lifetimes) for _ in range(50))), 10
        )
    assert len(lifetimes) == 50
    assert HEAD_TIMEOUT_S - 0.2 < min(lifetimes) <= max(lifetimes) < HEAD_TIMEOUT_S + 1.0
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    cut = [line for line in lines if line["event"] == "connections.head_timeout"]
    assert sum(line["count"] for line in cut) == 50 and len(cut) <= 2


def test_the_cap_leaves_descriptors_for_the_rest() -> None:
    assert connection_cap(0, 1024) == 768
    assert connection_cap(0, 64) == 48
    assert connection_cap(100, 1024) == 100
    assert connection_cap(5000, 1024) == 768  # never above what the limit allows
    assert connection_cap(0, 1_000_000) == 1_000_000 - 256


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    saved = structlog.get_config()
    configure_logging(json=True, level="info", stream=buffer, cache=False)
    try:
        yield buffer
    finally:
        structlog.configure(**saved)


def events(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


async def test_a_burst_is_one_line_then_one_per_window_with_counts(
    captured: io.StringIO,
) -> None:
    burst = BurstLog("connections.refused", every_s=0.2)
    for _ in range(5000):
        burst.note(cap=10)
    await asyncio.sleep(0.3)  # the window closes: its count is logged
    await asyncio.sleep(0.3)  # quiet: nothing more
    lines = events(captured)
    assert [(line["event"], line["count"]) for line in lines] == [
        ("connections.refused", 1),
        ("connections.refused", 4999),
    ]
    assert burst.total == 5000


async def test_failed_accepts_are_counted_not_logged_each(captured: io.StringIO) -> None:
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    try:
        burst = quiet_accept_errors(loop)
        burst.every_s = 0.2
        for _ in range(10_000):  # as asyncio reports them: one per failed accept()
            loop.call_exception_handler(
                {
                    "message": "socket.accept() out of system resource",
                    "exception": OSError(errno.EMFILE, "Too many open files"),
                }
            )
        loop.call_exception_handler({"message": "something else"})
        await asyncio.sleep(0.3)
    finally:
        loop.set_exception_handler(None)
    assert [context["message"] for context in seen] == ["something else"]  # passed on
    lines = events(captured)
    assert [(line["event"], line["count"], line["error"]) for line in lines] == [
        ("connections.accept_failed", 1, "EMFILE"),
        ("connections.accept_failed", 9999, "EMFILE"),
    ]
