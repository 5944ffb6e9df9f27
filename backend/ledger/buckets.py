"""Latency histogram buckets shared by the ledger's roll-ups and the Prometheus exporter, and a
quantile estimate computed exactly like PromQL's histogram_quantile: both sources of the
dashboard therefore agree within one bucket's width."""
from __future__ import annotations

import bisect
from typing import Mapping

# Upper bounds in milliseconds (Prometheus `le`, in seconds there); index len() is +Inf.
LATENCY_BUCKETS_MS: tuple[float, ...] = (
    1, 2, 5, 10, 20, 35, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 7500,
    10000, 15000, 20000, 30000, 60000, 120000,
)
INF_BUCKET = len(LATENCY_BUCKETS_MS)


def bucket_of(ms: float | None) -> int | None:
    """Index of the first bucket whose upper bound is >= ms (Prometheus: value <= le)."""
    if ms is None:
        return None
    return bisect.bisect_left(LATENCY_BUCKETS_MS, ms)


def bucket_bounds(index: int) -> tuple[float, float]:
    lo = 0.0 if index == 0 else LATENCY_BUCKETS_MS[min(index, INF_BUCKET) - 1]
    hi = LATENCY_BUCKETS_MS[index] if index < INF_BUCKET else float("inf")
    return lo, hi


def quantile(q: float, counts: Mapping[int, float]) -> float | None:
    """histogram_quantile over per-bucket (not cumulative) counts: linear interpolation inside
    the bucket holding rank q*total; a rank in the +Inf bucket returns the last finite bound."""
    total = sum(counts.values())
    if total <= 0:
        return None
    rank = q * total
    cum = 0.0
    for i in range(INF_BUCKET + 1):
        n = counts.get(i, 0)
        if n and cum + n >= rank:
            if i == INF_BUCKET:
                return float(LATENCY_BUCKETS_MS[-1])
            lo, hi = bucket_bounds(i)
            return lo + (hi - lo) * (rank - cum) / n
        cum += n
    return float(LATENCY_BUCKETS_MS[-1])

