"""In-memory datasets: the series stay in Arrow from the JSON/Parquet load to the tokenised dataset.

LLaMA-Factory's data path turns every column into Python objects and back at each `datasets.map`: the format
conversion (`align_dataset`, one record at a time) and the tokeniser (`_get_preprocessed_dataset`). For text that
is cheap; a record's series is thousands of floats, and building them as Python floats and encoding them back into
Arrow cost 3-4x the tokenising itself (bench/data_scale.py, issue 19). So, for an in-memory dataset whose series
column the loader read as numbers (`list<list<int|float>>`):

- `align_series`: the converter runs without the series column; the loaded column is then joined back, unchanged,
  as `_audios` (`concatenate_datasets(axis=1)`: no copy, the cache file stays memory-mapped).
- `all_values_safe` / `placeholders_fit`: the check (`check_aligned`) first tests whole columns in Arrow (every value
  finite and in range; every record's placeholders in user turns, none stray, one per series); only when a test
  fails does it go record by record, to name the first bad one.
- `series_rows`: that per-record check reads each series as a float numpy view of the Arrow buffer; a series
  holding a null is read as a Python list, so the message names the null as before.
- `number_rows` / `SeriesStore` / `attach_series`: the tokeniser gets the dataset without `_audios` and with each
  record's row (`_ts_row`); TimeSeriesDatasetProcessor reads the series of its batch's rows from the store as numpy
  (the plugin writes each series' prefix from its values) and writes the row instead of the series; afterwards the
  `audios` column is taken from `_audios` by those rows in Arrow.
- `same_series_type`: datasets whose series columns differ in type are cast to float64 before the merge.

Anything else (streamed datasets, a column read in another shape, packing) keeps LLaMA-Factory's own path, whose
checks name the problem.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import numpy as np

from tsplugin.processing.placeholders import TS, TS_END_TOKEN, TS_TOKEN, USER

ROW_COLUMN = "_ts_row"  # the row of the dataset being tokenised that an output row came from


def numeric_series_type(arrow_type: Any) -> bool:
    """`list<list<int|float>>` (or large lists): a column of lists of numeric series, nothing else."""
    import pyarrow as pa

    for _ in range(2):
        if not (pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type)):
            return False
        arrow_type = arrow_type.value_type
    return pa.types.is_floating(arrow_type) or pa.types.is_integer(arrow_type)


def has_numeric_series(dataset: Any, column: str) -> bool:
    """An in-memory dataset whose `column` holds lists of numeric series in Arrow."""
    names = getattr(dataset, "column_names", None)
    if not isinstance(names, list) or column not in names or not hasattr(dataset, "data"):
        return False
    return numeric_series_type(dataset.data.schema.field(column).type)


def flat(dataset: Any) -> Any:
    """`dataset` without an indices mapping (a `select`/`shuffle` view), copied in Arrow, not through Python."""
    if getattr(dataset, "_indices", None) is None:
        return dataset
    fmt = dataset.format
    flattened = dataset.with_format("arrow").flatten_indices()
    return flattened.with_format(fmt["type"], columns=fmt["columns"], output_all_columns=fmt["output_all_columns"],
                                 **fmt["format_kwargs"])


def align_series(align: Callable[[Any], Any], dataset: Any, column: str, slot: str) -> Any:
    """`align(dataset)` (LLaMA-Factory's converter) without the series column, then the column joined back as `slot`."""
    from datasets import concatenate_datasets

    series = flat(dataset.select_columns([column])).rename_column(column, slot)
    aligned = align(dataset.remove_columns([column]))
    if slot in aligned.column_names:
        aligned = aligned.remove_columns([slot])
    return concatenate_datasets([flat(aligned), series], axis=1)


def _rebased(offsets: Any) -> np.ndarray:
    values = np.asarray(offsets, dtype=np.int64)
    return values - values[0]


def series_rows(dataset: Any, slot: str, batch_size: int = 1000) -> Iterator[list[Any] | None]:
    """Per row of `dataset`, its series (column `slot`, `numeric_series_type`) as float arrays (float32 or float64,
    as stored; whole numbers as float64), None for a null
    row; a series with a null value comes as a Python list (None at the null)."""
    for table in dataset.select_columns([slot]).with_format("arrow").iter(batch_size=batch_size):
        for chunk in table.column(0).chunks:
            yield from _chunk_rows(chunk)


def _chunk_rows(chunk: Any) -> Iterator[list[Any] | None]:
    outer = _rebased(chunk.offsets)
    valid = np.asarray(chunk.is_valid())
    inner_lists = chunk.flatten()  # one entry per series of the chunk's rows
    inner = _rebased(inner_lists.offsets)
    inner_valid = np.asarray(inner_lists.is_valid())
    leaf = inner_lists.flatten()
    nulls = np.asarray(leaf.is_null()) if leaf.null_count else None
    values = (leaf.fill_null(0) if leaf.null_count else leaf).to_numpy(zero_copy_only=False)
    if values.dtype.kind != "f":  # whole numbers: float64 (the checks read a float series without a Python pass)
        values = values.astype(np.float64)
    # float32 (a Parquet file) stays float32, a view of the Arrow buffer: each reader widens its series itself
    # (sp_stats, series_problem), as exactly; widening the whole chunk here cost a fresh copy of every value.
    for row in range(len(chunk)):
        if not valid[row]:
            yield None
            continue
        series: list[Any] = []
        for k in range(outer[row], outer[row + 1]):
            if not inner_valid[k]:
                series.append(None)
                continue
            start, end = inner[k], inner[k + 1]
            if nulls is not None and nulls[start:end].any():
                series.append(inner_lists[k].as_py())  # the null named as JSON null by the checks
            else:
                series.append(values[start:end])
        yield series


def all_values_safe(dataset: Any, slot: str, bound: float) -> bool:
    """Every series in column `slot` (`numeric_series_type`) is non-empty, without nulls, and its values are finite
    with |x| <= `bound`, checked over the whole column in two numpy passes; False says only that the per-record
    checks must look (they name the record). With a `select` view the whole table is looked at: a sufficient test."""
    for chunk in dataset.data.column(slot).chunks:
        series = chunk.flatten()  # one entry per series (a null record has none)
        if series.null_count or (len(series) and int(np.asarray(series.value_lengths()).min()) == 0):
            return False
        leaf = series.flatten()
        if leaf.null_count:
            return False
        values = leaf.to_numpy(zero_copy_only=False)
        if values.size and not float(np.abs(values).max()) <= bound:  # NaN and inf fail the comparison
            return False
    return True


def placeholders_fit(dataset: Any, slot: str, turn_columns: tuple[str, ...] = ("_prompt", "_response"),
                     system_column: str = "_system") -> bool:
    """No row can fail `placeholders.placeholder_problem` (no stray `<ts>` / `<ts/>`, placeholders in user turns only,
    one per series in column `slot`), checked over whole columns in Arrow; False says only that the per-record checks
    must look (they name the record). The turns are those `data._turns` reads: the system prompt (a string column), then
    the string contents of the messages (`list<struct<role, content>>` columns); a column of another type, a null
    message or a null role is left to the per-record checks. With a `select` view every row of the table is looked at."""
    import pyarrow as pa
    import pyarrow.compute as pc

    table = dataset.data
    names = set(table.column_names)
    if slot not in names or any(c not in names for c in turn_columns):
        return False
    pattern = TS.pattern.pattern

    def counts(texts: Any) -> np.ndarray | None:
        """Placeholders per text (0 for a null); None when any text holds a `<ts>` or `<ts/>` outside one."""
        rest = pc.replace_substring_regex(texts, pattern, "")
        if pc.any(pc.or_(pc.match_substring(rest, TS_TOKEN), pc.match_substring(rest, TS_END_TOKEN))).as_py():
            return None
        return np.asarray(pc.count_substring_regex(texts, pattern).fill_null(0), dtype=np.int64)

    rows = len(table)
    found = np.zeros(rows, dtype=np.int64)
    if system_column in names:
        system = table.column(system_column)
        if system.type != pa.string():
            return False
        in_system = counts(system)
        if in_system is None or in_system.any():  # a placeholder in the system prompt is misplaced
            return False
    for name in turn_columns:
        column = table.column(name)
        kind = column.type
        message = kind.value_type if pa.types.is_list(kind) else None
        if message is not None and pa.types.is_null(message) and not any(len(chunk.flatten()) for chunk in column.chunks):
            continue  # no row has a message here (the loader typed the empty lists as list<null>)
        if not (message is not None and pa.types.is_struct(message)
                and all(message.get_field_index(f) >= 0 and message.field(f).type == pa.string() for f in ("role", "content"))):
            return False
        start = 0
        for chunk in column.chunks:
            messages = chunk.flatten()  # the messages of the chunk's rows (a null row has none)
            if messages.null_count:
                return False
            role, content = messages.field("role"), messages.field("content")
            if role.null_count:
                return False
            per_message = counts(content)
            if per_message is None:
                return False
            user = np.asarray(pc.equal(role, USER), dtype=bool)
            if (per_message[~user] > 0).any():  # a placeholder in an answer (or any other non-user turn)
                return False
            parents = np.asarray(pc.list_parent_indices(chunk), dtype=np.int64)
            np.add.at(found, start + parents, per_message)
            start += len(chunk)
    series = table.column(slot)
    n_series = np.asarray(pc.list_value_length(series).fill_null(0), dtype=np.int64)
    return bool(np.array_equal(found, n_series))


def number_rows(dataset: Any) -> Any:
    """`dataset` (flattened) with `_ts_row` = 0..N-1."""
    dataset = flat(dataset)
    return dataset.add_column(ROW_COLUMN, np.arange(len(dataset), dtype=np.int64))


def attach_series(tokenised: Any, source: Any, slot: str, name: str = "audios") -> Any:
    """`tokenised` with column `name` = `source[slot]` at each row's `_ts_row`, and without `_ts_row`."""
    from datasets import concatenate_datasets

    if tokenised is None or ROW_COLUMN not in (tokenised.column_names or []):
        return tokenised
    rows = np.asarray(tokenised.with_format("arrow")[ROW_COLUMN].to_numpy(), dtype=np.int64)
    series = source.select_columns([slot]).rename_column(slot, name)
    if len(rows) != len(series) or not np.array_equal(rows, np.arange(len(series))):
        series = series.select(rows)
    tokenised = tokenised.remove_columns([c for c in (ROW_COLUMN, name) if c in tokenised.column_names])
    return concatenate_datasets([flat(tokenised), flat(series)], axis=1)


def same_series_type(datasets: dict[str, Any], slot: str) -> dict[str, Any]:
    """In-memory datasets whose series columns differ in type (a float32 Parquet file beside a JSONL file: float64;
    a file of whole numbers: int64) cast to float64, so that LLaMA-Factory can concatenate them. The cast runs in
    Arrow into the cache (`Dataset.cast`); the values are the same (float32 and int64 widen exactly, as Python's
    floats held them on the converter's path)."""
    import pyarrow as pa
    from datasets import List, Value

    typed = {name: d.data.schema.field(slot).type for name, d in datasets.items() if has_numeric_series(d, slot)}
    if len(set(map(str, typed.values()))) <= 1:
        return datasets
    wide = pa.list_(pa.list_(pa.float64()))
    out = dict(datasets)
    for name, arrow_type in typed.items():
        if arrow_type != wide:
            features = out[name].features.copy()
            features[slot] = List(List(Value("float64")))
            out[name] = out[name].cast(features)
    return out


class SeriesStore:
    """The series column of the dataset being tokenised, read by row as numpy views (`_chunk_rows`): the tokeniser
    reads `_audios` from here instead of from its batch, which `datasets` would build as Python floats. Picklable
    (the column of a cached dataset pickles as its file path) for `preprocessing_num_workers`."""

    def __init__(self, dataset: Any, slot: str) -> None:
        self.series = dataset.select_columns([slot]).with_format("arrow")

    def rows(self, rows: list[int]) -> list[list[Any] | None]:
        first = int(rows[0]) if len(rows) else 0
        if list(rows) == list(range(first, first + len(rows))):  # map batches are contiguous: a zero-copy slice
            table = self.series[first : first + len(rows)]
        else:
            table = self.series[list(rows)]
        return [row for chunk in table.column(0).chunks for row in _chunk_rows(chunk)]
