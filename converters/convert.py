"""The conversion pipeline: stream records, resolve each image to a CSV, load CSVs in a worker
pool with a bounded window of records in flight, and write results in input order.

Outputs, written as one set (all appear or nothing changes, see writer.py): NAME.jsonl (or NAME.parquet,
`--file-type parquet`, see filetypes.py),
NAME.rejects.jsonl (reason, message, the record's original JSON text), NAME.report.json, and the
NAME entry of dataset_info.json. An output that is also the input is refused before reading.
Everything one record or one CSV can cause becomes a rejection; only problems of the whole run
(arguments, an unreadable top-level JSON file, the output folder or disk) stop it.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tsplugin.jsonl import DEFAULT_MAX_RECORD_BYTES
from tsplugin.processing.encodable import DEFAULT_DTYPE
from tsplugin.processing.placeholders import (
    IMAGE,
    IMAGE_TOKEN,
    PLACEHOLDER,
    SYSTEM,
    PlaceholderError,
    has_ts_tokens,
    misplaced,
    move_to_user_turns,
)

from .csvread import check_value_cols
from .errors import InputError, RejectError
from .filetypes import data_file, open_sink
from .formats import get_output_format
from .jsonenc import dumps
from .jsonstream import RawRecord, compact_text, iter_raw_records
from .paths import (
    DEFAULT_PATTERN,
    check_dataset_name,
    check_pattern,
    pure_image_path,
    refuse_overwriting_inputs,
    resolve_csv,
)
from .records import Sample, parse_record
from .report import Report
from .series import SeriesOptions, SeriesResult, load_many
from .workers import start_pool
from .writer import OutputSet

# The records of the input, each with its source text (a module attribute so tests can watch it).
iter_records = iter_raw_records
# What a record's data can make JSON encoding or text handling raise (a lone surrogate, a huge int).
_DATA_ERRORS = (TypeError, ValueError, OverflowError, RecursionError, UnicodeError)

TS_PLACEHOLDER = PLACEHOLDER
MISPLACED_CHOICES = ("reject", "move")  # <image> outside user turns (tsplugin.processing.placeholders); cli.py lists them too


@dataclass
class ConvertOptions:
    """Everything `tsconvert convert` needs; see cli.py for the user-facing help."""

    input: Path
    csv_dir: Path
    out_dir: Path = Path(".")
    name: str | None = None
    output_format: str = "chatts"
    input_format: str = "auto"
    csv_pattern: str = DEFAULT_PATTERN
    series: SeriesOptions = field(default_factory=SeriesOptions)
    workers: int = 1
    progress: bool = False
    misplaced: str = "reject"
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
    file_type: str = "jsonl"  # filetypes.FILE_TYPES; the series storage is `series.storage` (filetypes.storage_for)


class _Slot:
    """One CSV job's place inside a batch; the future is set when the batch is submitted."""

    __slots__ = ("future", "i")

    def __init__(self) -> None:
        self.future: Future | None = None
        self.i = 0

    def done(self) -> bool:
        return self.future is not None and self.future.done()

    def result(self) -> SeriesResult | tuple[str, str]:
        if self.future is None:  # cannot happen: the batch is flushed before any wait
            raise RuntimeError("CSV job waited on before it was submitted")
        return self.future.result()[self.i]


class _Batcher:
    """Groups CSV jobs into one task per ``size`` files: a task's IPC costs about as much CPU as
    reading a small CSV, so batching keeps the workers on useful work."""

    def __init__(self, executor: Any, opts: SeriesOptions, size: int) -> None:
        self.executor, self.opts, self.size = executor, opts, size
        self.jobs: list[tuple[str, str, str]] = []
        self.slots: list[_Slot] = []

    def add(self, root: str, rel: str, shown: str) -> _Slot:
        slot = _Slot()
        self.jobs.append((root, rel, shown))
        self.slots.append(slot)
        if len(self.jobs) >= self.size:
            self.flush()
        return slot

    def flush(self) -> None:
        if not self.jobs:
            return
        fut = self.executor.submit(load_many, self.jobs, self.opts)
        for i, slot in enumerate(self.slots):
            slot.future, slot.i = fut, i
        self.jobs, self.slots = [], []


@dataclass
class _Pending:
    index: int
    record: RawRecord
    sample: Sample | None = None
    images: list[str] = field(default_factory=list)
    slots: list[_Slot] = field(default_factory=list)
    reject: tuple[str, str] | None = None
    moved: int = 0


class _Inline:
    """Executor stand-in for --workers 1: runs the job at submit time (no process start-up)."""

    def submit(self, fn: Callable, *args: Any) -> Future:
        fut: Future = Future()
        fut.set_result(fn(*args))
        return fut

    def shutdown(self, cancel_futures: bool = False) -> None:
        pass


