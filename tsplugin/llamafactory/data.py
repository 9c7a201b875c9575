"""Dataset-side pieces: carry the `timeseries` column through LLaMA-Factory's data pipeline.

- `TimeSeriesConverter` wraps LLaMA-Factory's format converter (alpaca / sharegpt / openai) and puts
  the record's series into the `_audios` slot, which the processors and collator pass through; with a
  `forecast_target` column, each target (`{"series": k, "name": ..., "values": [...]}`) rides in the
  `_videos` slot as one JSON string (a time-series template takes no video), the same path to the
  collator, where the plugin turns it into `forecast_target` tensors for a Time-LLM forecaster.
- `check_aligned` verifies every record with the shared definitions (tsplugin.processing.placeholders: placeholders
  only in user turns, none stray, one per series; tsplugin.processing.series_values: numbers only, finite, encodable
  as tsconvert checks at conversion) and its forecast targets, and fails naming the dataset and the
  record index: never a silent drop.
- `TimeSeriesDatasetProcessor` wraps the tokenising processor and drops records whose series were
  cut by `cutoff_len` (a half series would silently misalign patches and placeholders); `cutoff_len`
  counts every expanded `<ts>` position. `timeseries_cutoff_mode: chatts_training` instead reproduces
  ChatTS-Training's selection (2 tokens per series on unexpanded ids; a record with series that is cut
  is dropped; kept records are never cut, their patches come on top of cutoff_len).
- `report_and_filter` prints per dataset how many records were kept and dropped, and why.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from contextlib import closing
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from tsplugin.jsonl import FileEncodingError, read_any
from tsplugin.llamafactory.arrow_series import (ROW_COLUMN, all_values_safe, has_numeric_series, placeholders_fit,
                                                series_rows)
from tsplugin.processing.encodable import safe_magnitude
from tsplugin.processing.placeholders import SYSTEM, count_placeholders, placeholder_problem
from tsplugin.processing.series_values import TRAINING_CHECK_DTYPE, series_problem, show_value
from tsplugin.userfiles import UserFileError, check_regular

logger = logging.getLogger("tsplugin")

SERIES_SLOT = "_audios"
TARGET_SLOT = "_videos"


class TimeSeriesDataError(ValueError):
    """A record that cannot train; the message names the dataset file, the record and the fix."""


@dataclass
class TimeSeriesConverter:
    """Callable used by `datasets.map`: the stock converter plus the series column."""

    inner: Any
    column: str
    target_column: str | None = None

    def __call__(self, example: dict[str, Any]) -> dict[str, Any]:
        output = self.inner(example)
        series = example.get(self.column)
        output[SERIES_SLOT] = list(series) if series else None
        if self.target_column is not None:
            targets = example.get(self.target_column)
            output[TARGET_SLOT] = [encode_target(t) for t in targets] if targets else None
        return output


def encode_target(target: Any) -> str:
    """One forecast target as the JSON string the `_videos` slot carries (checked in `check_aligned`)."""
    if isinstance(target, dict):
        target = {"series": target.get("series"), "name": target.get("name"), "values": target.get("values")}
    return json.dumps(target)


def decode_target(text: str) -> dict[str, Any]:
    """Inverse of `encode_target`."""
    return json.loads(text)


def check_target(target: Any, n_series: int, where: str) -> int:
    """Raise naming `where` unless `target` is {"series": k < n_series, "name": str, "values": finite numbers};
    returns its length."""
    fix = ('each forecast target is {"series": INDEX INTO timeseries, "name": "VARIABLE", "values": [numbers]} '
           "(`tsconvert forecast` writes them)")
    if not isinstance(target, dict):
        raise TimeSeriesDataError(f"{where}: {target!r:.80} is not a forecast target; {fix}")
    k = target.get("series")
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < n_series:
        raise TimeSeriesDataError(f"{where}: series index {k!r} does not name one of the record's {n_series} series; {fix}")
    if not isinstance(target.get("name"), str):
        raise TimeSeriesDataError(f"{where}: name {target.get('name')!r} is not a string; {fix}")
    check_series(target.get("values"), f"{where}: values")
    return len(target["values"])


def _turns(row: dict[str, Any]) -> list[tuple[str, str]]:
    """(role, text) of an aligned row in conversation order, the system prompt first."""
    messages = (row.get("_prompt") or []) + (row.get("_response") or [])
    turns = [(SYSTEM, row["_system"])] if isinstance(row.get("_system"), str) and row["_system"] else []
    return turns + [(str(m.get("role")), m["content"]) for m in messages if isinstance(m.get("content"), str)]


def check_series(series: Any, where: str, dtype: str = TRAINING_CHECK_DTYPE) -> None:
    """Raise a ValueError naming `where` unless `series` can train in `dtype` (tsplugin.processing.series_values)."""
    problem = series_problem(series, dtype)
    if problem is not None:
        raise TimeSeriesDataError(f"{where}: {problem.message}.")


def check_dataset_files(local: str) -> list[str]:
    """The files LLaMA-Factory will read for a local dataset (the file, or every file of the folder), each
    checked to be a regular file without opening it for reading (`tsplugin.userfiles`): a FIFO would hang
    the loader, a device like /dev/zero would read until memory runs out. TimeSeriesDataError names the
    file; a path that does not exist is left to LLaMA-Factory's own message."""
    if os.path.isdir(local):
        paths = [os.path.join(local, name) for name in sorted(os.listdir(local))]
    elif os.path.lexists(local):
        paths = [local]
    else:
        return []
    for path in paths:
        try:
            check_regular(path, "dataset file")
        except UserFileError as err:
            raise TimeSeriesDataError(f"{err}; LLaMA-Factory reads dataset files whole (dataset_info.json names it)") from None
    return paths


