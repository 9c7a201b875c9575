"""Small robust statistics shared by the extractors (one definition each)."""

from __future__ import annotations

import math

import numpy as np

MAD_TO_SIGMA = 1.4826  # MAD of a Gaussian times this is its standard deviation


def mad_sigma(x: np.ndarray) -> float:
    """Robust standard deviation: 1.4826 x the median absolute deviation from the median."""
    x = np.asarray(x, dtype=float)
    if x.size == 0:
        return 0.0
    return float(MAD_TO_SIGMA * np.median(np.abs(x - np.median(x))))


def diff_sigma(x: np.ndarray) -> float:
    """Noise level from first differences (insensitive to trends and to a few level shifts)."""
    d = np.diff(np.asarray(x, dtype=float))
    return mad_sigma(d) / math.sqrt(2.0)


def logistic(z: float, gain: float = 1.0) -> float:
    """A confidence in (0, 1) from a margin: 0.5 at the decision threshold, saturating away from it."""
    v = gain * z
    if v >= 0:
        return 1.0 / (1.0 + math.exp(-min(v, 700.0)))
    e = math.exp(max(v, -700.0))
    return e / (1.0 + e)


def gaussian_bic(n: int, rss: float, k: int) -> float:
    """Bayesian information criterion of a least-squares fit of ``n`` points with ``k`` parameters and residual
    sum of squares ``rss`` (Gaussian errors, variance estimated)."""
    return n * math.log(max(rss, 1e-300) / n) + k * math.log(n)
