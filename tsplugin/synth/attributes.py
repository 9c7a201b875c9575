"""Compose series from attributes, as ChatTS builds its alignment data: draw the attributes (trend
segments, seasonality, noise, local changes) and sum the components they name.

Design choices:
- Every amount is relative to a per-series signal scale S (uniform 1..10) and a level (uniform -100..100),
  so the attributes, not the magnitude, carry what a question asks. Local changes are 2..6 S high, noise
  at most 0.5 S: a change is always visible above the noise.
- Adjacent trend segments never share a direction (two "increase" segments would be one segment).
- Local changes sit inside [10%, 90%) of the series, at least 10% of the length apart, so each has a
  clear position; a multi-series record whose changes are `related` gives every series the first
  series' change types and positions (amplitudes follow each series' scale).
- The labels are rounded first and the series is composed from the rounded values, so the labels are
  exactly what generated the series.
- One random generator per record, seeded with (seed, record index): a record does not depend on the
  records before it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from tsplugin.synth.labels import (LOCAL_TYPES, NOISE_LEVELS, SEASON_SHAPES, TRENDS, LocalChange, Segment,
                                   SeriesLabels, overall_trend)

NOISE_STD = {"low": (0.02, 0.05), "medium": (0.1, 0.2), "high": (0.3, 0.5)}  # x S
TREND_CHANGE = (1.5, 4.0)  # |change| of an increasing/decreasing segment, x S
SEASON_AMPLITUDE = (0.5, 2.0)  # x S
SPIKE_AMPLITUDE = (3.0, 6.0)  # x S
SHIFT_AMPLITUDE = (2.0, 4.0)  # steps and sudden changes, x S
SUDDEN_WIDTH = 0.04  # a sudden increase/decrease ramps over this share of the length (>= 3 points)
MIN_PERIOD, MIN_CYCLES = 6.0, 3.0  # period in [MIN_PERIOD, length / MIN_CYCLES]
LOCAL_MARGIN, LOCAL_GAP = 0.1, 0.1  # local changes inside [10%, 90%), >= 10% of the length apart
MIN_SEGMENT = 0.15  # each trend segment spans >= 15% of the length


@dataclass(frozen=True)
class AttributeMix:
    """Which attribute values are drawn, and how often (each list is drawn uniformly)."""

    trends: tuple[str, ...] = TRENDS
    shapes: tuple[str, ...] = SEASON_SHAPES
    noises: tuple[str, ...] = NOISE_LEVELS
    local_types: tuple[str, ...] = LOCAL_TYPES
    seasonal_prob: float = 0.5
    local_prob: float = 0.5
    max_segments: int = 3
    max_local: int = 2
    related_prob: float = 0.5
    min_length: int = 64
    max_length: int = 512

    def __post_init__(self) -> None:
        for name, valid in (("trends", TRENDS), ("shapes", SEASON_SHAPES), ("noises", NOISE_LEVELS),
                            ("local_types", LOCAL_TYPES)):
            values = getattr(self, name)
            bad = [v for v in values if v not in valid]
            if bad or not values:
                raise ValueError(f"{name}: {', '.join(bad) or 'nothing'} given; choose from {', '.join(valid)}")
        for name in ("seasonal_prob", "local_prob", "related_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} is {getattr(self, name)}; a probability in [0, 1]")
        if not 1 <= self.max_segments <= 6:
            raise ValueError(f"max_segments is {self.max_segments}; 1 to 6 (each segment spans >= {MIN_SEGMENT:.0%} of the length)")
        if not 0 <= self.max_local <= 4:
            raise ValueError(f"max_local is {self.max_local}; 0 to 4 (changes are >= {LOCAL_GAP:.0%} of the length apart)")
        if self.local_prob > 0 and self.max_local == 0:
            raise ValueError("local_prob > 0 with max_local 0; set max_local >= 1 or local_prob 0")
        if not 32 <= self.min_length <= self.max_length:
            raise ValueError(f"lengths {self.min_length}..{self.max_length}: need 32 <= min_length <= max_length "
                             "(a 3-cycle season and spaced local changes need room)")
        if len(self.trends) == 1 and self.max_segments > 1:
            raise ValueError(f"one trend ({self.trends[0]}) with max_segments {self.max_segments}: adjacent segments "
                             "differ in direction, so give two or more trends or max_segments 1")


@dataclass
class Composed:
    """One series and its labels."""

    labels: SeriesLabels
    values: np.ndarray = field(repr=False)


def record_rng(seed: int, record: int) -> np.random.Generator:
    """The generator of one record: the same (seed, record) always gives the same record."""
    return np.random.default_rng([seed, record])


def _segments(rng: np.random.Generator, length: int, mix: AttributeMix) -> list[tuple[int, int, str, float]]:
    """(start, end, direction, |change|) tiling [0, length)."""
    n = int(rng.integers(1, mix.max_segments + 1))
    min_len = int(np.ceil(MIN_SEGMENT * length))
    n = min(n, length // min_len)
    # cut points: n - 1 sorted points, every piece >= min_len
    slack = length - n * min_len
    extra = np.sort(rng.integers(0, slack + 1, size=n - 1)) if n > 1 else np.array([], dtype=int)
    bounds = [0] + [int(min_len * (k + 1) + extra[k]) for k in range(n - 1)] + [length]
    out, previous = [], None
    for k in range(n):
        choices = [t for t in mix.trends if t != previous]
        direction = choices[int(rng.integers(len(choices)))]
        change = 0.0 if direction == "steady" else float(rng.uniform(*TREND_CHANGE))
        out.append((bounds[k], bounds[k + 1], direction, change))
        previous = direction
    return out


def _local_positions(rng: np.random.Generator, length: int, count: int) -> list[int]:
    lo, hi, gap = int(LOCAL_MARGIN * length), int((1 - LOCAL_MARGIN) * length), int(np.ceil(LOCAL_GAP * length))
    for _ in range(100):
        pos = np.sort(rng.integers(lo, hi, size=count))
        if count < 2 or np.diff(pos).min() >= gap:
            return [int(p) for p in pos]
    return [int(lo + k * gap) for k in range(count)]  # unreachable for count <= 4: a spaced fallback


def _draw_local(rng: np.random.Generator, length: int, mix: AttributeMix, force: bool = False) -> list[tuple[str, int]]:
    if mix.max_local == 0 or (not force and rng.random() >= mix.local_prob):
        return []
    count = int(rng.integers(1, mix.max_local + 1))
    types = [mix.local_types[int(rng.integers(len(mix.local_types)))] for _ in range(count)]
    return list(zip(types, _local_positions(rng, length, count)))


def season(shape: str, length: int, period: float, amplitude: float, phase: float) -> np.ndarray:
    """A periodic component: `amplitude` is half its peak-to-peak, `period` points per cycle."""
    angle = 2 * np.pi * np.arange(length) / period + phase
    if shape == "sine":
        return amplitude * np.sin(angle)
    if shape == "square":
        return amplitude * np.where(np.sin(angle) >= 0, 1.0, -1.0)
    if shape == "triangle":
        return amplitude * (2 / np.pi) * np.arcsin(np.sin(angle))
    raise ValueError(f"season shape {shape!r}; valid: {', '.join(SEASON_SHAPES)}")


def local_component(kind: str, length: int, position: int, amplitude: float) -> np.ndarray:
    """One local change as an additive component (the meaning of each type is in tsplugin.synth.labels)."""
    t = np.arange(length)
    sign = 1.0 if kind in ("upward_spike", "step_up", "sudden_increase") else -1.0
    if kind.endswith("spike"):
        half = max(1, length // 100)
        return sign * amplitude * np.clip(1.0 - np.abs(t - position) / (half + 1), 0.0, None)
    if kind.startswith("step"):
        return sign * amplitude * (t >= position)
    width = max(3, int(round(SUDDEN_WIDTH * length)))
    return sign * amplitude * np.clip((t - position) / width, 0.0, 1.0)


def compose_series(rng: np.random.Generator, record: int, index: int, length: int, mix: AttributeMix,
                   local: Sequence[tuple[str, int]] | None = None, related: bool | None = None) -> Composed:
    """Draw one series' attributes and compose it; `local` (types and positions) overrides the draw."""
    scale, level = float(rng.uniform(1.0, 10.0)), float(rng.uniform(-100.0, 100.0))
    segs = _segments(rng, length, mix)
    trend = np.zeros(length)
    value = 0.0
    segments = []
    for start, end, direction, change in segs:
        delta = {"increase": 1.0, "decrease": -1.0, "steady": 0.0}[direction] * change * scale
        trend[start:end] = value + delta * (np.arange(end - start) + 1) / (end - start)
        value += delta
        segments.append(Segment(start, end, direction))
    overall = overall_trend((d, c) for _, _, d, c in segs)

    seasonal = rng.random() < mix.seasonal_prob
    shape = period = amplitude = None
    component = np.zeros(length)
    if seasonal:
        shape = mix.shapes[int(rng.integers(len(mix.shapes)))]
        period = round(float(rng.uniform(MIN_PERIOD, length / MIN_CYCLES)), 1)
        amplitude = round(float(rng.uniform(*SEASON_AMPLITUDE)) * scale, 3)
        component = season(shape, length, period, amplitude, float(rng.uniform(0, 2 * np.pi)))

    noise = mix.noises[int(rng.integers(len(mix.noises)))]
    noise_std = float(rng.uniform(*NOISE_STD[noise])) * scale

    changes = _draw_local(rng, length, mix) if local is None else list(local)
    local_labels, local_sum = [], np.zeros(length)
    for kind, position in changes:
        lo_hi = SPIKE_AMPLITUDE if kind.endswith("spike") else SHIFT_AMPLITUDE
        amp = round(float(rng.uniform(*lo_hi)) * scale, 3)
        local_sum += local_component(kind, length, position, amp)
        local_labels.append(LocalChange(kind, position, amp))

    values = level + trend + component + local_sum + rng.normal(0.0, noise_std, length)
    labels = SeriesLabels(record=record, series=index, length=length, trend=overall, segments=segments,
                          seasonal=seasonal, season_shape=shape, period=period, amplitude=amplitude, noise=noise,
                          local=local_labels, extra={"related": related})
    return Composed(labels, np.round(values, 3))


def compose_record(seed: int, record: int, n_series: int, mix: AttributeMix) -> tuple[np.random.Generator, list[Composed]]:
    """The series of one record (same length), and the record's generator (the Q&A draw continues it)."""
    rng = record_rng(seed, record)
    length = int(rng.integers(mix.min_length, mix.max_length + 1))
    if n_series == 1:
        return rng, [compose_series(rng, record, 0, length, mix)]
    related = bool(rng.random() < mix.related_prob) and mix.max_local > 0 and mix.local_prob > 0
    first = compose_series(rng, record, 0, length, mix,
                           local=_draw_local(rng, length, mix, force=True) if related else None, related=related)
    shared = [(c.type, c.position) for c in first.labels.local] if related else None
    rest = [compose_series(rng, record, k, length, mix, local=shared, related=related) for k in range(1, n_series)]
    return rng, [first, *rest]