def first_bad_record(paths: list[str], column: str, dtype: str = TRAINING_CHECK_DTYPE) -> str | None:
    """The first record of local JSON/JSONL `paths` that a loader cannot read as a time-series row
    (an empty file, not UTF-8, not JSON, a `column` that is not a list of series, a series holding a
    string, null or an unencodable number), as a message naming file, record and fix; None when every
    record reads."""

    for path in paths:
        if not str(path).endswith((".json", ".jsonl")):
            continue
        try:
            if os.path.getsize(path) == 0:
                return (f"{path}: the file is empty (0 bytes): no records to train on. Convert the data again "
                        "(tsconvert) or remove the dataset from the recipe.")
            records = 0
            for line in read_any(path):
                records += 1
                where = f"{path}: record {line.index}" + (f" (line {line.lineno})" if line.lineno else "")
                if not line.ok:
                    return f"{where}: {line.message}."
                series = line.record.get(column) if isinstance(line.record, dict) else None
                if series is not None and not isinstance(series, list):
                    kind = {dict: "an object {...}", str: "a string"}.get(type(series), type(series).__name__)
                    return (f"{where}: column '{column}' is {kind}, not a list of series (lists of numbers). Write "
                            f'"{column}": [[1.0, 2.0, ...], ...], one list per <ts><ts/>, as tsconvert does.')
                for k, values in enumerate(series if isinstance(series, list) else []):
                    problem = series_problem(values, dtype)
                    if problem is not None:
                        return f"{where}: series {k}: {problem.message}."
            if records == 0:
                return f"{path}: no records (only blank lines): nothing to train on. Convert the data again (tsconvert)."
        except FileEncodingError as err:
            return f"{err}."
        except OSError:
            continue
    return None


