"""Noise level: the robust spread (MAD) of what is left after trend, seasonality and local changes,
relative to the series' signal scale.

The signal scale is the one the labels schema's noise classes are defined against
(tsplugin.synth.attributes: every component is drawn as a multiple of a per-series scale S). Each
component describe found estimates S by its size over the middle of its drawn range; their median is the
scale. The class boundaries are the geometric midpoints between the classes' noise ranges. A series with
no structure at all has no scale but its noise: it is "high" (all it shows is noise) with low confidence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tsplugin.synth.attributes import NOISE_STD, SEASON_AMPLITUDE, SHIFT_AMPLITUDE, SPIKE_AMPLITUDE, TREND_CHANGE
from tsplugin.synth.labels import NOISE_LEVELS

from .robust import logistic


def _mid(r: tuple[float, float]) -> float:
    return math.sqrt(r[0] * r[1])


# noise / scale boundaries between consecutive classes (low|medium, medium|high)
BOUNDS = [math.sqrt(NOISE_STD[a][1] * NOISE_STD[b][0]) for a, b in zip(NOISE_LEVELS[:-1], NOISE_LEVELS[1:])]
PER_SCALE = {"trend": _mid(TREND_CHANGE), "season": _mid(SEASON_AMPLITUDE), "spike": _mid(SPIKE_AMPLITUDE),
             "shift": _mid(SHIFT_AMPLITUDE)}


@dataclass
class Noise:
    level: str
    sigma: float
    ratio: float | None  # sigma / scale
    confidence: float


def signal_scale(sizes: list[tuple[str, float]]) -> float | None:
    """Median of the scale estimates from (component kind, size) pairs; None when there is none."""
    est = sorted(size / PER_SCALE[kind] for kind, size in sizes if size > 0)
    if not est:
        return None
    mid = len(est) // 2
    return est[mid] if len(est) % 2 else math.sqrt(est[mid - 1] * est[mid])


def classify_noise(sigma: float, scale: float | None) -> Noise:
    if scale is None or scale <= 0:
        return Noise(NOISE_LEVELS[-1], sigma, None, 0.1)
    ratio = sigma / scale
    k = sum(ratio >= b for b in BOUNDS)
    # confidence: distance to the nearest boundary in log units (a factor 1.6 away is ~0.9)
    dist = min(abs(math.log(ratio / b)) for b in BOUNDS) if ratio > 0 else 5.0
    return Noise(NOISE_LEVELS[k], sigma, ratio, logistic(dist, 4.0) * 2 - 1 if dist > 0 else 0.0)
