"""`channels.retry`: the bounded schedule every outbound port retries on (no real waiting)."""

from __future__ import annotations

import random

from channels.retry import Attempts, Backoff


class Clock:
    """A `sleep` that only records what it was asked to wait."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)


async def run(attempts: Attempts, fail_until: int | None = None) -> list[int]:
    """Try until attempt `fail_until` succeeds (None: every attempt fails)."""
    seen = []
    async for attempt in attempts:
        seen.append(attempt)
        if attempt == fail_until:
            break
    return seen


async def test_tries_are_bounded_and_nothing_waits_after_the_last() -> None:
    clock = Clock()
    attempts = Backoff(tries=4, base_s=1.0).attempts(sleep=clock.sleep)
    assert await run(attempts) == [1, 2, 3, 4]
    assert attempts.made == 4
    assert clock.waits == [1.0, 2.0, 4.0]  # doubling, no cap by default


async def test_a_success_or_a_final_failure_ends_the_run_without_waiting() -> None:
    clock = Clock()
    attempts = Backoff(tries=4, base_s=1.0).attempts(sleep=clock.sleep)
    assert await run(attempts, fail_until=2) == [1, 2]
    assert (attempts.made, clock.waits) == (2, [1.0])
    single = Backoff(tries=1, base_s=1.0).attempts(sleep=clock.sleep)
    assert await run(single) == [1] and clock.waits == [1.0]


async def test_waits_stop_growing_at_the_cap() -> None:
    clock = Clock()
    await run(Backoff(tries=6, base_s=0.25, cap_s=2.0).attempts(sleep=clock.sleep))
    assert clock.waits == [0.25, 0.5, 1.0, 2.0, 2.0]


def test_jitter_cuts_each_wait_by_at_most_its_share() -> None:
    backoff, rng = Backoff(tries=4, base_s=0.2, cap_s=1.0, jitter=0.5), random.Random(7)
    for _ in range(100):
        for attempt, step in ((1, 0.2), (2, 0.4), (3, 0.8), (4, 1.0)):
            assert step * 0.5 <= backoff.delay(attempt, rng) <= step
    assert Backoff(tries=2, base_s=0.2, jitter=0.5).delay(1) <= 0.2  # without an rng of its own


async def test_retry_after_replaces_one_wait_within_the_cap() -> None:
    clock = Clock()
    attempts = Backoff(tries=4, base_s=0.2, cap_s=1.0).attempts(sleep=clock.sleep)
    async for attempt in attempts:
        if attempt == 1:
            attempts.retry_after(30.0)  # more than the cap: the cap
        elif attempt == 2:
            attempts.retry_after(-1.0)  # nonsense: no wait at all
    assert clock.waits == [1.0, 0.0, 0.8]  # the third wait is the schedule's own again