def output_names(name: str, file_type: str = "jsonl") -> list[str]:
    """The files one conversion writes (dataset_info.json last)."""
    return [data_file(name, file_type), f"{name}.rejects.jsonl", f"{name}.report.json", "dataset_info.json"]


def convert(opts: ConvertOptions) -> Report:
    """Run one conversion and return its report (also written to NAME.report.json)."""
    name = opts.name if opts.name is not None else opts.input.stem
    check_dataset_name(name)
    check_pattern(opts.csv_pattern)
    check_value_cols(opts.series.value_cols)
    src = opts.input.name
    names = output_names(name, opts.file_type)
    refuse_overwriting_inputs([opts.out_dir / n for n in names], [opts.input])
    csv_dir = _csv_dir(opts.csv_dir)
    fmt = get_output_format(opts.output_format)
    report = Report(source=src, options=_options_for_report(opts))
    has_system = False

    records = iter_records(opts.input, opts.max_record_bytes)
    first = next(records, None)  # the input is opened and checked before the output folder is touched
    records = itertools.chain([] if first is None else [first], records)

    with OutputSet(opts.out_dir) as outputs:
        data, rej, rep = (outputs.open(n) for n in names[:3])
        out = open_sink(opts.file_type, data, fmt.columns, opts.series.storage)
        executor: Any = _Inline() if opts.workers == 1 else start_pool(opts.workers)
        batcher = _Batcher(executor, opts.series, size=1 if opts.workers == 1 else 8)
        window = max(8, opts.workers * 32)  # records in flight; bounds memory, must exceed the batch size
        bar = _progress(opts.progress)
        try:

            def finish(p: _Pending) -> None:
                nonlocal has_system
                report.input += 1
                line = _finish(p, fmt, report, opts.series)
                if isinstance(line[0], str):  # (reason code, message); converted records are (fields, series)
                    code, msg = line
                    report.rejected[code] += 1
                    rej.write(_reject_line(p, code, f"{src}: record {p.index}: {msg}."))
                else:
                    report.converted += 1
                    has_system = has_system or bool(p.sample and p.sample.system)
                    out.write(*line)  # type: ignore[arg-type]
                if bar is not None:
                    bar.update(1)

            pending: deque[_Pending] = deque()
            for index, record in enumerate(records):
                pending.append(_start(index, record, opts, csv_dir, batcher))
                while pending and (len(pending) > window or all(s.done() for s in pending[0].slots)):
                    batcher.flush()  # the head may wait on a job still in the open batch
                    finish(pending.popleft())
            batcher.flush()
            while pending:
                finish(pending.popleft())
            out.close()
        finally:
            executor.shutdown(cancel_futures=True)
            if bar is not None:
                bar.close()
        rep.write(_report_bytes(report))
        outputs.commit({name: fmt.entry(names[0], has_system)})
    return report


def _csv_dir(given: Path) -> Path:
    """--csv-dir resolved (links followed once, here), or InputError: missing, not a folder, a link loop."""
    try:
        csv_dir = given.resolve()
        is_dir = csv_dir.is_dir()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (Python < 3.13)
        raise InputError(f"--csv-dir {given}: cannot be resolved ({getattr(exc, 'strerror', None) or 'symlink loop'}). "
                         "Pass a real folder holding the CSV files") from None
    if not is_dir:
        raise InputError(f"--csv-dir {given}: not a directory. Pass the folder holding the CSV files")
    return csv_dir


def _reject_line(p: _Pending, code: str, message: str) -> bytes:
    """``{"index", "reason", "message", "record"}`` with the record's own JSON text (NaN literals,
    huge integers and escapes exactly as written; only whitespace between tokens is dropped)."""
    try:
        head = dumps({"index": p.index, "reason": code, "message": message})
    except _DATA_ERRORS:  # a message quoting a lone surrogate from the record
        head = json.dumps({"index": p.index, "reason": code, "message": message}, separators=(",", ":")).encode("utf-8")
    return head[:-1] + b',"record":' + compact_text(p.record.text).encode("utf-8", "surrogatepass") + b"}\n"


