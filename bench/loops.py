"""Bounded loops: every measured phase of the benchmark stops at a count or at a deadline,
whichever comes first, so no figure can run away on a slow or shared machine. Imports nothing
of the benchmark.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


async def timed_loop(
    workers: int, seconds: float, max_ops: int, step: Callable[[int], Awaitable[None]]
) -> tuple[int, float]:
    """Run `step(worker)` from `workers` coroutines until `max_ops` steps or `seconds` pass."""
    started = 0
    deadline = time.perf_counter() + seconds

    async def worker(index: int) -> None:
        nonlocal started
        while started < max_ops and time.perf_counter() < deadline:
            started += 1
            await step(index)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(workers)))
    return started, time.perf_counter() - t0
