"""`tsconvert describe`: users' own series -> attributes (labels) + Q&A, with rejects and a report.

Inputs, read as `tsconvert convert` reads them (safeio.read_confined inside --csv-dir, csvread.read_series,
cleaning.clean with the --missing policy):
- `--csv-dir DIR` alone: every *.csv under DIR (sorted by path) is one record; its series are the
  --value-col columns, by default every column but the time column;
- `INPUT --csv-dir DIR`: the records of a GDSH-style JSON/JSONL (ShareGPT/Alpaca/OpenAI); each image is
  resolved to its CSV (--csv-pattern) and its --value-col columns (default `value`) are the record's series.

Outputs, one set (writer.OutputSet: all appear or nothing changes): NAME.jsonl (per record, one Q&A line
per question kind whose attributes describe is sure of, asked and answered by tsplugin.synth.qa, with its
`qa` entry so `tsplugin eval alignment` scores it), NAME.labels.jsonl (the labels of every NAME.jsonl
line's series, schema tsplugin.synth.labels, plus `csv` and `column`), NAME.rejects.jsonl, NAME.report.json
and the NAME entry of dataset_info.json. Every input record is described or rejected with its reason.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

import tsplugin.synth.qa as qa_kinds
from tsplugin.synth.attributes import Composed
from tsplugin.synth.labels import LABELS_SUFFIX, SeriesLabels, dumps_label, validate_label

from ..cleaning import clean
from ..csvread import check_value_cols, read_series
from ..errors import InputError, RejectError
from ..forecast import csv_header
from ..formats import get_output_format
from ..jsonenc import dumps, dumps_series, record_line
from ..jsonstream import compact_text, iter_raw_records
from ..paths import DEFAULT_PATTERN, check_dataset_name, check_pattern, resolve_csv
from ..records import parse_record
from ..report import Report
from ..safeio import DEFAULT_MAX_CSV_BYTES, ReadLimits, read_confined
from ..paths import refuse_overwriting_inputs
from ..writer import OutputSet
from .extract import describe_series
from .qa_policy import KIND_ATTRIBUTES, MIN_CONFIDENCE, uncertain_attributes

MIN_POINTS = 16  # fewer points cannot show a trend segment, a cycle and a local change apart
METHODS = {
    "trend": "PELT change points (ruptures, least-squares line cost) as the start of a continuous segmented regression (breakpoints moved to the least-squares optimum, Huber IRLS fit, level shifts refitted beside it); each segment's rise from the fit, the overall direction by the labels schema's rule",
    "seasonality": "harmonic regression over periodogram candidates, ACF contrast at the period, STL strength",
    "local": "clusters of short segments between PELT change points on the deseasonalised series; each read by a least-squares fit of step, ramp (start, width), spike and trend-kink candidates on the window around it (a kink that fits best is left to the trend), then refitted jointly with trend and season and dropped below the MAD-noise/range threshold; confidence: the probability that the size clears that threshold given its standard error in the joint fit",
    "noise": "MAD of the remainder against the signal scale of the components found",
}


@dataclass
class DescribeOptions:
    csv_dir: Path
    out_dir: Path = Path(".")
    name: str = "describe"
    input: Path | None = None
    value_cols: tuple[str, ...] | None = None  # None: every column but the time column (CSV-folder mode), `value` (JSON mode)
    time_col: str | None = "timestamp"
    csv_pattern: str = DEFAULT_PATTERN
    missing: str = "interpolate"
    max_missing: float = 0.5
    max_gap: float = 0.05
    min_length: int = MIN_POINTS
    min_confidence: float = MIN_CONFIDENCE
    kinds: tuple[str, ...] = tuple(KIND_ATTRIBUTES)
    seed: int = 0
    number_format: str = "auto"
    encoding: str = "auto"  # csvread.AUTO_ENCODING, as SeriesOptions.encoding
    max_csv_bytes: int = DEFAULT_MAX_CSV_BYTES
    allow_hard_links: bool = False


@dataclass
class _Record:
    index: int
    source: Any  # what the rejects file keeps: the CSV's path, or the record's JSON text
    series: list[tuple[str, str, np.ndarray]] = field(default_factory=list)  # (csv, column, values)
    reject: tuple[str, str] | None = None


def output_names(name: str) -> list[str]:
    return [f"{name}.jsonl", f"{name}{LABELS_SUFFIX}", f"{name}.rejects.jsonl", f"{name}.report.json", "dataset_info.json"]


def describe(opts: DescribeOptions) -> dict[str, Any]:
    """Run describe; returns the report (also written to NAME.report.json)."""
    check_dataset_name(opts.name)  # convert's one rule: a plain file name, no path
    if opts.name.startswith("."):
        raise InputError(f"--name {opts.name!r}: a file stem (letters, digits, _ -), not a hidden file")
    if opts.value_cols:
        check_value_cols(opts.value_cols)  # convert's rule: a repeated or case-duplicate --value-col is a usage error
    csv_dir = opts.csv_dir.resolve()
    if not csv_dir.is_dir():
        raise InputError(f"--csv-dir {opts.csv_dir}: not a directory. Pass the folder holding the CSV files")
    check_pattern(opts.csv_pattern)
    bad = [k for k in opts.kinds if k not in KIND_ATTRIBUTES]
    if bad:
        raise InputError(f"--kinds: {', '.join(bad)} unknown; choose from {', '.join(KIND_ATTRIBUTES)}")
    inputs = [opts.input] if opts.input is not None else []
    refuse_overwriting_inputs([opts.out_dir / n for n in output_names(opts.name)], inputs)
    if opts.input is None:
        csvs = sorted(p.relative_to(csv_dir).as_posix() for p in csv_dir.rglob("*") if p.suffix.lower() == ".csv")
        if not csvs:
            raise InputError(f"--csv-dir {opts.csv_dir}: no *.csv file in it (nothing to describe). Put the series "
                             "there, one CSV per record, or pass the records JSON as INPUT")
        records: Iterator[_Record] = (_csv_record(i, rel) for i, rel in enumerate(csvs))
        source = str(opts.csv_dir)
    else:
        records = _json_records(opts.input, csv_dir, opts)
        source = opts.input.name
    report = Report(source=source, options=_options(opts))
    stats = {"questions": Counter(), "left_out": Counter(), "uncertain": Counter()}
    with OutputSet(opts.out_dir) as outputs:
        data, labels, rej, rep = (outputs.open(n) for n in output_names(opts.name)[:4])
        out_index = 0
        for rec in records:
            report.input += 1
            if rec.reject is None:
                rec.reject = _check(rec, opts, report)
            if rec.reject is not None:
                code, msg = rec.reject
                report.rejected[code] += 1
                rej.write(_reject_line(rec, code, f"{source}: record {rec.index}: {msg}."))
                continue
            report.converted += 1
            series = [Composed(describe_series(v, 0, k).labels, v) for k, (_, _, v) in enumerate(rec.series)]
            for c, (csv, col, _) in zip(series, rec.series):
                c.labels.extra.update({"csv": csv, "column": col})
                for attr in uncertain_attributes(c.labels, opts.min_confidence):
                    stats["uncertain"][attr] += 1
            for line, item_labels in _questions(rec.index, series, opts, stats):
                data.write(line)
                for lab in item_labels:
                    lab.record = out_index
                    problems = validate_label(lab.to_json())
                    if problems:  # describe's own invariant: what it writes, the readers accept
                        raise RuntimeError(f"record {rec.index} series {lab.series}: {'; '.join(problems)}")
                    labels.write(dumps_label(lab))
                out_index += 1
        out = report.to_dict(ok_label="described")
        out["questions"] = {"written": out_index, "by_kind": dict(sorted(stats["questions"].items())),
                            "left_out_uncertain": dict(sorted(stats["left_out"].items())),
                            "min_confidence": opts.min_confidence}
        out["uncertain_attributes"] = dict(sorted(stats["uncertain"].items()))
        out["methods"] = METHODS
        rep.write((json.dumps(out, ensure_ascii=False, indent=2) + "\n").encode("utf-8"))
        outputs.commit({opts.name: get_output_format("chatts").entry(f"{opts.name}.jsonl", False)})
    return out


def _questions(index: int, series: list[Composed], opts: DescribeOptions,
               stats: dict[str, Counter]) -> Iterator[tuple[bytes, list]]:
    """One line per question kind that applies and whose attributes are certain (synth's qa asks it)."""
    rng = np.random.default_rng([opts.seed, index])
    encoded = [dumps_series(c.values) for c in series]
    for kind in opts.kinds:
        if not qa_kinds.KINDS[kind].applies(series):
            continue
        item = qa_kinds.KINDS[kind].ask(rng, series)
        if any(uncertain_attributes(series[k].labels, opts.min_confidence, KIND_ATTRIBUTES[kind]) for k in item.series):
            stats["left_out"][kind] += 1
            continue
        stats["questions"][kind] += 1
        fields = {"input": qa_kinds.prompt(series, item.question), "output": item.answer, "qa": item.meta()}
        yield record_line(fields, encoded), [_copy(c.labels) for c in series]


def _copy(labels: SeriesLabels) -> SeriesLabels:
    return SeriesLabels.from_json(labels.to_json())


def _limits(opts: DescribeOptions) -> ReadLimits:
    return ReadLimits(opts.max_csv_bytes, opts.allow_hard_links)


def _load(csv_dir: Path, rel: str, value_cols: list[str] | None, opts: DescribeOptions,
          report: Report) -> list[tuple[str, str, np.ndarray]]:
    """(csv, column, cleaned values) of one CSV; raises RejectError."""
    data = read_confined(csv_dir, rel.split("/"), rel, _limits(opts))
    if value_cols is None:
        try:
            header = csv_header(csv_dir / rel, data, opts.encoding)  # not text: unreadable_csv
        except InputError as err:
            raise RejectError("empty_series", str(err)) from None
        time = (opts.time_col or "").strip().casefold()
        value_cols = [c for c in header if c.strip().casefold() != time and c.strip()]
        if not value_cols:
            raise RejectError("missing_value_column", f"{rel} has only the time column {opts.time_col!r}. "
                                                      "Add a value column or pass --time-col ''")
    raw = read_series(csv_dir / rel, value_cols, opts.time_col, rel, data=data, number_format=opts.number_format,
                      encoding=opts.encoding)
    for col, v in zip(value_cols, raw.values):
        run = _longest_nan_run(v)
        if len(v) and run > opts.max_gap * len(v):
            raise RejectError("missing_run", f"{rel}: column {col!r} has {run} missing values in a row, over --max-gap "
                                             f"{opts.max_gap:g} of its {len(v)} rows: describing them would describe "
                                             "interpolated values. Fill the gap, split the CSV there or raise --max-gap")
    repairs: Counter = Counter()
    for kind, n in raw.missing.items():
        repairs[f"missing_{kind}"] += n
    values = clean(raw, rel, missing=opts.missing, max_missing=opts.max_missing, counts=repairs)
    report.repairs.update(repairs)
    report.notes.update(raw.notes)
    return [(rel, col, v) for col, v in zip(value_cols, values)]


def _longest_nan_run(v: np.ndarray) -> int:
    bad = np.isnan(v)
    if not bad.any():
        return 0
    edges = np.flatnonzero(np.diff(np.concatenate([[0], bad.astype(np.int8), [0]])))
    return int((edges[1::2] - edges[::2]).max())


def _csv_record(index: int, rel: str) -> _Record:
    """A CSV of the folder as one record (its columns are loaded in _check, where the report is at hand)."""
    return _Record(index, {"csv": rel}, [("", rel, np.empty(0))])


def _json_records(path: Path, csv_dir: Path, opts: DescribeOptions) -> Iterator[_Record]:
    for index, raw in enumerate(iter_raw_records(path)):
        rec = _Record(index, raw)
        if raw.error is not None:
            rec.reject = raw.error
            yield rec
            continue
        try:
            sample = parse_record(raw.value, "auto")
            if not sample.images:
                raise RejectError("no_series", "no image (series) in the record. Describe needs at least one")
            rec.series = [("", resolve_csv(img, csv_dir, opts.csv_pattern).relative_to(csv_dir).as_posix(), np.empty(0))
                          for img in sample.images]
        except RejectError as err:
            rec.reject = (err.reject.code, err.reject.message)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            rec.reject = ("invalid_record", f"cannot be read ({type(exc).__name__}: {exc}). Fix the record")
        yield rec


def _check(rec: _Record, opts: DescribeOptions, report: Report) -> tuple[str, str] | None:
    """Load the record's CSVs and refuse series describe cannot read attributes from."""
    csv_dir = opts.csv_dir.resolve()
    value_cols = list(opts.value_cols) if opts.value_cols else (None if opts.input is None else ["value"])
    loaded: list[tuple[str, str, np.ndarray]] = []
    try:
        for _, rel, _ in rec.series:
            loaded += _load(csv_dir, rel, value_cols, opts, report)
        for rel, col, v in loaded:
            if len(v) < opts.min_length:
                raise RejectError("series_too_short", f"{rel}: column {col!r} has {len(v)} points, fewer than --min-length "
                                                      f"{opts.min_length}: too few to tell a trend, a cycle and a local "
                                                      "change apart. Drop the CSV or lower --min-length")
            if float(np.min(v)) == float(np.max(v)):
                raise RejectError("constant_series", f"{rel}: column {col!r} is constant ({float(v[0]):g} at all "
                                                     f"{len(v)} points): no trend, cycle, noise or change to describe. "
                                                     "Drop the column (--value-col) or the CSV")
    except RejectError as err:
        return err.reject.code, err.reject.message
    except Exception as exc:  # one file must never stop the run
        return "csv_error", f"could not be read ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})"
    rec.series = loaded
    for _, _, v in loaded:
        report.lengths.add(len(v))
    return None


def _reject_line(rec: _Record, code: str, message: str) -> bytes:
    head = dumps({"index": rec.index, "reason": code, "message": message})
    if isinstance(rec.source, dict):
        return head[:-1] + b',"record":' + dumps(rec.source) + b"}\n"
    return head[:-1] + b',"record":' + compact_text(rec.source.text).encode("utf-8", "surrogatepass") + b"}\n"


def _options(opts: DescribeOptions) -> dict[str, Any]:
    return {"input": str(opts.input) if opts.input else None, "csv_pattern": opts.csv_pattern,
            "value_cols": list(opts.value_cols) if opts.value_cols else None, "time_col": opts.time_col,
            "missing": opts.missing, "max_missing": opts.max_missing, "max_gap": opts.max_gap,
            "min_length": opts.min_length, "min_confidence": opts.min_confidence, "kinds": list(opts.kinds),
            "seed": opts.seed, "encoding": opts.encoding, "max_csv_bytes": opts.max_csv_bytes,
            "allow_hard_links": opts.allow_hard_links}
