"""Limits of client sockets: the timings and bounds of the two sockets, and frame rate limiting.

Both sockets (`router.agent_ws`, the desktop; `router.channel_chat`, the widget) take frames
from clients the server does not trust, so both bound how fast a client may send: a
`TokenBucket` of `rate` frames per second up to `burst`, and a second bucket of "strikes" (one
more per second up to `strikes`) spent on each frame answered with `rate_limited`; a client
that goes on when the strikes are spent is closed with 4029. `FrameLimit` is that rule, written
once; `SharedFrameLimits` hands one `FrameLimit` to every socket of one key (a chat visitor on
this node), so opening more sockets does not buy more frames.

Pure Python: imports nothing of the project, so either edge can import it (no edge imports
another edge for it), and so can the test tools' desktops, which pace themselves by it.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]


@dataclass(frozen=True)
class AgentLimits:
    """Timings and limits of desktop sockets (`/v1/agent/ws`); the defaults suit production."""

    ping_s: float = 15.0  # WebSocket ping interval; no pong within half of it closes the socket
    heartbeat_s: float = 5.0  # Service.heartbeat interval (well inside [presence] ttl_s)
    send_timeout_s: float = 10.0  # one frame write; slower → CLOSE_SLOW
    close_timeout_s: float = 2.0  # waiting for the client's close reply
    rate: float = 20.0  # client frames per second, sustained
    burst: int = 40  # client frames at once
    strikes: int = 10  # `rate_limited` answers before the socket is closed (one more per s)


@dataclass(frozen=True)
class ChatLimits:
    """Timings and limits of chat sockets (`/v1/chat/ws`); the defaults suit production."""

    ping_s: float = 20.0  # WebSocket ping interval (aiohttp closes a socket that stops answering)
    send_timeout_s: float = 10.0  # one frame write; slower → closed, the widget reconnects
    close_timeout_s: float = 2.0
    rate: float = 5.0  # customer frames per second, sustained, per visitor on this node
    burst: int = 10
    strikes: int = 5  # `rate_limited` answers before the socket is closed (one more per s)
    replay_max: int = 100  # outbox frames looked at for the replay without `since`
    history: int = 100  # history looked at to find the customer's latest inbound message


class TokenBucket:
    """`rate` tokens per second up to `burst`; `take()` spends one if there is one."""

    def __init__(self, rate: float, burst: float, clock: Clock = time.monotonic):
        self.rate, self.burst, self.clock = rate, burst, clock
        self.tokens, self.stamp = float(burst), clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True

    async def pace(self) -> None:
        """Wait for a token and spend it: a client keeping itself under a server's limit (the
        bench and chaos desktops) paces its frames with the same rule the server applies."""
        while not self.take():  # noqa: ASYNC110 - what it waits for is time, not an event
            await asyncio.sleep((1.0 - self.tokens) / self.rate)


class Verdict(enum.Enum):
    """What a socket does with one client frame."""

    TAKE = "take"  # handle it
    REFUSE = "refuse"  # answer `error` {code: rate_limited} and drop it
    CLOSE = "close"  # the strikes are spent: close the socket with CLOSE_RATE_LIMITED


class FrameLimit:
    """One client's frame budget: `rate`/s up to `burst`, then `strikes` refusals (one more per
    second) before the verdict is `CLOSE`. A strike is spent only on a frame over the rate."""

    def __init__(self, rate: float, burst: float, strikes: float, clock: Clock = time.monotonic):
        self._frames = TokenBucket(rate, burst, clock)
        self._strikes = TokenBucket(1.0, strikes, clock)

    def take(self) -> Verdict:
        if self._frames.take():
            return Verdict.TAKE
        return Verdict.REFUSE if self._strikes.take() else Verdict.CLOSE


class SharedFrameLimits:
    """One `FrameLimit` per key, shared by every socket that holds the key, kept while one does."""

    def __init__(self, rate: float, burst: float, strikes: float) -> None:
        self.rate, self.burst, self.strikes = rate, burst, strikes
        self._held: dict[str, tuple[FrameLimit, int]] = {}

    def hold(self, key: str) -> FrameLimit:
        limit, count = self._held.get(key) or (FrameLimit(self.rate, self.burst, self.strikes), 0)
        self._held[key] = (limit, count + 1)
        return limit

    def release(self, key: str) -> None:
        limit, count = self._held[key]
        if count <= 1:
            del self._held[key]
        else:
            self._held[key] = (limit, count - 1)