def name_read_errors(dataset: Any, paths: list[str], column: str, load: Callable[..., Any]) -> Any:
    """A stream of local time-series files whose read errors name the file and record (`first_bad_record`), as the
    in-memory load does: `datasets` reads a stream lazily, so a bad line fails while training reads it. One shard per
    file, as `dataset` (made by `load(data_files=paths)`) has: each shard streams its own files through `load`
    (picklable, for dataloader workers), so every record comes once and an error names a file of that shard."""
    from datasets import IterableDataset

    return IterableDataset.from_generator(_named_read_errors, features=dataset.features,
                                          gen_kwargs={"paths": list(paths), "column": column, "load": load})


def _named_read_errors(paths: list[str], column: str, load: Callable[..., Any]) -> Any:
    try:
        yield from load(data_files=paths)
    except Exception as err:
        named = loader_error(paths, column, err)
        if named is None:
            raise
        raise named from None


def loader_error(paths: list[str], column: str, err: BaseException) -> TimeSeriesDataError | None:
    """The error to raise when `datasets` failed to read time-series files: the first bad record (file, record,
    fix) plus what the loader said; None when no record explains it (the loader's own error stands)."""
    found = first_bad_record(paths, column)
    if found is None:
        return None
    return TimeSeriesDataError(f"{found} (The JSON loader failed with: {type(err).__name__}: {str(err)[:200]})")


def is_streaming(dataset: Any) -> bool:
    """An IterableDataset (`streaming: true`): no length, no column names before it is read."""
    return not hasattr(dataset, "__len__") or getattr(dataset, "column_names", None) is None


def check_aligned(dataset: Any, dataset_name: str, column: str, target_column: str | None = None,
                  dtype: str = TRAINING_CHECK_DTYPE) -> Any:
    """Validate an aligned (converted) dataset; errors name the dataset file and record index. Returns the
    dataset: in memory every record is checked now; streaming, each record is checked as it is read
    (the same checks, the record's index in the stream)."""
    if is_streaming(dataset):
        return dataset.map(AlignedCheck(dataset_name, column, target_column, dtype), with_indices=True)
    names = [c for c in ("_prompt", "_response", "_system", SERIES_SLOT) if c in dataset.column_names]
    names += [TARGET_SLOT] if target_column else []
    if has_numeric_series(dataset, SERIES_SLOT):  # the series as numpy views of the Arrow buffers, not Python floats
        values_safe = all_values_safe(dataset, SERIES_SLOT, safe_magnitude(dtype))  # then no series' values can fail
        if values_safe and target_column is None and placeholders_fit(dataset, SERIES_SLOT):
            return dataset  # nothing check_row looks at can fail (the series are lists of numbers: the column's type)
        texts = [n for n in names if n != SERIES_SLOT]
        rows = (dict(zip(texts, values)) for batch in dataset.select_columns(texts).iter(batch_size=1000)
                for values in zip(*(batch[n] for n in texts)))
        for index, (row, series) in enumerate(zip(rows, series_rows(dataset, SERIES_SLOT))):
            check_row({**row, SERIES_SLOT: series}, index, dataset_name, column, target_column, dtype, values_safe)
        return dataset
    for index, row in enumerate(dataset.select_columns(names)):
        check_row(row, index, dataset_name, column, target_column, dtype)
    return dataset


@dataclass
class AlignedCheck:
    """`check_row` as an `IterableDataset.map` function (picklable for dataloader workers); changes nothing."""

    dataset_name: str
    column: str
    target_column: str | None
    dtype: str

    def __call__(self, row: dict[str, Any], index: int) -> dict[str, Any]:
        check_row(row, index, self.dataset_name, self.column, self.target_column, self.dtype)
        return {}


