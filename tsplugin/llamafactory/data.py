"""Dataset-side pieces: carry the `timeseries` column through LLaMA-Factory's data pipeline.

- `TimeSeriesConverter` wraps LLaMA-Factory's format converter (alpaca / sharegpt / openai) and puts
  the record's series into the `_audios` slot, which the processors and collator pass through.
- `check_aligned` verifies every record (placeholders == series, numbers only, finite) and fails
  naming the dataset and the record index: a mismatch is never a silent drop.
- `TimeSeriesDatasetProcessor` wraps the tokenising processor and drops records whose series were
  cut by `cutoff_len` (a half series would silently misalign patches and placeholders); `cutoff_len`
  counts every expanded `<ts>` position. `timeseries_cutoff_mode: chatts_training` instead reproduces
  ChatTS-Training's selection (2 tokens per series on unexpanded ids; a record with series that is cut
  is dropped; kept records are never cut, their patches come on top of cutoff_len).
- `report_and_filter` prints per dataset how many records were kept and dropped, and why.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from tsplugin.series import count_placeholders

logger = logging.getLogger("tsplugin")

SERIES_SLOT = "_audios"


@dataclass
class TimeSeriesConverter:
    """Callable used by `datasets.map`: the stock converter plus the series column."""

    inner: Any
    column: str

    def __call__(self, example: dict[str, Any]) -> dict[str, Any]:
        output = self.inner(example)
        series = example.get(self.column)
        output[SERIES_SLOT] = list(series) if series else None
        return output


def _texts(row: dict[str, Any]) -> list[str]:
    messages = (row.get("_prompt") or []) + (row.get("_response") or [])
    return [m["content"] for m in messages if isinstance(m.get("content"), str)]


def check_series(series: Any, where: str) -> None:
    """Raise a ValueError naming `where` unless `series` is a non-empty list of finite numbers."""
    if not isinstance(series, (list, tuple)) or len(series) == 0:
        raise ValueError(f"{where}: a series must be a non-empty list of numbers, got {series!r:.80}.")
    try:  # fast path: one vectorised check; the loop below only runs to name the bad value
        values = np.asarray(series, dtype=np.float64)
        if values.ndim == 1 and np.isfinite(values).all() and not any(v is True or v is False for v in series):
            return
    except (TypeError, ValueError):
        pass
    for position, value in enumerate(series):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(
                f"{where}: value {position} is {value!r}, not a finite number. Clean the data "
                "(`tsconvert` repairs historian strings and NaN runs) and convert again."
            )


def check_aligned(dataset: Any, dataset_name: str, column: str) -> None:
    """Validate an aligned (converted) dataset; errors name the dataset file and record index."""
    if not hasattr(dataset, "select_columns") or not hasattr(dataset, "__len__"):
        return  # streaming: the plugin checks each record when it is processed
    rows = dataset.select_columns(["_prompt", "_response", SERIES_SLOT])
    for index, row in enumerate(rows):
        series = row[SERIES_SLOT] or []
        found = sum(count_placeholders(text) for text in _texts(row))
        if found != len(series):
            raise ValueError(
                f"{dataset_name}: record {index}: {found} <ts><ts/> placeholders but {len(series)} series "
                f"in column '{column}'. Each series needs exactly one placeholder, in order: fix the "
                "record (`tsconvert validate FILE` lists every such record)."
            )
        for k, values in enumerate(series):
            check_series(values, f"{dataset_name}: record {index}: series {k}")


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

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("inner", "plugin"):  # unpickling: fields not set yet
            raise AttributeError(name)
        return getattr(self.inner, name)

    @property
    def cutoff_mode(self) -> str:
        return getattr(self.inner.data_args, "timeseries_cutoff_mode", "expanded")

    def preprocess_dataset(self, examples: dict[str, list[Any]]) -> dict[str, list[Any]]:
        sources = examples.get(SOURCE_COLUMN)
        if sources is None or getattr(self.inner.data_args, "packing", False):
            return self._preprocess_batch(examples)
        outputs: dict[str, list[Any]] = {}
        for i in range(len(sources)):
            row = {key: values[i : i + 1] for key, values in examples.items() if key != SOURCE_COLUMN}
            out, reason = self._preprocess_one(row)
            if not out or not next(iter(out.values()), []):
                continue  # LLaMA-Factory dropped it as invalid (counted from the source column later)
            if not outputs:
                outputs = {key: [] for key in out} | {SOURCE_COLUMN: [], DROP_COLUMN: []}
            for key, values in out.items():
                outputs[key].extend(values)
            outputs[SOURCE_COLUMN].append(sources[i])
            outputs[DROP_COLUMN].append(reason)
        return outputs

    def _positions_ok(self, out: dict[str, list[Any]], row: int) -> bool:
        ts_id = self.inner.tokenizer.convert_tokens_to_ids(self.plugin.ts_token)
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
        examples = {key: values for key, values in examples.items() if key != SOURCE_COLUMN}
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


def tag_sources(datasets: dict[str, Any]) -> dict[str, Any]:
    """Add the `_ts_source` column (the dataset's name) to every in-memory dataset."""
    tagged = {}
    for name, dataset in datasets.items():
        if hasattr(dataset, "add_column") and hasattr(dataset, "__len__") and SOURCE_COLUMN not in dataset.column_names:
            dataset = dataset.add_column(SOURCE_COLUMN, [name] * len(dataset))
        tagged[name] = dataset
    return tagged


def report_and_filter(before: Any, after: Any, cutoff_len: int, log: Callable[[str], None], label: str = "dataset") -> Any:
    """Log, per dataset, how many records were kept and dropped and why; return `after` without them."""
    if after is None or not hasattr(after, "column_names") or DROP_COLUMN not in after.column_names:
        return after
    counts_in = Counter(before[SOURCE_COLUMN]) if SOURCE_COLUMN in getattr(before, "column_names", []) else Counter()
    marks = after.select_columns([SOURCE_COLUMN, DROP_COLUMN])
    kept: Counter = Counter()
    dropped: dict[str, Counter] = {}
    for source, reason in zip(marks[SOURCE_COLUMN], marks[DROP_COLUMN]):
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
        line = f"tsplugin: {label} {source}: kept {kept[source]} of {total} records"
        if reasons:
            why = "; ".join(f"{n} {drop_reason_text(r, cutoff_len)}" for r, n in sorted(reasons.items()))
            line += f", dropped {sum(reasons.values())} ({why})"
            if DROP_CUT in reasons or DROP_CHATTS_TRAINING in reasons:
                line += ". Raise cutoff_len or shorten the series (`tsconvert --max-length`)"
        log(line + ".")
    if any(marks[DROP_COLUMN]):
        after = after.filter(lambda reason: not reason, input_columns=[DROP_COLUMN])
    return after.remove_columns([SOURCE_COLUMN, DROP_COLUMN])
