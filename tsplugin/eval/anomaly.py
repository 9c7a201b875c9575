"""Score GDSH-style anomaly answers: JSON with `is_anomaly`, `anomaly_type`, `start`, `end`.

Input: JSONL as LLaMA-Factory's `do_predict` writes it (`generated_predictions.jsonl`: `prompt`,
`predict`, `label`), or any lines with the two keys named by `--pred-key` / `--label-key`. An answer may
be wrapped in a ```json fence or have text around it: the first JSON object in it is read. An answer
with no JSON object, or without a boolean `is_anomaly`, is invalid: it is counted, and it is a miss
(wrong in accuracy and type accuracy, a false negative on a true anomaly, never a positive). Junk in
one answer (NaN or -Infinity spans, which are not JSON, nesting too deep to parse) makes that answer
invalid; it never stops the evaluation.

Metrics:
- valid: share of predictions holding a JSON object with a boolean `is_anomaly`;
- precision / recall / F1 of `is_anomaly` (positive = anomaly), accuracy (invalid = wrong);
- type accuracy over true anomalies (the predicted answer must say anomaly and name the type);
- confusion table, true type x predicted type, over spike, dip, level_shift, drift, oscillation,
  flatline, none (a normal answer), other (a type outside the list) and invalid;
- mean span IoU over true positives, spans inclusive integer ranges [start, end] (no or bad span: 0).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from tsplugin.jsonl import FileEncodingError, read_records
from tsplugin.eval.output import refuse_json_over_inputs, write_scores_json

TYPES = ("spike", "dip", "level_shift", "drift", "oscillation", "flatline", "none")
PRED_COLUMNS = TYPES + ("other", "invalid")
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# Strict JSON: NaN / Infinity / -Infinity are not JSON, so an answer holding them has no valid object.
_DECODER = json.JSONDecoder(parse_constant=_no_constants)


def extract_json(text: Any) -> dict | None:
    """The first JSON object in `text` (inside a ```json fence if there is one), or None."""
    if isinstance(text, dict):
        return text
    if not isinstance(text, str):
        return None
    fenced = _FENCE.search(text)
    for source in ([fenced.group(1)] if fenced else []) + [text]:
        for start in (i for i, ch in enumerate(source) if ch == "{"):
            try:
                value, _ = _DECODER.raw_decode(source, start)
            except (ValueError, RecursionError):  # junk, or nesting deeper than the parser goes: no object here
                continue
            if isinstance(value, dict):
                return value
    return None


def normalise_type(value: Any) -> str:
    name = re.sub(r"[\s\-]+", "_", str(value or "").strip().lower())
    return name if name in TYPES else "other"


@dataclass
class Answer:
    """A parsed answer; `valid` False when no JSON object with a boolean `is_anomaly` was found."""

    valid: bool
    is_anomaly: bool = False
    anomaly_type: str = "none"
    span: tuple[int, int] | None = None


def _index(value: Any) -> int | None:
    """A span bound as an int; None for anything else (bools, NaN, +-Infinity, strings)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return int(value)


def parse_answer(text: Any) -> Answer:
    """One answer parsed; anything unusable in it (no JSON, no boolean is_anomaly) makes it invalid and a
    span that is not two finite numbers start <= end (NaN, -Infinity, strings) counts as no span."""
    obj = extract_json(text)
    if obj is None or not isinstance(obj.get("is_anomaly"), bool):
        return Answer(valid=False)
    span = None
    start, end = _index(obj.get("start")), _index(obj.get("end"))
    if start is not None and end is not None and start <= end:
        span = (start, end)
    kind = normalise_type(obj.get("anomaly_type")) if obj["is_anomaly"] else "none"
    return Answer(valid=True, is_anomaly=obj["is_anomaly"], anomaly_type=kind, span=span)


def span_iou(a: tuple[int, int] | None, b: tuple[int, int] | None) -> float:
    """IoU of two inclusive integer spans; 0.0 when either is missing."""
    if a is None or b is None:
        return 0.0
    inter = max(0, min(a[1], b[1]) - max(a[0], b[0]) + 1)
    union = (a[1] - a[0] + 1) + (b[1] - b[0] + 1) - inter
    return inter / union


@dataclass
class AnomalyScores:
    n: int = 0
    valid: int = 0
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    true_anomalies: int = 0
    type_correct: int = 0
    spans_scored: int = 0
    iou_sum: float = 0.0
    confusion: dict[str, dict[str, int]] = field(default_factory=lambda: {t: dict.fromkeys(PRED_COLUMNS, 0) for t in TYPES})

    @property
    def valid_share(self) -> float:
        return self.valid / self.n if self.n else 0.0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def accuracy(self) -> float:
        return (self.tp + self.tn) / self.n if self.n else 0.0

    @property
    def type_accuracy(self) -> float:
        return self.type_correct / self.true_anomalies if self.true_anomalies else 0.0

    @property
    def mean_span_iou(self) -> float:
        return self.iou_sum / self.spans_scored if self.spans_scored else 0.0

    def to_dict(self) -> dict:
        data = asdict(self)
        for name in ("valid_share", "precision", "recall", "f1", "accuracy", "type_accuracy", "mean_span_iou"):
            data[name] = round(getattr(self, name), 6)
        return data


def score(pairs: Iterable[tuple[Any, Any]], where: Callable[[int], str] = lambda i: f"pair {i}") -> AnomalyScores:
    """Score (prediction, label) pairs; labels must be valid answers (ValueError names `where(index)`)."""
    s = AnomalyScores()
    for index, (pred_text, label_text) in enumerate(pairs):
        truth = parse_answer(label_text)
        if not truth.valid:
            raise EvalInputError(
                f"{where(index)}: the label holds no JSON object with a boolean is_anomaly: {str(label_text)[:120]!r}; "
                "fix the label or pass --label-key."
            )
        pred = parse_answer(pred_text)
        s.n += 1
        s.valid += pred.valid
        column = "invalid" if not pred.valid else pred.anomaly_type
        s.confusion[truth.anomaly_type if truth.is_anomaly else "none"][column] += 1
        positive = pred.valid and pred.is_anomaly
        if truth.is_anomaly:
            s.true_anomalies += 1
            s.type_correct += positive and pred.anomaly_type == truth.anomaly_type
            if positive:
                s.tp += 1
                s.spans_scored += 1
                s.iou_sum += span_iou(pred.span, truth.span)
            else:
                s.fn += 1
        elif positive:
            s.fp += 1
        elif pred.valid:
            s.tn += 1
    return s


class EvalInputError(ValueError):
    """The predictions file cannot be scored; the message names the file, the line and the fix."""


def read_pairs(path: Path, pred_key: str = "predict", label_key: str = "label") -> list[tuple[Any, Any, int]]:
    """(prediction, label, line number) of each JSONL line; errors name the file, the line and the fix."""

    pairs = []
    try:
        for line in read_records(path):
            if not line.ok:
                raise EvalInputError(f"{path}: line {line.lineno}: {line.message}; one JSON object per line is expected.")
            record = line.record
            missing = [k for k in (pred_key, label_key) if not isinstance(record, dict) or k not in record]
            if missing:
                keys = sorted(record) if isinstance(record, dict) else type(record).__name__
                raise EvalInputError(
                    f"{path}: line {line.lineno}: no key {', '.join(map(repr, missing))} (keys: {keys}); "
                    "pass --pred-key / --label-key to name the prediction and label fields."
                )
            pairs.append((record[pred_key], record[label_key], line.lineno))
    except FileEncodingError as err:
        raise EvalInputError(str(err)) from None
    except OSError as err:
        raise EvalInputError(f"{path}: cannot read: {err.strerror or err}") from None
    return pairs


def score_file(path: Path, pred_key: str = "predict", label_key: str = "label") -> AnomalyScores:
    rows = read_pairs(path, pred_key, label_key)
    return score([(p, l) for p, l, _ in rows], where=lambda i: f"{path}: line {rows[i][2]}")


def format_scores(s: AnomalyScores) -> str:
    """The text report: headline metrics, then the confusion table (rows: truth, columns: prediction)."""
    lines = [
        f"records          {s.n}",
        f"valid JSON       {s.valid}/{s.n} ({s.valid_share:.1%})",
        f"is_anomaly       precision {s.precision:.3f}  recall {s.recall:.3f}  F1 {s.f1:.3f}  accuracy {s.accuracy:.3f}",
        f"                 tp {s.tp}  fp {s.fp}  fn {s.fn}  tn {s.tn}",
        f"type accuracy    {s.type_accuracy:.3f} ({s.type_correct}/{s.true_anomalies} true anomalies)",
        f"mean span IoU    {s.mean_span_iou:.3f} ({s.spans_scored} true positives)",
        "",
        "confusion (rows: true type, columns: predicted)",
    ]
    width = max(len(c) for c in PRED_COLUMNS) + 1
    lines.append(" " * 12 + "".join(f"{c:>{width}}" for c in PRED_COLUMNS))
    for truth in TYPES:
        lines.append(f"{truth:<12}" + "".join(f"{s.confusion[truth][c]:>{width}}" for c in PRED_COLUMNS))
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pred-key", default="predict", help="field holding the model's answer (default predict)")
    parser.add_argument("--label-key", default="label", help="field holding the reference answer (default label)")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT", help="also write the scores as JSON to OUT")


def run(args: argparse.Namespace) -> int:
    """Exit codes: 0 scored; 1 the file cannot be scored (missing, unreadable, a line that is not a JSON
    object, an invalid label) or the --json file cannot be written; 2 bad arguments (argparse)."""
    path = Path(args.predictions)
    refuse_json_over_inputs(args.json, [path])
    if not path.is_file():
        print(f"{path}: no such file; pass a JSONL of predictions (e.g. OUTPUT_DIR/generated_predictions.jsonl).", file=sys.stderr)
        return 1
    try:
        scores = score_file(path, args.pred_key, args.label_key)
    except EvalInputError as err:
        print(str(err), file=sys.stderr)
        return 1
    print(format_scores(scores))
    if args.json is not None:
        return write_scores_json(args.json, scores.to_dict())
    return 0