def check_row(row: dict[str, Any], index: int, dataset_name: str, column: str, target_column: str | None = None,
              dtype: str = TRAINING_CHECK_DTYPE, values_safe: bool = False) -> None:
    """Raise TimeSeriesDataError naming the dataset and record `index` unless the aligned row can train
    (`values_safe`: the series' values are known good, `arrow_series.all_values_safe`; the rest is still checked)."""
    series = row.get(SERIES_SLOT) or []
    for k, values in enumerate(series):
        if not isinstance(values, (list, tuple, np.ndarray)):
            raise TimeSeriesDataError(
                f"{dataset_name}: record {index}: column '{column}' must be a list of series (lists of numbers), "
                f"but its element {k} is {show_value(values)}. If the file does hold lists there, the JSON loader "
                "(datasets) read the column in another shape because some series holds true/false or a number "
                "beyond float64: `tsconvert validate FILE` names those records."
            )
    problem = placeholder_problem(_turns(row), len(series), what=f"series in column '{column}'")
    if problem is not None:
        raise TimeSeriesDataError(
            f"{dataset_name}: record {index}: {problem.message} (`tsconvert validate FILE` lists every such record)."
        )
    for k, values in enumerate(series if not values_safe else ()):
        check_series(values, f"{dataset_name}: record {index}: series {k}", dtype)
    if target_column is not None:
        targets = row.get(TARGET_SLOT) or []
        lengths = {check_target(decode_target(t), len(series), f"{dataset_name}: record {index}: column "
                                f"'{target_column}' entry {j}") for j, t in enumerate(targets)}
        if len(lengths) > 1:
            raise TimeSeriesDataError(f"{dataset_name}: record {index}: forecast targets of different lengths {sorted(lengths)}; "
                             "every target of a record covers the same horizon (--pred-len)")


# Columns the plugin adds while a dataset is preprocessed (removed again before training).
SOURCE_COLUMN = "_ts_source"  # the dataset_info.json name a record came from
DROP_COLUMN = "_ts_drop"  # why a record is dropped ("" = kept)

DROP_CUT = "cut"
DROP_CHATTS_TRAINING = "chatts_training"


def drop_reason_text(reason: str, cutoff_len: int) -> str:
    if reason == DROP_CUT:
        return f"cutoff_len={cutoff_len} cut through a series"
    if reason == DROP_CHATTS_TRAINING:
        return (
            f"longer than cutoff_len={cutoff_len} counting 2 tokens per series, ChatTS-Training's rule "
            "(timeseries_cutoff_mode: chatts_training)"
        )
    return "invalid for LLaMA-Factory (see its 'Dropped invalid example' warnings)"


def infer_seqlen(source_len: int, target_len: int, cutoff_len: int) -> tuple[int, int]:
    """LLaMA-Factory's truncation of one turn (llamafactory.data.processor.processor_utils.infer_seqlen)."""
    from llamafactory.data.processor.processor_utils import infer_seqlen as lf_infer_seqlen

    return lf_infer_seqlen(source_len, target_len, cutoff_len)


def chatts_training_keeps(turns: list[tuple[int, int, bool]], cutoff_len: int, efficient_eos: bool = False) -> bool:
    """ChatTS-Training's selection: `turns` = (source length, target length, series in the turn?) on
    unexpanded ids (2 tokens per series); a record is dropped when a turn with series is truncated."""
    total = 1 if efficient_eos else 0
    for source_len, target_len, has_series in turns:
        if total >= cutoff_len:
            break  # LLaMA-Factory stops adding turns; ChatTS-Training does the same
        new_source, new_target = infer_seqlen(source_len, target_len, cutoff_len - total)
        if has_series and (new_source < source_len or new_target < target_len):
            return False
        total += new_source + new_target
    return True


