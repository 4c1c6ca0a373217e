"""The backlog gate (`router.admission`): an event is refused while it would wait past the
bound — the unread entries, plus what this node let in since the reading, over the rate the
consumers have shown they read at (the oldest entry's age until a rate is known)."""

from __future__ import annotations

import math

import pytest

from router.admission import HEADROOM, Admission
from router.errors import Overloaded
from store.model import Backlog

BOUND = 10.0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def fed(*samples: tuple[float, int, float, int | None]) -> tuple[Admission, Clock]:
    """An admission fed (at_s, unread, oldest_s, read) readings in order."""
    clock = Clock()
    gate = Admission(BOUND, clock)
    for at, unread, oldest, read in samples:
        clock.now = 100.0 + at
        gate.sample(Backlog(unread, oldest, read))
    return gate, clock


def refused(gate: Admission) -> bool:
    try:
        gate.admit()
    except Overloaded:
        return True
    return False


def test_until_a_rate_is_known_the_oldest_entrys_age_stands_in() -> None:
    assert not refused(fed((0.0, 5_000, 1.0, 0))[0])
    assert refused(fed((0.0, 5_000, HEADROOM * BOUND, 0))[0])


def test_a_young_but_long_backlog_is_refused_at_once() -> None:
    """The start of an overload: the log fills faster than it is read while its oldest entry
    is still young. 100 read per second with 2,000 unread is a 20 s wait."""
    gate, _ = fed((0.0, 500, 0.5, 0), (1.0, 2_000, 1.5, 100))
    assert gate.rate == pytest.approx(100.0)
    assert gate.wait_s == pytest.approx(20.0)
    assert refused(gate)


def test_old_entries_at_the_end_of_a_backlog_do_not_shut_the_gate() -> None:
    """A few entries left, 9 s old, read at 500/s: a new event waits a fraction of a second."""
    gate, _ = fed((0.0, 3_000, 8.0, 0), (1.0, 100, 9.0, 2_900))
    assert gate.wait_s < 1.0
    assert not refused(gate)


def test_between_samples_the_gate_counts_what_it_let_in() -> None:
    gate, clock = fed((0.0, 1_000, 1.0, 0), (1.0, 1_000, 1.0, 400))  # 400/s, 2.5 s of work
    assert not refused(gate)
    gate.admitted(1_200)  # a flood let in right after the reading: 3 s more
    assert gate.wait_s == pytest.approx(5.5) and refused(gate)
    clock.now += 1.0  # a second of reading at 400/s
    assert gate.wait_s == pytest.approx(4.5) and not refused(gate)


def test_a_sample_replaces_the_count_of_admitted() -> None:
    gate, clock = fed((0.0, 1_000, 1.0, 0), (1.0, 1_000, 1.0, 400))
    gate.admitted(5_000)
    clock.now += 0.2
    gate.sample(Backlog(1_000, 1.2, 480))  # the reading holds what was let in, if stored
    assert gate.wait_s == pytest.approx(2.5, rel=0.05)


def test_idle_intervals_do_not_teach_a_rate() -> None:
    """With nothing to read the consumers read nothing: that is not their speed."""
    gate, _ = fed((0.0, 0, 0.0, 0), (1.0, 0, 0.0, 0), (2.0, 50, 0.1, 0))
    assert gate.rate is None
    assert not refused(gate)


def test_work_waiting_and_nothing_read_is_a_stall() -> None:
    gate, _ = fed((0.0, 10, 0.1, 7), (1.0, 10, 1.1, 7))
    assert gate.rate == 0.0 and math.isinf(gate.wait_s)
    with pytest.raises(Overloaded, match="stalled"):
        gate.admit()


def test_the_rate_is_smoothed_not_replaced() -> None:
    gate, _ = fed((0.0, 1_000, 1.0, 0), (1.0, 1_000, 1.0, 400), (2.0, 1_000, 1.0, 400))
    assert gate.rate is not None and 0.0 < gate.rate < 400.0  # a stalled second: lower, not 0


def test_a_store_that_cannot_count_reads_leaves_the_age() -> None:
    gate, _ = fed((0.0, 9_000, 2.0, None), (1.0, 9_000, 3.0, None))
    assert gate.rate is None and gate.wait_s == 3.0
    assert not refused(gate)


def test_no_bound_admits_everything() -> None:
    gate = Admission(0.0)
    gate.sample(Backlog(10**6, 3600.0, 0))
    gate.admit()


def test_a_read_counter_that_goes_back_teaches_nothing() -> None:
    """Redis restarted on its append-only file can hold an older count: not a stall."""
    gate, _ = fed((0.0, 10, 0.1, 500), (1.0, 10, 1.1, 20))
    assert gate.rate is None
    assert not refused(gate)


def test_after_a_stall_a_log_seen_empty_reopens_the_gate() -> None:
    """Stalled once, then every reading finds the log empty (the consumers keep up, so no
    busy interval re-teaches the rate): what the node lets in between readings is not a
    stall."""
    gate, clock = fed((0.0, 10, 0.1, 7), (1.0, 10, 1.1, 7), (1.2, 0, 0.0, 7))
    gate.admitted(1)
    clock.now += 0.1
    assert not refused(gate)


def test_the_first_busy_interval_after_a_stall_replaces_the_zero() -> None:
    gate, _ = fed((0.0, 10, 0.1, 7), (1.0, 10, 1.1, 7), (1.2, 0, 0.0, 87))
    assert gate.rate == pytest.approx(400.0)


def test_reads_while_keeping_up_are_a_floor() -> None:
    gate, _ = fed((0.0, 0, 0.0, 0), (1.0, 0, 0.0, 300))
    assert gate.rate == pytest.approx(300.0)
    gate.admitted(1_000)
    assert gate.wait_s == pytest.approx(1_000 / 300)
    gate, _ = fed(
        (0.0, 1_000, 1.0, 0), (1.0, 600, 1.0, 400), (2.0, 0, 0.0, 800), (3.0, 0, 0.0, 900)
    )
    assert gate.rate == pytest.approx(400.0)  # a floor below the rate leaves it


def test_the_first_busy_interval_replaces_a_floor() -> None:
    """Light traffic shows 10/s; the burst after it shows what the consumers can do."""
    gate, _ = fed((0.0, 0, 0.0, 0), (1.0, 5, 0.1, 10), (2.0, 1_000, 0.5, 410))
    assert gate.rate == pytest.approx(400.0)
