"""Latency samples into figures: the benchmark's one percentile and the summaries built on it.

Every percentile in bench/ is nearest-rank: the smallest sample with at least p % of all
samples at or below it, so a figure is always a latency that was measured, never an
interpolation. Samples are nanoseconds; figures are milliseconds. An undelivered event is
counted as an infinite sample, so a percentile that falls on one is ∞ (not hidden, not NaN).
This module imports nothing of the benchmark.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def nearest_rank(n: int, pct: float) -> int:
    """The 0-based index of the nearest-rank `pct` percentile among `n` sorted samples.

    `pct * n / 100` keeps the rank exact where it is a whole number (99 % of 100 is 99, not
    99.00000000000001), so the result does not depend on how `pct / 100` rounds in binary."""
    return max(0, min(n - 1, math.ceil(pct * n / 100) - 1))


def percentile(sorted_ns: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of sorted nanosecond samples, in ms; NaN when there are none,
    inf when it falls on an undelivered (infinite) sample."""
    if not sorted_ns:
        return float("nan")
    return sorted_ns[nearest_rank(len(sorted_ns), pct)] / 1e6


def summarize(samples_ns: Sequence[float]) -> dict[str, float]:
    """Count, p50, p99, mean and max of one call's latencies (the micro-benchmarks' shape)."""
    ordered = sorted(samples_ns)
    return {
        "n": len(ordered),
        "p50_ms": percentile(ordered, 50),
        "p99_ms": percentile(ordered, 99),
        "mean_ms": (sum(ordered) / len(ordered) / 1e6) if ordered else float("nan"),
        "max_ms": (ordered[-1] / 1e6) if ordered else float("nan"),
    }


def latency(samples_ns: Sequence[float]) -> dict[str, Any]:
    """Count, p50, p95, p99 and max of end-to-end latencies (the routing table's shape; no
    mean, because one undelivered event makes it ∞)."""
    ordered = sorted(samples_ns)
    return {
        "n": len(ordered),
        "p50_ms": percentile(ordered, 50),
        "p95_ms": percentile(ordered, 95),
        "p99_ms": percentile(ordered, 99),
        "max_ms": ordered[-1] / 1e6 if ordered else float("nan"),
    }
