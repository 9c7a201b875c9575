"""Forecasts: MSE/MAE of generated numbers vs the test windows, next to simple baselines.

`tsplugin eval forecast PREDICTIONS --test NAME_test.jsonl` scores the model next to four baselines on
the SAME windows (tsplugin.eval.baselines): naive (last value repeated), seasonal naive (value one
season earlier; the season is chosen from the train split unless `--season N`), drift (the line
through the window's first and last values) and ridge (a linear map window -> horizon, fitted on the
train split, penalty chosen on the val split), and names the strongest of them (lowest MSE on the
test windows: the most demanding bar). The train and val splits are the NAME_train.jsonl and
NAME_val.jsonl `tsconvert forecast` wrote next to the test file (`--train`, `--val` otherwise).

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
ratios compare like with like) and, separately, on all windows. Baselines work channel-independently
on each target's series, on the normalised scale.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tsplugin.eval import baselines
from tsplugin.jsonl import FileEncodingError, read_records

# A number standing on its own: "0.0.0.0" (a degenerate answer) is no number, "3." ending a sentence is 3.
NUMBER = re.compile(r"(?<![\d.])[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?!\.?\d)")


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
    normalised scale, the inputs (W, targets, seq_len) the baselines read, and the per-target mean/std
    that map them back to the original scale."""

    truth: np.ndarray
    pred: np.ndarray          # NaN rows where the answer was unparseable
    inputs: np.ndarray
    mean: np.ndarray          # (W, targets): each window's recorded train-split statistics
    std: np.ndarray
    padded: int = 0
    baselines: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (W, targets, pred_len), see add_baselines


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


@dataclass
class _Record:
    """One converter record: the targets' input series and true future (raw, as written) + scaling."""

    targets: list[str]
    series: np.ndarray        # (targets, seq_len)
    true: np.ndarray          # (targets, pred_len)
    mean: np.ndarray
    std: np.ndarray
    normalized: bool

    def norm(self, a: np.ndarray) -> np.ndarray:
        return a if self.normalized else (a - self.mean[:, None]) / self.std[:, None]


def _parse_record(path: Path, i: int, rec: dict[str, Any]) -> _Record:
    """Validate and read record `i` of a JSONL written by `tsconvert forecast`."""
    missing = [k for k in ("output", "timeseries", "variables", "targets", "scaling", "normalized") if k not in rec]
    if missing:
        raise ForecastEvalError(f"{path}: record {i}: no {', '.join(missing)}. Use the JSONL written by `tsconvert forecast`")
    if not (isinstance(rec["output"], str) and isinstance(rec["targets"], list) and isinstance(rec["variables"], list)
            and all(isinstance(t, str) and t in rec["variables"] for t in rec["targets"])
            and isinstance(rec["timeseries"], list) and isinstance(rec["scaling"], dict)):
        raise ForecastEvalError(f"{path}: record {i}: output/targets/variables/timeseries/scaling do not have the shapes "
                                "`tsconvert forecast` writes. Use the JSONL it wrote")
    targets, variables = rec["targets"], rec["variables"]
    segments = _segments(rec["output"], targets)
    pred_len = len(NUMBER.findall(segments[0])) if segments else 0
    true = parse_numbers(rec["output"], pred_len, targets) if pred_len else None
    if true is None:
        raise ForecastEvalError(f"{path}: record {i}: its answer does not parse into {len(targets)} x {pred_len} numbers")
    try:
        series = np.asarray([rec["timeseries"][variables.index(t)] for t in targets], dtype=np.float64)
        mean = np.array([rec["scaling"][t]["mean"] for t in targets], dtype=np.float64)
        std = np.array([rec["scaling"][t]["std"] for t in targets], dtype=np.float64)
    except (IndexError, KeyError, TypeError, ValueError, OverflowError):
        raise ForecastEvalError(f"{path}: record {i}: its input series or scaling (mean/std per target) are not numbers "
                                "in the layout `tsconvert forecast` writes. Use the JSONL it wrote") from None
    if series.ndim != 2 or not np.isfinite(series).all() or not (np.isfinite(mean).all() and np.isfinite(std).all()):
        raise ForecastEvalError(f"{path}: record {i}: its input series or scaling hold non-finite or ragged values. "
                                "Use the JSONL `tsconvert forecast` wrote")
    return _Record(targets, series, true, mean, std, bool(rec["normalized"]))