@dataclass
class TimeSeriesDatasetProcessor:
    """Wraps a LLaMA-Factory DatasetProcessor; marks records whose series `cutoff_len` cuts.

    With the `_ts_source` column (added by the `_get_merged_dataset` hook) records are processed one by
    one and every output row says why it is dropped (`_ts_drop`); `report_and_filter` counts per dataset,
    logs and removes them. Without it (streaming, packing) rows are dropped per batch with a warning.
    """

    inner: Any
    plugin: Any
    series: Any = None  # in memory: a SeriesStore; the batch then has `_ts_row` instead of `_audios`

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("inner", "plugin", "series"):  # unpickling: fields not set yet
            raise AttributeError(name)
        return getattr(self.inner, name)

    @property
    def cutoff_mode(self) -> str:
        return getattr(self.inner.data_args, "timeseries_cutoff_mode", "expanded")

    def preprocess_dataset(self, examples: dict[str, list[Any]]) -> dict[str, list[Any]]:
        sources = examples.get(SOURCE_COLUMN)
        if sources is None or getattr(self.inner.data_args, "packing", False):
            return self._preprocess_batch(examples)
        rows = examples.get(ROW_COLUMN)  # in memory: the series are joined back by row afterwards (arrow_series)
        if rows is not None and SERIES_SLOT not in examples and self.series is not None:
            examples = {**examples, SERIES_SLOT: self.series.rows(rows)}
        outputs: dict[str, list[Any]] = {}
        for i in range(len(sources)):
            row = {key: values[i : i + 1] for key, values in examples.items() if key not in (SOURCE_COLUMN, ROW_COLUMN)}
            out, reason = self._preprocess_one(row)
            if not out or not next(iter(out.values()), []):
                continue  # LLaMA-Factory dropped it as invalid (counted from the source column later)
            if rows is not None:
                out = {key: values for key, values in out.items() if key != "audios"} | {ROW_COLUMN: [rows[i]]}
            if not outputs:
                outputs = {key: [] for key in out} | {SOURCE_COLUMN: [], DROP_COLUMN: []}
            for key, values in out.items():
                outputs[key].extend(values)
            outputs[SOURCE_COLUMN].append(sources[i])
            outputs[DROP_COLUMN].append(reason)
        return outputs

    def _positions_ok(self, out: dict[str, list[Any]], row: int) -> bool:
        ts_id = self.__dict__.get("_ts_id")
        if ts_id is None:  # once per processor (the tokenizer's lookup cost a few µs per record)
            ts_id = self.__dict__["_ts_id"] = self.inner.tokenizer.convert_tokens_to_ids(self.plugin.ts_token)
        need = self.plugin.expected_positions(out["audios"][row] or [], self.inner.processor)
        return all(out[key][row].count(ts_id) == need for key in out if key.endswith("input_ids"))

    def _preprocess_one(self, row: dict[str, list[Any]]) -> tuple[dict[str, list[Any]], str]:
        series = (row.get(SERIES_SLOT) or [None])[0] or []
        if self.cutoff_mode == "chatts_training" and series:
            keep, extra = self._chatts_training_decision(row, series)
            data_args = self.inner.data_args
            cutoff = data_args.cutoff_len
            data_args.cutoff_len = cutoff + extra  # a kept record is never cut: its patches come on top
            try:
                out = self.inner.preprocess_dataset(row)
            finally:
                data_args.cutoff_len = cutoff
            return out, "" if keep else DROP_CHATTS_TRAINING
        out = self.inner.preprocess_dataset(row)
        if out and "audios" in out and out["audios"] and not self._positions_ok(out, 0):
            return out, DROP_CUT
        return out, ""

    def _chatts_training_decision(self, row: dict[str, list[Any]], series: list[Any]) -> tuple[bool, int]:
        """(keep?, expanded minus unexpanded length) as ChatTS-Training decides on unexpanded ids."""
        prompt, response = row["_prompt"][0], row["_response"][0]
        ts_processor = self.inner.processor
        extra = sum(ts_processor.num_patches(len(s)) for s in series) - 2 * len(series)
        if len(prompt) % 2 != 1 or len(response) != 1:
            return True, extra  # invalid: LLaMA-Factory drops it itself
        template, tokenizer = self.inner.template, self.inner.tokenizer
        messages = self.plugin.process_messages(prompt + response, [], [], series, ts_processor)
        pairs = template.encode_multiturn(tokenizer, messages, row["_system"][0], row["_tools"][0])
        ts_id = tokenizer.convert_tokens_to_ids(self.plugin.ts_token)
        originals = prompt + response
        turns = []
        for k, (source_ids, target_ids) in enumerate(pairs):
            n_source = count_placeholders(originals[2 * k]["content"])
            n_target = count_placeholders(originals[2 * k + 1]["content"])
            source_len = len(source_ids) - source_ids.count(ts_id) + 2 * n_source
            target_len = len(target_ids) - target_ids.count(ts_id) + 2 * n_target
            turns.append((source_len, target_len, n_source + n_target > 0))
        if getattr(self.inner.data_args, "mask_history", False):
            turns = turns[::-1]
        keep = chatts_training_keeps(turns, self.inner.data_args.cutoff_len, bool(template.efficient_eos))
        return keep, extra

    def _preprocess_batch(self, examples: dict[str, list[Any]]) -> dict[str, list[Any]]:
        examples = {key: values for key, values in examples.items() if key not in (SOURCE_COLUMN, ROW_COLUMN)}
        outputs = self.inner.preprocess_dataset(examples)
        if "audios" not in outputs or not outputs["audios"]:
            return outputs
        keep = [row for row in range(len(outputs["audios"])) if self._positions_ok(outputs, row)]
        dropped = len(outputs["audios"]) - len(keep)
        if dropped:
            logger.warning(
                "tsplugin: dropped %d of %d records in this batch because cutoff_len=%s cut through a "
                "series (its <ts> positions would no longer match its patches). Raise cutoff_len or "
                "shorten the series (`tsconvert --max-length`).",
                dropped,
                len(outputs["audios"]),
                self.inner.data_args.cutoff_len,
            )
            outputs = {key: [values[row] for row in keep] for key, values in outputs.items()}
        return outputs

    def print_data_example(self, example: dict[str, list[int]]) -> None:
        self.inner.print_data_example(example)