def _start(index: int, record: RawRecord, opts: ConvertOptions, csv_dir: Path, batcher: _Batcher) -> _Pending:
    """Parse the record, check placeholders, resolve CSV paths and submit the CSV jobs."""
    p = _Pending(index, record)
    if record.error is not None:
        p.reject = record.error
        return p
    try:
        sample = parse_record(record.value, opts.input_format)
        texts = [t for _, t in sample.turns] + [sample.system]
        if any(has_ts_tokens(t) for t in texts):
            raise RejectError("ts_token_in_text", "the text already contains <ts> or <ts/>. Remove them: tsconvert places one <ts><ts/> per series")
        n_ph = sum(IMAGE.count(t) for t in texts)
        n_img = len(sample.images)
        if n_ph != n_img:
            raise RejectError(
                "placeholder_mismatch",
                f"{n_ph} <image> placeholder{'s' if n_ph != 1 else ''} but {n_img} image{'s' if n_img != 1 else ''}. "
                "Fix the record so each image has one <image> in the text",
            )
        if opts.misplaced == "move":
            try:
                system, turns, p.moved = move_to_user_turns(sample.system, sample.turns, IMAGE)
            except PlaceholderError as err:
                raise RejectError(err.code, str(err)) from None
            sample = Sample(system, turns, sample.images)
        problem = misplaced([(SYSTEM, sample.system), *sample.turns], IMAGE, fix=" or pass --misplaced-placeholders move")
        if problem is not None:
            raise RejectError(problem.code, problem.message)
        p.sample = sample
        jobs = []
        for image in sample.images:
            path = resolve_csv(image, csv_dir, opts.csv_pattern)
            rel = path.relative_to(csv_dir).as_posix()
            jobs.append((str(csv_dir), rel, rel))
        p.images = sample.images
        p.slots = [batcher.add(*job) for job in jobs]
    except RejectError as err:
        p.reject = (err.reject.code, err.reject.message)
    except (*_DATA_ERRORS, KeyError, AttributeError) as exc:  # anything else this record's content caused
        p.reject = ("invalid_record", f"cannot be read ({type(exc).__name__}: {_short(exc)}). Fix the record")
    return p


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200].encode("utf-8", "backslashreplace").decode("utf-8")


def _finish(p: _Pending, fmt: Any, report: Report, sopts: SeriesOptions) -> tuple[dict[str, Any], list[Any]] | tuple[str, str]:
    """Collect the CSV jobs of one record: its (fields, encoded series) for the sink, or (code, message)."""
    if p.reject is not None:
        return p.reject
    if p.sample is None:  # cannot happen: _start sets one of sample/reject
        raise RuntimeError(f"record {p.index}: neither sample nor rejection")
    results: list[SeriesResult] = []
    for k, slot in enumerate(p.slots):
        res = slot.result()
        if isinstance(res, tuple):
            code, msg = res
            if code == "path_outside_csv_dir":  # about the record's image path, worded as before the check moved here
                return code, msg
            img = pure_image_path(p.images[k]).name
            return code, f"image {k + 1} of {len(p.slots)} ({img}): {msg}"
        results.append(res)
    try:
        fields = fmt.fields(_with_ts(p.sample, len(sopts.value_cols)))
        dumps(fields)  # text that cannot be written as UTF-8 JSON is a rejection here, whatever the file type
    except RejectError as err:
        return err.reject.code, err.reject.message
    except _DATA_ERRORS as exc:
        return "unencodable_text", (f"its text cannot be written as UTF-8 JSON ({_short(exc)}); a lone surrogate "
                                    "such as \\ud800 is the usual cause. Fix the text of the record")
    if p.moved:
        report.notes["placeholders_moved"] += p.moved
    if not results:
        report.notes["records_without_series"] += 1  # text-only record: kept, with "timeseries": []
    for res in results:
        report.repairs.update(res.repairs)
        report.notes.update(res.notes)
        for n in res.lengths:
            report.lengths.add(n)
    return fields, [e for res in results for e in res.encoded]


def _with_ts(sample: Sample, per_image: int) -> Sample:
    rep = TS_PLACEHOLDER * per_image
    return Sample(
        system=sample.system.replace(IMAGE_TOKEN, rep),
        turns=[(role, text.replace(IMAGE_TOKEN, rep)) for role, text in sample.turns],
        images=[],
    )


def _options_for_report(opts: ConvertOptions) -> dict[str, Any]:
    s = opts.series
    return {
        "format": opts.output_format,
        "input_format": opts.input_format,
        "csv_pattern": opts.csv_pattern,
        "value_cols": list(s.value_cols),
        "time_col": s.time_col,
        "missing": s.missing,
        "max_missing": s.max_missing,
        "unsorted": s.unsorted,
        "duplicates": s.duplicates,
        "min_length": s.min_length,
        "max_length": s.max_length,
        "downsample": s.downsample if s.max_length else None,
        **({"misplaced_placeholders": opts.misplaced} if opts.misplaced != "reject" else {}),
        **({"number_format": s.number_format} if s.number_format != "auto" else {}),
        **({"dtype": s.dtype} if s.dtype != DEFAULT_DTYPE else {}),
        **({"encoding": s.encoding} if s.encoding != "auto" else {}),
        **({"file_type": opts.file_type, "series_dtype": s.storage} if opts.file_type != "jsonl" else {}),
    }


def _report_bytes(report: Report) -> bytes:
    return (json.dumps(report.to_dict(), ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def _progress(enabled: bool) -> Any:
    if not enabled or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(unit="rec", file=sys.stderr, dynamic_ncols=True)


def default_workers() -> int:
    """The machine's cores (what the scheduler lets this process use)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1
