"""`tsplugin forecast`: forecasts from a Time-LLM model directory (trained, or merged by `llamafactory-cli export`).

    tsplugin forecast --model runs/timellm/merged --data data/ett/etth1_test.jsonl -o predictions.jsonl
    tsplugin eval forecast predictions.jsonl --test data/ett/etth1_test.jsonl       # scores it unchanged
    tsplugin forecast --model runs/timellm/merged --csv ETTh1.csv --columns OT [--scaling data/ett/etth1.scaling.json]

`--data`: every record of a `tsconvert forecast` JSONL; writes `{"predict", "label"}` lines in record
order, the layout of LLaMA-Factory's generated_predictions.jsonl. `--csv`: the last `seq_len` rows of
the named columns, one forecast line per column (`NAME: v1, ...`); `--scaling` z-scores the inputs with
the converter's train statistics and maps the forecast back to the CSV's units (the scale the model
was trained on). The model's own tokenizer (saved next to it) writes its prompts.
"""

from __future__ import annotations

# lazy imports: a `tsplugin` sub-command: torch and the model classes load when it runs (`tsplugin --help` stays torch-free).

import argparse
import json
import os
from pathlib import Path
from typing import Any

import numpy as np


class ForecastCommandError(ValueError):
    """Bad input; the message names the file and the fix."""


