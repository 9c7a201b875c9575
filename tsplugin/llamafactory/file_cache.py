"""Local JSON Lines and Parquet files of a time-series dataset, written into the Arrow cache faster than `datasets`.

Why: `load_dataset("json")` hands pyarrow's JSON reader blocks of ~320 KB (`chunksize // 32`) and lets it infer
every type; on ChatTS-style records (~90% series digits) that is slow: at 10k records (164 MB) the load took
2.6-3.7 s, against ~5 s for the whole get_dataset of the text-only twin (bench/data_scale.py). The same reader
with 1 MiB blocks, the series column declared `list<list<float64>>` and the system allocator, one 8 MiB chunk per
thread of a pool as wide as the CPUs this process may use (`parse_threads`; pyarrow's own pool follows
OMP_NUM_THREADS, which torchrun sets to 1), reads the file in ~0.7 s on two cores; with each record's series
parsed by simdjson and the rest by pyarrow (`series_text.split_series`, when it can promise the same table) in
~0.55 s, on less than half the CPU time. The numbers are correctly rounded by both readers (tests compare them bit
for bit with Python's `float`, and the two readers' tables with each other), so nothing about the values changes. `load_dataset("parquet")` reads record batches with
pyarrow's default allocator (mimalloc), which on fresh memory took twice as long as the system allocator (10k
records, 47 MB: 0.9-1.3 s against 0.45 s); here the same batches are read with the system allocator and cast as
`datasets` casts them (`datasets.table.table_cast` to the features of the first file's schema).

`load_files(kind, files, column, cache_dir)` gives what `load_dataset(kind, data_files=files, split="train")` gives, a
`datasets.Dataset` memory-mapped from an Arrow file in the datasets cache (reused while the files' size and mtime
are unchanged, as `datasets` does), or None when it cannot promise that table; LLaMA-Factory's own call then runs,
with its own errors (and tsplugin's named record, `data.loader_error`). For JSON Lines, what is kept and what differs:

- every column but the series is inferred by the same reader `datasets` uses, in the file's field order;
- the series column is `list<list<float64>>`: a string, a bool, a flat list or a number beyond float64 in it is
  refused here and `datasets` reads the file (its error names the record); whole numbers are stored as float64,
  as the data path reads them anyway (`arrow_series`);
- the file is read in chunks of whole lines (`CHUNK_BYTES`) of a read-only memory map, each chunk's pages given back
  once it is written (one chunk per parsing thread and the one being written are held), so memory stays flat in the
  file's size (a file truncated by another program while it is read ends the process with SIGBUS, as a truncated
  `datasets` cache file, memory-mapped too, does); when a later chunk brings a new field, a type for a column that was all null, or a double where the first chunks had only
  whole numbers, what was written is re-cast to the wider columns, as one read of the whole file would infer them;
  a real conflict (a number in one chunk, a string in another) sends the file to `datasets`.

JSON Lines only (the first byte after a BOM and blanks is `{`, `tsplugin.jsonl.leading_byte`): a JSON array file
keeps `datasets`' builder, as do other file types, `split` slices and streaming. `TSFACTORY_FILE_READER=datasets`
turns this off.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import json
import logging
import os
import threading
from typing import Any, Callable, Iterable, Iterator

from tsplugin.jsonl import leading_byte
from tsplugin.llamafactory.series_text import split_series

CHUNK_BYTES = 8 << 20  # text per parse (best and steadiest of 4-64 MiB: a big chunk's first-touch memory costs more)
BLOCK_BYTES = 1 << 20  # pyarrow's block per thread (measured best of 1/4 MiB); grown to hold a longer line
VERSION = 1  # part of the cache key: bump when the table written for the same files changes
ENV = "TSFACTORY_FILE_READER"


def series_type() -> Any:
    """list<list<float64>>: every series column this reader writes (built on use: pyarrow is imported lazily)."""
    import pyarrow as pa

    return pa.list_(pa.list_(pa.float64()))


logger = logging.getLogger("tsplugin")


class NotHandled(Exception):
    """This reader cannot promise `datasets`' table for the file; the reason is logged and `datasets` reads it."""


