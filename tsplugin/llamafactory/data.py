"""Dataset-side pieces: carry the `timeseries` column through LLaMA-Factory's data pipeline.

- `TimeSeriesConverter` wraps LLaMA-Factory's format converter (alpaca / sharegpt / openai) and puts
  the record's series into the `_audios` slot, which the processors and collator pass through; with a
  `forecast_target` column, each target (`{"series": k, "name": ..., "values": [...]}`) rides in the
  `_videos` slot as one JSON string (a time-series template takes no video), the same path to the
  collator, where the plugin turns it into `forecast_target` tensors for a Time-LLM forecaster.
- `check_aligned` verifies every record (placeholders == series, numbers only, finite) and fails
  naming the dataset and the record index: a mismatch is never a silent drop.
- `TimeSeriesDatasetProcessor` wraps the tokenising processor and drops records whose series were
  cut by `cutoff_len`, with one warning per batch that counts them: a half series would silently
  misalign patches and placeholders.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from tsplugin.series import count_placeholders

logger = logging.getLogger("tsplugin")

SERIES_SLOT = "_audios"
TARGET_SLOT = "_videos"


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
        raise ValueError(f"{where}: {target!r:.80} is not a forecast target; {fix}")
    k = target.get("series")
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < n_series:
        raise ValueError(f"{where}: series index {k!r} does not name one of the record's {n_series} series; {fix}")
    if not isinstance(target.get("name"), str):
        raise ValueError(f"{where}: name {target.get('name')!r} is not a string; {fix}")
    check_series(target.get("values"), f"{where}: values")
    return len(target["values"])


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


def check_aligned(dataset: Any, dataset_name: str, column: str, target_column: str | None = None) -> None:
    """Validate an aligned (converted) dataset; errors name the dataset file and record index."""
    if not hasattr(dataset, "select_columns") or not hasattr(dataset, "__len__"):
        return  # streaming: the plugin checks each record when it is processed
    rows = dataset.select_columns(["_prompt", "_response", SERIES_SLOT] + ([TARGET_SLOT] if target_column else []))
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
        if target_column is not None:
            targets = row[TARGET_SLOT] or []
            lengths = {check_target(decode_target(t), len(series), f"{dataset_name}: record {index}: column "
                                    f"'{target_column}' entry {j}") for j, t in enumerate(targets)}
            if len(lengths) > 1:
                raise ValueError(f"{dataset_name}: record {index}: forecast targets of different lengths {sorted(lengths)}; "
                                 "every target of a record covers the same horizon (--pred-len)")


@dataclass
class TimeSeriesDatasetProcessor:
    """Wraps a LLaMA-Factory DatasetProcessor; drops records whose series `cutoff_len` cut."""

    inner: Any
    plugin: Any

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("inner", "plugin"):  # unpickling: fields not set yet
            raise AttributeError(name)
        return getattr(self.inner, name)

    def preprocess_dataset(self, examples: dict[str, list[Any]]) -> dict[str, list[Any]]:
        outputs = self.inner.preprocess_dataset(examples)
        if "audios" not in outputs or not outputs["audios"]:
            return outputs
        ts_id = self.inner.tokenizer.convert_tokens_to_ids(self.plugin.ts_token)
        id_keys = [key for key in outputs if key.endswith("input_ids")]
        keep: list[int] = []
        for row, series in enumerate(outputs["audios"]):
            need = self.plugin.expected_positions(series or [], self.inner.processor)
            if all(outputs[key][row].count(ts_id) == need for key in id_keys):
                keep.append(row)
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
