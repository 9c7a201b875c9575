"""One series -> its attributes in the labels schema (tsplugin.synth.labels), each with a confidence.

Backfitting, PASSES times (each pass removes what the previous found, so one component does not pass
for another):
1. seasonality (season.py) of the series with the spikes found so far replaced, fitted jointly with
   the non-seasonal structure found so far (trend kinks as spline knots, level shifts as columns);
   the first pass uses a coarse spline;
2. local changes of the deseasonalised series from PELT change points (local.py): spikes replaced by
   the line joining their neighbours, level shifts removed;
3. (the same change points, read as kinks, are left to the trend);
4. trend segments of what is left (Theil-Sen per segment).
A retry replaces the previous pass only when its BIC is lower. After the passes, one last pass on the
chosen season refits the changes jointly with trend and season and drops those that do not hold up.
Noise comes from the final remainder against the signal scale (noise.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tsplugin.synth.labels import LocalChange, Segment, SeriesLabels

from . import local, noise, season, trend
from .robust import diff_sigma, gaussian_bic, mad_sigma

PASSES = 3


@dataclass
class Description:
    labels: SeriesLabels
    season: season.Season
    trend: trend.Trend
    changes: list[local.Change]
    noise: noise.Noise


@dataclass
class _Pass:
    season: season.Season
    changes: list[local.Change]
    spikes_removed: np.ndarray  # what spike removal took out of the series
    rest: np.ndarray  # series - season - spikes - shifts
    sigma: float
    trend: trend.Trend


def _range(x: np.ndarray) -> float:
    return float(np.percentile(x, 95) - np.percentile(x, 5))


def _one_pass(y: np.ndarray, s: season.Season, final: bool = False) -> _Pass:
    n = len(y)
    d = y - s.component
    sigma = diff_sigma(d)
    changes, cleaned = local.find_changes(d, sigma)
    rest, tr = _trend_of(cleaned, changes, sigma)
    if changes and final:
        # every change refitted jointly with the trend and the season: what only one pass's misfit made goes
        structure = season.spline_basis(n, knots=tr.knots())
        if s.present:
            structure = np.hstack([structure, s.component[:, None]])
        kept = local.prune(y, structure, changes, *local.thresholds(d, sigma), sigma)
        if len(kept) < len(changes):
            for c in changes:
                if all(c is not k for k in kept) and c.type.endswith("spike"):
                    cleaned[c.start:c.end] = d[c.start:c.end]
            changes = kept
            rest, tr = _trend_of(cleaned, changes, sigma)
    return _Pass(s, changes, d - cleaned, rest, sigma, tr)


def _trend_of(cleaned: np.ndarray, changes: list[local.Change], sigma: float) -> tuple[np.ndarray, trend.Trend]:
    n = len(cleaned)
    shift_sum = np.sum([c.component(n) for c in changes], axis=0) if changes else np.zeros(n)
    rest = cleaned - shift_sum
    cols = _shift_columns(n, changes)
    return rest, trend.find_trend(rest, sigma, _range(cleaned), np.column_stack(cols) if cols else None)


def _shift_columns(n: int, changes: list[local.Change]) -> list[np.ndarray]:
    """The level shifts (steps, sudden changes) as columns of unit size."""
    return [c.component(n) / c.amplitude for c in changes if not c.type.endswith("spike") and c.amplitude > 0]


def _bic(p: _Pass) -> float:
    """Bayesian information criterion of a pass's model (Gaussian remainder; 2 parameters per trend
    segment, 3 per local change, 3 for an exact seasonal wave and 2 per harmonic otherwise)."""
    n = len(p.rest)
    rss = float(np.sum((p.rest - p.trend.fitted) ** 2))
    k = 2 * len(p.trend.segments) + 3 * len(p.changes) + season.n_params(p.season)
    return gaussian_bic(n, rss, k)


def _structure_basis(n: int, p: _Pass, shifts: bool = True) -> np.ndarray:
    base = season.spline_basis(n, knots=p.trend.knots())
    if not shifts:
        return base
    cols = _shift_columns(n, p.changes)
    return np.hstack([base, np.column_stack(cols)]) if cols else base


def describe_series(values: np.ndarray, record: int = 0, series: int = 0) -> Description:
    """Attributes of one cleaned series (finite floats, at least a few points, not constant)."""
    y = np.asarray(values, dtype=float)
    n = len(y)
    p = _one_pass(y, season.find_season(y))
    for _ in range(PASSES - 1):
        # the level shifts found may be the edges of a cycle the previous pass missed: try the season with
        # them as columns and without, keep the pass whose model has the lower BIC
        tries = [_one_pass(y, season.find_season(y - p.spikes_removed, _structure_basis(n, p, shifts)))
                 for shifts in (True, False)]
        # ... or the previous pass itself: a pass whose season was absorbed by the knots of a trend that had
        # followed the previous season's misfit (half-cycle segments) must not replace a better model
        best = min(tries, key=_bic)
        if _bic(best) >= _bic(p):
            break  # the next pass would start from the same model
        p = best
    p = _one_pass(y, p.season, final=True)
    s, tr, changes = season.with_strength(p.season), p.trend, p.changes
    remainder = p.rest - tr.fitted
    sig = mad_sigma(remainder)
    sizes = [("trend", abs(g.change)) for g in tr.segments if g.trend != "steady"]
    sizes += [("season", s.amplitude)] if s.present and s.amplitude else []
    sizes += [("spike" if c.type.endswith("spike") else "shift", c.amplitude) for c in changes]
    nz = noise.classify_noise(sig, noise.signal_scale(sizes))
    local_conf = min([c.confidence for c in changes], default=_no_change_confidence(remainder, sig))
    season_conf = s.period_confidence if s.present else s.confidence
    labels = SeriesLabels(
        record=record, series=series, length=n, trend=tr.overall,
        segments=[Segment(g.start, g.end, g.trend) for g in tr.segments],
        seasonal=s.present, season_shape=s.shape, period=_round(s.period, 2), amplitude=_round(s.amplitude, 3),
        noise=nz.level,
        local=[LocalChange(c.type, int(c.position), round(float(c.amplitude), 3)) for c in changes],
        confidence={
            "trend": round(tr.confidence, 3), "segments": round(tr.segments_confidence, 3),
            "seasonal": round(s.confidence, 3), "period": round(season_conf, 3), "amplitude": round(season_conf, 3),
            "noise": round(nz.confidence, 3), "local": round(local_conf, 3),
        },
    )
    return Description(labels, s, tr, changes, nz)


def _no_change_confidence(remainder: np.ndarray, sigma: float) -> float:
    """How sure "no local change" is: the largest remainder excursion against the spike threshold."""
    if sigma <= 0 or len(remainder) == 0:
        return 1.0
    z = float(np.max(np.abs(remainder - np.median(remainder)))) / sigma
    return float(np.clip((local.SPIKE_Z - z) / local.SPIKE_Z + 0.5, 0.0, 1.0))


def _round(v: float | None, nd: int) -> float | None:
    return None if v is None else round(float(v), nd)
