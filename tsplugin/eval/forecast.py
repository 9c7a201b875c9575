"""Forecasts: MSE/MAE of generated numbers vs the test windows, next to naive baselines.

`tsplugin eval forecast PREDICTIONS --test NAME_test.jsonl` scores the model next to the naive (last
value repeated) and seasonal-naive (value one season earlier) baselines on the SAME windows.

Inputs: LLaMA-Factory's generated_predictions.jsonl (`predict`, optional `label`) and the test JSONL
written by `tsconvert forecast` (input series, targets, scaling), matched line by line: the counts
must be equal and, when a `label` is present, its numbers must equal the test record's answer (so a
shuffled or foreign file is an error, never a silently wrong score).

Parsing (choices): numbers are read with a regex, so commas, spaces, newlines and surrounding words
are all fine, but digits glued by dots ("0.0.0.0", a degenerate answer) are no number; with several target variables each one's numbers are read after its `NAME:` label (one
target: after `NAME:` when present, else from the whole answer). The first pred_len numbers count. A
window with fewer (or a non-finite number) is unparseable: it is left out of the model's MSE/MAE and
counted in the unparseable share; with `--partial` a short answer with at least one number is padded
with its last number instead. The baselines are scored on the windows the model is scored on (the
ratios compare like with like) and, separately, on all windows.

Scales: "normalized" = z-scored with the train-split statistics the converter recorded, "original" =
the CSV's units. Truth is the test record's answer text (the values the model was trained to write,
rounded to the converter's --precision).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tsplugin.jsonl import FileEncodingError, read_records

# A number standing on its own: "0.0.0.0" (a degenerate answer) is no number, "3." ending a sentence is 3.
NUMBER = re.compile(r"(?<![\d.])[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?!\.?\d)")
DEFAULT_SEASON = 24


class ForecastEvalError(ValueError):
    """Bad or mismatched input files; the message names the file, the line and the fix."""


def parse_numbers(text: str, count: int, labels: Sequence[str] = (), partial: bool = False) -> np.ndarray | None:
    """(len(labels) or 1, count) floats read from ``text``, or None when it is unparseable.

    With two or more labels, variable i's numbers are those after ``labels[i]:`` up to the next label;
    with one label, the numbers after ``label:`` when the text has it, else all of them.
    """
    segments = _segments(text, labels)
    if segments is None:
        return None
    rows = []
    for segment in segments:
        values = [float(m) for m in NUMBER.findall(segment)[:count]]
        if len(values) < count:
            if not (partial and values):
                return None
            values += [values[-1]] * (count - len(values))
        if not all(math.isfinite(v) for v in values):
            return None
        rows.append(values)
    return np.asarray(rows, dtype=np.float64)


def _segments(text: str, labels: Sequence[str]) -> list[str] | None:
    found = []
    for name in labels:
        m = re.search(rf"(?:^|(?<=[\s,;]))\s*{re.escape(name)}\s*:", text)
        found.append(m)
    if len(labels) <= 1:
        return [text[found[0].end():] if labels and found[0] else text]
    if not all(found):
        return None
    ends = sorted(m.start() for m in found) + [len(text)]
    return [text[m.end():min(e for e in ends if e > m.start())] for m in found]


@dataclass
class Windows:
    """Everything the metrics need, stacked over test windows: (W, targets, pred_len) arrays on the
    normalised scale, and the per-target mean/std that map them back to the original scale."""

    truth: np.ndarray
    pred: np.ndarray          # NaN rows where the answer was unparseable
    naive: np.ndarray
    seasonal: np.ndarray
    mean: np.ndarray          # (W, targets): each window's recorded train-split statistics
    std: np.ndarray
    padded: int = 0


def _read_jsonl(path: Path) -> list[dict[str, Any]]:

    rows = []
    try:
        for line in read_records(path):
            if not line.ok:
                raise ForecastEvalError(f"{path}: line {line.lineno}: {line.message}. Regenerate the file")
            if not isinstance(line.record, dict):
                raise ForecastEvalError(f"{path}: line {line.lineno}: expected a JSON object")
            rows.append(line.record)
    except FileNotFoundError:
        raise ForecastEvalError(f"{path}: no such file") from None
    except FileEncodingError as exc:
        raise ForecastEvalError(str(exc)) from None
    except OSError as exc:
        raise ForecastEvalError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return rows


def load_windows(predictions: Path, test: Path, season: int = DEFAULT_SEASON, partial: bool = False) -> Windows:
    """Match predictions to test records by order and parse everything onto the normalised scale."""
    preds, records = _read_jsonl(predictions), _read_jsonl(test)
    if len(preds) != len(records):
        raise ForecastEvalError(
            f"{predictions}: {len(preds)} predictions but {test} has {len(records)} test records. Predict the whole test "
            "split in file order (no max_samples, no shuffling) or pass the test file the predictions came from"
        )
    if not records:
        raise ForecastEvalError(f"{test}: no test records")
    truth, pred, naive, seasonal, means, stds = [], [], [], [], [], []
    padded = 0
    for i, (p, rec) in enumerate(zip(preds, records)):
        missing = [k for k in ("output", "timeseries", "variables", "targets", "scaling", "normalized") if k not in rec]
        if missing:
            raise ForecastEvalError(f"{test}: record {i}: no {', '.join(missing)}. Use the test JSONL written by `tsconvert forecast`")
        if not (isinstance(rec["output"], str) and isinstance(rec["targets"], list) and isinstance(rec["variables"], list)
                and all(isinstance(t, str) and t in rec["variables"] for t in rec["targets"])
                and isinstance(rec["timeseries"], list) and isinstance(rec["scaling"], dict)):
            raise ForecastEvalError(f"{test}: record {i}: output/targets/variables/timeseries/scaling do not have the shapes "
                                    "`tsconvert forecast` writes. Use the test JSONL it wrote")
        if "predict" not in p:
            raise ForecastEvalError(f"{predictions}: line {i + 1}: no 'predict' field (LLaMA-Factory's generated_predictions.jsonl has one)")
        targets, variables = rec["targets"], rec["variables"]
        segments = _segments(rec["output"], targets)
        pred_len = len(NUMBER.findall(segments[0])) if segments else 0
        true = parse_numbers(rec["output"], pred_len, targets) if pred_len else None
        if true is None:
            raise ForecastEvalError(f"{test}: record {i}: its answer does not parse into {len(targets)} x {pred_len} numbers")
        if "label" in p:
            label = parse_numbers(str(p["label"]), pred_len, targets)
            if label is None or not np.allclose(label, true):
                raise ForecastEvalError(
                    f"{predictions}: line {i + 1}: label does not match {test} record {i}'s answer. The files are not in the "
                    "same order or not from the same dataset; predict on this test split (eval_dataset NAME_test) in order"
                )
        got = parse_numbers(str(p["predict"]), pred_len, targets, partial)
        if partial and got is not None and parse_numbers(str(p["predict"]), pred_len, targets) is None:
            padded += 1
        try:
            series = np.asarray([rec["timeseries"][variables.index(t)] for t in targets], dtype=np.float64)
            mean = np.array([rec["scaling"][t]["mean"] for t in targets], dtype=np.float64)
            std = np.array([rec["scaling"][t]["std"] for t in targets], dtype=np.float64)
        except (IndexError, KeyError, TypeError, ValueError, OverflowError):
            raise ForecastEvalError(f"{test}: record {i}: its input series or scaling (mean/std per target) are not numbers "
                                    "in the layout `tsconvert forecast` writes. Use the test JSONL it wrote") from None
        if series.ndim != 2 or not np.isfinite(series).all() or not (np.isfinite(mean).all() and np.isfinite(std).all()):
            raise ForecastEvalError(f"{test}: record {i}: its input series or scaling hold non-finite or ragged values. "
                                    "Use the test JSONL `tsconvert forecast` wrote")
        if season > series.shape[1]:
            raise ForecastEvalError(f"--season {season} is longer than the input window ({series.shape[1]} points) of {test}; "
                                    "the seasonal-naive baseline needs a whole season of history. Lower --season")
        to_norm = (lambda a: a) if rec["normalized"] else (lambda a: (a - mean[:, None]) / std[:, None])
        seq = series.shape[1]
        steps = np.arange(pred_len)
        truth.append(to_norm(true))
        pred.append(to_norm(got) if got is not None else np.full_like(true, np.nan))
        naive.append(to_norm(np.repeat(series[:, -1:], pred_len, axis=1)))
        seasonal.append(to_norm(series[:, seq - season + steps % season]))
        means.append(mean)
        stds.append(std)
    shapes = {a.shape for a in truth}
    if len(shapes) != 1:
        raise ForecastEvalError(f"{test}: records have different target shapes {sorted(shapes)}; use one converter run's test file")
    return Windows(np.stack(truth), np.stack(pred), np.stack(naive), np.stack(seasonal), np.stack(means), np.stack(stds), padded)


def _mse_mae(a: np.ndarray, b: np.ndarray) -> dict[str, float | None]:
    if a.size == 0:
        return {"mse": None, "mae": None}
    d = a - b
    return {"mse": float(np.mean(d * d)), "mae": float(np.mean(np.abs(d)))}


def _ratio(a: dict, b: dict) -> dict[str, float | None]:
    return {k: (a[k] / b[k] if a[k] is not None and b[k] else None) for k in ("mse", "mae")}


def score(w: Windows) -> dict[str, Any]:
    """MSE/MAE of model and baselines on both scales, ratios model/baseline, unparseable share."""
    ok = ~np.isnan(w.pred).any(axis=(1, 2))
    n = len(ok)
    report: dict[str, Any] = {
        "windows": n, "scored": int(ok.sum()), "unparseable": int(n - ok.sum()), "unparseable_share": float(1 - ok.mean()),
        "padded": w.padded, "pred_len": int(w.truth.shape[2]), "targets": int(w.truth.shape[1]),
    }
    orig = lambda a: a * w.std[:, :, None] + w.mean[:, :, None]  # noqa: E731
    for scale, f in (("normalized", lambda a: a), ("original", orig)):
        t = f(w.truth)
        model = _mse_mae(f(w.pred)[ok], t[ok])
        naive = _mse_mae(f(w.naive)[ok], t[ok])
        seasonal = _mse_mae(f(w.seasonal)[ok], t[ok])
        report[scale] = {
            "model": model, "naive": naive, "seasonal_naive": seasonal,
            "ratio_vs_naive": _ratio(model, naive), "ratio_vs_seasonal_naive": _ratio(model, seasonal),
            "all_windows": {"naive": _mse_mae(f(w.naive), t), "seasonal_naive": _mse_mae(f(w.seasonal), t)},
        }
    return report


def evaluate_forecast(predictions: str | Path, test: str | Path, season: int = DEFAULT_SEASON, partial: bool = False) -> dict[str, Any]:
    """The whole evaluation: ``evaluate_forecast("generated_predictions.jsonl", "data/ett_test.jsonl")``."""
    if season < 1:
        raise ForecastEvalError(f"--season {season}: must be at least 1")
    report = score(load_windows(Path(predictions), Path(test), season, partial))
    report.update(season=season, partial=partial, predictions=str(predictions), test=str(test))
    return report


def format_report(r: dict[str, Any]) -> str:
    """The human table: one row per method and scale, ratios last."""
    fmt = lambda v: "n/a" if v is None else f"{v:.4g}"  # noqa: E731
    lines = [
        f"{r['predictions']}: {r['windows']} windows x {r['targets']} target(s) x {r['pred_len']} steps; "
        f"scored {r['scored']}, unparseable {r['unparseable']} ({r['unparseable_share']:.1%})"
        + (f", padded {r['padded']} (--partial)" if r["partial"] else ""),
        f"{'scale':<11}{'method':<24}{'MSE':>11}{'MAE':>11}",
    ]
    for scale in ("normalized", "original"):
        s = r[scale]
        for name, key in (("model", "model"), ("naive (last value)", "naive"), (f"seasonal naive ({r['season']})", "seasonal_naive")):
            lines.append(f"{scale:<11}{name:<24}{fmt(s[key]['mse']):>11}{fmt(s[key]['mae']):>11}")
        for name, key in (("model / naive", "ratio_vs_naive"), ("model / seasonal naive", "ratio_vs_seasonal_naive")):
            lines.append(f"{scale:<11}{name:<24}{fmt(s[key]['mse']):>11}{fmt(s[key]['mae']):>11}")
    for scale in ("normalized", "original"):
        s = r[scale]["all_windows"]
        for name, key in (("naive, all windows", "naive"), (f"seasonal ({r['season']}), all", "seasonal_naive")):
            lines.append(f"{scale:<11}{name:<24}{fmt(s[key]['mse']):>11}{fmt(s[key]['mae']):>11}")
    lines.append("ratios < 1 mean the model beats the baseline; they use only the scored (parseable) windows")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `tsplugin eval forecast` after the predictions file (which `tsplugin eval` adds)."""
    p.add_argument("--test", type=Path, required=True, help="the NAME_test.jsonl written by `tsconvert forecast` (same order)")
    p.add_argument("--season", type=int, default=DEFAULT_SEASON, help=f"seasonal-naive period in points (default: {DEFAULT_SEASON}, hourly data)")
    p.add_argument("--partial", action="store_true", help="pad short answers with their last number instead of counting them unparseable")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--report", type=Path, help="also write the JSON report to this path")


def run(args: argparse.Namespace) -> int:
    """Exit code 0, or 2 with a message for unusable input (or a --report that would overwrite an input)."""
    # lazy: converters' writer, for its one definition of "an output that is an input"
    from converters.writer import refuse_overwriting_inputs

    if args.report:
        refuse_overwriting_inputs([args.report], [Path(args.predictions), args.test])
    try:
        report = evaluate_forecast(Path(args.predictions), args.test, args.season, args.partial)
    except ForecastEvalError as exc:
        print(f"tsplugin eval forecast: error: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(report, indent=2)
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(text + "\n", encoding="utf-8")
    print(text if args.json else format_report(report))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m tsplugin.eval.forecast ARGS` is `tsplugin eval forecast ARGS` (one parser, in tsplugin.eval.cli)."""
    from tsplugin.cli import main as tsplugin_main  # lazy: tsplugin.cli imports this module to build its parser

    return tsplugin_main(["eval", "forecast", *(sys.argv[1:] if argv is None else argv)])


__all__ = ["ForecastEvalError", "Windows", "add_arguments", "evaluate_forecast", "format_report", "load_windows",
           "parse_numbers", "run", "score"]


if __name__ == "__main__":
    sys.exit(main())

