"""Seasonality: whether a series repeats, its period, shape and amplitude.

Method (the choices, in order):
- The non-seasonal part is modelled by a continuous linear spline with a knot every ~1/8 of the length
  (it follows piecewise-linear trends and absorbs level shifts coarsely) and fitted jointly, by least
  squares, with K harmonics of a candidate period P. The evidence for P is the F statistic of the
  harmonics over the spline alone.
- Candidate periods are the peaks of the periodogram (scipy.signal.periodogram) of the spline
  residual; each is refined by a bounded 1-D search on the joint fit's residual, then the shortest
  sub-multiple P/k that explains nearly as much is preferred (a sine at P is also "periodic" at 2P).
- The seasonal decision needs both the F statistic and the autocorrelation (statsmodels acf) of the
  residual at lag P: a fit over noise can find a high F at some P, but not a repeating shape.
- Shape from the harmonics: a sine has no 3rd harmonic, a triangle's is 1/9 of the fundamental, a
  square's 1/3. Amplitude (half the peak-to-peak) from the fundamental and the shape's Fourier factor.
- STL (statsmodels) then splits the series at the rounded period for the seasonal strength
  (Wang, Smith & Hyndman 2006: 1 - var(remainder) / var(seasonal + remainder)), one input of the confidence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.signal import periodogram

from .robust import gaussian_bic, logistic, mad_sigma

MIN_PERIOD = 4.0
MIN_CYCLES = 3.0  # a period longer than length / MIN_CYCLES is not looked for (fewer cycles: a trend can mimic them)
HARMONICS = 5
F_PRESENT = 12.0  # F statistic above which the harmonics explain more than noise searched over periods
ACF_PRESENT = 0.1  # half the contrast acf(P) - acf(P/2)
CONSISTENT = 0.05  # smallest share of variance the season must explain in every part of the series
BEYOND_LONGEST = 0.05  # a period this much beyond the longest looked for (length / MIN_CYCLES) is no season
QUASI_CYCLES = 4.0  # a quasi-periodic cycle's amplitude and phase may change once per this many cycles
QUASI_HARMONICS = 3
ACF_QUASI = 0.3  # the autocorrelation contrast a cycle without a fixed phase needs (its only evidence of repeating)
SHAPE_FACTOR = {"sine": 1.0, "triangle": 8 / math.pi**2, "square": 4 / math.pi}  # fundamental / amplitude


@dataclass
class Season:
    present: bool
    period: float | None
    shape: str | None
    amplitude: float | None
    component: np.ndarray  # the seasonal component (zeros when not present)
    confidence: float  # in the presence decision
    period_confidence: float
    strength: float  # STL seasonal strength in [0, 1] (set by with_strength)
    detrended: np.ndarray | None = None  # the series minus the non-seasonal fit
    params: int = 0  # fitted parameters of the component, the period included (what the BIC counts)


def spline_basis(n: int, knots_every: float | None = None, knots: list[int] | None = None) -> np.ndarray:
    """Continuous piecewise-linear basis: intercept, t, and a hinge max(0, t - k) at each knot (every
    ``knots_every`` points, default a quarter of the length, or at the given ``knots``)."""
    t = np.arange(n, dtype=float)
    if knots is None:
        every = knots_every or max(8.0, n / 4)
        knots = list(np.arange(every, n - every / 2, every))
    cols = [np.ones(n), t / n] + [np.maximum(0.0, t - k) / n for k in knots]
    return np.column_stack(cols)


def harmonics(n: int, period: float, k: int) -> np.ndarray:
    t = np.arange(n, dtype=float)
    cols = []
    for h in range(1, k + 1):
        if 2 * h > period:  # above Nyquist for this period
            break
        a = 2 * np.pi * h * t / period
        cols += [np.cos(a), np.sin(a)]
    return np.column_stack(cols)


def _rss(y: np.ndarray, X: np.ndarray) -> tuple[float, np.ndarray]:
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    r = y - X @ coef
    return float(r @ r), coef


def _fit(y: np.ndarray, base: np.ndarray, period: float, k: int) -> tuple[float, np.ndarray, int]:
    H = harmonics(len(y), period, k)
    rss, coef = _rss(y, np.hstack([base, H]))
    return rss, coef[base.shape[1]:], H.shape[1]


def _f_stat(rss0: float, rss1: float, q: int, dof: int) -> float:
    if rss1 <= 0:
        return float("inf")
    return ((rss0 - rss1) / q) / (rss1 / max(dof, 1))


def _candidates(resid: np.ndarray, lo: float, hi: float, top: int = 4) -> list[float]:
    freqs, power = periodogram(resid, detrend=False)
    keep = (freqs > 0) & (freqs >= 1 / hi) & (freqs <= 1 / lo)
    if not keep.any():
        return []
    f, p = freqs[keep], power[keep]
    order = np.argsort(p)[::-1][:top]
    return [float(1 / f[i]) for i in order]


def _refine(y: np.ndarray, base: np.ndarray, p0: float, lo: float, hi: float, k: int) -> float:
    a, b = max(lo, p0 * 0.9), min(hi, p0 * 1.1)
    if b <= a:
        return p0
    # the residual is multi-modal in P when there are many cycles: a coarse grid first, then a bounded search
    grid = np.linspace(a, b, 41)
    best = min(grid, key=lambda p: _fit(y, base, p, k)[0])
    step = (b - a) / 40
    res = minimize_scalar(lambda p: _fit(y, base, p, k)[0], bounds=(max(a, best - step), min(b, best + step)),
                          method="bounded", options={"xatol": 1e-3})
    return float(res.x) if res.fun <= _fit(y, base, best, k)[0] else float(best)


def _shape(coef: np.ndarray) -> tuple[str, float, float]:
    """(shape, amplitude of the fundamental, ratio of the 3rd harmonic to it) from harmonic coefficients."""
    amps = np.hypot(coef[0::2], coef[1::2])
    h1 = float(amps[0]) if len(amps) else 0.0
    h3 = float(amps[2]) if len(amps) > 2 else 0.0
    ratio = h3 / h1 if h1 > 0 else 0.0
    if ratio < 0.055:
        return "sine", h1, ratio
    return ("triangle" if ratio < 0.2 else "square"), h1, ratio


def _acf_at(resid: np.ndarray, period: float) -> float:
    from statsmodels.tsa.stattools import acf

    lag = round(period)
    if lag >= len(resid) - 2:
        return 0.0
    vals = acf(resid, nlags=lag + 1, fft=True)

    def at(p: float) -> float:
        lo = math.floor(p)
        frac = p - lo
        return float((1 - frac) * vals[lo] + frac * vals[min(lo + 1, len(vals) - 1)])

    # a repeating shape correlates with itself one period later and anti-correlates half a period later;
    # a smooth non-periodic remainder correlates at both
    return 0.5 * (at(period) - at(period / 2))


def _consistency(r: np.ndarray, s: np.ndarray, period: float) -> float:
    """The smallest share of variance the seasonal component explains in any part of the series (parts of
    at least 1.5 cycles, each less its own line): a real season repeats everywhere; the misfit of a level shift or a kink that a
    periodic fit picked up explains one part and hurts the others (a negative share)."""
    n = len(r)
    parts = int(max(2, min(4, n / period / 1.5)))
    worst = 1.0
    for chunk in np.array_split(np.arange(n), parts):
        line = np.column_stack([np.ones(len(chunk)), chunk])  # each part's own level and slope: the variance
        total = _rss(r[chunk], line)[0]  # a drift the non-seasonal fit left (a curved trend) is not the season's
        if total <= 0:
            return 0.0
        worst = min(worst, 1.0 - _rss(r[chunk] - s[chunk], line)[0] / total)
    return worst


def _stl_strength(y: np.ndarray, period: float) -> float:
    from statsmodels.tsa.seasonal import STL

    p = round(period)
    if p < 2 or len(y) < 2 * p + 1:
        return 0.0
    res = STL(y, period=p, robust=True).fit()
    rem = np.asarray(res.resid)
    denom = float(np.var(np.asarray(res.seasonal) + rem))
    return 0.0 if denom <= 0 else max(0.0, 1.0 - float(np.var(rem)) / denom)


def template(shape: str, n: int, period: float, phase: float) -> np.ndarray:
    """Unit-amplitude periodic wave of a shape, sampled at 0..n-1 (square and triangle sampled exactly,
    so their edges and corners are where the data has them, which a few harmonics cannot draw)."""
    angle = 2 * np.pi * np.arange(n) / period + phase
    if shape == "square":
        return np.where(np.sin(angle) >= 0, 1.0, -1.0)
    if shape == "triangle":
        return (2 / np.pi) * np.arcsin(np.sin(angle))
    return np.sin(angle)


def _smooth_template(shape: str, n: int, period: float, phase: float) -> np.ndarray:
    """``template`` averaged over each sample's unit interval, for the square: its sampled edges move in whole
    samples, so the fit's residual is flat in period and phase between them and a simplex search stops where
    it starts (a period 1% off puts the edges of the last cycles a few samples wrong: spikes that are not
    there). The average moves its edge samples continuously; the other shapes are continuous already."""
    if shape != "square":
        return template(shape, n, period, phase)
    step = 2 * np.pi / period
    mid = 2 * np.pi * np.arange(n) / period + phase

    def integral(theta: np.ndarray) -> np.ndarray:  # of sign(sin): rises on [0, pi], falls on [pi, 2 pi]
        return np.pi / 2 - np.abs(np.mod(theta, 2 * np.pi) - np.pi)

    return (integral(mid + step / 2) - integral(mid - step / 2)) / step


def _best_component(y: np.ndarray, base: np.ndarray, period: float, hcoef: np.ndarray, harmonic: np.ndarray,
                    q: int) -> tuple[np.ndarray, str | None, float | None, float]:
    """(component, shape or None, amplitude or None, period). Each shape's exact wave is fitted, its period
    and phase refined together (Nelder-Mead from the fundamental's phase; the scale by least squares); the
    shapes have the same parameters (period, phase, scale), so the lowest residual picks the shape: a square
    wins only where the data has flat halves and sharp edges, not from a large 3rd harmonic alone. The best
    wave is kept when its BIC beats the ``q`` harmonic coefficients' (a real seasonal profile need not be one
    of the three shapes: then the harmonics, and no shape from here)."""
    from scipy.optimize import minimize

    n = len(y)

    def rss_of(wave, shape):  # the residual of base + scale * wave(period, phase), as a function of (period, phase)
        def rss(params: np.ndarray) -> float:
            p, ph = params
            if not MIN_PERIOD <= p <= n:
                return float("inf")
            return _rss(y, np.hstack([base, wave(shape, n, p, ph)[:, None]]))[0]
        return rss

    def search(f, x0):
        return minimize(f, np.array(x0), method="Nelder-Mead", options={"xatol": 1e-4, "fatol": 1e-9, "initial_simplex": np.array(
            [x0, (x0[0] * 1.004, x0[1]), (x0[0], x0[1] + 0.05)])})

    phase0 = math.atan2(hcoef[0], hcoef[1])  # a cos + b sin = A sin(angle + phase)
    fits = []  # (rss, shape, period, phase)
    for shape in SHAPE_FACTOR:
        sampled = rss_of(template, shape)
        start = min(((period, phase0 + d) for d in np.linspace(-0.3, 0.3, 7)), key=lambda x: sampled(np.array(x)))
        res = search(sampled, start)
        if shape == "square":  # the sampled square's residual is flat between edge moves: search the averaged one first
            alt = search(sampled, tuple(search(rss_of(_smooth_template, shape), start).x))
            res = alt if alt.fun < res.fun else res
        p, ph = (float(v) for v in res.x)
        if abs(p - period) <= 0.05 * period:
            fits.append((float(res.fun), shape, p, ph))
    harmonic_rss = _rss(y, np.hstack([base, harmonic[:, None]]))[0]
    if fits:
        rss, shape, p, ph = min(fits)
        if _bic_gain(n, harmonic_rss, 1 + q, rss, 3) > 0:
            w = template(shape, n, p, ph)
            _, coef = _rss(y, np.hstack([base, w[:, None]]))
            if coef[-1] > 0:
                return coef[-1] * w, shape, float(coef[-1]), p
    return harmonic, None, None, period


def _bic_gain(n: int, rss0: float, k0: int, rss1: float, k1: int) -> float:
    """How much lower model 1's Gaussian BIC is than model 0's (positive: model 1 is preferred)."""
    return gaussian_bic(n, rss0, k0) - gaussian_bic(n, rss1, k1)


def absent(n: int, confidence: float = 0.0) -> Season:
    return Season(False, None, None, None, np.zeros(n), confidence, 0.0, 0.0)


def n_params(s: Season) -> int:
    """Parameters of the seasonal component: period, phase and scale of an exact wave, or the period and
    every harmonic coefficient (one set per knot for a quasi-periodic cycle)."""
    return s.params if s.present else 0


def find_season(y: np.ndarray, base: np.ndarray | None = None) -> Season:
    """Seasonality of ``y`` (spikes and level shifts already removed or absorbed in ``base``)."""
    n = len(y)
    base = spline_basis(n) if base is None else base
    none = absent(n)
    lo, hi = MIN_PERIOD, n / MIN_CYCLES
    if hi <= lo:
        return none
    rss0, coef0 = _rss(y, base)
    if rss0 <= 0:
        return none
    resid0 = y - base @ coef0
    best: tuple[float, float] | None = None  # (F, period)
    for p0 in _candidates(resid0, lo, hi):
        p = _refine(y, base, p0, lo, hi, 3)
        rss1, _, q = _fit(y, base, p, 3)
        f = _f_stat(rss0, rss1, q, n - base.shape[1] - q)
        if best is None or f > best[0]:
            best = (f, p)
    if best is None:
        return none
    f, period = best
    # prefer the shortest sub-multiple that fits nearly as well, or that repeats where the period found
    # does not, or whose fundamental is the largest harmonic at P (a cycle at P also fits at 2P, whose
    # harmonics then pick up other structure too; a cycle's own fundamental is its largest harmonic)
    contrast = _acf_at(resid0, period)
    amps = _fit(y, base, period, 4)[1]
    dominant = int(np.argmax(np.hypot(amps[0::2], amps[1::2]))) + 1
    for div in (4, 3, 2):
        sub = period / div
        if sub < lo:
            continue
        sub = _refine(y, base, sub, lo, hi, 3)
        rss_s, _, q = _fit(y, base, sub, 3)
        f_sub = _f_stat(rss0, rss_s, q, n - base.shape[1] - q)
        if f_sub >= 0.8 * f or (f_sub >= F_PRESENT and (div == dominant
                                                        or contrast < ACF_PRESENT <= _acf_at(resid0, sub))):
            f, period = f_sub, sub
            break
    if period > 0.9 * hi:
        # near the longest period looked for: where the fit would rather go on to a period longer than the
        # longest by more than a period estimate's error over three cycles (BEYOND_LONGEST), the structure
        # repeats fewer than MIN_CYCLES times in the series (a trend's turns, not a season)
        longer = _refine(y, base, period, lo, n / 2, 3)
        if longer > hi * (1 + BEYOND_LONGEST):
            none.confidence = logistic(math.log(longer / hi) - math.log1p(BEYOND_LONGEST), 40.0)
            return none
    k = max(1, min(HARMONICS, int(period // 2)))
    rss1, hcoef, q = _fit(y, base, period, k)
    shape, h1, _ = _shape(hcoef)
    # residual of the non-seasonal fit at the refined period, for the autocorrelation check
    coef_all, *_ = np.linalg.lstsq(np.hstack([base, harmonics(n, period, k)]), y, rcond=None)
    non_seasonal = base @ coef_all[: base.shape[1]]
    acf_p = _acf_at(y - non_seasonal, period)
    sigma = mad_sigma(y - non_seasonal - harmonics(n, period, k) @ hcoef)
    f3 = _f_stat(rss0, _fit(y, base, period, 3)[0], min(6, q), n - base.shape[1] - min(6, q))
    consistency = _consistency(y - non_seasonal, harmonics(n, period, k) @ hcoef, period)
    # each test as a probability-like margin; present when all pass, confidence from the closest call
    p_present = min(logistic(math.log(max(f3, 1e-9)) - math.log(F_PRESENT), 3.0),
                    logistic(acf_p - ACF_PRESENT, 12.0), logistic(consistency - CONSISTENT, 15.0))
    present = p_present >= 0.5
    conf = p_present if present else 1.0 - p_present
    if not present:
        p_quasi, quasi = _quasi(y, base, period, rss0, lo, hi)
        if quasi is not None:
            return quasi
        none.confidence = min(conf, 1.0 - p_quasi)
        return none
    amplitude = h1 / SHAPE_FACTOR[shape]
    component, exact_shape, fitted_amp, period = _best_component(y, base, period, hcoef,
                                                                 harmonics(n, period, k) @ hcoef, q)
    shape, amplitude = exact_shape or shape, fitted_amp or amplitude
    # period confidence: cycles seen and how far the seasonal rises above the noise (STL strength joins in
    # `with_strength`, once, on the final fit: STL is the slow part)
    p_conf = _period_confidence(n, period, amplitude, sigma)
    params = 3 if fitted_amp is not None else 1 + q  # an exact wave: period, phase, scale
    return Season(True, period, shape, amplitude, component, conf, p_conf, 0.0, y - non_seasonal, params)


def _period_confidence(n: int, period: float, amplitude: float, sigma: float) -> float:
    """How sure the period is: the cycles seen (four or more: sure) and how far the seasonal amplitude rises
    above the noise ``sigma`` (STL strength joins in `with_strength`)."""
    return min(1.0, n / period / 4) * logistic(amplitude / max(sigma, 1e-12) - 1.0, 2.0)


def _knots_of(n: int, period: float) -> np.ndarray | None:
    """Hat functions on knots QUASI_CYCLES cycles or more apart (None when fewer than two such spans fit)."""
    spans = int(n / period // QUASI_CYCLES)
    if spans < 2:
        return None
    t = np.arange(n) / (n - 1)
    return np.column_stack([np.clip(1.0 - np.abs(t - c) * spans, 0.0, None) for c in np.linspace(0, 1, spans + 1)])


def _varying(n: int, period: float, hats: np.ndarray) -> np.ndarray:
    """Harmonics of ``period`` whose coefficients vary linearly between the knots of ``hats``: a cycle whose
    amplitude and phase drift (two cycles of a 10-year sunspot cycle and a 12-year one are apart by a
    quarter phase after 30 years)."""
    H = harmonics(n, period, max(1, min(QUASI_HARMONICS, int(period // 2))))
    return np.column_stack([H[:, i] * hats[:, j] for i in range(H.shape[1]) for j in range(hats.shape[1])])


def _quasi(y: np.ndarray, base: np.ndarray, period: float, rss0: float, lo: float,
           hi: float) -> tuple[float, Season | None]:
    """The season as a quasi-periodic cycle (amplitude and phase drift slowly), tried where a fixed-phase
    season is rejected: its F statistic over the non-seasonal fit counts every varying coefficient, and
    without a fixed phase its evidence of repeating is the autocorrelation, so that bar is higher
    (ACF_QUASI). (probability-like margin of presence, the season when present); (0, None) when the
    series is too short for the coefficients to vary slowly."""
    n = len(y)
    hats = _knots_of(n, period)
    if hats is None:
        return 0.0, None

    def rss_at(p: float) -> float:
        return _rss(y, np.hstack([base, _varying(n, p, hats)]))[0]

    grid = [p for p in np.linspace(period * 0.9, period * 1.1, 21) if lo <= p <= hi]
    period = float(min(grid, key=rss_at)) if grid else period
    V = _varying(n, period, hats)
    rss1, coef = _rss(y, np.hstack([base, V]))
    q = V.shape[1]
    f = _f_stat(rss0, rss1, q, n - base.shape[1] - q)
    non_seasonal = base @ coef[: base.shape[1]]
    component = V @ coef[base.shape[1]:]
    acf_p = _acf_at(y - non_seasonal, period)
    consistency = _consistency(y - non_seasonal, component, period)
    p_present = min(logistic(math.log(max(f, 1e-9)) - math.log(F_PRESENT), 3.0),
                    logistic(acf_p - ACF_QUASI, 12.0), logistic(consistency - CONSISTENT, 15.0))
    if p_present < 0.5:
        return p_present, None
    # each harmonic's size: the root mean square of its drifting coefficients
    per_h = coef[base.shape[1]:].reshape(-1, hats.shape[1]) @ hats.T  # (2 x harmonics, n)
    rms = np.sqrt(np.mean(per_h[0::2] ** 2 + per_h[1::2] ** 2, axis=1))
    shape, h1, _ = _shape(np.column_stack([rms, np.zeros_like(rms)]).ravel())
    amplitude = h1 / SHAPE_FACTOR[shape]
    p_conf = _period_confidence(n, period, amplitude, mad_sigma(y - non_seasonal - component))
    return p_present, Season(True, period, shape, amplitude, component, p_present, p_conf, 0.0, y - non_seasonal,
                             1 + q)


def with_strength(s: Season) -> Season:
    """The season with its STL strength, which scales the period and amplitude confidence (a strength of
    0.3, a clearly seasonal remainder, or more keeps it)."""
    if not s.present or s.detrended is None:
        return s
    s.strength = _stl_strength(s.detrended, s.period)
    s.period_confidence *= min(1.0, s.strength / 0.3)
    return s
