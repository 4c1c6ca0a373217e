"""`omniroute serve --workers N`: N processes on one port, sharing the Redis engine.

One Python process routes on one core. With `--workers N` this process becomes a supervisor:
it starts N `omniroute serve` children with the same arguments, each listening on the same
address with SO_REUSEPORT (the kernel spreads new connections over them), each a consumer of
its own name in the event log. Nothing is shared between them but Redis, exactly as between
nodes on different machines, so every guarantee of a cluster holds (`docs/operations.md`).

The supervisor forwards SIGTERM and SIGINT to every child (each drains as a node does) and
waits for them. A child that dies on its own is started again after a pause, so one crash
does not take the port's capacity down for good; while it is gone its work is taken over by
the others as from any dead node. A child that dies within `EARLY_S` of its start (the port is
taken, Redis refuses the settings…) stops them all: a restart would only fail again.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

import structlog

log = structlog.get_logger("omniroute.workers")

RESTART_PAUSE_S = 1.0
EARLY_S = 5.0  # a child that dies this soon after its start will not get further by a restart
STOP_WAIT_S = 20.0
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def child_argv(argv: Sequence[str], index: int) -> list[str]:
    """The `serve` arguments without `--workers`, plus the hidden `--worker-of INDEX`."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--workers":
            skip = True
            continue
        if arg.startswith("--workers="):
            continue
        out.append(arg)
    return [sys.executable, "-m", "router.cli", *out, "--worker-of", str(index)]


def _die_with_parent() -> None:
    """In the child, before exec: on Linux, SIGTERM it when the supervisor dies (even by
    SIGKILL), so no worker outlives it and holds the port."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def supervise(workers: int, argv: Sequence[str]) -> int:
    """Run `workers` children until a signal; returns the exit code for `omniroute serve`."""
    stopping = False

    def start(index: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(child_argv(argv, index), preexec_fn=_die_with_parent)

    children = {index: start(index) for index in range(workers)}
    started = {index: time.monotonic() for index in children}
    failed = False
    log.info("omniroute.workers", workers=workers, pids=[c.pid for c in children.values()])

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not stopping:
            time.sleep(0.2)
            for index, child in list(children.items()):
                code = child.poll()
                if code is None or stopping:
                    continue
                log.error("omniroute.worker_died", worker=index, pid=child.pid, code=code)
                if time.monotonic() - started[index] < EARLY_S:
                    failed = True
                    forward(signal.SIGTERM, None)
                    break
                time.sleep(RESTART_PAUSE_S)
                if not stopping:
                    children[index], started[index] = start(index), time.monotonic()
        deadline = time.monotonic() + STOP_WAIT_S
        codes = []
        for child in children.values():
            try:
                codes.append(child.wait(max(0.1, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                child.kill()
                codes.append(child.wait())
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("omniroute.stopped", workers=workers)
    clean = all(code in (0, -signal.SIGTERM, -signal.SIGINT) for code in codes)
    return 0 if clean and not failed else 1
