"""Admission: whether ingest takes one more event while routing is behind (`[events]
max_backlog_s`).

An event accepted now is routed after every unread entry before it, so it will wait about
`unread / rate`, where `rate` is how fast the consumers of every node read the log while they
have work. The oldest unread entry's age is no guide once the backlog moves: at the start of
an overload the log fills at the offered rate while its oldest entry is still young (what is
accepted then waits far longer than the bound), and at the end of one the last old entries
keep the age high while a new event would be read at once (refusing then leaves the
consumers idle, and the next opening lets a burst in). So:

    wait_s = (unread + admitted - rate * elapsed) / rate

from the last sample (`unread`, taken `elapsed` seconds ago) and the events this node has let
in since (`admitted`): between samples the gate follows its own admissions rather than
letting a sample's worth of requests through on a stale reading. Ingest is refused while
`wait_s >= HEADROOM * max_backlog_s`; the headroom (0.5) covers what the estimate cannot
see — other nodes' admissions since the sample, a rate that drops after the event is taken,
the time a request spends in the node before and after the gate, and the routing and
delivery after the read — so what is accepted is offered within the bound.

The rate is learnt from intervals that began with unread entries (the consumers were busy
the whole time, so what they read is what they can do), smoothed with a half-life of
`HALF_LIFE_S`. An interval that began with nothing to read only shows what arrived: a floor
the rate is raised to, never a reading it is smoothed toward (the first busy interval
replaces a rate known only as a floor). Until any reads are seen (a node just started, or a
store that cannot count reads) the oldest entry's age stands in. A read counter that goes
back (Redis restarted on its append-only file, which may hold an older count) teaches
nothing. A rate of zero with work waiting at the last reading (every consumer stuck or dead)
makes the wait unbounded: refused until the log moves again; the first busy interval after a
stall replaces the zero rather than climbing from it, and a reading with nothing waiting
reopens the gate.

`sample` is fed by `NodeLoops.run_backlog` (one `Store.backlog` call every 0.2 s); `admit` does
no I/O, so the edges ask it before they read a request's body.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from router.errors import Overloaded
from store.model import Backlog

HEADROOM = 0.5
HALF_LIFE_S = 2.0


class Admission:
    """The backlog gate of one node; `bound_s` 0 admits everything."""

    def __init__(self, bound_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.bound_s = bound_s
        self.rate: float | None = None  # log entries read per second while there was work
        self._clock = clock
        self._last = Backlog()
        self._last_at: float | None = None
        self._admitted = 0  # events let in by this node since the last sample
        self._floor_only = False  # `rate` so far only from intervals that began with no work

    def sample(self, backlog: Backlog) -> None:
        """Take one reading of the log."""
        at = self._clock()
        last, since = self._last, self._last_at
        self._last, self._last_at, self._admitted = backlog, at, 0
        if since is None or at <= since or backlog.read is None or last.read is None:
            return
        if backlog.read < last.read:  # the counter went back: the store restarted on its log
            return
        rate = (backlog.read - last.read) / (at - since)
        if last.unread == 0:
            # The interval began with nothing to read: what was read is what arrived, a floor
            # under the consumers' speed, not the speed itself.
            if rate > (self.rate or 0.0):
                self.rate, self._floor_only = rate, self._floor_only or self.rate is None
            return
        if not self.rate or self._floor_only:  # the first busy reading, or the first after a
            self.rate, self._floor_only = rate, False  # stall: start from it, do not smooth
        else:
            self.rate += (1 - 0.5 ** ((at - since) / HALF_LIFE_S)) * (rate - self.rate)

    def admitted(self, events: int) -> None:
        """Count events let in since the last sample."""
        self._admitted += events

    @property
    def wait_s(self) -> float:
        """What an event accepted now is expected to wait before a consumer reads it."""
        if self.rate is None:
            return self._last.oldest_s
        elapsed = self._clock() - (self._last_at or 0.0)
        unread = self._last.unread + self._admitted - self.rate * elapsed
        if unread <= 0:
            return 0.0
        if self.rate > 0:
            return unread / self.rate
        # Nothing read while there was work: a stall, if the last reading saw work waiting.
        return math.inf if self._last.unread else 0.0

    def admit(self) -> None:
        """Raise `Overloaded` while an event accepted now would wait past the bound."""
        if self.bound_s:
            wait = self.wait_s
            if wait >= HEADROOM * self.bound_s:
                raise Overloaded(wait, self.bound_s)
