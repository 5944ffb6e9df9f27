"""Statistics for evaluation runs: bootstrap confidence intervals over items and a paired
bootstrap test for the difference between two runs on the same items."""
from __future__ import annotations

import numpy as np

N_BOOT = 2000


def bootstrap_ci(values: list[float], seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of the mean, resampling items with replacement."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return 0.0, 0.0, 0.0
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(N_BOOT, x.size))].mean(axis=1)
    alpha = (1 - level) / 2
    return float(x.mean()), float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def paired_bootstrap(a: list[float], b: list[float], seed: int = 0) -> dict[str, float]:
    """Mean difference b - a with a 95% interval and a two-sided p-value from resampled item pairs."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.size == 0:
        raise ValueError("paired test needs two equally long, non-empty lists")
    d = y - x
    if not d.any():
        return {"delta": 0.0, "low": 0.0, "high": 0.0, "p_value": 1.0}
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(N_BOOT, d.size))].mean(axis=1)
    # Shift to the null (mean 0) and count resamples at least as extreme as the observed mean.
    null = means - d.mean()
    p = float((np.abs(null) >= abs(d.mean())).mean())
    return {"delta": float(d.mean()), "low": float(np.quantile(means, 0.025)), "high": float(np.quantile(means, 0.975)),
            "p_value": max(p, 1.0 / N_BOOT)}
