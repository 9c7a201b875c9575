"""`tsconvert forecast`: an ETT-style CSV (date column + variables) -> train/val/test JSONL of
sliding windows for LLM forecasting (Time-LLM's task), in the ChatTS record format.

Design choices (the conventions of the Time-LLM / Informer ETT loaders, `Dataset_Custom`):
- Split on the series index, chronologically: train = first 70% of rows, val = next 10%, test =
  last 20% (integer arithmetic: n_train = 7n // 10, n_test = n // 5, n_val = the rest).
- A window is `seq_len` input points followed by `pred_len` target points. A split owns the window
  when all its TARGET points lie inside the split. Val/test windows may start up to `seq_len` points
  before their border, so their inputs can overlap the previous split's tail (the model is allowed to
  see the past), but their targets never contain a point of an earlier split. Window starts:
  train [0, n_train - seq - pred], val [n_train - seq, n_train + n_val - seq - pred],
  test [n_train + n_val - seq, n - seq - pred], every `stride` points.
- Normalisation is a z-score per variable with statistics of the TRAIN rows only (ddof 0, like
  scikit-learn's StandardScaler); a constant variable gets std 1. The statistics go into
  NAME.scaling.json and every record (`scaling`, `normalized`) so `tsplugin eval forecast` can undo it.
- The answer is the future values as text with fixed precision, comma-separated; with several target
  variables one line per variable, `NAME: v1, v2, ...`. The same future values, unrounded, are the
  record's `forecast_target` (`[{"series": INDEX INTO timeseries, "name": ..., "values": [...]}]`,
  mapped as the `forecast_target` column in dataset_info.json): chat models learn the answer text, a
  Time-LLM forecaster (`tsplugin build-forecaster`) regresses the numbers with MSE, from one file.
- Feature modes (a registry, like every extension point): S = the target alone, M = every variable in
  and out, MS = every variable in, the target out.
"""

from __future__ import annotations

import csv
import io
import os
import stat
from collections import Counter
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tsplugin.processing.encodable import check_encodable
from tsplugin.processing.placeholders import PLACEHOLDER

from .cleaning import clean
from .csvread import (  # the reader's own rules: both commands agree
    _LINE_END,
    _decode,
    _sniff_delimiter,
    norm_name,
    read_series,
)
from .errors import InputError, RejectError
from .filetypes import JSON_STORAGE, data_file, encode_series, open_sink
from .jsonenc import dumps
from .paths import check_dataset_name, refuse_overwriting_inputs
from .registry import Registry
from .safeio import ReadLimits, read_named_file
from .writer import OutputSet

TS_PLACEHOLDER = PLACEHOLDER
SPLITS = ("train", "val", "test")

# A feature mode maps (all variable names, target) -> (input variables, target variables).
FeatureMode = Callable[[list[str], str], tuple[list[str], list[str]]]
FEATURE_MODES: Registry[FeatureMode] = Registry("forecast feature mode")
FEATURE_MODES.register("S", lambda names, target: ([target], [target]))
FEATURE_MODES.register("M", lambda names, target: (list(names), list(names)))
FEATURE_MODES.register("MS", lambda names, target: (list(names), [target]))


@dataclass(frozen=True)
class ForecastOptions:
    """Everything `tsconvert forecast` needs; see cli.py for the user-facing help."""

    csv: Path
    seq_len: int
    pred_len: int
    out_dir: Path = Path(".")
    name: str | None = None
    features: str = "S"
    target: str | None = None          # default: the last variable column (ETT's OT)
    date_col: str = "date"
    stride: int = 1
    max_windows_per_split: int | None = None
    precision: int = 3
    normalize: bool = True
    missing: str = "interpolate"
    max_missing: float = 0.5
    number_format: str = "auto"
    encoding: str = "auto"  # csvread.AUTO_ENCODING
    file_type: str = "jsonl"  # filetypes.FILE_TYPES
    storage: str = JSON_STORAGE  # how series are encoded (filetypes.storage_for)

    def check(self) -> None:
        """Option errors say which option and what is allowed."""
        if self.seq_len < 1 or self.pred_len < 1:
            raise InputError(f"--seq-len {self.seq_len} and --pred-len {self.pred_len} must both be at least 1")
        if self.stride < 1:
            raise InputError(f"--stride {self.stride}: must be at least 1")
        if self.max_windows_per_split is not None and self.max_windows_per_split < 1:
            raise InputError(f"--max-windows-per-split {self.max_windows_per_split}: must be at least 1")
        if not 0 <= self.precision <= 10:
            raise InputError(f"--precision {self.precision}: must be between 0 and 10 decimals")
        if self.features not in FEATURE_MODES:
            raise InputError(f"--features {self.features!r}: valid: {', '.join(FEATURE_MODES.names())}")
        if not 0 <= self.max_missing <= 1:
            raise InputError(f"--max-missing {self.max_missing}: must be a fraction between 0 and 1")


