"""bench.stats: the one percentile of the benchmark is nearest-rank.

Two definitions used to live in bench/ and disagreed at n = 100 (one rounded half to even).
These pin the definition where it is easiest to get wrong: a sample count where p % is a
whole rank, a single sample, and undelivered (infinite) samples.
"""

from __future__ import annotations

import math

from bench.stats import latency, nearest_rank, percentile, summarize

MS = 1_000_000  # samples are nanoseconds; figures are milliseconds


def test_nearest_rank_at_100_samples_is_the_pth_sample() -> None:
    samples = [i * MS for i in range(1, 101)]  # 1 ms … 100 ms
    assert percentile(samples, 50) == 50.0
    assert percentile(samples, 95) == 95.0
    assert percentile(samples, 99) == 99.0  # not the maximum
    assert percentile(samples, 100) == 100.0
    assert nearest_rank(100, 99) == 98


def test_one_sample_is_every_percentile() -> None:
    for pct in (0, 1, 50, 95, 99, 100):
        assert percentile([7 * MS], pct) == 7.0
    assert summarize([7 * MS]) == {
        "n": 1,
        "p50_ms": 7.0,
        "p99_ms": 7.0,
        "mean_ms": 7.0,
        "max_ms": 7.0,
    }


def test_a_percentile_on_an_undelivered_sample_is_infinite() -> None:
    inf = float("inf")
    figures = latency([3 * MS, inf, 1 * MS, 2 * MS])  # unsorted on purpose
    assert figures["n"] == 4
    assert figures["p50_ms"] == 2.0
    assert figures["p95_ms"] == inf
    assert figures["p99_ms"] == inf
    assert figures["max_ms"] == inf
    assert percentile(sorted([1 * MS, 2 * MS, 3 * MS, inf]), 75) == 3.0


def test_no_samples_give_nan_not_an_error() -> None:
    assert math.isnan(percentile([], 50))
    assert all(math.isnan(v) for k, v in latency([]).items() if k != "n")
    assert summarize([])["n"] == 0
