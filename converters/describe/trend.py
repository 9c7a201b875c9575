"""Trend: a continuous piecewise-linear (segmented) regression on the series with seasonality and local
changes removed. Breakpoints start at PELT's change points (segments.py), then each moves to the index
that minimises the continuous fit's residual (segmented regression, as Muggeo 2003 estimates
breakpoints); the fit is Huber-weighted (IRLS), so outliers left over do not pull it. Each segment's
change is the fitted line's rise over the segment, the same quantity the labels schema's segments carry
(synth composes a continuous trend); adjacent segments of one direction are merged and the fit redone.
The overall direction is the labels schema's rule (tsplugin.synth.labels.overall_trend) on those changes.

A segment is steady when its change is within STEADY_SE standard errors of zero (the fit's covariance)
or below STEADY_SHARE of the series' structural range (the range of trend plus local changes): a slope a
reader would not call a rise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import theilslopes

from tsplugin.synth.labels import overall_trend

from .robust import logistic
from .season import spline_basis
from .segments import change_points

STEADY_SE = 4.0
STEADY_SHARE = 0.07
MIN_SEGMENT = 0.12  # shortest trend segment, share of the length (shorter: a local change or half a cycle)
TREND_PENALTY = 10.0
HUBER_K = 1.345  # Huber's tuning constant (95% efficiency under Gaussian noise), in noise units
IRLS_STEPS = 4


@dataclass
class TrendSegment:
    start: int
    end: int
    trend: str
    change: float  # the fitted line's rise over the segment
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


def _design(n: int, knots: list[int], shifts: np.ndarray | None) -> np.ndarray:
    """The continuous piecewise-linear basis (intercept, t, a hinge per knot), then the level shifts'
    columns: their sizes are refitted with the trend, so a shift removed a little too big or too small
    does not tilt the segment it sits in."""
    X = spline_basis(n, knots=knots)
    return X if shifts is None or shifts.shape[1] == 0 else np.hstack([X, shifts])


def _fit(y: np.ndarray, knots: list[int], sigma: float, shifts: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(coefficients, their unscaled covariance (X'WX)^-1) of the Huber-weighted continuous fit."""
    X = _design(len(y), knots, shifts)
    w = np.ones(len(y))
    for _ in range(IRLS_STEPS):
        sw = np.sqrt(w)
        coef, *_ = np.linalg.lstsq(X * sw[:, None], y * sw, rcond=None)
        r = np.abs(y - X @ coef)
        c = HUBER_K * sigma
        w_new = np.where(r <= c, 1.0, c / np.maximum(r, 1e-300)) if sigma > 0 else np.ones(len(y))
        if np.allclose(w_new, w):
            break
        w = w_new
    XtWX = X.T @ (X * w[:, None])
    return coef, np.linalg.pinv(XtWX)


def _refine(y: np.ndarray, knots: list[int], min_size: int, shifts: np.ndarray | None) -> list[int]:
    """Each knot moved, in turn, to the index within ``min_size`` of it (and ``min_size`` from its
    neighbours) that minimises the continuous fit's residual sum of squares, the other knots held; two
    sweeps. Every candidate is scored at once: with Q an orthonormal basis of the other columns, adding
    hinge h lowers the RSS by (h_r . y_r)^2 / |h_r|^2 (h_r, y_r: h and y with Q projected out)."""
    n = len(y)
    knots = list(knots)
    t = np.arange(n, dtype=float)
    for _ in range(2):
        moved = False
        for k in range(len(knots)):
            lo = max((knots[k - 1] if k else 0) + min_size, knots[k] - min_size)
            hi = min((knots[k + 1] if k + 1 < len(knots) else n) - min_size, knots[k] + min_size)
            if lo > hi:
                continue
            q, _ = np.linalg.qr(_design(n, knots[:k] + knots[k + 1:], shifts))
            yr = y - q @ (q.T @ y)
            cands = np.arange(lo, hi + 1)
            H = np.maximum(t[:, None] - cands[None, :], 0.0)
            H -= q @ (q.T @ H)
            gain = (H.T @ yr) ** 2 / np.maximum(np.einsum("ij,ij->j", H, H), 1e-300)
            best = int(cands[int(np.argmax(gain))])
            moved |= best != knots[k]
            knots[k] = best
        if not moved:
            break
    return knots


def _segments(y: np.ndarray, knots: list[int], sigma: float, floor: float,
              shifts: np.ndarray | None) -> list[TrendSegment]:
    n = len(y)
    coef, cov = _fit(y, knots, sigma, shifts)
    edges = [0, *knots, n]
    out = []
    for k, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
        # the segment's slope is t's coefficient plus the hinges before it; its rise over the segment is
        # that slope times its span (knot to knot; the last segment ends at the last point)
        span = (min(b, n - 1) - a) / n  # spline_basis's t is scaled by 1/n
        c = np.zeros(len(coef))
        c[1] = 1.0
        c[2:2 + k] = 1.0
        change = float(c @ coef) * span
        se = sigma * span * float(np.sqrt(max(c @ cov @ c, 0.0)))
        limit = max(STEADY_SE * se, floor)
        margin = (abs(change) - limit) / max(limit, 1e-12)
        if abs(change) <= limit:
            out.append(TrendSegment(a, b, "steady", change, logistic(-margin, 4.0)))
        else:
            out.append(TrendSegment(a, b, "increase" if change > 0 else "decrease", change, logistic(margin, 4.0)))
    return out


def find_trend(y: np.ndarray, sigma: float, structural_range: float, shifts: np.ndarray | None = None) -> Trend:
    """Trend of ``y`` (seasonality, spikes and level shifts removed); ``sigma`` its noise level;
    ``shifts`` the removed level shifts as unit columns (n x k), refitted with the trend."""
    n = len(y)
    min_size = max(3, int(MIN_SEGMENT * n))
    bkps = change_points(y, sigma, min_size=min_size, penalty_factor=TREND_PENALTY, grid=64) if sigma > 0 else []
    knots = _refine(y, bkps, min_size, shifts) if bkps else []
    floor = STEADY_SHARE * structural_range
    segs = _segments(y, knots, sigma, floor, shifts)
    while True:  # adjacent segments of one direction are one segment: drop the knot between them, refit
        same = [k for k in range(1, len(segs)) if segs[k].trend == segs[k - 1].trend]
        if not same:
            break
        knots = [g.start for j, g in enumerate(segs) if j and j != same[0]]
        segs = _segments(y, knots, sigma, floor, shifts)
    overall = overall_trend((s.trend, abs(s.change) if s.trend != "steady" else 0.0) for s in segs)
    # what is left after the trend (the remainder: noise, the backfitting's BIC) is taken against each
    # segment's own robust line (Theil-Sen), which also takes up what the shift and season removal left
    fitted = np.empty(n)
    for s in segs:
        t = np.arange(s.start, s.end, dtype=float)
        res = theilslopes(y[s.start:s.end], t)
        fitted[s.start:s.end] = res.intercept + res.slope * t
    weights = np.array([s.end - s.start for s in segs], dtype=float)
    seg_conf = float(np.average([s.confidence for s in segs], weights=weights))
    # the overall direction is as sure as its least sure segment that carries weight in the rule
    conf = min(s.confidence for s in segs)
    return Trend(overall, segs, conf, seg_conf * (1.0 if len(bkps) < 6 else 0.5), fitted)