def enabled() -> bool:
    return os.environ.get(ENV, "pyarrow").strip().lower() != "datasets"


def cache_path(kind: str, files: list[str], column: str, cache_dir: str | None) -> str:
    """`<datasets cache>/tsplugin_files/<key>/train.arrow`, the key from the reader, the files' paths, sizes and mtimes,
    the series column and the versions of pyarrow and datasets."""
    import datasets
    import pyarrow

    if cache_dir is None:
        cache_dir = str(datasets.config.HF_DATASETS_CACHE)
    key = hashlib.sha256()
    for part in (f"v{VERSION}", kind, pyarrow.__version__, datasets.__version__, column):
        key.update(part.encode() + b"\0")
    for path in files:
        stat = os.stat(path)
        key.update(f"{os.path.realpath(path)}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    return os.path.join(os.path.expanduser(cache_dir), "tsplugin_files", key.hexdigest()[:24], "train.arrow")


def chunks(path: str, size: int = CHUNK_BYTES, in_use: int = 1) -> Iterator[memoryview]:
    """The file in pieces of about `size` bytes, each ending at a line's end (a longer line is one piece): views of a
    read-only memory map, which pyarrow reads without a copy (reading the file into Python bytes first cost ~0.1 s of
    0.8 s at 10k records, bench/data_scale.py). Asking for a piece gives back the pages of the piece handed out
    `in_use` pieces before it (the caller is done with it), so memory stays flat in the file's size."""
    import mmap

    with open(path, "rb") as handle:
        length = os.fstat(handle.fileno()).st_size
        if length == 0:
            return
        view = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)  # the map keeps its own handle
    release = getattr(mmap, "MADV_DONTNEED", None)
    handed: collections.deque[tuple[int, int]] = collections.deque()
    start = 0
    while start < length:
        end = min(start + size, length)
        if end < length:
            newline = view.find(b"\n", end - 1)
            end = length if newline < 0 else newline + 1
        if len(handed) >= in_use and release is not None:  # clean file pages: dropped here, read again if touched
            done, done_end = handed.popleft()
            first = done - done % mmap.PAGESIZE
            view.madvise(release, first, done_end - first)
        handed.append((start, end))
        yield memoryview(view)[start:end]
        start = end
    # `view` closes when the last piece handed out is gone (a piece keeps its map alive)


def _lines(piece: Any, window: int = 1 << 16) -> Iterator[bytes]:
    """The lines of a bytes-like `piece` in order, each copied when reached (enough to find the first record)."""
    view, start = memoryview(piece), 0
    while start < len(view):
        end = start
        while end < len(view):
            found = bytes(view[end : end + window]).find(b"\n")
            if found >= 0:
                end += found
                break
            end = min(end + window, len(view))
        yield bytes(view[start:end])
        start = end + 1


def first_keys(piece: Any) -> list[str]:
    """The field names of the chunk's first record, in the file's order."""
    for line in _lines(piece):
        if line.strip():
            try:
                record = json.loads(line)
            except ValueError:
                return []
            return list(record) if isinstance(record, dict) else []
    return []


def parse_chunk(piece: Any, column: str, order: list[str] | None = None, use_threads: bool = True) -> Any:
    """One chunk of JSON Lines as a pyarrow Table, read as `datasets` reads it (pyarrow's JSON reader, types inferred)
    except that `column` is declared `list<list<float64>>`; columns in `order` (default: the first record's fields,
    then the others as inferred). NotHandled where pyarrow refuses the text."""
    return ordered(parse_raw(piece, column, use_threads), piece, order)


_SPLITTING = threading.Lock()  # held while a thread parses series with simdjson (see parse_raw)


