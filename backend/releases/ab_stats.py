"""Online A/B statistics: is the difference between two variants real yet, and roughly how many
more requests would tell? Normal approximations, which are fine at the traffic volumes where a
decision is made, and say 'not enough data' below a minimum sample."""
from __future__ import annotations

import math
from dataclasses import dataclass

Z_95 = 1.959964
Z_80_POWER = 0.841621
MIN_N = 20


def _phi(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


@dataclass(frozen=True)
class Comparison:
    metric: str
    a: float
    b: float
    delta: float
    low: float
    high: float
    p_value: float | None
    significant: bool
    more_needed: int | None  # per variant, to detect the observed difference with 80% power; None when significant or unknown


def compare_proportions(metric: str, succ_a: int, n_a: int, succ_b: int, n_b: int, alpha: float = 0.05) -> Comparison:
    """Two-proportion z-test (pooled) with a Wald interval for b - a."""
    if min(n_a, n_b) < MIN_N:
        pa = succ_a / n_a if n_a else 0.0
        pb = succ_b / n_b if n_b else 0.0
        return Comparison(metric, pa, pb, pb - pa, float("nan"), float("nan"), None, False, max(0, MIN_N - min(n_a, n_b)))
    pa, pb = succ_a / n_a, succ_b / n_b
    pooled = (succ_a + succ_b) / (n_a + n_b)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    z = (pb - pa) / se0 if se0 else 0.0
    p = 2 * (1 - _phi(abs(z))) if se0 else 1.0
    se = math.sqrt(pa * (1 - pa) / n_a + pb * (1 - pb) / n_b)
    sig = p < alpha
    more = None
    if not sig and pa != pb:
        need = (Z_95 + Z_80_POWER) ** 2 * (pa * (1 - pa) + pb * (1 - pb)) / (pb - pa) ** 2
        more = max(0, math.ceil(need) - min(n_a, n_b))
    return Comparison(metric, pa, pb, pb - pa, pb - pa - Z_95 * se, pb - pa + Z_95 * se, p, sig, more)


def compare_means(metric: str, mean_a: float, var_a: float, n_a: int, mean_b: float, var_b: float, n_b: int,
                  alpha: float = 0.05) -> Comparison:
    """Welch's z-approximation for b - a from per-variant mean, variance and count (as SQL gives them)."""
    if min(n_a, n_b) < MIN_N:
        return Comparison(metric, mean_a, mean_b, mean_b - mean_a, float("nan"), float("nan"), None, False,
                          max(0, MIN_N - min(n_a, n_b)))
    se = math.sqrt(var_a / n_a + var_b / n_b)
    delta = mean_b - mean_a
    z = delta / se if se else 0.0
    p = 2 * (1 - _phi(abs(z))) if se else 1.0
    sig = p < alpha
    more = None
    if not sig and delta:
        need = (Z_95 + Z_80_POWER) ** 2 * (var_a + var_b) / delta**2
        more = max(0, math.ceil(need) - min(n_a, n_b))
    return Comparison(metric, mean_a, mean_b, delta, delta - Z_95 * se, delta + Z_95 * se, p, sig, more)


def wilson(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a proportion (sensible at small n and near 0 or 1)."""
    if n <= 0:
        return float("nan"), float("nan")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _binom_two_sided_half(k: int, n: int) -> float:
    """Exact two-sided sign test: P(X <= min(k, n-k)) * 2 for X ~ Binomial(n, 1/2)."""
    low = min(k, n - k)
    log_half = n * math.log(0.5)
    tail = sum(math.exp(math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + log_half)
               for i in range(low + 1))
    return min(1.0, 2 * tail)


def compare_win_rate(metric: str, wins_a: int, wins_b: int, alpha: float = 0.05) -> Comparison:
    """Pairwise votes: A's and B's share of the decided votes (ties and 'both bad' left out),
    delta = b - a, with an exact two-sided sign test against 50/50 and a Wilson interval.
    `more_needed` counts further decided votes for 80% power at the observed win rate."""
    n = wins_a + wins_b
    if n == 0:
        return Comparison(metric, float("nan"), float("nan"), float("nan"), float("nan"), float("nan"), None, False, None)
    pb = wins_b / n
    lo, hi = wilson(wins_b, n)
    p = _binom_two_sided_half(wins_b, n)
    sig = p < alpha
    more = None
    if not sig and pb != 0.5:
        need = math.ceil(((Z_95 * 0.5 + Z_80_POWER * math.sqrt(pb * (1 - pb))) / (pb - 0.5)) ** 2)
        # Small samples: at least the count at which this win rate would pass the exact test at all.
        exact = next((m for m in range(n + 1, 20_000) if _binom_two_sided_half(round(pb * m), m) < alpha), need)
        more = max(0, max(need, exact) - n)
    return Comparison(metric, 1 - pb, pb, 2 * pb - 1, 2 * lo - 1, 2 * hi - 1, p, sig, more)
