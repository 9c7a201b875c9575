"""A learnable task whose answer lives only in the series: two noisy ramps, "which one rises?".

Each record holds two series of the same length, "A: <ts><ts/> / B: <ts><ts/>"; one rises and the
other falls (same |slope|, noise law, level and amplitude drawn per series). The answer is "first"
or "second". The text cannot leak it: the plugin prepends `[Value Offset: -mean|Value Scaling: s]`
(s = max|x - mean| / 3) to each series, and a rising and a falling ramp with the same level,
amplitude and noise law have the same distribution of mean and max|x - mean| (a falling ramp is a
rising one reversed in time), so the prefixes carry no label information. A model that answers
better than chance read the series; with the series shuffled between records it cannot.

Used by `tsplugin quickstart` (the evidence it prints) and bench/series_ablation.py (the full
ablation with controls).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

QUESTION = "A: <ts><ts/>\nB: <ts><ts/>\nOne rises, one falls. Which rises, the first or the second?"
ANSWERS = ("first", "second")


def ramp(rng: np.random.Generator, length: int, rising: bool, level: float, amplitude: float) -> list[float]:
    """A noisy linear ramp; a rising and a falling one share level, amplitude and noise law."""
    t = np.linspace(-1.0, 1.0, length)
    x = level + (1.0 if rising else -1.0) * amplitude * t + rng.normal(0.0, 0.15 * amplitude, length)
    return [round(float(v), 4) for v in x]


def make_records(n: int, length: int, seed: int) -> list[dict[str, Any]]:
    """Balanced records {input, output, timeseries}: answer "first" iff series A rises.

    Levels and amplitudes are drawn per series; the same (n, length, seed) gives the same records."""
    rng = np.random.default_rng(seed)
    labels = np.array([i % 2 for i in range(n)])
    rng.shuffle(labels)
    records = []
    for label in labels:
        pair = []
        for k in range(2):
            rising = (k == 0) == (label == 0)
            pair.append(ramp(rng, length, rising, level=rng.uniform(-50, 50), amplitude=rng.uniform(2, 20)))
        records.append({"input": QUESTION, "output": ANSWERS[label], "timeseries": pair})
    return records


def derangement(n: int, seed: int) -> list[int]:
    """A permutation with no fixed point (record i never keeps its own series)."""
    rng = np.random.default_rng(seed)
    perm = np.arange(n)
    while n > 1 and (perm == np.arange(n)).any():
        perm = rng.permutation(n)
    return perm.tolist()


def shuffled(records: Sequence[dict], seed: int) -> list[dict]:
    """Each record gets another record's series pair; text and answer stay."""
    perm = derangement(len(records), seed)
    return [dict(r, timeseries=records[j]["timeseries"]) for r, j in zip(records, perm)]
