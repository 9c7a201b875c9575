"""Output file types: how converted records become the data file LLaMA-Factory reads (`--file-type`).

- ``jsonl``: one JSON line per record; each series is written as the shortest text that reads back as
  the same float64 (`jsonenc.dumps_series`).
- ``parquet``: the same fields as columns, the series as ``list<list<float32>>`` (``--series-dtype
  float64`` keeps every bit). Written in row groups with pyarrow's ParquetWriter as records arrive, so
  memory holds one row group (at most ROW_GROUP_ROWS records or ROW_GROUP_BYTES of series), whatever
  the dataset's size. float32 keeps ~7 significant digits; a value beyond float32's range is a
  rejection naming the point (never an inf in the file).

Design choices: a series is encoded where it is read (`encode_series`, in the CSV workers: JSON text or
a numpy array), and a `RecordSink` appends records to a staged output file (`writer.StagedFile`), so the
all-or-nothing output set and the rejects/report/dataset_info entry are the same for both types.
Column types: the text fields an output format declares (`columns`) get their declared type, so a field
absent from the first records (a system prompt) still has its column; any other field (forecast windows)
is inferred from the first row group, which every later row group must match.
"""

from __future__ import annotations

import io
from typing import Any, Protocol

import numpy as np

from tsplugin.jsonl import Line

from .errors import InputError, RejectError
from .jsonenc import dumps_series, record_line
from .registry import Registry

FILE_TYPES = ("jsonl", "parquet")
SERIES_DTYPES = ("float32", "float64")
JSON_STORAGE = "json"  # SeriesOptions.storage of a JSONL run
SERIES_COLUMN = "timeseries"
ROW_GROUP_ROWS = 1024
ROW_GROUP_BYTES = 64 << 20


def storage_for(file_type: str, series_dtype: str | None) -> str:
    """What the CSV workers encode each series as: JSON text, or a float32/float64 array."""
    return JSON_STORAGE if file_type == "jsonl" else (series_dtype or "float32")


def encode_series(values: np.ndarray, storage: str, shown: str, column: str) -> Any:
    """One cleaned series as its output file stores it; RejectError when a value does not fit the storage."""
    if storage == JSON_STORAGE:
        return dumps_series(values)
    with np.errstate(over="ignore"):
        stored = np.ascontiguousarray(values, dtype=storage)
    if not np.isfinite(stored).all():
        i = int(np.flatnonzero(~np.isfinite(stored))[0])
        raise RejectError(
            "value_out_of_range",
            f"{shown}: column {column!r} point {i} (value {float(values[i])!r}) is beyond the {storage} range of the "
            "Parquet series column. Pass --series-dtype float64, or rescale the column",
        )
    return stored


class RecordSink(Protocol):
    def write(self, fields: dict[str, Any], series: list[Any]) -> None: ...

    def close(self) -> None: ...


class JsonlSink:
    """Records as JSON lines (series already JSON text)."""

    def __init__(self, staged: Any, columns: dict[str, str] | None = None) -> None:
        self.staged = staged

    def write(self, fields: dict[str, Any], series: list[bytes]) -> None:
        self.staged.write(record_line(fields, series))

    def close(self) -> None:
        pass


class _StagedStream(io.RawIOBase):
    """A write-only stream onto a StagedFile (its OSError -> OutputError handling kept) for ParquetWriter."""

    def __init__(self, staged: Any) -> None:
        self.staged, self.position = staged, 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.staged.write(chunk)
        self.position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self.position


def arrow_type(name: str) -> Any:
    """The Arrow type of a declared column type (`OutputFormat.columns`)."""
    import pyarrow as pa

    if name == "string":
        return pa.string()
    if name == "messages":
        return pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    raise ValueError(f"unknown column type {name!r}; valid: string, messages")