def _stack(path: Path, arrays: list[np.ndarray], what: str) -> np.ndarray:
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ForecastEvalError(f"{path}: records have different {what} shapes {sorted(shapes)}; use one converter run's files")
    return np.stack(arrays)


def load_windows(predictions: Path, test: Path, partial: bool = False) -> Windows:
    """Match predictions to test records by order and parse everything onto the normalised scale."""
    preds, records = _read_jsonl(predictions), _read_jsonl(test)
    if len(preds) != len(records):
        raise ForecastEvalError(
            f"{predictions}: {len(preds)} predictions but {test} has {len(records)} test records. Predict the whole test "
            "split in file order (no max_samples, no shuffling) or pass the test file the predictions came from"
        )
    if not records:
        raise ForecastEvalError(f"{test}: no test records")
    truth, pred, inputs, means, stds = [], [], [], [], []
    padded = 0
    for i, (p, raw) in enumerate(zip(preds, records)):
        rec = _parse_record(test, i, raw)
        if "predict" not in p:
            raise ForecastEvalError(f"{predictions}: line {i + 1}: no 'predict' field (LLaMA-Factory's generated_predictions.jsonl has one)")
        pred_len = rec.true.shape[1]
        if "label" in p:
            label = parse_numbers(str(p["label"]), pred_len, rec.targets)
            if label is None or not np.allclose(label, rec.true):
                raise ForecastEvalError(
                    f"{predictions}: line {i + 1}: label does not match {test} record {i}'s answer. The files are not in the "
                    "same order or not from the same dataset; predict on this test split (eval_dataset NAME_test) in order"
                )
        got = parse_numbers(str(p["predict"]), pred_len, rec.targets, partial)
        if partial and got is not None and parse_numbers(str(p["predict"]), pred_len, rec.targets) is None:
            padded += 1
        truth.append(rec.norm(rec.true))
        pred.append(rec.norm(got) if got is not None else np.full_like(rec.true, np.nan))
        inputs.append(rec.norm(rec.series))
        means.append(rec.mean)
        stds.append(rec.std)
    return Windows(_stack(test, truth, "target"), np.stack(pred), _stack(test, inputs, "input"), np.stack(means), np.stack(stds), padded)