def parse_raw(piece: Any, column: str, use_threads: bool = True) -> Any:
    """`parse_chunk` before its columns are ordered (the part that may run on another thread). The series are read by
    simdjson (`series_text.split_series`) and the rest of each record by pyarrow, when pyarrow then finds no series
    left in the text (null on every row: every record's series was cut out); otherwise pyarrow reads the whole text.
    One thread at a time splits: simdjson and the Python around it hold the GIL, so two splitting threads ran slower
    than one (1k records: 0.094 s on the pool against 0.067 s on one thread), while pyarrow's reader does not hold it:
    a thread that finds the split taken reads its chunk with pyarrow, beside it."""
    split = None
    if _SPLITTING.acquire(blocking=False):  # simdjson holds the GIL: one thread splits, the others let pyarrow read
        try:
            split = split_series(piece, column)
        finally:
            _SPLITTING.release()
    if split is not None:
        text, series, records = split
        try:
            table = _read_json(text, column, use_threads)
        except NotHandled:  # the whole text says why, in pyarrow's words
            table = None
        if table is not None and table.num_rows == records and table.column(column).null_count == records:
            where = table.schema.get_field_index(column)
            return table.set_column(where, table.schema.field(where), series)
    return _read_json(piece, column, use_threads)


def _read_json(piece: Any, column: str, use_threads: bool) -> Any:
    """pyarrow's JSON reader on `piece`, `column` declared `list<list<float64>>`, the other columns inferred."""
    import pyarrow as pa
    import pyarrow.json as paj

    parse = paj.ParseOptions(explicit_schema=pa.schema([(column, series_type())]), unexpected_field_behavior="infer")
    block = BLOCK_BYTES
    while True:
        try:
            # the system allocator: pyarrow's default (mimalloc) took 1.5 s instead of 1.1 s for 10k records (fresh pages)
            return paj.read_json(pa.BufferReader(pa.py_buffer(piece)),
                                 read_options=paj.ReadOptions(block_size=block, use_threads=use_threads),
                                 parse_options=parse, memory_pool=pa.system_memory_pool())
        except pa.ArrowInvalid as err:
            if "straddling" in str(err) and block < len(piece) + 1:
                block = min(block * 4, len(piece) + 1)  # a line longer than the block: grow it, as `datasets` does
                continue
            raise NotHandled(f"pyarrow's JSON reader refused it with {column!r} as number lists ({str(err)[:200]})") from None


def ordered(table: Any, piece: Any, order: list[str] | None) -> Any:
    """`table` (parsed from `piece`) with the columns in `order`, or the first record's fields, then the others."""
    if order is None:
        order = first_keys(piece)
    names = [name for name in order if name in table.column_names]
    names += [name for name in table.column_names if name not in names]
    return table.select(names)


