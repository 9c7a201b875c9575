"""Local Parquet files streamed (`streaming: true`) one batch of rows at a time, memory flat in the file's size.

`datasets`' own Parquet stream (4.0) scans each file with pyarrow's pre-buffering on, which keeps every row group
read so far until the file is closed: peak RSS grew with the file (bench/data_scale.py, `stream parquet`). Here
the records come from tsconvert's reader (`converters.filetypes.read_parquet_records`: no pre-buffering, one batch
of rows in memory, the file closed with the generator) inside an `IterableDataset.from_generator` whose shards
are the files (as in `datasets`' stream: shard shuffling, dataloader workers). Features come from the first
file's schema, as `datasets` infers them; records keep file and row order. A file that stops being readable
part-way is a TimeSeriesDataError naming the file and the record reached.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from typing import Any

from converters.errors import InputError
from converters.filetypes import read_parquet_records, read_parquet_schema
from tsplugin.llamafactory.data import TimeSeriesDataError


def stream_parquet(paths: list[str]) -> Any:
    """An IterableDataset of the records of local Parquet `paths`, in order, one shard per file."""
    from datasets import Features, IterableDataset

    try:
        features = Features.from_arrow_schema(read_parquet_schema(paths[0]))
    except InputError as err:
        raise TimeSeriesDataError(str(err)) from None
    return IterableDataset.from_generator(parquet_records, features=features, gen_kwargs={"paths": list(paths)})


def parquet_records(paths: list[str]) -> Iterator[dict[str, Any]]:
    """The records of `paths` as dicts, file after file (a generator: `IterableDataset.from_generator` shards it)."""
    for path in paths:
        try:
            with closing(read_parquet_records(path)) as lines:  # closed with this generator: the file too
                for line in lines:
                    yield line.record
        except InputError as err:
            raise TimeSeriesDataError(str(err)) from None
