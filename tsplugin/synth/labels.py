"""THE labels schema: one JSON object per series, what `tsplugin synth` writes and `tsconvert describe`,
`tsplugin eval alignment` and the checks read (`NAME.labels.jsonl`, beside `NAME.jsonl`).

    {"record": 0, "series": 0, "length": 512, "trend": "increase",
     "segments": [{"start": 0, "end": 300, "trend": "increase"}, {"start": 300, "end": 512, "trend": "steady"}],
     "seasonal": true, "season_shape": "sine", "period": 48.0, "amplitude": 3.2, "noise": "low",
     "local": [{"type": "upward_spike", "position": 211, "amplitude": 12.5}],
     "confidence": {"trend": 0.98, ...}}

Meaning of each field (the generator in tsplugin.synth.attributes composes series to exactly this):
- `record`, `series`: the record's index in NAME.jsonl (0-based, data order) and the series' index in its
  `timeseries` list. `length`: number of points.
- `segments`: the trend component is piecewise linear; segment k covers points [start, end) (end exclusive;
  the first starts at 0, each starts where the previous ends, the last ends at `length`), with direction
  `trend`. `trend` (top level) is the overall direction: the sign of the trend component's net change from
  the first to the last point when |net| >= OVERALL_SHARE of the summed |change| of the segments, else
  "steady" (one segment: its own direction).
- `seasonal`: whether a periodic component is present; then `season_shape`, `period` (points per cycle)
  and `amplitude` (half the peak-to-peak of the component); all three null when not seasonal.
- `noise`: level of the additive Gaussian noise, relative to the series' signal scale
  (attributes.NOISE_STD gives the ranges).
- `local`: the local changes in position order, each `type`, `position` (index where it starts; for a
  spike, its peak) and `amplitude` (> 0: a spike's height or depth, the size of a step or sudden change;
  the direction is in the type). Types: upward_spike / downward_spike (a narrow peak or dip that comes
  back), step_up / step_down (the level jumps at one point and stays), sudden_increase / sudden_decrease
  (the level moves over a short ramp of attributes.SUDDEN_WIDTH of the length and stays).
- `confidence`: per attribute (trend, segments, seasonal, period, amplitude, noise, local), in [0, 1];
  1.0 for synth. `tsconvert describe` lowers it where its estimate is uncertain.
- optional: `related` (multi-series synth records: true when the series' local changes share their
  positions, false when independent, null for one series); `csv`, `column` (describe: where the series
  came from).

`write_labels` / `read_labels` / `validate_labels` are the one reader and writer; `labels_path` says where
the labels of a data file live. Standard library only (converters import it).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterable, Iterator

from tsplugin.jsonl import read_records

TRENDS = ("increase", "decrease", "steady")
SEASON_SHAPES = ("sine", "square", "triangle")
NOISE_LEVELS = ("low", "medium", "high")
LOCAL_TYPES = ("upward_spike", "downward_spike", "step_up", "step_down", "sudden_increase", "sudden_decrease")
CONFIDENCE_KEYS = ("trend", "segments", "seasonal", "period", "amplitude", "noise", "local")
OVERALL_SHARE = 0.3  # |net change| / sum |segment change| below this: the overall trend is "steady"
LABELS_SUFFIX = ".labels.jsonl"
OPTIONAL_KEYS = ("related", "csv", "column")


class LabelsError(ValueError):
    """A labels line that breaks the schema; the message names the file, the line and the fix."""


@dataclass
class Segment:
    start: int
    end: int
    trend: str


@dataclass
class LocalChange:
    type: str
    position: int
    amplitude: float


@dataclass
class SeriesLabels:
    """The attributes of one series (field meanings in the module docstring)."""

    record: int
    series: int
    length: int
    trend: str
    segments: list[Segment]
    seasonal: bool
    season_shape: str | None
    period: float | None
    amplitude: float | None
    noise: str
    local: list[LocalChange] = field(default_factory=list)
    confidence: dict[str, float] = field(default_factory=lambda: dict.fromkeys(CONFIDENCE_KEYS, 1.0))
    extra: dict[str, Any] = field(default_factory=dict)  # the optional keys present (related, csv, column)

    def to_json(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in REQUIRED_KEYS}
        out["segments"] = [{"start": s.start, "end": s.end, "trend": s.trend} for s in self.segments]
        out["local"] = [{"type": c.type, "position": c.position, "amplitude": c.amplitude} for c in self.local]
        out["confidence"] = dict(self.confidence)
        out.update(self.extra)
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "SeriesLabels":
        """Build from a validated object (call `validate_label` first on anything read from a file)."""
        return cls(
            record=obj["record"], series=obj["series"], length=obj["length"], trend=obj["trend"],
            segments=[Segment(**s) for s in obj["segments"]], seasonal=obj["seasonal"],
            season_shape=obj["season_shape"], period=obj["period"], amplitude=obj["amplitude"], noise=obj["noise"],
            local=[LocalChange(**c) for c in obj["local"]], confidence=dict(obj["confidence"]),
            extra={k: obj[k] for k in OPTIONAL_KEYS if k in obj},
        )


REQUIRED_KEYS = ("record", "series", "length", "trend", "segments", "seasonal", "season_shape", "period",
                 "amplitude", "noise", "local", "confidence")


def overall_trend(segments: Iterable[tuple[str, float]]) -> str:
    """Overall direction from (direction, |change|) per segment: the rule in the module docstring."""
    net = total = 0.0
    for direction, change in segments:
        total += abs(change)
        net += {"increase": 1.0, "decrease": -1.0, "steady": 0.0}[direction] * abs(change)
    if total == 0.0 or abs(net) < OVERALL_SHARE * total:
        return "steady"
    return "increase" if net > 0 else "decrease"


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def _one_of(obj: dict, key: str, valid: tuple[str, ...], where: str = "") -> list[str]:
    if obj.get(key) not in valid:
        return [f"{where}{key} is {obj.get(key)!r}; valid: {', '.join(valid)}"]
    return []


def validate_label(obj: Any) -> list[str]:
    """Every way `obj` breaks the schema, as short phrases (empty: valid)."""
    if not isinstance(obj, dict):
        return [f"a labels line is a JSON object, not {type(obj).__name__}"]
    missing = [k for k in REQUIRED_KEYS if k not in obj]
    if missing:
        return [f"missing {', '.join(missing)}"]
    problems = [f"unknown key {k!r}" for k in obj if k not in REQUIRED_KEYS + OPTIONAL_KEYS]
    for key in ("record", "series"):
        if not _is_int(obj[key]) or obj[key] < 0:
            problems.append(f"{key} is {obj[key]!r}; it is an index >= 0")
    length = obj["length"]
    if not _is_int(length) or length < 1:
        return problems + [f"length is {length!r}; it is a point count >= 1"]
    problems += _one_of(obj, "trend", TRENDS) + _one_of(obj, "noise", NOISE_LEVELS)
    segs = obj["segments"]
    if not isinstance(segs, list) or not segs:
        problems.append("segments is a non-empty list of {start, end, trend}")
    else:
        expect = 0
        for k, s in enumerate(segs):
            if not isinstance(s, dict) or set(s) != {"start", "end", "trend"}:
                problems.append(f"segments[{k}] is {{start, end, trend}}")
                continue
            if s["start"] != expect or not _is_int(s["end"]) or not expect < s["end"] <= length:
                problems.append(f"segments[{k}] is [{s['start']}, {s['end']}); segments tile [0, length={length}) in order")
            problems += _one_of(s, "trend", TRENDS, f"segments[{k}].")
            expect = s["end"] if _is_int(s["end"]) else expect
        if expect != length and not problems:
            problems.append(f"the last segment ends at {expect}, not at length {length}")
    seasonal = obj["seasonal"]
    if not isinstance(seasonal, bool):
        problems.append(f"seasonal is {seasonal!r}; it is true or false")
    elif seasonal:
        problems += _one_of(obj, "season_shape", SEASON_SHAPES)
        for key in ("period", "amplitude"):
            if not _is_number(obj[key]) or obj[key] <= 0:
                problems.append(f"{key} is {obj[key]!r}; a seasonal series has a number > 0")
    else:
        for key in ("season_shape", "period", "amplitude"):
            if obj[key] is not None:
                problems.append(f"{key} is {obj[key]!r} but seasonal is false; it is null")
    local = obj["local"]
    if not isinstance(local, list):
        problems.append("local is a list of {type, position, amplitude}")
    else:
        for k, c in enumerate(local):
            if not isinstance(c, dict) or set(c) != {"type", "position", "amplitude"}:
                problems.append(f"local[{k}] is {{type, position, amplitude}}")
                continue
            problems += _one_of(c, "type", LOCAL_TYPES, f"local[{k}].")
            if not _is_int(c["position"]) or not 0 <= c["position"] < length:
                problems.append(f"local[{k}].position is {c['position']!r}; an index in [0, {length})")
            if not _is_number(c["amplitude"]) or c["amplitude"] <= 0:
                problems.append(f"local[{k}].amplitude is {c['amplitude']!r}; a number > 0 (the type gives the direction)")
    conf = obj["confidence"]
    if not isinstance(conf, dict) or any(not _is_number(v) or not 0 <= v <= 1 for v in conf.values()):
        problems.append("confidence maps attribute names to numbers in [0, 1]")
    elif set(conf) - set(CONFIDENCE_KEYS):
        problems.append(f"confidence has unknown keys {sorted(set(conf) - set(CONFIDENCE_KEYS))}; valid: {', '.join(CONFIDENCE_KEYS)}")
    if "related" in obj and obj["related"] not in (True, False, None):
        problems.append(f"related is {obj['related']!r}; true, false or null")
    return problems


def labels_path(data_path: str | Path) -> Path:
    """Where the labels of `NAME.jsonl` live: `NAME.labels.jsonl` beside it."""
    data_path = Path(data_path)
    return data_path.with_name(data_path.name.removesuffix(".jsonl") + LABELS_SUFFIX)


def dumps_label(labels: SeriesLabels) -> bytes:
    """One labels line (compact JSON, keys in schema order, newline-terminated)."""
    return (json.dumps(labels.to_json(), ensure_ascii=False, separators=(",", ":"), allow_nan=False) + "\n").encode("utf-8")


def write_labels(fh: IO[bytes], labels: Iterable[SeriesLabels]) -> int:
    """Write labels lines to a binary file; returns how many. Refuses a label that breaks the schema."""
    n = 0
    for item in labels:
        problems = validate_label(item.to_json())
        if problems:
            raise LabelsError(f"record {item.record} series {item.series}: {'; '.join(problems)} (a bug in the writer)")
        fh.write(dumps_label(item))
        n += 1
    return n


def read_labels(path: str | Path) -> Iterator[SeriesLabels]:
    """The labels of a file, line by line; the first line that breaks the schema raises LabelsError
    naming the file, the line and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise LabelsError(f"{path}: no labels file. It is written beside the data as NAME{LABELS_SUFFIX} by "
                          "`tsplugin synth` or `tsconvert describe`; pass the data file those wrote")
    for line in read_records(path):
        where = f"{path}: line {line.lineno}"
        if not line.ok:
            raise LabelsError(f"{where}: {line.message}")
        problems = validate_label(line.record)
        if problems:
            raise LabelsError(f"{where}: {'; '.join(problems)}. Fix the line or rewrite the file with the tool that made it")
        yield SeriesLabels.from_json(line.record)


def validate_labels(path: str | Path) -> list[str]:
    """Every schema problem in a labels file, one message per bad line (file and line named); empty: valid."""
    path = Path(path)
    if not path.is_file():
        return [f"{path}: no such file"]
    out = []
    for line in read_records(path):
        where = f"{path}: line {line.lineno}"
        problems = [line.message] if not line.ok else validate_label(line.record)
        if problems:
            out.append(f"{where}: {'; '.join(str(p) for p in problems)}")
    return out


def by_record(labels: Iterable[SeriesLabels]) -> dict[int, list[SeriesLabels]]:
    """record index -> its series' labels in series order."""
    out: dict[int, list[SeriesLabels]] = {}
    for item in labels:
        out.setdefault(item.record, []).append(item)
    for items in out.values():
        items.sort(key=lambda s: s.series)
    return out