def parse_threads() -> int:
    """Chunks parsed at once: the CPUs this process may run on, at most as many as the blocks of one chunk (the most
    pyarrow's own pool would parse at once, and what bounds the memory held). That pool is sized from OMP_NUM_THREADS,
    which torchrun sets to 1 on every rank (for training's OpenMP threads); while one rank reads the file into the cache
    the others wait for it (LLaMA-Factory's main_process_first), so a single thread would leave the machine idle
    (10k records: 1.45 s on one thread, 0.70 s on two)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, CHUNK_BYTES // BLOCK_BYTES))


def conform(table: Any, schema: Any) -> Any:
    """`table` in `schema` (its columns cast, a column it lacks all null); NotHandled when a value does not fit."""
    import pyarrow as pa

    try:
        arrays = [table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
                  for f in schema]
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
        raise NotHandled(f"a chunk does not fit the columns of the others ({str(err)[:200]})") from None
    return pa.Table.from_arrays(arrays, schema=schema)


def widened(schema: Any, table: Any) -> Any:
    """The schema holding `schema`'s and `table`'s columns, as pyarrow's reader widens types within one read (a null
    column takes the other's type, int64 meets double as double, a struct gains fields); new columns last."""
    import pyarrow as pa

    try:
        return pa.unify_schemas([schema, table.schema], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        raise NotHandled(f"a column's type differs between chunks ({str(err)[:200]})") from None


class _Stream:
    """The Arrow stream file being written; `rewrite` re-casts what is written so far when the schema widens. Written
    through pyarrow's own file (`pa.OSFile`), which does not hold the GIL, so the writes overlap the parse threads'
    Python work (through a Python file object they took 1.9 s of 7.5 at 100k records, one thread)."""

    MAX_REWRITES = 4  # a file whose columns keep changing is `datasets`' to read (each rewrite copies what was written)

    def __init__(self, path: str) -> None:
        self.path, self.schema, self.sink, self.writer, self.rows, self.rewrites = path, None, None, None, 0, 0

    def write(self, table: Any) -> None:
        import pyarrow as pa

        if self.schema is None:
            self.sink = pa.OSFile(self.path, "wb")
            self.schema, self.writer = table.schema, pa.ipc.new_stream(self.sink, table.schema)
        elif not table.schema.equals(self.schema):
            schema = widened(self.schema, table)
            if not schema.equals(self.schema):
                self.rewrite(schema)
            table = conform(table, schema)
        self.writer.write_table(table)
        self.rows += table.num_rows

    def rewrite(self, schema: Any) -> None:
        import pyarrow as pa

        self.rewrites += 1
        if self.rewrites > self.MAX_REWRITES:
            raise NotHandled(f"its columns changed more than {self.MAX_REWRITES} times between chunks")
        self.close()
        old = f"{self.path}.old"
        os.replace(self.path, old)
        self.sink = pa.OSFile(self.path, "wb")
        self.schema, self.writer = schema, pa.ipc.new_stream(self.sink, schema)
        try:
            with pa.memory_map(old) as source:
                for batch in pa.ipc.open_stream(source):
                    self.writer.write_table(conform(pa.Table.from_batches([batch]), schema))
        finally:
            os.remove(old)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.sink.close()
            self.writer = None


def write_cache(pieces: Iterable[tuple[str, Callable[[list[str] | None], Any]]], target: str) -> int:
    """Each piece's table (`make(order)`: `order` the column names so far, None for the first) into the Arrow stream
    file `target` (written beside it, then renamed); the number of records. NotHandled names the piece."""
    os.makedirs(os.path.dirname(target), exist_ok=True)
    stream = _Stream(f"{target}.{os.getpid()}.partial")
    try:
        for label, make in pieces:
            try:
                stream.write(make(None if stream.schema is None else stream.schema.names))
            except NotHandled as why:
                raise NotHandled(f"{label}: {why}") from None
        stream.close()
        if stream.schema is None:
            raise NotHandled(f"{target}: no records")
        os.replace(stream.path, target)
    finally:
        stream.close()
        if os.path.exists(stream.path):
            os.remove(stream.path)
    return stream.rows


def jsonl_pieces(files: list[str], column: str, chunk_bytes: int = CHUNK_BYTES,
                 threads: int | None = None) -> Iterator[tuple[str, Callable]]:
    """The files' chunks in order, each `make(order)` giving its table (`parse_chunk`); up to `threads` chunks
    (`parse_threads()`) are parsed at once, each on one thread of a pool, ahead of the one being written."""
    from concurrent.futures import ThreadPoolExecutor

    threads = threads or parse_threads()
    if threads == 1:  # pyarrow's own pool parses the one chunk (as before; one thread under OMP_NUM_THREADS=1)
        for path in files:
            for number, piece in enumerate(chunks(path, chunk_bytes)):
                yield f"{path} (chunk {number + 1})", functools.partial(parse_chunk, piece, column)
        return

    def finish(future: Any, piece: Any, order: list[str] | None) -> Any:
        return ordered(future.result(), piece, order)

    with ThreadPoolExecutor(threads, thread_name_prefix="tsplugin-json") as pool:
        pending: collections.deque[tuple[str, Any, Any]] = collections.deque()
        try:
            for path in files:
                # a piece stays mapped while it waits or is parsed: `threads` of them, and the one being written
                for number, piece in enumerate(chunks(path, chunk_bytes, in_use=threads + 1)):
                    pending.append((f"{path} (chunk {number + 1})", piece, pool.submit(parse_raw, piece, column, False)))
                    if len(pending) > threads:
                        label, done, future = pending.popleft()
                        yield label, functools.partial(finish, future, done)
            while pending:
                label, done, future = pending.popleft()
                yield label, functools.partial(finish, future, done)
        finally:  # the writer stopped early (a refused chunk): parses not started are dropped
            for _, _, future in pending:
                future.cancel()


def parquet_pieces(files: list[str]) -> Iterator[tuple[str, Callable]]:
    """The files' record batches cast as `datasets`' Parquet builder casts them (`table_cast` to the features of the
    first file's schema), read with the system allocator (pyarrow's default took twice as long, 10k records) on this
    thread (with pyarrow's thread pool the load took 0.78-0.82 s instead of 0.29-0.61 s at 10k records, in single runs
    where the cache write, not the decoding, grew), one row group at a time: pyarrow's pre-buffering (its default) kept
    every row group read until the file was closed (the heap at 100k records 1182 MiB, 762 without)."""
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq
    from datasets import Features
    from datasets.table import table_cast

    try:
        schema = Features.from_arrow_schema(pq.read_schema(files[0])).arrow_schema
    except Exception as err:  # a file pyarrow cannot read: `datasets` says why
        raise NotHandled(f"{files[0]}: pyarrow could not read its schema ({type(err).__name__}: {str(err)[:200]})") from None

    def cast(table: Any, order: list[str] | None) -> Any:
        try:
            return table_cast(table, schema)
        except Exception as err:  # datasets raises CastError / ValueError / ArrowInvalid by case
            raise NotHandled(f"its columns do not cast to the first file's ({type(err).__name__}: {str(err)[:200]})") from None

    for path in files:
        try:
            with open(path, "rb") as handle:
                fragment = ds.ParquetFileFormat().make_fragment(handle)
                batches = fragment.to_batches(batch_readahead=0, fragment_readahead=0, use_threads=False,
                                               fragment_scan_options=ds.ParquetFragmentScanOptions(pre_buffer=False),
                                               memory_pool=pa.system_memory_pool())
                for number, batch in enumerate(batches):
                    yield f"{path} (row batch {number + 1})", functools.partial(cast, pa.Table.from_batches([batch]))
        except (pa.ArrowException, OSError) as err:
            raise NotHandled(f"{path}: pyarrow could not read it ({type(err).__name__}: {str(err)[:200]})") from None


READERS = {"json": "JSON", "parquet": "Parquet"}


def load_files(kind: str, files: list[str], column: str, cache_dir: str | None, chunk_bytes: int = CHUNK_BYTES) -> Any:
    """`datasets.Dataset` of local `files` of `kind` ("json": JSON Lines; "parquet") with series column `column`,
    memory-mapped from the cache; None when `datasets` should read them (the reason logged)."""
    if not enabled() or not files or kind not in READERS:
        return None
    if kind == "json":
        try:
            if not all(leading_byte(path) == b"{" for path in files):
                return None  # a JSON array file: `datasets`' builder reads it whole anyway
        except OSError as err:
            logger.info("tsplugin: datasets' JSON reader used for %s: %s", files[0], err)
            return None
    from datasets import Dataset, NamedSplit

    target = cache_path(kind, files, column, cache_dir)
    if not os.path.exists(target):
        pieces = jsonl_pieces(files, column, chunk_bytes) if kind == "json" else parquet_pieces(files)
        try:
            write_cache(pieces, target)
        except NotHandled as why:
            logger.info("tsplugin: datasets' %s reader used for %s", READERS[kind], why)
            return None
    return Dataset.from_file(target, split=NamedSplit("train"))
