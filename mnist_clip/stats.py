"""Statistics over seeds: a group's spread, and paired differences with a 95% interval."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

# Student's t, 97.5th percentile, by degrees of freedom (two-sided 95% intervals).
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
         20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048,
         29: 2.045, 30: 2.042}
Z_975 = 1.959964


def t_975(degrees: int) -> float:
    """The 97.5th percentile of Student's t: tabulated up to 30 degrees of freedom, past that
    the normal quantile with the Cornish-Fisher terms in 1/df and 1/df^2 (off by under 0.001)."""
    if degrees < 1:
        return math.nan
    if degrees in T_975:
        return T_975[degrees]
    z = Z_975
    return z + (z**3 + z) / (4 * degrees) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * degrees**2)


def spread(values: Sequence[float]) -> dict:
    """mean, sample standard deviation (n - 1), min, max and n over the finite values."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    n = len(values)
    return {
        "n": n,
        "mean": float(values.mean()) if n else math.nan,
        "std": float(values.std(ddof=1)) if n > 1 else math.nan,
        "min": float(values.min()) if n else math.nan,
        "max": float(values.max()) if n else math.nan,
    }


def paired_difference(first: Sequence[float], second: Sequence[float], higher_is_better: bool = True) -> dict:
    """first - second, pair by pair (the same seed): its mean, a 95% interval
    mean +- t(0.975, n - 1) * sd / sqrt(n), and in how many pairs `first` came out ahead."""
    first, second = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    keep = np.isfinite(first) & np.isfinite(second)
    differences = first[keep] - second[keep]
    n = len(differences)
    mean = float(differences.mean()) if n else math.nan
    half = t_975(n - 1) * float(differences.std(ddof=1)) / math.sqrt(n) if n > 1 else math.nan
    ahead = int(np.sum(differences > 0 if higher_is_better else differences < 0))
    return {"n": n, "mean": mean, "low": mean - half, "high": mean + half, "ahead": ahead, "ties": int(np.sum(differences == 0))}
