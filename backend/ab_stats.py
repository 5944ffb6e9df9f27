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


@dataclass
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

    def as_dict(self) -> dict:
        return self.__dict__.copy()


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
