"""Trend: segments from PELT change points on the series with seasonality and local changes removed,
each segment's direction from its Theil-Sen slope (scipy.stats.theilslopes, robust to the outliers
left), adjacent segments of one direction merged; the overall direction by the labels schema's rule
(tsplugin.synth.labels.overall_trend).

A segment is steady when its change over its length is within STEADY_SE standard errors of zero or
below STEADY_SHARE of the series' structural range (the range of trend plus local changes): a slope
a reader would not call a rise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import theilslopes

from tsplugin.synth.labels import overall_trend

from .robust import logistic
from .segments import change_points

STEADY_SE = 4.0
STEADY_SHARE = 0.07
MIN_SEGMENT = 0.12  # shortest trend segment, share of the length (shorter: a local change or half a cycle)
TREND_PENALTY = 10.0


@dataclass
class TrendSegment:
    start: int
    end: int
    trend: str
    change: float  # slope x length
    confidence: float


@dataclass
class Trend:
    overall: str
    segments: list[TrendSegment]
    confidence: float
    segments_confidence: float
    fitted: np.ndarray

    def knots(self) -> list[int]:
        return [s.start for s in self.segments[1:]]


def _direction(y: np.ndarray, start: int, end: int, sigma: float, floor: float) -> TrendSegment:
    t = np.arange(start, end, dtype=float)
    res = theilslopes(y[start:end], t)
    m = end - start
    change = float(res.slope) * m
    se = sigma * np.sqrt(12.0 / max(m, 2))  # standard error of slope x length under white noise
    limit = max(STEADY_SE * se, floor)
    margin = (abs(change) - limit) / max(limit, 1e-12)
    if abs(change) <= limit:
        return TrendSegment(start, end, "steady", change, logistic(-margin, 4.0))
    return TrendSegment(start, end, "increase" if change > 0 else "decrease", change, logistic(margin, 4.0))


def find_trend(y: np.ndarray, sigma: float, structural_range: float) -> Trend:
    """Trend of ``y`` (seasonality, spikes and level shifts removed); ``sigma`` its noise level."""
    n = len(y)
    min_size = max(3, int(MIN_SEGMENT * n))
    bkps = change_points(y, sigma, min_size=min_size, penalty_factor=TREND_PENALTY, grid=64) if sigma > 0 else []
    edges = [0, *bkps, n]
    floor = STEADY_SHARE * structural_range
    segs = [_direction(y, a, b, sigma, floor) for a, b in zip(edges[:-1], edges[1:])]
    merged: list[TrendSegment] = []
    for s in segs:
        if merged and merged[-1].trend == s.trend:
            a = merged.pop().start
            s = _direction(y, a, s.end, sigma, floor)
        merged.append(s)
    overall = overall_trend((s.trend, abs(s.change) if s.trend != "steady" else 0.0) for s in merged)
    fitted = np.empty(n)
    for s in merged:
        t = np.arange(s.start, s.end, dtype=float)
        res = theilslopes(y[s.start:s.end], t)
        fitted[s.start:s.end] = res.intercept + res.slope * t
    weights = np.array([s.end - s.start for s in merged], dtype=float)
    seg_conf = float(np.average([s.confidence for s in merged], weights=weights))
    # the overall direction is as sure as its least sure segment that carries weight in the rule
    conf = min(s.confidence for s in merged)
    return Trend(overall, merged, conf, seg_conf * (1.0 if len(bkps) < 6 else 0.5), fitted)
