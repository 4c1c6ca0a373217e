"""Processes a fault scenario or a test owns: a free loopback port, a throw-away redis-server,
and the one way a child process is stopped (`terminate`).

Used by `chaos`, by `bench` and, re-exported by `tests/support.py`, by the tests. Everything
binds 127.0.0.1; `stop_redis` and `terminate` always end the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _redis_binary() -> str:
    if Path("/usr/bin/redis-server").is_file():
        return "/usr/bin/redis-server"
    found = shutil.which("redis-server")
    if found:
        return found
    raise RuntimeError(
        "redis-server not found: the Redis engine tests need it "
        "(install it with `apt-get install -y redis-server`)"
    )


def start_redis(
    tmpdir: str | Path, timeout: float = 10.0, aof: bool = False, port: int | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """Launch redis-server on 127.0.0.1 and a free port (or `port`: a restart in place);
    return (process, url) once it answers. `aof`: append-only file, fsync every second."""
    binary = _redis_binary()
    port = port or free_port()
    workdir = Path(tmpdir)
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "redis.log"
    process = subprocess.Popen(
        [
            binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "yes" if aof else "no",
            "--appendfsync",
            "everysec",
            "--daemonize",
            "no",
            "--dir",
            str(workdir),
            "--logfile",
            str(log),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            text = log.read_text(errors="replace") if log.exists() else ""
            raise RuntimeError(f"redis-server exited with {process.returncode}: {text[-2000:]}")
        try:
            client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
            try:
                if client.ping():
                    return process, url
            finally:
                client.close()
        except redis.exceptions.ConnectionError:
            pass
        if time.monotonic() > deadline:
            stop_redis(process)
            raise RuntimeError(f"redis-server did not answer PING on {url} within {timeout} s")
        time.sleep(0.05)


def stop_redis(process: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """Terminate the server; kill it when it does not stop in time."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


async def terminate(proc: asyncio.subprocess.Process, within: float) -> int | None:
    """SIGTERM, then SIGKILL when it has not exited within `within` seconds: a node gets the
    chance to drain, a stuck one still ends. Its exit code (None only when even SIGKILL did not
    end it in time); safe to call on a process that has ended."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        if not await _ended(proc, within):
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await _ended(proc, within)
    return proc.returncode


async def _ended(proc: asyncio.subprocess.Process, within: float) -> bool:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(proc.wait(), within)
    return proc.returncode is not None
