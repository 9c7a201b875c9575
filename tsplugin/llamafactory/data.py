"""Dataset-side pieces: carry the `timeseries` column through LLaMA-Factory's data pipeline.

- `TimeSeriesConverter` wraps LLaMA-Factory's format converter (alpaca / sharegpt / openai) and puts
  the record's series into the `_audios` slot, which the processors and collator pass through.
- `check_aligned` verifies every record with the shared definitions (tsplugin.placeholders: placeholders
  only in user turns, none stray, one per series; tsplugin.series_values: numbers only, finite, encodable
  as tsconvert checks at conversion) and fails naming the dataset and the record index: never a silent drop.
- `TimeSeriesDatasetProcessor` wraps the tokenising processor and drops records whose series were
  cut by `cutoff_len`, with one warning per batch that counts them: a half series would silently
  misalign patches and placeholders.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from tsplugin.placeholders import SYSTEM, placeholder_problem
from tsplugin.series_values import TRAINING_CHECK_DTYPE, series_problem, show_value

logger = logging.getLogger("tsplugin")

SERIES_SLOT = "_audios"


class TimeSeriesDataError(ValueError):
    """A record that cannot train; the message names the dataset file, the record and the fix."""


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


def _turns(row: dict[str, Any]) -> list[tuple[str, str]]:
    """(role, text) of an aligned row in conversation order, the system prompt first."""
    messages = (row.get("_prompt") or []) + (row.get("_response") or [])
    turns = [(SYSTEM, row["_system"])] if isinstance(row.get("_system"), str) and row["_system"] else []
    return turns + [(str(m.get("role")), m["content"]) for m in messages if isinstance(m.get("content"), str)]


def check_series(series: Any, where: str, dtype: str = TRAINING_CHECK_DTYPE) -> None:
    """Raise a ValueError naming `where` unless `series` can train in `dtype` (tsplugin.series_values)."""
    problem = series_problem(series, dtype)
    if problem is not None:
        raise TimeSeriesDataError(f"{where}: {problem.message}.")


def first_bad_record(paths: list[str], column: str, dtype: str = TRAINING_CHECK_DTYPE) -> str | None:
    """The first record of local JSON/JSONL `paths` that a loader cannot read as a time-series row
    (not UTF-8, not JSON, a series holding a string, null or an unencodable number), as a message
    naming file, record and fix; None when every record reads."""
    from tsplugin.jsonl import FileEncodingError, read_any

    for path in paths:
        if not str(path).endswith((".json", ".jsonl")):
            continue
        try:
            for line in read_any(path):
                where = f"{path}: record {line.index}" + (f" (line {line.lineno})" if line.lineno else "")
                if not line.ok:
                    return f"{where}: {line.message}."
                series = line.record.get(column) if isinstance(line.record, dict) else None
                for k, values in enumerate(series if isinstance(series, list) else []):
                    problem = series_problem(values, dtype)
                    if problem is not None:
                        return f"{where}: series {k}: {problem.message}."
        except FileEncodingError as err:
            return f"{err}."
        except OSError:
            continue
    return None


def check_aligned(dataset: Any, dataset_name: str, column: str, dtype: str = TRAINING_CHECK_DTYPE) -> None:
    """Validate an aligned (converted) dataset; errors name the dataset file and record index."""
    if not hasattr(dataset, "select_columns") or not hasattr(dataset, "__len__"):
        return  # streaming: the plugin checks each record when it is processed
    names = [c for c in ("_prompt", "_response", "_system", SERIES_SLOT) if c in dataset.column_names]
    rows = dataset.select_columns(names)
    for index, row in enumerate(rows):
        series = row[SERIES_SLOT] or []
        for k, values in enumerate(series):
            if not isinstance(values, (list, tuple)):
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
        for k, values in enumerate(series):
            check_series(values, f"{dataset_name}: record {index}: series {k}", dtype)


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
