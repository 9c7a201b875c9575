"""Question kinds for synth records: how each is asked and answered (phrasing varies) and how an answer
is read back (`tsplugin eval alignment` scores with the same vocabulary).

Each kind is registered (`register_kind`) with its type:
- categorical: trend, seasonality (shape or "none"), noise, local (type of the first local change or
  "none"); scored by accuracy.
- numeric: period, amplitude (seasonal), position (of the first local change), value (at an index),
  max, min; scored by relative error = |answer - truth| / scale, within `tolerance` or not. The scale is
  the truth for period and amplitude, the length for a position, the series' range for values.
- comparison (several series): compare_max ("which series reaches the highest value?"), related
  ("do the series change at the same time?"); scored like categorical.
- description: a full description built from the attributes, one sentence per attribute; scored per
  attribute (trend, seasonality, noise, local).
A numeric answer's number is the last number in it; a categorical answer must name exactly one class
(a word of `VOCABULARY`, whole words, any case), otherwise it is unparseable.

Every record carries what its scorer needs as `qa`: {"kind", "type", "attribute", "series" (indices),
"truth" (class, or null), "value" (number, or null), "scale", "tolerance"}; the same keys and types in
every record, so a JSON loader infers one schema.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np

from tsplugin.processing.placeholders import PLACEHOLDER
from tsplugin.registry import Registry
from tsplugin.synth.attributes import Composed
from tsplugin.synth.labels import LOCAL_TYPES, NOISE_LEVELS, SEASON_SHAPES, TRENDS, SeriesLabels

CATEGORICAL, NUMERIC, COMPARISON, DESCRIPTION = "categorical", "numeric", "comparison", "description"
TYPES = (CATEGORICAL, NUMERIC, COMPARISON, DESCRIPTION)
NONE = "none"

# attribute -> class -> phrases (the first is the plain word); answers use them, parsing accepts any.
VOCABULARY: dict[str, dict[str, tuple[str, ...]]] = {
    "trend": {"increase": ("increasing", "upward", "rising"), "decrease": ("decreasing", "downward", "falling"),
              "steady": ("steady", "flat", "stable")},
    "seasonality": {"sine": ("sine", "sinusoidal"), "square": ("square", "square-wave"),
                    "triangle": ("triangle", "triangular"),
                    NONE: ("no seasonality", "no seasonal", "not periodic", "no periodic", "no clear period")},
    "noise": {"low": ("low", "slight", "little"), "medium": ("medium", "moderate"), "high": ("high", "strong", "heavy")},
    "local": {"upward_spike": ("upward spike", "sharp peak"), "downward_spike": ("downward spike", "sharp dip"),
              "step_up": ("step up", "upward step"), "step_down": ("step down", "downward step"),
              "sudden_increase": ("sudden increase", "sudden rise"), "sudden_decrease": ("sudden decrease", "sudden drop"),
              NONE: ("no local change", "no local changes", "none")},
    "related": {"yes": ("yes", "related", "together"), "no": ("no", "independent", "independently", "unrelated")},
}
assert set(VOCABULARY["trend"]) == set(TRENDS) and set(VOCABULARY["noise"]) == set(NOISE_LEVELS)
assert set(VOCABULARY["seasonality"]) == set(SEASON_SHAPES) | {NONE}
assert set(VOCABULARY["local"]) == set(LOCAL_TYPES) | {NONE}

TOLERANCE = {"period": 0.1, "amplitude": 0.2, "position": 0.02, "value": 0.05, "max": 0.05, "min": 0.05}
ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_SERIES_REF = re.compile(r"\bseries\s*#?(\d+)\b|\b(" + "|".join(ORDINALS) + r")\b", re.I)
_PATTERNS = {attr: {cls: re.compile(r"(?<!\w)(?:" + "|".join(re.escape(p) for p in sorted(ps, key=len, reverse=True))
                                    + r")(?!\w)", re.I) for cls, ps in classes.items()}
             for attr, classes in VOCABULARY.items()}


@dataclass
class QA:
    """One question and answer, and what the scorer needs (`meta()` is the record's `qa` entry)."""

    kind: str
    type: str
    attribute: str
    series: list[int]
    question: str
    answer: str
    truth: str | None = None
    value: float | None = None
    scale: float | None = None
    tolerance: float | None = None

    def meta(self) -> dict:
        out = asdict(self)
        del out["question"], out["answer"]
        return out


@dataclass(frozen=True)
class QuestionKind:
    """`applies(series)`: can it be asked of this record; `ask(rng, series)`: the QA."""

    type: str
    attribute: str
    applies: Callable[[Sequence[Composed]], bool]
    ask: Callable[[np.random.Generator, Sequence[Composed]], QA]


KINDS: Registry[QuestionKind] = Registry("question kind")


def register_kind(name: str, kind: QuestionKind) -> None:
    """Register a question kind (refuses duplicates)."""
    if kind.type not in TYPES:
        raise ValueError(f"question kind {name!r}: type {kind.type!r}; valid: {', '.join(TYPES)}")
    KINDS.register(name, kind)


# ----------------------------------------------------------------------------- reading answers


def classes_in(attribute: str, text: str) -> set[str]:
    """The classes of `attribute` that `text` names (whole words or phrases, any case)."""
    text = text if isinstance(text, str) else ""
    return {cls for cls, pattern in _PATTERNS[attribute].items() if pattern.search(text)}


def parse_class(attribute: str, text: str) -> str | None:
    """The one class `text` names, or None (none named, or several: unparseable)."""
    found = classes_in(attribute, text)
    return found.pop() if len(found) == 1 else None


def parse_number(text: str) -> float | None:
    """The last number in `text`, or None."""
    found = _NUMBER.findall(text if isinstance(text, str) else "")
    if not found:
        return None
    value = float(found[-1])
    return value if np.isfinite(value) else None


def parse_series_ref(text: str) -> str | None:
    """'series K' (1-based) when `text` names exactly one series ("series 2", "the second"), else None."""
    refs = set()
    for number, ordinal in _SERIES_REF.findall(text if isinstance(text, str) else ""):
        refs.add(int(number) if number else ORDINALS.index(ordinal.lower()) + 1)
    return f"series {refs.pop()}" if len(refs) == 1 else None


def split_description(text: str, n_series: int) -> list[str]:
    """A description's text per series ("Series K:" blocks; the whole text for one series)."""
    if n_series == 1:
        return [text]
    parts = re.split(r"\bSeries\s+(\d+)\s*:", text, flags=re.I)
    blocks = [""] * n_series
    for number, body in zip(parts[1::2], parts[2::2]):
        k = int(number) - 1
        if 0 <= k < n_series:
            blocks[k] += body
    return blocks


DESCRIPTION_MARKERS = {"trend": r"\btrend", "seasonality": r"season|period", "noise": r"\bnois", "local": r"\blocal"}


def description_sentence(attribute: str, block: str) -> str:
    """The first sentence of a description block that speaks of `attribute` ('' when none does)."""
    for sentence in re.split(r"(?<=[.;])\s+", block):
        if re.search(DESCRIPTION_MARKERS[attribute], sentence, re.I):
            return sentence
    return ""


def description_truth(attribute: str, labels: SeriesLabels) -> str | frozenset:
    """What a description must say about `attribute` for this series (local: the set of change types)."""
    if attribute == "trend":
        return labels.trend
    if attribute == "seasonality":
        return labels.season_shape if labels.seasonal else NONE
    if attribute == "noise":
        return labels.noise
    return frozenset(c.type for c in labels.local) or frozenset({NONE})


def read_description(attribute: str, block: str) -> str | frozenset | None:
    """What a description block says about `attribute` (None: unparseable)."""
    sentence = description_sentence(attribute, block)
    if attribute == "local":
        found = classes_in("local", sentence)
        return frozenset(found) if found and not (NONE in found and len(found) > 1) else None
    return parse_class(attribute, sentence)


# ----------------------------------------------------------------------------- asking


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _word(rng: np.random.Generator, attribute: str, cls: str) -> str:
    return _pick(rng, VOCABULARY[attribute][cls])


def _target(rng: np.random.Generator, series: Sequence[Composed], want: Callable[[Composed], bool] = lambda c: True) -> int:
    candidates = [k for k, c in enumerate(series) if want(c)]
    return candidates[int(rng.integers(len(candidates)))]


def _which(series: Sequence[Composed], k: int) -> str:
    """How a question names series k."""
    return "the series" if len(series) == 1 else f"series {k + 1}"


def _fmt(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".") if abs(value) < 1e6 else f"{value:.6g}"


def _first_local(c: Composed):
    return c.labels.local[0] if c.labels.local else None


def _ask_trend(rng, series):
    k = _target(rng, series)
    truth = series[k].labels.trend
    w = _word(rng, "trend", truth)
    q = _pick(rng, ("What is the overall trend of {s}?", "Is {s} increasing, decreasing or steady overall?",
                    "Describe the overall direction of {s}.")).format(s=_which(series, k))
    a = _pick(rng, ("The overall trend is {w}.", "{W}.", "Overall it is {w}.")).format(w=w, W=w.capitalize())
    return QA("trend", CATEGORICAL, "trend", [k], q, a, truth=truth)


def _ask_seasonality(rng, series):
    k = _target(rng, series)
    lab = series[k].labels
    truth = lab.season_shape if lab.seasonal else NONE
    q = _pick(rng, ("What kind of seasonality does {s} have, if any?", "Is {s} periodic? If so, what shape is the cycle?",
                    "Which seasonal pattern is in {s}: sine, square, triangle or none?")).format(s=_which(series, k))
    if truth == NONE:
        a = _pick(rng, ("There is no seasonality.", "It is not periodic.", "No seasonal pattern."))
    else:
        w = _word(rng, "seasonality", truth)
        a = _pick(rng, ("A {w} seasonal pattern.", "It has {w} seasonality.", "The cycle is {w}-shaped.")).format(w=w)
    return QA("seasonality", CATEGORICAL, "seasonality", [k], q, a, truth=truth)


def _ask_noise(rng, series):
    k = _target(rng, series)
    truth = series[k].labels.noise
    w = _word(rng, "noise", truth)
    q = _pick(rng, ("How noisy is {s}: low, medium or high?", "What is the noise level of {s}?",
                    "Rate the noise in {s}.")).format(s=_which(series, k))
    a = _pick(rng, ("The noise is {w}.", "{W} noise.", "It has {w} noise.")).format(w=w, W=w.capitalize())
    return QA("noise", CATEGORICAL, "noise", [k], q, a, truth=truth)


def _ask_local(rng, series):
    k = _target(rng, series)
    first = _first_local(series[k])
    truth = first.type if first else NONE
    q = _pick(rng, ("What local change appears first in {s}, if any?", "Does {s} have a local change? Which one comes first?",
                    "Name the first local change in {s} (spike, step, sudden change) or say none.")).format(s=_which(series, k))
    if first is None:
        a = _pick(rng, ("There is no local change.", "None.", "No local changes."))
    else:
        w = _word(rng, "local", truth)
        a = _pick(rng, ("A {w}.", "The first local change is a {w}.", "It shows a {w}.")).format(w=w)
    return QA("local", CATEGORICAL, "local", [k], q, a, truth=truth)


def _numeric(kind: str, k: int, q: str, a: str, value: float, scale: float) -> QA:
    return QA(kind, NUMERIC, kind, [k], q, a, value=float(value), scale=round(float(scale), 6), tolerance=TOLERANCE[kind])


def _ask_period(rng, series):
    k = _target(rng, series, lambda c: c.labels.seasonal)
    p = series[k].labels.period
    q = _pick(rng, ("What is the period of {s}, in points?", "How many points does one cycle of {s} take?",
                    "Estimate the seasonal period of {s}.")).format(s=_which(series, k))
    a = _pick(rng, ("The period is about {v} points.", "One cycle takes {v}.", "{v}")).format(v=_fmt(p))
    return _numeric("period", k, q, a, p, p)


def _ask_amplitude(rng, series):
    k = _target(rng, series, lambda c: c.labels.seasonal)
    amp = series[k].labels.amplitude
    q = _pick(rng, ("What is the amplitude of the seasonal cycle of {s}?", "How large is the seasonal swing of {s} (half peak to peak)?",
                    "Give the seasonal amplitude of {s}.")).format(s=_which(series, k))
    a = _pick(rng, ("The amplitude is about {v}.", "About {v}.", "{v}")).format(v=_fmt(amp))
    return _numeric("amplitude", k, q, a, amp, amp)


def _ask_position(rng, series):
    k = _target(rng, series, lambda c: bool(c.labels.local))
    first = series[k].labels.local[0]
    q = _pick(rng, ("At which index does the first local change of {s} occur?", "Where is the first local change in {s}?",
                    "Give the position of the first spike, step or sudden change in {s}.")).format(s=_which(series, k))
    a = _pick(rng, ("At index {v}.", "It starts at point {v}.", "{v}")).format(v=first.position)
    return _numeric("position", k, q, a, first.position, series[k].labels.length)


def _range(c: Composed) -> float:
    return max(float(c.values.max() - c.values.min()), 1e-9)


def _ask_value(rng, series):
    k = _target(rng, series)
    c = series[k]
    i = int(rng.integers(c.labels.length))
    v = float(c.values[i])
    q = _pick(rng, ("What is the value of {s} at index {i}?", "Read {s} at point {i}.",
                    "Which value does {s} take at index {i}?")).format(s=_which(series, k), i=i)
    a = _pick(rng, ("At index {i} the value is {v}.", "It is {v}.", "{v}")).format(i=i, v=_fmt(v))
    return _numeric("value", k, q, a, v, _range(c))


def _ask_extreme(kind: str):
    def ask(rng, series):
        k = _target(rng, series)
        c = series[k]
        v = float(c.values.max() if kind == "max" else c.values.min())
        word = "maximum" if kind == "max" else "minimum"
        q = _pick(rng, ("What is the {w} of {s}?", "What is the {w} value {s} reaches?",
                        "Give the {w} of {s}.")).format(w=word, s=_which(series, k))
        a = _pick(rng, ("The {w} is {v}.", "It reaches {v}.", "{v}")).format(w=word, v=_fmt(v))
        return _numeric(kind, k, q, a, v, _range(c))
    return ask


def _ask_compare_max(rng, series):
    tops = [float(c.values.max()) for c in series]
    k = int(np.argmax(tops))
    truth = f"series {k + 1}"
    q = _pick(rng, ("Which series reaches the highest value?", "Which of the series has the largest maximum?",
                    "Compare the series: which one peaks highest?"))
    a = _pick(rng, ("Series {n} reaches the highest value.", "The {o} series.", "Series {n}.")).format(n=k + 1, o=ORDINALS[k])
    return QA("compare_max", COMPARISON, "compare_max", list(range(len(series))), q, a, truth=truth)


def _ask_related(rng, series):
    related = bool(series[0].labels.extra.get("related"))
    truth = "yes" if related else "no"
    q = _pick(rng, ("Do the local changes of the series happen at the same time?", "Are the changes in these series related?",
                    "Do the series change together or independently?"))
    if related:
        a = _pick(rng, ("Yes, the changes happen together.", "Yes, they are related.", "Yes."))
    else:
        a = _pick(rng, ("No, they change independently.", "No, the changes are independent.", "No."))
    return QA("related", COMPARISON, "related", list(range(len(series))), q, a, truth=truth)


def describe_series(rng: np.random.Generator, lab: SeriesLabels) -> str:
    """One series' description, a sentence per attribute (see `description_sentence`)."""
    trend_word = _word(rng, "trend", lab.trend)
    out = [_pick(rng, ("The overall trend is {w}.", "Its trend is {w} overall.")).format(w=trend_word)]
    if len(lab.segments) > 1:
        parts = [f"{_word(rng, 'trend', s.trend)} over points {s.start}-{s.end - 1}" for s in lab.segments]
        out.append("By segment: " + ", then ".join(parts) + ".")
    if lab.seasonal:
        out.append(_pick(rng, ("It has a {w} seasonal pattern with a period of about {p} points and an amplitude of about {a}.",
                               "A {w} seasonal cycle repeats every {p} points, amplitude {a}.")).format(
            w=_word(rng, "seasonality", lab.season_shape), p=_fmt(lab.period), a=_fmt(lab.amplitude)))
    else:
        out.append(_pick(rng, ("There is no seasonality.", "It shows no seasonal cycle; it is not periodic.")))
    out.append(_pick(rng, ("The noise is {w}.", "It carries {w} noise.")).format(w=_word(rng, "noise", lab.noise)))
    if lab.local:
        parts = [f"a {_word(rng, 'local', c.type)} at index {c.position}" for c in lab.local]
        out.append(_pick(rng, ("Local changes: {p}.", "It shows local changes: {p}.")).format(p=", ".join(parts)))
    else:
        out.append(_pick(rng, ("There are no local changes.", "It has no local change.")))
    return " ".join(out)


def _ask_description(rng, series):
    q = _pick(rng, ("Describe {s}: trend, seasonality, noise and local changes.", "Give a full description of {s}.",
                    "What are the characteristics of {s}?")).format(s="the series" if len(series) == 1 else "each series")
    if len(series) == 1:
        a = describe_series(rng, series[0].labels)
    else:
        a = " ".join(f"Series {k + 1}: {describe_series(rng, c.labels)}" for k, c in enumerate(series))
    return QA("description", DESCRIPTION, "description", list(range(len(series))), q, a)


register_kind("trend", QuestionKind(CATEGORICAL, "trend", lambda s: True, _ask_trend))
register_kind("seasonality", QuestionKind(CATEGORICAL, "seasonality", lambda s: True, _ask_seasonality))
register_kind("noise", QuestionKind(CATEGORICAL, "noise", lambda s: True, _ask_noise))
register_kind("local", QuestionKind(CATEGORICAL, "local", lambda s: True, _ask_local))
register_kind("period", QuestionKind(NUMERIC, "period", lambda s: any(c.labels.seasonal for c in s), _ask_period))
register_kind("amplitude", QuestionKind(NUMERIC, "amplitude", lambda s: any(c.labels.seasonal for c in s), _ask_amplitude))
register_kind("position", QuestionKind(NUMERIC, "position", lambda s: any(c.labels.local for c in s), _ask_position))
register_kind("value", QuestionKind(NUMERIC, "value", lambda s: True, _ask_value))
register_kind("max", QuestionKind(NUMERIC, "max", lambda s: True, _ask_extreme("max")))
register_kind("min", QuestionKind(NUMERIC, "min", lambda s: True, _ask_extreme("min")))
register_kind("compare_max", QuestionKind(COMPARISON, "compare_max", lambda s: len(s) > 1, _ask_compare_max))
register_kind("related", QuestionKind(COMPARISON, "related", lambda s: len(s) > 1, _ask_related))
register_kind("description", QuestionKind(DESCRIPTION, "description", lambda s: True, _ask_description))


def prompt(series: Sequence[Composed], question: str) -> str:
    """The record's input: one placeholder per series, then the question."""
    if len(series) == 1:
        return f"{PLACEHOLDER}\n{question}"
    return "".join(f"Series {k + 1}: {PLACEHOLDER}\n" for k in range(len(series))) + question


def ask(rng: np.random.Generator, series: Sequence[Composed], kinds: Sequence[tuple[str, float]]) -> QA:
    """A question of one of `kinds` (name, weight) that applies to these series, drawn by weight.

    Raises ValueError when none applies (e.g. only comparison kinds for one-series records)."""
    usable = [(name, w) for name, w in kinds if KINDS[name].applies(series)]
    if not usable:
        raise ValueError(f"none of the question kinds {', '.join(n for n, _ in kinds)} applies to a record of "
                         f"{len(series)} series; add a kind that always applies (trend, noise, value, ...)")
    weights = np.array([w for _, w in usable], dtype=float)
    name = usable[int(rng.choice(len(usable), p=weights / weights.sum()))][0]
    return KINDS[name].ask(rng, series)