@dataclass
class _Tag:
    """Adds the `_ts_source` column to a streamed record (a picklable `IterableDataset.map` function)."""

    name: str

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        return {SOURCE_COLUMN: self.name}


def tag_sources(datasets: dict[str, Any]) -> dict[str, Any]:
    """Add the `_ts_source` column (the dataset's name) to every dataset, in memory or streamed."""
    tagged = {}
    for name, dataset in datasets.items():
        if is_streaming(dataset):
            dataset = dataset.map(_Tag(name))
        elif SOURCE_COLUMN not in dataset.column_names:
            dataset = dataset.add_column(SOURCE_COLUMN, [name] * len(dataset))
        tagged[name] = dataset
    return tagged


def count_line(label: str, source: str, kept: int, total: int, reasons: Counter, cutoff_len: int, seen: bool = False) -> str:
    """One dataset's kept/dropped line (`seen`: a streamed dataset's counts so far)."""
    line = f"tsplugin: {label} {source}: kept {kept} of {total} records" + (" seen so far" if seen else "")
    if reasons:
        why = "; ".join(f"{n} {drop_reason_text(r, cutoff_len)}" for r, n in sorted(reasons.items()))
        line += f", dropped {sum(reasons.values())} ({why})"
        if DROP_CUT in reasons or DROP_CHATTS_TRAINING in reasons:
            line += ". Raise cutoff_len or shorten the series (`tsconvert --max-length`)"
    return line + "."


