"""Dataset-side pieces: carry the `timeseries` column through LLaMA-Factory's data pipeline.

- `TimeSeriesConverter` wraps LLaMA-Factory's format converter (alpaca / sharegpt / openai) and puts
  the record's series into the `_audios` slot, which the processors and collator pass through.
- `check_aligned` verifies every record (placeholders == series, numbers only, finite) and fails
  naming the dataset and the record index: a mismatch is never a silent drop.
- `TimeSeriesDatasetProcessor` wraps the tokenising processor and drops records whose series were
  cut by `cutoff_len`, with one warning per batch that counts them: a half series would silently
  misalign patches and placeholders.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

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
