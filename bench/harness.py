"""Processes of one benchmark run: `omniroute serve` nodes and helper processes, the facts of
the machine they run on, and the SIGTERM handler that makes sure they are stopped.

Everything started here is a child of the bench and is stopped in `finally` by whoever
started it (`Proc.stop`: SIGTERM, a bounded wait, then SIGKILL). Only 127.0.0.1 is used.
CPU seconds and RSS are read from /proc (Linux); CLOCK_MONOTONIC is shared by all processes,
so `time.monotonic_ns()` stamps taken in different processes can be subtracted. The
redis-server a run owns is bench/redis_local.py. Imports chaos.processes (free ports) only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import aiohttp
import redis

from chaos.processes import free_port, terminate

REPO = Path(__file__).resolve().parents[1]
JWT_SECRET = "bench-jwt-secret-of-at-least-32-bytes-long"
WEBHOOK_SECRET = "bench-webhook-secret-of-at-least-32-bytes"
START_DEADLINE_S = 30.0
STOP_DEADLINE_S = 10.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (its own, not its children), from /proc/PID/stat."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return float("nan")
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children_of(pid: int) -> list[int]:
    """The live direct children of a process (an `omniroute serve --workers N` supervisor's
    workers), from /proc/PID/task/*/children."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out.extend(int(x) for x in (task / "children").read_text().split())
        except OSError:
            continue
    return out


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and its live children (a node with its workers)."""
    return cpu_seconds(pid) + sum(cpu_seconds(child) for child in children_of(pid))


def tree_rss_bytes(pid: int) -> int:
    """RSS of a process and its live children."""
    return rss_bytes(pid) + sum(rss_bytes(child) for child in children_of(pid))


def rss_bytes(pid: int) -> int:
    """Resident set size from /proc/PID/statm."""
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except OSError:
        return 0


def bench_env() -> dict[str, str]:
    """The environment of every child: no OMNIROUTE_* of the caller, the bench's secrets."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIROUTE_")}
    env["OMNIROUTE_BENCH_JWT_SECRET"] = JWT_SECRET
    env["OMNIROUTE_BENCH_WEBHOOK_SECRET"] = WEBHOOK_SECRET
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@dataclass
class Proc:
    """A child process with a line-oriented stdout (`ready`, `count N`, `done`) and a log."""

    name: str
    argv: Sequence[str]
    log_path: Path
    env: Mapping[str, str] = field(default_factory=bench_env)
    proc: asyncio.subprocess.Process | None = None
    last: dict[str, str] = field(default_factory=dict)  # last line per first word
    _reader: asyncio.Task[None] | None = None
    _seen: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, stdin: bool = False) -> None:
        with self.log_path.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv,
                cwd=REPO,
                env=dict(self.env),
                stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                limit=1 << 20,
            )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                return
            text = line.decode(errors="replace").strip()
            if text:
                self.last[text.split()[0]] = text
                self._seen.set()

    async def wait_line(self, word: str, within: float) -> str:
        """Wait (bounded) until the child printed a line starting with `word`."""
        deadline = time.monotonic() + within
        while word not in self.last:
            assert self.proc is not None
            if self.proc.returncode is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{self.tail()}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"{self.name}: no '{word}' within {within:g} s:\n{self.tail()}")
            self._seen.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._seen.wait(), min(left, 0.5))
        return self.last[word]

    def count(self, word: str = "count") -> int:
        line = self.last.get(word)
        return int(line.split()[1]) if line else 0

    async def say(self, text: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(text.encode() + b"\n")
        with contextlib.suppress(ConnectionError):
            await self.proc.stdin.drain()

    async def wait(self, within: float) -> int | None:
        assert self.proc is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.proc.wait(), within)
        return self.proc.returncode

    async def stop(self, within: float = STOP_DEADLINE_S) -> int | None:
        """SIGTERM, then SIGKILL when it has not exited in time. Safe to call twice."""
        proc = self.proc
        if proc is None:
            return None
        await terminate(proc, within)
        if self._reader is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._reader, 2.0)
        return proc.returncode

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def node_env(domain: str, name: str, capacity: int) -> dict[str, str]:
    """A node of the bench: its own routing domain, generous capacity, short wrap-up."""
    env = bench_env()
    env.update(
        {
            "OMNIROUTE_JWT_SECRET": JWT_SECRET,
            "OMNIROUTE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "OMNIROUTE_SERVER_NODE": name,
            "OMNIROUTE_ROUTING_DOMAIN": domain,
            "OMNIROUTE_CAPACITY_CHAT": str(capacity),
            "OMNIROUTE_WRAPUP_CHAT": "1",
            "OMNIROUTE_RESERVATION_TIMEOUT_S": "20",
        }
    )
    return env


class Node(Proc):
    """One `omniroute serve` on a free loopback port (memory engine when `redis_url` is '')."""

    def __init__(
        self, name: str, redis_url: str, workdir: Path, domain: str, capacity: int, workers: int = 1
    ):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        argv = [sys.executable, "-m", "router.cli", "serve", "--host", "127.0.0.1"]
        argv += ["--port", str(self.port)]
        if redis_url:
            argv += ["--redis", redis_url]
        if workers > 1:
            argv += ["--workers", str(workers)]
        super().__init__(name, argv, workdir / f"{name}.log", node_env(domain, name, capacity))

    async def ready(self, http: aiohttp.ClientSession) -> None:
        deadline = time.monotonic() + START_DEADLINE_S
        while True:
            assert self.proc is not None
            if self.proc.returncode is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.tail()}")
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                timeout = aiohttp.ClientTimeout(total=1.0)
                async with http.get(f"{self.base}/readyz", timeout=timeout) as response:
                    if response.status == 200:
                        return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready in time:\n{self.tail()}")
            await asyncio.sleep(0.1)


async def start_nodes(
    count: int, redis_url: str, workdir: Path, domain: str, capacity: int, workers: int = 1
) -> list[Node]:
    """Start `count` nodes (each with `workers` processes) and wait until each answers /readyz;
    on failure stop them all."""
    nodes = [Node(f"node-{i}", redis_url, workdir, domain, capacity, workers) for i in range(count)]
    try:
        async with aiohttp.ClientSession() as http:
            for node in nodes:
                await node.start()
            await asyncio.gather(*(node.ready(http) for node in nodes))
    except BaseException:
        await stop_all(nodes)
        raise
    return nodes


async def stop_all(procs: Sequence[Proc | None]) -> None:
    await asyncio.gather(*(p.stop() for p in procs if p is not None), return_exceptions=True)


def cpu_of(procs: dict[str, Proc]) -> dict[str, float]:
    """CPU seconds of each named process tree, read before and after a measured window."""
    return {name: tree_cpu_seconds(p.pid) for name, p in procs.items()}


async def wait_count(proc: Proc, target: int, within: float) -> None:
    """Wait (bounded) until the child reported `count` >= `target`, or it exited."""
    deadline = time.monotonic() + within
    while proc.count() < target and time.monotonic() < deadline:
        if proc.proc is not None and proc.proc.returncode is not None:
            return
        await asyncio.sleep(0.05)


def write_json(path: str | Path, data: object) -> None:
    Path(path).write_text(json.dumps(data), "utf-8")


def write_figures(path: str | Path, results: object) -> None:
    """Every figure of a benchmark run, as the `--json FILE` of both benchmarks writes them."""
    Path(path).write_text(json.dumps(results, indent=2, default=str) + "\n", "utf-8")


def publish(text: str, results: object, json_path: str | None, took: str = "") -> int:
    """Print a run's report and, with `--json FILE`, write every figure there and say so
    (`took`: what follows the file's name). The exit status of a finished run."""
    print(text)
    if json_path:
        write_figures(json_path, results)
        print(f"\n(all figures in {json_path}{took})")
    return 0


def read_json(path: Path) -> Any:
    return json.loads(path.read_text("utf-8"))


def bench_child(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def loop_factory() -> tuple[LoopFactory | None, str]:
    """uvloop's loop factory where it is installed."""
    try:
        import uvloop
    except ImportError:
        return None, "asyncio"
    return uvloop.new_event_loop, "uvloop"


def run_async(main: object) -> object:
    """asyncio.run with uvloop where installed."""
    factory, _ = loop_factory()
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)  # type: ignore[arg-type]


# -- the machine and the signal of one run ------------------------------------------------------


def machine_facts(redis_info: Mapping[str, Any], uvloop_used: bool) -> dict[str, Any]:
    """What the figures of a run depend on (cores, load, versions): printed, kept in the JSON."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    try:
        import hiredis  # noqa: F401

        has_hiredis = True
    except ImportError:
        has_hiredis = False
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "loadavg_at_start": os.getloadavg(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "redis_server": redis_info.get("redis_version"),
        "redis_py": redis.__version__,
        "hiredis": has_hiredis,
        "uvloop": uvloop_used,
    }


def sigterm_as_interrupt(_signum: int, _frame: FrameType | None) -> None:
    """SIGTERM handler: unwind like Ctrl-C, so every `finally` stops what it started."""
    raise KeyboardInterrupt
