"""Change points of a piecewise-linear signal: PELT (Killick et al. 2012, the `ruptures` implementation)
with a least-squares line cost per segment, computed in O(1) from cumulative sums.

A trend kink, a level step and the two ends of a short ramp are all change points of this model; the
trend and local-change extractors read what kind each one is from the lines on either side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import ruptures as rpt
from ruptures.base import BaseCost


class LineCost(BaseCost):
    """Residual sum of squares of the least-squares line through y[start:end]."""

    model = "line_ls"

    def __init__(self, min_size: int = 3) -> None:
        self.min_size = min_size
        self._c: list[np.ndarray] = []

    def fit(self, signal: np.ndarray) -> "LineCost":
        self.signal = np.asarray(signal, dtype=float).reshape(-1, 1)  # ruptures reads its length
        y = self.signal[:, 0] - np.median(self.signal)
        t = np.arange(len(y), dtype=float)
        z = np.zeros(1)
        self._c = [np.concatenate([z, np.cumsum(v)]) for v in (np.ones_like(y), t, t * t, y, t * y, y * y)]
        return self

    def error(self, start: int, end: int) -> float:
        c0, ct, ctt, cy, cty, cyy = (c[end] - c[start] for c in self._c)
        syy = cyy - cy * cy / c0
        stt = ctt - ct * ct / c0
        sty = cty - ct * cy / c0
        rss = syy - (sty * sty / stt if stt > 0 else 0.0)
        return max(rss, 0.0)


@dataclass
class Line:
    start: int
    end: int  # exclusive
    slope: float
    intercept: float  # value at t = 0 (absolute index)

    def at(self, t: float) -> float:
        return self.intercept + self.slope * t


def fit_line(y: np.ndarray, start: int, end: int) -> Line:
    t = np.arange(start, end, dtype=float)
    seg = y[start:end]
    if len(seg) < 2:
        return Line(start, end, 0.0, float(seg.mean()) if len(seg) else 0.0)
    slope, intercept = np.polyfit(t, seg, 1)
    return Line(start, end, float(slope), float(intercept))


def change_points(y: np.ndarray, sigma: float, min_size: int = 2, penalty_factor: float = 4.0,
                  grid: int = 128) -> list[int]:
    """Breakpoints (indices where a new segment starts; ``len(y)`` excluded) of ``y`` by PELT; the
    penalty is ``penalty_factor * sigma^2 * log(n)`` (BIC-like, sigma the noise level).

    PELT searches every ``n // grid``-th index (ruptures' ``jump``; its search is quadratic in the
    candidates), then each breakpoint moves to the exact index between its neighbours that minimises the
    two segments' cost, so positions are exact whatever the grid."""
    n = len(y)
    if n < 2 * min_size + 1 or sigma <= 0:
        return []
    jump = max(1, n // grid)
    cost = LineCost(min_size).fit(np.asarray(y, dtype=float))
    algo = rpt.Pelt(custom_cost=cost, min_size=min_size, jump=jump).fit(np.asarray(y, dtype=float))
    bkps = [b for b in algo.predict(pen=penalty_factor * sigma * sigma * math.log(n)) if 0 < b < n]
    if jump > 1:
        edges = [0, *bkps, n]
        for k in range(1, len(edges) - 1):
            lo = max(edges[k - 1] + min_size, edges[k] - jump)
            hi = min(edges[k + 1] - min_size, edges[k] + jump)
            if lo <= hi:
                edges[k] = min(range(lo, hi + 1), key=lambda b: cost.error(edges[k - 1], b) + cost.error(b, edges[k + 1]))
        bkps = edges[1:-1]
    return bkps


def lines(y: np.ndarray, bkps: list[int]) -> list[Line]:
    edges = [0, *bkps, len(y)]
    return [fit_line(y, a, b) for a, b in zip(edges[:-1], edges[1:])]