def split_borders(n_rows: int) -> dict[str, tuple[int, int]]:
    """Row ranges [start, end) whose points each split's TARGETS come from (70/10/20, chronological)."""
    n_train = n_rows * 7 // 10
    n_test = n_rows // 5
    n_val = n_rows - n_train - n_test
    return {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, n_rows)}


def window_starts(border: tuple[int, int], seq_len: int, pred_len: int, stride: int = 1) -> list[int]:
    """Input start indices of the windows whose targets lie inside ``border`` (see module docstring)."""
    lo, hi = border
    first = max(0, lo - seq_len)
    last = hi - seq_len - pred_len
    return list(range(first, last + 1, stride)) if last >= first else []


def cap_evenly(starts: list[int], cap: int | None) -> list[int]:
    """At most ``cap`` starts, evenly spaced over the split and always including the first and last."""
    if cap is None or len(starts) <= cap:
        return starts
    picks = np.round(np.linspace(0, len(starts) - 1, cap)).astype(int)
    return [starts[i] for i in picks]


def min_rows(seq_len: int, pred_len: int) -> int:
    """The shortest series for which every split gets at least one window. The search starts at what
    train (70%: seq+pred points) and val (10%: pred points) need at least, so it takes a few steps
    whatever the sizes."""
    n = max(seq_len + pred_len, -(-10 * (seq_len + pred_len) // 7), 10 * (pred_len - 2))
    while any(_no_window(b, seq_len, pred_len) for b in split_borders(n).values()):
        n += 1
    return n


def _no_window(border: tuple[int, int], seq_len: int, pred_len: int) -> bool:
    lo, hi = border
    return hi - seq_len - pred_len < max(0, lo - seq_len)


def fit_scaling(values: np.ndarray, names: list[str], train_end: int, notes: Counter) -> dict[str, dict[str, float]]:
    """Per-variable mean/std of rows [0, train_end) only; a constant variable gets std 1."""
    train = values[:train_end]
    out = {}
    for j, name in enumerate(names):
        mean = float(train[:, j].mean())
        std = float(train[:, j].std())
        if not std > 0:
            notes["constant_in_train"] += 1
            std = 1.0
        out[name] = {"mean": mean, "std": std}
    return out


def _refuse_impossible_sizes(opts: ForecastOptions) -> None:
    """Before reading: a file of S bytes holds at most S // 2 data rows (a value and a line end each), so
    --seq-len/--pred-len needing more rows than that is a usage error now, not after reading everything."""
    need = min_rows(opts.seq_len, opts.pred_len)
    try:
        st = os.stat(opts.csv)
    except OSError:
        return  # the read names the problem
    size = st.st_size
    if stat.S_ISREG(st.st_mode) and need > size // 2:
        raise InputError(
            f"{opts.csv}: {size} bytes hold at most {size // 2} rows, too few for --seq-len {opts.seq_len} + --pred-len "
            f"{opts.pred_len} with the 70/10/20 split (needs at least {need} rows). Lower --seq-len/--pred-len or use a longer series"
        )


def read_csv_bytes(path: Path) -> bytes:
    """The CSV's bytes: a regular file only (a FIFO or device is refused, never waited on)."""
    if not path.exists() and not path.is_symlink():
        raise InputError(f"{path}: no such file. Pass the path of an ETT-style CSV (a date column + one column per variable)")
    try:
        return read_named_file(path, str(path), ReadLimits())
    except RejectError as err:
        raise InputError(err.reject.message) from None


def read_header(path: Path, data: bytes | None = None, encoding: str = "auto") -> list[str]:
    """Column names of the CSV's first line (same encodings, delimiters and line ends as tsconvert)."""
    try:
        return csv_header(path, data, encoding)
    except RejectError as err:
        raise InputError(err.reject.message) from None


def csv_header(path: Path, data: bytes | None = None, encoding: str = "auto") -> list[str]:
    """read_header for a caller that rejects one file and goes on (describe): bytes that are not text in
    ``encoding`` raise RejectError unreadable_csv, naming the --encoding to pass; no header line, InputError."""
    head = (read_csv_bytes(path) if data is None else data)[: 1 << 16]
    text, _ = _decode(head[: head.rfind(b"\n") + 1] if b"\n" in head else head, str(path), encoding)
    line = _LINE_END.split(text, 1)[0]
    if not line.strip():
        raise InputError(f"{path} is empty (no header line). Export it with a header such as date,HUFL,...,OT")
    return [c.replace("\ufeff", "").strip() for c in next(csv.reader(io.StringIO(line), delimiter=_sniff_delimiter(line)))]


def load_table(opts: ForecastOptions, repairs: Counter, notes: Counter) -> tuple[list[str], np.ndarray, list[str], list[str]]:
    """Read and clean the CSV; returns (variable names, values (rows, vars), input names, target names)."""
    data = read_csv_bytes(opts.csv)
    header = read_header(opts.csv, data, opts.encoding)
    cols = ", ".join(repr(c) for c in header)
    if norm_name(opts.date_col) not in {norm_name(c) for c in header}:
        raise InputError(f"{opts.csv} has no date column {opts.date_col!r} (columns: {cols}). Pass --date-col with the name of its time column")
    variables = [c for c in header if norm_name(c) != norm_name(opts.date_col)]
    if not variables:
        raise InputError(f"{opts.csv} has only the date column {opts.date_col!r}. Add at least one value column")
    target = opts.target if opts.target is not None else variables[-1]
    by_norm = {norm_name(c): c for c in variables}
    if norm_name(target) not in by_norm:
        raise InputError(f"{opts.csv}: unknown --target {target!r}; variable columns: {', '.join(repr(c) for c in variables)}")
    target = by_norm[norm_name(target)]
    inputs, targets = FEATURE_MODES.get(opts.features)(variables, target)
    wanted = list(dict.fromkeys(inputs + targets))
    try:
        raw = read_series(opts.csv, wanted, opts.date_col, str(opts.csv), data=data, number_format=opts.number_format,
                          encoding=opts.encoding)
        for kind, n in raw.missing.items():
            repairs[f"missing_{kind}"] += n
        notes.update(raw.notes)
        series = clean(raw, str(opts.csv), missing=opts.missing, max_missing=opts.max_missing, counts=repairs)
    except RejectError as err:
        if err.reject.code == "empty_series":
            raise InputError(f"{opts.csv}: no row has a number in every column of {', '.join(map(repr, wanted))}. "
                             "Fix the CSV, or forecast one good column with --features S --target COL") from None
        raise InputError(err.reject.message) from None
    return wanted, np.stack(series, axis=1), inputs, targets


def format_values(values: np.ndarray, precision: int) -> str:
    """``v1, v2, ...`` with a fixed number of decimals."""
    return ", ".join(f"{v:.{precision}f}" for v in values)


def build_prompt(inputs: list[str], targets: list[str], opts: ForecastOptions) -> str:
    """The question: task, horizon, the series (one labelled placeholder each) and the number format."""
    scale = "z-scored with training-set statistics" if opts.normalize else "raw values"
    numbers = f"{opts.pred_len} numbers with {opts.precision} decimals, separated by commas"
    if len(inputs) == 1:
        head = f"Here are the last {opts.seq_len} values of {inputs[0]} ({scale}): {TS_PLACEHOLDER}\n"
    else:
        lines = "\n".join(f"{name}: {TS_PLACEHOLDER}" for name in inputs)
        head = f"Here are the last {opts.seq_len} values of {len(inputs)} variables ({scale}):\n{lines}\n"
    if len(targets) == 1:
        return head + f"Forecast the next {opts.pred_len} values of {targets[0]}. Answer with {numbers}, and nothing else."
    order = ", ".join(targets)
    return head + (f"Forecast the next {opts.pred_len} values of every variable. Answer with one line per variable "
                   f"in the order {order}, each 'NAME: ' followed by {numbers}.")


def build_answer(future: dict[str, np.ndarray], precision: int) -> str:
    """The target text: bare numbers for one target, labelled lines for several."""
    if len(future) == 1:
        return format_values(next(iter(future.values())), precision)
    return "\n".join(f"{name}: {format_values(v, precision)}" for name, v in future.items())


def convert_forecast(opts: ForecastOptions) -> dict[str, Any]:
    """Write NAME_{train,val,test}.jsonl, NAME.scaling.json, NAME.report.json and the dataset_info.json
    entries; returns the report."""
    opts.check()
    name = opts.name if opts.name is not None else opts.csv.stem
    check_dataset_name(name)
    out = opts.out_dir
    files = [data_file(f"{name}_{split}", opts.file_type) for split in SPLITS] + [f"{name}.scaling.json", f"{name}.report.json", "dataset_info.json"]
    refuse_overwriting_inputs([out / f for f in files], [opts.csv])
    _refuse_impossible_sizes(opts)
    repairs: Counter = Counter()
    notes: Counter = Counter()
    names, values, inputs, targets = load_table(opts, repairs, notes)
    n_rows = len(values)
    need = min_rows(opts.seq_len, opts.pred_len)
    if n_rows < need:
        raise InputError(
            f"{opts.csv}: {n_rows} rows after cleaning, too short for --seq-len {opts.seq_len} + --pred-len {opts.pred_len} "
            f"with the 70/10/20 split (needs at least {need} rows: train must hold seq+pred points, val and test pred-len "
            "points each). Lower --seq-len/--pred-len or use a longer series"
        )
    borders = split_borders(n_rows)
    with np.errstate(over="ignore", invalid="ignore"):  # overflowing columns are refused just below
        scaling = fit_scaling(values, names, borders["train"][1], notes)
    mean = np.array([scaling[n]["mean"] for n in names])
    std = np.array([scaling[n]["std"] for n in names])
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = (values - mean) / std if opts.normalize else values
    for j, var in enumerate(names):
        problem = check_encodable(values[:, j]) or check_encodable(scaled[:, j])
        if problem is not None:
            raise InputError(f"{opts.csv}: column {var!r} data {problem.message()}. Fix the value or rescale the column")
    col = {n: j for j, n in enumerate(names)}
    prompt = build_prompt(inputs, targets, opts)
    windows: dict[str, Any] = {}
    outputs = OutputSet(out)
    try:
        _write_forecast(outputs, opts, name, borders, scaled, scaling, col, prompt, inputs, targets, windows)
        scaling_doc = {"normalized": opts.normalize, "fit_rows": list(borders["train"]), "method": "z-score, train rows only, ddof 0",
                       "variables": scaling}
        outputs.open(f"{name}.scaling.json").write(dumps(scaling_doc) + b"\n")
        report = {
            "source": str(opts.csv), "rows": n_rows, "features": opts.features, "inputs": inputs, "targets": targets,
            "seq_len": opts.seq_len, "pred_len": opts.pred_len, "stride": opts.stride,
            "borders": {k: list(v) for k, v in borders.items()}, "windows": windows,
            "repairs": dict(sorted(repairs.items())), "notes": dict(sorted(notes.items())),
            "options": {"date_col": opts.date_col, "precision": opts.precision, "normalize": opts.normalize,
                        "max_windows_per_split": opts.max_windows_per_split, "missing": opts.missing, "max_missing": opts.max_missing,
                        **({"file_type": opts.file_type, "series_dtype": opts.storage} if opts.file_type != "jsonl" else {})},
        }
        outputs.open(f"{name}.report.json").write(dumps(report) + b"\n")
        columns = {"prompt": "input", "response": "output", "timeseries": "timeseries", "forecast_target": "forecast_target"}
        outputs.commit({f"{name}_{split}": {"file_name": data_file(f"{name}_{split}", opts.file_type), "columns": columns}
                        for split in SPLITS})
    finally:
        outputs.abort()
    return report


def _write_forecast(outputs: OutputSet, opts: ForecastOptions, name: str, borders: dict[str, tuple[int, int]], scaled: np.ndarray,
                    scaling: dict[str, dict[str, float]], col: dict[str, int], prompt: str, inputs: list[str], targets: list[str],
                    windows: dict[str, Any]) -> None:
    """Stage NAME_{train,val,test}.jsonl or .parquet (nothing is visible before OutputSet.commit)."""
    for split in SPLITS:
        available = window_starts(borders[split], opts.seq_len, opts.pred_len, opts.stride)
        starts = cap_evenly(available, opts.max_windows_per_split)
        sink = open_sink(opts.file_type, outputs.open(data_file(f"{name}_{split}", opts.file_type)), None, opts.storage)
        with closing(sink):  # closed on an InputError mid-split too (the staged file is then aborted)
            _write_split(sink, opts, starts, scaled, scaling, col, prompt, inputs, targets)
        windows[split] = {"available": len(available), "written": len(starts),
                          "first_start": starts[0] if starts else None, "last_start": starts[-1] if starts else None}


def _write_split(sink: Any, opts: ForecastOptions, starts: list[int], scaled: np.ndarray, scaling: dict[str, dict[str, float]],
                 col: dict[str, int], prompt: str, inputs: list[str], targets: list[str]) -> None:
    """One record per window start into `sink`."""
    for s in starts:
        t0 = s + opts.seq_len
        future = {t: scaled[t0:t0 + opts.pred_len, col[t]] for t in targets}
        fields = {
            "input": prompt,
            "output": build_answer(future, opts.precision),
            "window_start": s,
            "variables": inputs,
            "targets": targets,
            "normalized": opts.normalize,
            "scaling": {n: scaling[n] for n in dict.fromkeys(inputs + targets)},
            # numeric targets for a Time-LLM head (the chat models learn `output`, the same numbers as text)
            "forecast_target": [{"series": inputs.index(t), "name": t, "values": future[t].tolist()} for t in targets],
        }
        try:
            series = [encode_series(scaled[s:t0, col[v]], opts.storage, str(opts.csv), v) for v in inputs]
        except RejectError as err:  # a value beyond --series-dtype float32: the whole file cannot be written
            raise InputError(err.reject.message) from None
        sink.write(fields, series)


def summary(report: dict[str, Any]) -> str:
    """Human lines for the terminal."""
    w = report["windows"]
    b = report["borders"]
    lines = [
        f"{report['source']}: {report['rows']} rows, features {report['features']}: "
        f"{len(report['inputs'])} input / {len(report['targets'])} target variable(s), {report['seq_len']} -> {report['pred_len']}, "
        f"stride {report['stride']}",
    ]
    for split in SPLITS:
        lines.append(f"  {split}: targets from rows [{b[split][0]}, {b[split][1]}), {w[split]['written']} windows written "
                     f"of {w[split]['available']}")
    if report["repairs"]:
        lines.append("  repaired: " + ", ".join(f"{k} {v}" for k, v in report["repairs"].items()))
    for note, n in report["notes"].items():
        lines.append(f"  note {note}: {n}")
    return "\n".join(lines)


__all__ = [
    "FEATURE_MODES", "ForecastOptions", "build_answer", "build_prompt", "cap_evenly", "convert_forecast",
    "fit_scaling", "format_values", "min_rows", "split_borders", "summary", "window_starts",
]
