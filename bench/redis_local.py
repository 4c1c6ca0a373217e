"""The redis-server a benchmark run owns: started on a free 127.0.0.1 port when no `--redis URL`
is given, with no RDB and no AOF, and always stopped again (chaos.processes starts it, as it
does for the tests and the chaos scenarios). Imports chaos.processes only.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator

from chaos.processes import start_redis, stop_redis


class LocalRedis:
    """A throw-away redis-server on 127.0.0.1 (no RDB, no AOF) that `stop()` always ends."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.workdir: str | None = None
        self.url = ""

    def start(self, timeout: float = 10.0) -> str:
        self.workdir = tempfile.mkdtemp(prefix="match-bench-")
        try:
            self.process, self.url = start_redis(self.workdir, timeout)
        except RuntimeError as exc:  # not installed, or it did not come up
            raise SystemExit(f"{exc}; or pass --redis URL") from None
        return self.url

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            stop_redis(process, timeout=10)
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None


@contextlib.contextmanager
def owned_redis(url: str | None) -> Iterator[tuple[str, bool]]:
    """(url, started): the `--redis URL` as given (never stopped: not ours), or a LocalRedis
    for the duration of the block."""
    if url:
        yield url, False
        return
    server = LocalRedis()
    try:
        yield server.start(), True
    finally:
        server.stop()
