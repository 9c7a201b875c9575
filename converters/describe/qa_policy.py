"""Which questions describe asks: each question kind of tsplugin.synth.qa and the attributes (confidence
keys of the labels schema) its answer rests on. A question is left out (and counted in the report) when
one of them is below MIN_CONFIDENCE for a series it asks about. `related` is never asked: whether the
changes of several series are related is a fact of how synth composed them, not something read from data.
"""

from __future__ import annotations

from tsplugin.synth.labels import CONFIDENCE_KEYS, SeriesLabels

MIN_CONFIDENCE = 0.7

KIND_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "trend": ("trend",),
    "seasonality": ("seasonal",),
    "noise": ("noise",),
    "local": ("local",),
    "period": ("period",),
    "amplitude": ("amplitude",),
    "position": ("local",),
    "value": (),  # read off the data: always certain
    "max": (),
    "min": (),
    "compare_max": (),
    "description": CONFIDENCE_KEYS,
}


def uncertain_attributes(labels: SeriesLabels, min_confidence: float,
                         attributes: tuple[str, ...] = CONFIDENCE_KEYS) -> list[str]:
    """The attributes among ``attributes`` whose confidence is below ``min_confidence``."""
    return [a for a in attributes if labels.confidence.get(a, 1.0) < min_confidence]