def load_forecaster(model_dir: str | Path, device: str = "cpu") -> Any:
    """The `timellm` model of `model_dir` in eval mode, its tokenizer bound."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    import tsplugin.models  # noqa: F401  (Auto registration)

    config = AutoConfig.from_pretrained(model_dir)
    if config.model_type != "timellm":
        raise ForecastCommandError(f"{model_dir}: model_type {config.model_type!r} is not a Time-LLM forecaster (timellm); "
                                   "for chat models use `tsplugin chat`")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device).eval()
    model.bind_tokenizer(AutoTokenizer.from_pretrained(model_dir))
    return model


def _batches(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def forecast_records(model: Any, records: list[dict[str, Any]], batch_size: int = 16) -> list[str]:
    """Answer text per record (its `forecast_target` names and series; else every series)."""
    import torch

    from tsplugin.processing import batch_series

    answers: list[str] = []
    for chunk in _batches(records, batch_size):
        raw, rows, series, names = [], [], [], []
        for row, rec in enumerate(chunk):
            start = len(raw)
            for values in rec["timeseries"]:
                raw.append(np.stack([np.asarray(values, np.float32), np.ones(len(values), np.float32)], axis=1))
                rows.append(row)
            for target in rec.get("forecast_target") or []:
                series.append(start + int(target["series"]))
                names.append(str(target["name"]))
        answers += model.forecast_rows(batch_series(raw), torch.tensor(rows), torch.tensor(series, dtype=torch.long) if series else None,
                                       names or None, n_rows=len(chunk))
    return answers


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    from tsplugin.userfiles import open_regular

    with os.fdopen(open_regular(path, "--data JSONL"), "rb") as f:
        raw_lines = f.read().split(b"\n")
    records = []
    for i, raw in enumerate(raw_lines):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ForecastCommandError(f"{path}: line {i + 1}: byte {exc.start} is not UTF-8; re-save the file as UTF-8") from None
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ForecastCommandError(f"{path}: line {i + 1}: invalid JSON ({exc.msg})") from None
        if not isinstance(rec, dict) or not isinstance(rec.get("timeseries"), list):
            raise ForecastCommandError(f"{path}: line {i + 1}: no `timeseries` list; pass a JSONL written by `tsconvert forecast`")
        records.append(rec)
    return records


def _csv_columns(path: Path, columns: list[str], date_col: str | None) -> dict[str, np.ndarray]:
    import csv

    from tsplugin.userfiles import open_regular

    try:
        with os.fdopen(open_regular(path, "--csv file"), newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except UnicodeDecodeError as exc:
        raise ForecastCommandError(f"{path}: byte {exc.start} is not UTF-8; re-save the CSV as UTF-8") from None
    if not rows:
        raise ForecastCommandError(f"{path}: no data rows")
    header = list(rows[0])
    missing = [c for c in columns if c not in header]
    if missing:
        raise ForecastCommandError(f"{path}: no column(s) {missing}; columns: {header}")
    out = {}
    for c in columns:
        try:
            out[c] = np.asarray([float(r[c]) for r in rows], dtype=np.float64)
        except (TypeError, ValueError):
            raise ForecastCommandError(f"{path}: column {c!r} has a value that is not a number; clean it (tsconvert forecast "
                                       "interpolates gaps) or pass --data with a converted JSONL") from None
    return out


def read_scaling(path: Path, columns: list[str]) -> dict[str, dict[str, float]]:
    """`variables` of a `tsconvert forecast` NAME.scaling.json: per column a finite mean and a positive std."""
    from tsplugin.userfiles import load_json

    data = load_json(path, "scaling file")
    variables = data.get("variables")
    if not isinstance(variables, dict):
        raise ForecastCommandError(f"{path}: no `variables` object; pass the NAME.scaling.json `tsconvert forecast` wrote")
    for c in columns:
        if c not in variables:
            raise ForecastCommandError(f"{path}: no statistics for column {c!r}; it holds {sorted(variables)[:20]}")
        stats = variables[c]
        ok = isinstance(stats, dict) and all(
            isinstance(stats.get(k), (int, float)) and not isinstance(stats.get(k), bool) and np.isfinite(stats[k]) for k in ("mean", "std"))
        if not ok or stats["std"] <= 0:
            raise ForecastCommandError(f"{path}: variables[{c!r}] needs a finite `mean` and a positive `std`, got {str(stats)[:80]}; "
                                       "pass the NAME.scaling.json `tsconvert forecast` wrote")
    return variables


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("forecast", help="forecast with a Time-LLM model (trained or merged directory)",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, type=Path, help="timellm model directory (tsplugin build-forecaster / llamafactory-cli export)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", type=Path, help="a `tsconvert forecast` JSONL: forecast every record")
    src.add_argument("--csv", type=Path, help="a CSV: forecast after its last rows")
    p.add_argument("--columns", help="--csv: comma-separated columns to forecast")
    p.add_argument("--scaling", type=Path, help="--csv: NAME.scaling.json of `tsconvert forecast` (z-score in, units out)")
    p.add_argument("-o", "--output", type=Path, help="--data: write predictions JSONL here (default: print)")
    p.add_argument("--batch-size", type=int, default=16, help="--data: records per forward pass (default 16)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Arguments and input files are checked before the model loads; a problem raises (one line, exit 2, from
    `tsplugin.cli.main`)."""
    from converters.paths import refuse_overwriting_inputs

    from tsplugin.checkpoints.layouts import locate

    locate(str(args.model))
    if args.output is not None:
        if args.data is None:
            raise ForecastCommandError("-o/--output is for --data; --csv prints its forecast")
        refuse_overwriting_inputs([args.output], [args.data] if args.data is not None else [])
        if args.output.is_dir():
            raise ForecastCommandError(f"-o {args.output} is a directory; name the predictions file, e.g. {args.output}/predictions.jsonl")
    if args.data is not None:
        if args.scaling or args.columns:
            raise ForecastCommandError("--scaling and --columns are for --csv; a --data JSONL is already scaled by `tsconvert forecast`")
        records = _read_jsonl(args.data)
        model = load_forecaster(args.model, args.device)
        answers = forecast_records(model, records, args.batch_size)
        lines = [json.dumps({"predict": a, "label": r.get("output", "")}, ensure_ascii=False) for a, r in zip(answers, records)]
        if args.output:
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
            print(f"wrote {len(lines)} forecasts to {args.output}")
        else:
            print("\n".join(lines))
        return 0
    if not args.columns:
        raise ForecastCommandError("--csv needs --columns NAME[,NAME...]")
    columns = [c.strip() for c in args.columns.split(",") if c.strip()]
    scaling = read_scaling(args.scaling, columns) if args.scaling else {}
    values = _csv_columns(args.csv, columns, None)
    model = load_forecaster(args.model, args.device)
    seq_len = model.config.forecast["seq_len"]
    series = []
    for c in columns:
        v = values[c][-seq_len:]
        series.append(((v - scaling[c]["mean"]) / scaling[c]["std"]) if c in scaling else v)
    record = {"timeseries": [s.tolist() for s in series],
              "forecast_target": [{"series": i, "name": c} for i, c in enumerate(columns)]}
    text = forecast_records(model, [record])[0]
    from tsplugin.eval.forecast import parse_numbers

    numbers = parse_numbers(text, model.config.forecast["pred_len"], columns if len(columns) > 1 else ())
    for c, row in zip(columns, numbers):
        if c in scaling:
            row = row * scaling[c]["std"] + scaling[c]["mean"]
        print(f"{c}: " + ", ".join(f"{x:.6g}" for x in row))
    return 0


__all__ = ["ForecastCommandError", "add_parser", "forecast_records", "load_forecaster", "run"]