def report_and_filter(before: Any, after: Any, cutoff_len: int, log: Callable[[str], None], label: str = "dataset") -> Any:
    """Log, per dataset, how many records were kept and dropped and why; return `after` without them.
    Streamed (`IterableDataset`), the counts are logged as records are read (`StreamingReport`)."""
    if after is None:
        return after
    if is_streaming(after):
        if SOURCE_COLUMN not in _first_columns(before):  # a streamed map's column_names may be None or stale
            return after
        report = StreamingReport(cutoff_len, label, log)
        return after.filter(report, with_indices=True, input_columns=[SOURCE_COLUMN, DROP_COLUMN]).remove_columns(
            [SOURCE_COLUMN, DROP_COLUMN])
    if DROP_COLUMN not in after.column_names:
        return after
    counts_in = Counter(_column(before, SOURCE_COLUMN)) if SOURCE_COLUMN in (getattr(before, "column_names", None) or []) else Counter()
    sources, reasons_of = _column(after, SOURCE_COLUMN), _column(after, DROP_COLUMN)
    kept: Counter = Counter()
    dropped: dict[str, Counter] = {}
    for source, reason in zip(sources, reasons_of):
        if reason:
            dropped.setdefault(source, Counter())[reason] += 1
        else:
            kept[source] += 1
    for source in counts_in:
        produced = kept[source] + sum(dropped.get(source, Counter()).values())
        if counts_in[source] > produced:
            dropped.setdefault(source, Counter())["invalid"] += counts_in[source] - produced
    for source in counts_in or sorted(set(kept) | set(dropped)):
        reasons = dropped.get(source, Counter())
        total = counts_in[source] if counts_in else kept[source] + sum(reasons.values())
        log(count_line(label, source, kept[source], total, reasons, cutoff_len))
    if any(reasons_of):
        after = after.filter(lambda reason: not reason, input_columns=[DROP_COLUMN])
    return after.remove_columns([SOURCE_COLUMN, DROP_COLUMN])


def _column(dataset: Any, name: str) -> list[Any]:
    """One column of an in-memory dataset as a Python list, converted in Arrow (not row by row)."""
    return dataset.with_format("arrow")[name].to_pylist()


def _first_columns(dataset: Any) -> list[str]:
    """Column names of a streamed dataset, read from its first record (what LLaMA-Factory itself does); the pass
    is closed at once, so the files it opened are too (not left to garbage collection)."""
    with closing(iter(dataset)) as records:
        return list(next(records, {}).keys())


class StreamingReport:
    """`IterableDataset.filter` function over (`_ts_source`, `_ts_drop`): keeps the records nobody dropped
    and logs each dataset's kept/dropped counts seen so far: at the first drop for each reason and whenever
    a dataset's count of records seen reaches a power of two (log2(N) lines for N records). A new pass
    over the stream (index 0 again) first logs the finished pass's counts, then starts from zero. Records
    LLaMA-Factory itself drops as invalid never reach this filter: its own warnings name them.
    With dataloader workers, each worker counts the records it reads."""

    def __init__(self, cutoff_len: int, label: str, log: Callable[[str], None]) -> None:
        self.cutoff_len, self.label, self.log = cutoff_len, label, log
        self.kept: Counter = Counter()
        self.dropped: dict[str, Counter] = {}

    def __getstate__(self) -> dict[str, Any]:  # dataloader workers: a fresh count, no logger pickled
        return {"cutoff_len": self.cutoff_len, "label": self.label}

    def __setstate__(self, state: dict[str, Any]) -> None:
        from llamafactory.extras import logging as lf_logging

        self.__init__(state["cutoff_len"], state["label"], lf_logging.get_logger("llamafactory.tsplugin").info)

    def seen(self, source: str) -> int:
        return self.kept[source] + sum(self.dropped.get(source, Counter()).values())

    def line(self, source: str) -> str:
        return count_line(self.label, source, self.kept[source], self.seen(source), self.dropped.get(source, Counter()),
                          self.cutoff_len, seen=True)

    def __call__(self, source: str, reason: str, index: int) -> bool:
        if index == 0 and (self.kept or self.dropped):
            for name in sorted(set(self.kept) | set(self.dropped)):
                self.log(self.line(name) + " (one full pass)")
            self.kept, self.dropped = Counter(), {}
        if reason:
            reasons = self.dropped.setdefault(source, Counter())
            reasons[reason] += 1
            first = reasons[reason] == 1
        else:
            self.kept[source] += 1
            first = False
        n = self.seen(source)
        if first or n & (n - 1) == 0:
            self.log(self.line(source))
        return not reason