class ParquetSink:
    """Records as Parquet row groups; see the module docstring."""

    def __init__(self, staged: Any, columns: dict[str, str] | None = None, series_dtype: str = "float32") -> None:
        self.stream = _StagedStream(staged)
        self.declared = dict(columns or {})
        self.series_dtype = series_dtype
        self.rows: list[dict[str, Any]] = []
        self.series: list[list[np.ndarray]] = []
        self.pending_bytes = 0
        self.schema: Any = None
        self.writer: Any = None

    def write(self, fields: dict[str, Any], series: list[np.ndarray]) -> None:
        self.rows.append(fields)
        self.series.append(series)
        self.pending_bytes += sum(s.nbytes for s in series)
        if len(self.rows) >= ROW_GROUP_ROWS or self.pending_bytes >= ROW_GROUP_BYTES:
            self.flush()

    def _series_array(self) -> Any:
        import pyarrow as pa

        # (records,) -> offsets into (series,) -> offsets into (points,); a row group stays far below 2**31 points
        flat = [v for record in self.series for v in record]
        outer = np.concatenate([[0], np.cumsum([len(s) for s in self.series])]).astype(np.int32)
        inner = np.concatenate([[0], np.cumsum([len(v) for v in flat])]).astype(np.int32)
        values = np.concatenate(flat).astype(self.series_dtype, copy=False) if flat else np.zeros(0, self.series_dtype)
        points = pa.ListArray.from_arrays(pa.array(inner), pa.array(values))
        return pa.ListArray.from_arrays(pa.array(outer), points)

    def flush(self) -> None:
        if not self.rows:
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        names = list(dict.fromkeys([*self.declared, *(k for row in self.rows for k in row)]))
        if self.schema is not None:
            extra = [n for n in names if n not in self.schema.names]
            if extra:
                raise RuntimeError(f"Parquet output: fields {extra} appeared after the first row group fixed the columns "
                                   f"{self.schema.names}; declare them in the output format's columns")
            names = [n for n in self.schema.names if n != SERIES_COLUMN]
        arrays, fields = [], []
        for n in names:
            values = [row.get(n) for row in self.rows]
            if self.schema is not None:
                kind = self.schema.field(n).type
            elif n in self.declared:
                kind = arrow_type(self.declared[n])
            else:
                kind = None
            array = pa.array(values, type=kind)
            arrays.append(array)
            fields.append(pa.field(n, array.type))
        arrays.append(self._series_array())
        fields.append(pa.field(SERIES_COLUMN, arrays[-1].type))
        table = pa.Table.from_arrays(arrays, schema=self.schema or pa.schema(fields))
        if self.writer is None:
            self.schema = table.schema
            self.writer = pq.ParquetWriter(self.stream, self.schema)
        self.writer.write_table(table)
        self.rows, self.series, self.pending_bytes = [], [], 0

    def close(self) -> None:
        self.flush()
        if self.writer is None:  # no record at all: an empty file with the declared columns still reads
            import pyarrow as pa
            import pyarrow.parquet as pq

            fields = [pa.field(n, arrow_type(t)) for n, t in self.declared.items()]
            value = pa.from_numpy_dtype(np.dtype(self.series_dtype))
            self.schema = pa.schema([*fields, pa.field(SERIES_COLUMN, pa.list_(pa.list_(value)))])
            self.writer = pq.ParquetWriter(self.stream, self.schema)
        self.writer.close()


SINKS: Registry[type] = Registry("file type")
SINKS.register("jsonl", JsonlSink)
SINKS.register("parquet", ParquetSink)


def open_sink(file_type: str, staged: Any, columns: dict[str, str] | None = None, series_dtype: str | None = None) -> RecordSink:
    """A sink writing `file_type` records into the staged file."""
    cls = SINKS.get(file_type)
    if cls is ParquetSink:
        return ParquetSink(staged, columns, series_dtype or "float32")
    return cls(staged, columns)


def data_file(name: str, file_type: str) -> str:
    """The data file a run writes: NAME.jsonl or NAME.parquet (the suffix LLaMA-Factory reads the type from)."""
    return f"{name}.{file_type}"


def read_parquet_records(path: Any, batch_rows: int = 256, *, name: Any = None) -> Any:
    """The records of a Parquet data file (a path, or a seekable binary file opened from `name`) as
    `tsplugin.jsonl.Line`s (lineno 0: a Parquet file has no lines), one batch of rows in memory at a time;
    InputError when it is not a readable Parquet file. Row groups are read as they are reached, without
    pyarrow's pre-buffering (`pre_buffer=True`, its default, keeps every row group read so far until the
    file is closed: memory grew with the file). The file is closed when the generator is."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    index = 0
    try:
        with pq.ParquetFile(path, pre_buffer=False) as reader:
            for batch in reader.iter_batches(batch_size=batch_rows):
                for record in batch.to_pylist():
                    yield Line(index, 0, record)
                    index += 1
    except (pa.ArrowException, OSError) as exc:  # a bad footer, or a row group / page cut or corrupt further in
        raise unreadable_parquet(path if name is None else name, index, exc) from None


def read_parquet_schema(path: Any) -> Any:
    """The Arrow schema of a Parquet data file (its footer alone); InputError when it is not a readable Parquet file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_schema(path)
    except (pa.ArrowException, OSError) as exc:
        raise unreadable_parquet(path, 0, exc) from None


def unreadable_parquet(shown: Any, index: int, exc: BaseException) -> InputError:
    where = f" at record {index}" if index else ""
    return InputError(f"{shown}: not a readable Parquet file{where} ({' '.join(str(exc).split())[:200]}). "
                      "Check the file, or convert the records again with --file-type parquet")