def load_split(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A train/val JSONL as rows (one per window and target) of normalised inputs (N, seq) and futures (N, pred)."""
    records = [_parse_record(path, i, raw) for i, raw in enumerate(_read_jsonl(path))]
    if not records:
        raise ForecastEvalError(f"{path}: no records; the baselines are fitted on it. Pass the split `tsconvert forecast` wrote")
    inputs = _stack(path, [r.norm(r.series) for r in records], "input")
    truth = _stack(path, [r.norm(r.true) for r in records], "target")
    return inputs.reshape(-1, inputs.shape[-1]), truth.reshape(-1, truth.shape[-1])


def split_paths(test: Path, train: Path | None, val: Path | None) -> tuple[Path, Path]:
    """The train and val files: as given, else NAME_train.jsonl / NAME_val.jsonl next to NAME_test.jsonl."""
    if train is not None and val is not None:
        return train, val
    if not test.name.endswith("_test.jsonl"):
        raise ForecastEvalError(f"{test}: cannot tell its train and val splits (the name does not end in _test.jsonl); the "
                                "baselines are fitted on them: pass --train NAME_train.jsonl --val NAME_val.jsonl")
    stem = test.name[: -len("_test.jsonl")]
    return train or test.with_name(f"{stem}_train.jsonl"), val or test.with_name(f"{stem}_val.jsonl")


def add_baselines(w: Windows, train: Path, val: Path, season: int | None) -> dict[str, Any]:
    """Fill ``w.baselines`` (naive, seasonal naive, drift, ridge); what was chosen and on what."""
    (x_train, y_train), (x_val, y_val) = load_split(train), load_split(val)
    n, targets, seq = w.inputs.shape
    pred_len = w.truth.shape[2]
    for path, x, y in ((train, x_train, y_train), (val, x_val, y_val)):
        if x.shape[1] != seq or y.shape[1] != pred_len:
            raise ForecastEvalError(f"{path}: windows of {x.shape[1]} -> {y.shape[1]} points but the test windows are {seq} -> "
                                    f"{pred_len}; pass the splits of the converter run that wrote the test file")
    if season is None:
        choice = baselines.choose_season(x_train, y_train, x_val, y_val)
    elif season > seq:
        raise ForecastEvalError(f"--season {season} is longer than the input window ({seq} points) of the test file; "
                                "the seasonal-naive baseline needs a whole season of history. Lower --season")
    else:
        choice = baselines.SeasonChoice(season, "given")
    ridge = baselines.fit_ridge(x_train, y_train, x_val, y_val)
    rows = w.inputs.reshape(n * targets, seq)
    for name, forecast in (("naive", baselines.naive(rows, pred_len)),
                           ("seasonal_naive", baselines.seasonal_naive(rows, pred_len, choice.season)),
                           ("drift", baselines.drift(rows, pred_len)),
                           ("ridge", ridge.predict(rows))):
        w.baselines[name] = forecast.reshape(n, targets, pred_len)
    return {"season": choice.season, "season_source": choice.source, "season_scores": {str(k): v for k, v in choice.scores.items()},
            "ridge_alpha": ridge.alpha, "ridge_val_mse": ridge.val_mse[ridge.alpha], "train": str(train), "val": str(val),
            "train_rows": len(x_train), "val_rows": len(x_val)}


def _mse_mae(a: np.ndarray, b: np.ndarray) -> dict[str, float | None]:
    if a.size == 0:
        return {"mse": None, "mae": None}
    d = a - b
    return {"mse": float(np.mean(d * d)), "mae": float(np.mean(np.abs(d)))}


def _ratio(a: dict, b: dict) -> dict[str, float | None]:
    return {k: (a[k] / b[k] if a[k] is not None and b[k] else None) for k in ("mse", "mae")}


def score(w: Windows) -> dict[str, Any]:
    """MSE/MAE of model and baselines on both scales, ratios model/baseline, unparseable share. The strongest
    baseline is the one with the lowest normalised MSE on all test windows."""
    ok = ~np.isnan(w.pred).any(axis=(1, 2))
    n = len(ok)
    report: dict[str, Any] = {
        "windows": n, "scored": int(ok.sum()), "unparseable": int(n - ok.sum()), "unparseable_share": float(1 - ok.mean()),
        "padded": w.padded, "pred_len": int(w.truth.shape[2]), "targets": int(w.truth.shape[1]),
    }
    best = min(w.baselines, key=lambda k: float(np.mean((w.baselines[k] - w.truth) ** 2)))
    orig = lambda a: a * w.std[:, :, None] + w.mean[:, :, None]  # noqa: E731
    for scale, f in (("normalized", lambda a: a), ("original", orig)):
        t = f(w.truth)
        model = _mse_mae(f(w.pred)[ok], t[ok])
        s: dict[str, Any] = {"model": model}
        for name, forecast in w.baselines.items():
            s[name] = _mse_mae(f(forecast)[ok], t[ok])
            s[f"ratio_vs_{name}"] = _ratio(model, s[name])
        s["best_baseline"] = best
        s["ratio_vs_best_baseline"] = s[f"ratio_vs_{best}"]
        s["all_windows"] = {name: _mse_mae(f(forecast), t) for name, forecast in w.baselines.items()}
        report[scale] = s
    return report


def evaluate_forecast(predictions: str | Path, test: str | Path, season: int | None = None, partial: bool = False,
                      train: str | Path | None = None, val: str | Path | None = None) -> dict[str, Any]:
    """The whole evaluation: ``evaluate_forecast("generated_predictions.jsonl", "data/ett_test.jsonl")`` (train and
    val: ``data/ett_train.jsonl``, ``data/ett_val.jsonl``; ``season=None`` chooses it)."""
    if season is not None and season < 1:
        raise ForecastEvalError(f"--season {season}: must be at least 1")
    test = Path(test)
    w = load_windows(Path(predictions), test, partial)
    train_path, val_path = split_paths(test, None if train is None else Path(train), None if val is None else Path(val))
    chosen = add_baselines(w, train_path, val_path, season)
    report = score(w)
    report.update(chosen, partial=partial, predictions=str(predictions), test=str(test))
    return report


_NAMES = {"naive": "naive (last value)", "drift": "drift"}


def _label(r: dict[str, Any], key: str) -> str:
    if key == "seasonal_naive":
        return f"seasonal naive ({r['season']})"
    if key == "ridge":
        return f"ridge (alpha {r['ridge_alpha']:.3g})"
    return _NAMES[key]


def format_report(r: dict[str, Any]) -> str:
    """The human table: one row per method and scale, ratios last."""
    fmt = lambda v: "n/a" if v is None else f"{v:.4g}"  # noqa: E731
    keys = [k for k in ("naive", "seasonal_naive", "drift", "ridge") if k in r["normalized"]]
    season = {"given": "--season", "train+val": "chosen from the train split's autocorrelation peaks, lowest MSE on train + val",
              "none": "no autocorrelation peak in the train split: season 1 is the naive forecast"}[r["season_source"]]
    lines = [
        f"{r['predictions']}: {r['windows']} windows x {r['targets']} target(s) x {r['pred_len']} steps; "
        f"scored {r['scored']}, unparseable {r['unparseable']} ({r['unparseable_share']:.1%})"
        + (f", padded {r['padded']} (--partial)" if r["partial"] else ""),
        f"season {r['season']} ({season}); ridge fitted on {r['train']}, alpha chosen on {r['val']}",
        f"{'scale':<11}{'method':<28}{'MSE':>11}{'MAE':>11}",
    ]
    best = r["normalized"]["best_baseline"]
    for scale in ("normalized", "original"):
        s = r[scale]
        lines.append(f"{scale:<11}{'model':<28}{fmt(s['model']['mse']):>11}{fmt(s['model']['mae']):>11}")
        for key in keys:
            lines.append(f"{scale:<11}{_label(r, key):<28}{fmt(s[key]['mse']):>11}{fmt(s[key]['mae']):>11}")
        for key in keys:
            ratio = s[f"ratio_vs_{key}"]
            lines.append(f"{scale:<11}{'model / ' + key.replace('_', ' '):<28}{fmt(ratio['mse']):>11}{fmt(ratio['mae']):>11}")
        ratio = s["ratio_vs_best_baseline"]
        lines.append(f"{scale:<11}{'model / best (' + best.replace('_', ' ') + ')':<28}{fmt(ratio['mse']):>11}{fmt(ratio['mae']):>11}")
    for scale in ("normalized", "original"):
        s = r[scale]["all_windows"]
        for key in keys:
            lines.append(f"{scale:<11}{_label(r, key)[:22] + ', all':<28}{fmt(s[key]['mse']):>11}{fmt(s[key]['mae']):>11}")
    lines.append(f"strongest baseline on these test windows: {_label(r, best)}; ratios < 1 mean the model beats the baseline; "
                 "they use only the scored (parseable) windows")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `tsplugin eval forecast` after the predictions file (which `tsplugin eval` adds)."""
    p.add_argument("--test", type=Path, required=True, help="the NAME_test.jsonl written by `tsconvert forecast` (same order)")
    p.add_argument("--train", type=Path, help="the train split the baselines are fitted on (default: NAME_train.jsonl next to --test)")
    p.add_argument("--val", type=Path, help="the val split the ridge penalty is chosen on (default: NAME_val.jsonl next to --test)")
    p.add_argument("--season", type=int, help="seasonal-naive period in points (default: chosen from the train split's "
                   "autocorrelation peaks, lowest seasonal-naive MSE on the train and val windows)")
    p.add_argument("--partial", action="store_true", help="pad short answers with their last number instead of counting them unparseable")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--report", type=Path, help="also write the JSON report to this path")


def run(args: argparse.Namespace) -> int:
    """Exit code 0, or 2 with a message for unusable input (or a --report that would overwrite an input)."""
    # lazy: converters' writer, for its one definition of "an output that is an input"
    from converters.paths import refuse_overwriting_inputs

    if args.report:
        refuse_overwriting_inputs([args.report], [Path(args.predictions), args.test])
    try:
        report = evaluate_forecast(Path(args.predictions), args.test, args.season, args.partial, args.train, args.val)
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


__all__ = ["ForecastEvalError", "Windows", "add_arguments", "add_baselines", "evaluate_forecast", "format_report", "load_split",
           "load_windows", "parse_numbers", "run", "score", "split_paths"]


if __name__ == "__main__":
    sys.exit(main())

