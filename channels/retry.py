"""Bounded retries with exponential backoff: the one retry loop of everything that sends.

A send that fails in a way another try may fix gets `Backoff.tries` attempts in all. Between two
attempts the port waits `base_s`, doubled each time and at most `cap_s`; with `jitter` each wait
is cut by a random share of up to that fraction, so many senders retrying at once spread out. A
peer's own Retry-After replaces the computed wait, within the same cap. Nothing waits after the
last attempt, nor after one the port ends: which failures are temporary is each channel's call
(SMS: 429/5xx or no answer; email: a 4xx reply, a timeout, a lost connection; the PBX: 5xx,
408/429 or no answer), not this module's.

The loop stays in the port, so its outcomes read plainly where they are decided:

    attempts = backoff.attempts(rng)
    async for attempt in attempts:
        ...  # one try; `break` or `return` on success or a final failure
        attempts.retry_after(reply.retry_after)  # optional: when the peer asked to be retried
    # tries ran out (or a final failure broke out): `attempts.made` tries were made

Imports only the standard library.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class Backoff:
    """How often and how patiently to retry (see the module docstring)."""

    tries: int
    base_s: float
    cap_s: float = math.inf
    jitter: float = 0.0  # 0.5: each wait is between half of its step and all of it

    def delay(
        self, attempt: int, rng: random.Random | None = None, retry_after: float | None = None
    ) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.cap_s)
        step = min(self.cap_s, self.base_s * 2.0 ** (attempt - 1))
        if not self.jitter:
            return step
        low = 1.0 - self.jitter
        return step * (rng.uniform(low, 1.0) if rng is not None else random.uniform(low, 1.0))

    def attempts(self, rng: random.Random | None = None, sleep: Sleep = asyncio.sleep) -> Attempts:
        """One run of this policy; `rng` draws the jitter, `sleep` waits (tests pass their own)."""
        return Attempts(self, rng, sleep)


class Attempts:
    """Attempt numbers 1…`tries`, waiting the backoff before each one but the first."""

    def __init__(self, backoff: Backoff, rng: random.Random | None, sleep: Sleep) -> None:
        self.backoff = backoff
        self.rng = rng
        self.sleep = sleep
        self.made = 0  # attempts started so far
        self._retry_after: float | None = None

    def retry_after(self, seconds: float | None) -> None:
        """The peer's Retry-After, for the wait before the next attempt only (None: none)."""
        self._retry_after = seconds

    def __aiter__(self) -> Attempts:
        return self

    async def __anext__(self) -> int:
        if self.made >= self.backoff.tries:
            raise StopAsyncIteration
        if self.made:
            await self.sleep(self.backoff.delay(self.made, self.rng, self._retry_after))
        self._retry_after = None
        self.made += 1
        return self.made
