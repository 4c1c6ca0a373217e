"""Redis fails over under load: a primary, a replica and a Sentinel, then SIGKILL the primary.

Everything is real and on 127.0.0.1: two `redis-server`s (AOF everysec, the second a replica
of the first), one `redis-sentinel` (quorum 1, down after 1 s), and `omniroute serve --redis
redis+sentinel://…`. Posters keep events coming at a fixed rate; the primary is killed with
-9 in the middle. The node must follow the new primary by itself (ingest answers 202 again,
`/readyz` is ready, without a restart) and the Redis FUNCTION library must be there on the
new primary. What was lost is asked from the outside: every accepted event is posted again,
and an event the store still knows is answered as a duplicate.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import redis

from chaos.harness import JWT_SECRET, REPO, WEBHOOK_SECRET, sign
from chaos.processes import free_port
from queues.redis import LIBRARY

SERVICE = "omni"
DEADLINE_S = 15.0  # anything that waits, waits at most this
SENTINEL = shutil.which("redis-sentinel") or (
    "/usr/bin/redis-sentinel" if Path("/usr/bin/redis-sentinel").exists() else None
)

Figures = dict[str, float | int | str]


def wait_for(check: Callable[[], object], what: str, timeout: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (redis.exceptions.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def client(port: int) -> redis.Redis:  # type: ignore[type-arg]
    return redis.Redis(port=port, socket_timeout=1, socket_connect_timeout=1)


@contextmanager
def process(
    argv: list[str], log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A child process that is killed (-9) on the way out whatever happened."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, cwd=REPO if env else log.parent, env=env
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def redis_argv(port: int, workdir: Path, *extra: str) -> list[str]:
    workdir.mkdir(parents=True, exist_ok=True)
    return [
        "redis-server", "--bind", "127.0.0.1", "--port", str(port), "--dir", str(workdir),
        "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
        "--daemonize", "no", *extra,
    ]  # fmt: skip


@dataclass
class Load:
    """What the posters saw: ids answered 202, and the times of every failed post."""

    accepted: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # id → what was sent
    failed_at: list[float] = field(default_factory=list)  # 503s and broken connections
    statuses: dict[int, int] = field(default_factory=dict)


async def _post(http: aiohttp.ClientSession, base: str, signed: tuple[bytes, str]) -> Any:
    headers = {"Content-Type": "application/json", "X-Omniroute-Signature": signed[1]}
    async with http.post(f"{base}/v1/events", data=signed[0], headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


async def offer_load(base: str, until: float, rate: float, load: Load) -> None:
    """`rate` events a second, each its own request (a fresh id and customer), until `until`."""
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as http:

        async def one() -> None:
            event_id = f"so-{uuid.uuid4().hex}"
            signed = sign({"id": event_id, "type": "message", "channel": "chat",
                           "from": f"visitor:{event_id[3:15]}", "body": "x"})  # fmt: skip
            try:
                status, _ = await _post(http, base, signed)
            except (aiohttp.ClientError, TimeoutError, ValueError):
                status = 0
            load.statuses[status] = load.statuses.get(status, 0) + 1
            if status == 202:
                load.accepted[event_id] = signed
            else:
                load.failed_at.append(time.monotonic())

        pending: set[asyncio.Task[None]] = set()
        next_at = time.monotonic()
        while next_at < until:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            task = asyncio.create_task(one())
            pending.add(task)
            task.add_done_callback(pending.discard)
            next_at += 1 / rate
        await asyncio.wait_for(asyncio.gather(*pending), 10)


async def remembered(base: str, load: Load) -> int:
    """How many accepted events the store still knows: each re-post must be a duplicate."""
    known = 0
    async with aiohttp.ClientSession() as http:
        for signed in load.accepted.values():
            status, answer = await _post(http, base, signed)
            assert status == 202, answer
            known += int(answer["duplicates"])
    return known


def ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/readyz", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


async def sentinel_failover(
    workdir: Path, rate: float = 150.0, before_s: float = 3.0, after_s: float = 9.0
) -> Figures:
    """Load through a node on a Sentinel URL; SIGKILL the primary after `before_s`. Figures:
    the window of failed posts after the kill, and how many accepted events were lost."""
    if SENTINEL is None or shutil.which("redis-server") is None:
        return {"skipped": "redis-sentinel or redis-server not installed"}
    primary, replica, sentinel, http_port = (free_port() for _ in range(4))
    conf = workdir / "sentinel.conf"
    conf.write_text(
        f"port {sentinel}\nbind 127.0.0.1\ndaemonize no\ndir {workdir}\n"
        f"sentinel monitor {SERVICE} 127.0.0.1 {primary} 1\n"
        f"sentinel down-after-milliseconds {SERVICE} 1000\n"
        f"sentinel failover-timeout {SERVICE} 10000\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIROUTE_")}
    env.update(OMNIROUTE_WEBHOOK_SECRET=WEBHOOK_SECRET, OMNIROUTE_JWT_SECRET=JWT_SECRET)
    url = f"redis+sentinel://127.0.0.1:{sentinel}/{SERVICE}/0"
    base = f"http://127.0.0.1:{http_port}"
    log = workdir / "node.log"
    with ExitStack() as stack:
        first = stack.enter_context(
            process(redis_argv(primary, workdir / "p"), workdir / "primary.log")
        )
        wait_for(lambda: client(primary).ping(), "the primary")
        stack.enter_context(
            process(
                redis_argv(replica, workdir / "r", "--replicaof", "127.0.0.1", str(primary)),
                workdir / "replica.log",
            )
        )
        wait_for(
            lambda: client(replica).info("replication")["master_link_status"] == "up",
            "the replica's link",
        )
        stack.enter_context(process([SENTINEL, str(conf)], workdir / "sentinel.log"))
        wait_for(
            lambda: len(client(sentinel).sentinel_slaves(SERVICE)) == 1,  # type: ignore[no-untyped-call]
            "Sentinel to see the replica",
        )
        node = stack.enter_context(
            process(
                [sys.executable, "-m", "router.cli", "serve", "--host", "127.0.0.1",
                 "--port", str(http_port), "--redis", url],
                log,
                env,
            )
        )  # fmt: skip
        wait_for(lambda: ready(base), "the node to be ready")

        load = Load()
        poster = asyncio.create_task(
            offer_load(base, time.monotonic() + before_s + after_s, rate, load)
        )
        await asyncio.sleep(before_s)
        first.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        await asyncio.wait_for(poster, before_s + after_s + 15)

        # the node followed: Sentinel names the replica, and ingest works on it
        address = client(sentinel).sentinel_get_master_addr_by_name(SERVICE)  # type: ignore[no-untyped-call]
        assert int(address[1]) == replica, f"Sentinel still names {address}"
        assert node.poll() is None, "the node must not have restarted"
        assert ready(base), "the node is not ready on the new primary"
        name = LIBRARY.library()[0].encode()
        libraries = client(replica).function_list()  # type: ignore[attr-defined]
        assert any(name in lib for lib in libraries), "no FUNCTION library on the new primary"
        after = [t for t in load.failed_at if t >= killed_at]
        window = (max(after) - killed_at) if after else 0.0
        before = sum(1 for t in load.failed_at if t < killed_at)
        lost = len(load.accepted) - await remembered(base, load)
        node.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(node.wait, 15)
    figures: Figures = {
        "accepted": len(load.accepted),
        "refused": len(load.failed_at),
        "window_503_s": round(window, 2),
        "accepted_lost": lost,
        "statuses": " ".join(f"{k}:{v}" for k, v in sorted(load.statuses.items())),
    }
    text = log.read_text(errors="replace")
    assert before == 0, f"{before} posts failed before the kill"
    assert after, "the kill was not felt: this run measured nothing"
    assert window < after_s - 2, f"ingest failed for {window:.1f} s after the kill"
    assert load.statuses.get(202, 0) > rate * (before_s + 2), "too few accepted after the kill"
    # async replication may lose the last writes before the kill: bounded, and reported
    assert lost <= rate, f"{lost} accepted events lost"
    assert code == 0 and "Traceback" not in text, text[-2000:]
    return figures
