"""Local JSON Lines time-series files are read by tsplugin.llamafactory.file_cache (pyarrow's JSON reader with the
series column typed, in chunks) into the same table `datasets`' JSON builder writes, or left to `datasets`."""

from __future__ import annotations

import json
import logging
import math
import os

import numpy as np
import pytest

from conftest import tokenised, write_dataset

from tsplugin.llamafactory import file_cache


def _datasets_table(files, cache):
    from datasets import load_dataset

    return load_dataset("json", data_files=[str(f) for f in files], split="train", cache_dir=str(cache))


def _write(path, lines):
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def _records(n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        lengths = [int(m) for m in rng.integers(1, 60, size=int(rng.integers(0, 3)))]
        record = {"input": f"r{k} " + " ".join("<ts><ts/>" for _ in lengths), "output": f"a{k}",
                  "timeseries": [(rng.standard_normal(m) * 10.0 ** int(rng.integers(-5, 6))).tolist() for m in lengths]}
        if k % 3 == 0:
            record["system"] = "s"
        if k % 4 == 0:
            record["meta"] = {"id": k, "tags": ["x", "y"][: k % 3], "score": 0.5 * k}
        out.append(record)
    return out


def test_same_table_as_datasets_json_builder_across_chunks(tmp_path):
    records = _records(60)
    records[5]["timeseries"] = [[1, 2, 3]]  # whole numbers: float64, as the data path reads them
    records[7]["timeseries"] = None
    path = _write(tmp_path / "d.jsonl", records)
    want = _datasets_table([path], tmp_path / "c1")
    for chunk in (1 << 20, 700):  # one chunk; many (a chunk ends at a line's end, whatever its size)
        got = file_cache.load_files("json", [str(path)], "timeseries", str(tmp_path / f"c{chunk}"), chunk_bytes=chunk)
        assert got is not None
        assert got.column_names == want.column_names
        assert {k: v for k, v in got.features.items() if k != "timeseries"} == \
               {k: v for k, v in want.features.items() if k != "timeseries"}
        assert str(got.features["timeseries"]) == "List(List(Value('float64')))"
        assert got.to_list() == want.to_list()  # 1 == 1.0: the whole numbers compare equal
        assert got.cache_files and got.cache_files[0]["filename"].endswith("train.arrow")  # memory-mapped


def test_floats_are_bit_identical_to_pythons(tmp_path):
    rng = np.random.default_rng(1)
    values = rng.standard_normal(20000) * 10.0 ** rng.integers(-300, 300, 20000)
    values[:4] = [5e-324, -0.0, 1.7976931348623157e308, 0.1]
    path = _write(tmp_path / "f.jsonl", [{"input": "<ts><ts/>", "timeseries": [values.tolist()]}])
    got = file_cache.load_files("json", [str(path)], "timeseries", str(tmp_path / "c"))
    parsed = np.asarray(got.with_format("arrow")["timeseries"].combine_chunks().flatten().flatten())
    assert parsed.view(np.int64).tolist() == values.view(np.int64).tolist()


def test_a_line_longer_than_the_chunk_and_the_block(tmp_path, monkeypatch):
    monkeypatch.setattr(file_cache, "BLOCK_BYTES", 1024)
    long = {"input": "<ts><ts/>", "timeseries": [[float(i) for i in range(5000)]]}
    path = _write(tmp_path / "l.jsonl", [{"input": "x", "timeseries": [[1.5]]}, long, {"input": "y", "timeseries": [[2.5]]}])
    got = file_cache.load_files("json", [str(path)], "timeseries", str(tmp_path / "c"), chunk_bytes=64)
    assert got["timeseries"] == [[[1.5]], long["timeseries"], [[2.5]]]


def test_chunks_are_whole_lines_of_the_file_and_the_first_record_is_found_past_a_long_line(tmp_path):
    lines = [b"", b"   ", b'{"z": 1, "a": "' + b"x" * 200_000 + b'"}', b'{"b": 2}', b"", b'{"c": 3}']
    path = tmp_path / "p.jsonl"
    path.write_bytes(b"\n".join(lines))  # no newline at the end of the file
    for size in (1, 7, 100, 1 << 20):
        pieces = [bytes(piece) for piece in file_cache.chunks(str(path), size)]
        assert b"".join(pieces) == path.read_bytes()
        assert all(piece.endswith(b"\n") for piece in pieces[:-1])  # each piece ends at a line's end
        assert len(pieces) == {1: 6, 7: 3, 100: 2, 1 << 20: 1}[size]  # size 1: every line alone, the long one whole
    assert file_cache.first_keys(path.read_bytes()) == ["z", "a"]  # past blank lines, a line longer than the window
    (tmp_path / "e.jsonl").write_bytes(b"")
    assert list(file_cache.chunks(str(tmp_path / "e.jsonl"), 10)) == []  # an empty file: no piece (and no map)


@pytest.mark.parametrize("threads", [1, 2, 5])
def test_chunks_parsed_on_a_pool_are_written_in_file_order(tmp_path, threads):
    records = _records(80, seed=3)
    path = _write(tmp_path / "d.jsonl", records)
    target = tmp_path / f"t{threads}" / "train.arrow"
    rows = file_cache.write_cache(file_cache.jsonl_pieces([str(path), str(path)], "timeseries", 900, threads=threads), str(target))
    from datasets import Dataset

    got = Dataset.from_file(str(target))
    want = _datasets_table([path, path], tmp_path / "c")
    assert rows == 160 and got.column_names == want.column_names and got.to_list() == want.to_list()


def test_the_parse_pool_is_as_wide_as_the_cpus_up_to_the_blocks_of_a_chunk(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # torchrun's setting: not what sizes this pool
    for cpus, want in ((1, 1), (2, 2), (64, file_cache.CHUNK_BYTES // file_cache.BLOCK_BYTES)):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid, n=cpus: set(range(n)), raising=False)
        assert file_cache.parse_threads() == want


def test_a_refused_chunk_on_the_pool_names_its_chunk_and_leaves_no_file(tmp_path):
    records = _records(40, seed=4)
    records[31]["timeseries"] = [["1.5"]]  # a string among the numbers, well past the first chunks
    path = _write(tmp_path / "d.jsonl", records)
    target = tmp_path / "t" / "train.arrow"
    with pytest.raises(file_cache.NotHandled, match=r"d\.jsonl \(chunk \d+\): pyarrow's JSON reader refused it"):
        file_cache.write_cache(file_cache.jsonl_pieces([str(path)], "timeseries", 300, threads=3), str(target))
    assert not list((tmp_path / "t").iterdir())


def test_several_files_are_one_table_in_order(tmp_path):
    a = _write(tmp_path / "a.jsonl", [{"input": "a", "timeseries": [[1.0]]}])
    b = _write(tmp_path / "b.jsonl", [{"input": "b", "timeseries": [[2.0, 3.0]]}])
    got = file_cache.load_files("json", [str(a), str(b)], "timeseries", str(tmp_path / "c"))
    assert got.to_list() == _datasets_table([a, b], tmp_path / "c2").to_list()


@pytest.mark.parametrize("lines, why", [
    ([{"input": "x", "timeseries": [["1.5", 2]]}], "refused it"),  # a string among the numbers
    ([{"input": "x", "timeseries": [[True, 2]]}], "refused it"),
    ([{"input": "x", "timeseries": [1, 2]}], "refused it"),  # one flat list
    ([{"input": 1, "timeseries": [[1]]}, {"input": "s", "timeseries": [[2]]}], "refused it"),  # a text column's type changes
    (['{"input": "x", "timeseries": [[1, 2]]'], "refused it"),  # not JSON
    (['{"input": "x", "timeseries": [[1e400]]}'], "refused it"),  # beyond float64
])
def test_what_it_cannot_promise_is_left_to_datasets(tmp_path, caplog, lines, why):
    path = _write(tmp_path / "bad.jsonl", lines)
    with caplog.at_level(logging.INFO, logger="tsplugin"):
        assert file_cache.load_files("json", [str(path)], "timeseries", str(tmp_path / "c")) is None
    assert f"datasets' JSON reader used for {path}" in caplog.text and why in caplog.text
    assert not list((tmp_path / "c").rglob("*.arrow")) and not list((tmp_path / "c").rglob("*.partial"))


def test_columns_that_widen_between_chunks_are_widened_as_one_read_would(tmp_path):
    # chunk by chunk: `late` first seen in the last chunk, `system` null until then, `x` int64 until a double
    lines = [{"input": "a", "system": None, "x": 1, "timeseries": [[1.0]]}] * 20
    lines += [{"input": "b", "late": {"k": 1}, "system": "s", "x": 2.5, "timeseries": [[2.0]]}]
    path = _write(tmp_path / "late.jsonl", lines)
    got = file_cache.load_files("json", [str(path)], "timeseries", str(tmp_path / "c"), chunk_bytes=100)
    want = _datasets_table([path], tmp_path / "c2")  # one read: pyarrow widens within it
    assert got.column_names == want.column_names and got.to_list() == want.to_list()
    assert got.features == want.features


def test_columns_that_keep_changing_are_left_to_datasets(tmp_path, caplog):
    path = _write(tmp_path / "many.jsonl", [{"input": "a", f"f{k}": k, "timeseries": [[1.0]]} for k in range(8)])
    with caplog.at_level(logging.INFO, logger="tsplugin"):
        assert file_cache.load_files("json", [str(path)], "timeseries", str(tmp_path / "c"), chunk_bytes=10) is None
    assert "changed more than 4 times" in caplog.text


def test_a_type_conflict_between_chunks_is_left_to_datasets(tmp_path, caplog):
    path = _write(tmp_path / "c.jsonl", [{"input": "a", "x": 1, "timeseries": [[1.0]]}] * 20
                  + [{"input": "b", "x": "one", "timeseries": [[2.0]]}])
    with caplog.at_level(logging.INFO, logger="tsplugin"):
        assert file_cache.load_files("json", [str(path)], "timeseries", str(tmp_path / "c"), chunk_bytes=40) is None
    assert "type differs between chunks" in caplog.text
    assert not list((tmp_path / "c").rglob("*.arrow*")) and not list((tmp_path / "c").rglob("*.partial*"))


def test_json_array_files_and_the_switch_are_left_to_datasets(tmp_path, monkeypatch):
    array = tmp_path / "a.json"
    array.write_text(json.dumps([{"input": "x", "timeseries": [[1.0]]}]))
    assert file_cache.load_files("json", [str(array)], "timeseries", str(tmp_path / "c")) is None
    lines = _write(tmp_path / "l.json", [{"input": "x", "timeseries": [[1.0]]}])  # JSON Lines named .json: read
    assert file_cache.load_files("json", [str(lines)], "timeseries", str(tmp_path / "c")) is not None
    bom = tmp_path / "bom.jsonl"  # a UTF-8 BOM first (Windows editors write one): read, the same table
    bom.write_bytes(b"\xef\xbb\xbf" + lines.read_bytes())
    got = file_cache.load_files("json", [str(bom)], "timeseries", str(tmp_path / "c3"))
    assert got is not None and got.to_list() == _datasets_table([bom], tmp_path / "c4").to_list()
    assert got.column_names == ["input", "timeseries"]
    monkeypatch.setenv(file_cache.ENV, "datasets")
    assert file_cache.load_files("json", [str(lines)], "timeseries", str(tmp_path / "c2")) is None


def test_the_cache_is_reused_until_the_file_changes(tmp_path, monkeypatch):
    path = _write(tmp_path / "d.jsonl", [{"input": "x", "timeseries": [[1.0, 2.0]]}])
    first = file_cache.load_files("json", [str(path)], "timeseries", str(tmp_path / "c"))
    calls = []
    real = file_cache.parse_raw
    monkeypatch.setattr(file_cache, "parse_raw", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = file_cache.load_files("json", [str(path)], "timeseries", str(tmp_path / "c"))
    assert calls == [] and again.to_list() == first.to_list()
    _write(path, [{"input": "x", "timeseries": [[1.0, 2.0, 3.0]]}])
    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 10**9))
    changed = file_cache.load_files("json", [str(path)], "timeseries", str(tmp_path / "c"))
    assert calls == [1] and changed["timeseries"] == [[[1.0, 2.0, 3.0]]]


def test_llamafactory_gets_the_same_tokenised_dataset_either_way(tiny_qwen3ts, tmp_path, monkeypatch):
    records = [r for r in _records(30, seed=2) if r["timeseries"] is not None]
    for r in records:
        r.pop("meta", None)
    data = write_dataset(tmp_path / "data", "d", records)
    fast = tokenised(tiny_qwen3ts, tmp_path, data, "d", cache_dir=str(tmp_path / "cache_fast"))[0]
    assert list((tmp_path / "cache_fast" / "tsplugin_files").rglob("train.arrow"))  # the fast path ran
    monkeypatch.setenv(file_cache.ENV, "datasets")
    slow = tokenised(tiny_qwen3ts, tmp_path, data, "d", cache_dir=str(tmp_path / "cache_slow"))[0]
    assert not (tmp_path / "cache_slow" / "tsplugin_files").exists()
    assert fast.column_names == slow.column_names
    for column in ("input_ids", "labels", "attention_mask"):
        assert fast[column] == slow[column]
    assert [[list(map(float, s)) for s in row or []] for row in fast["audios"]] == \
           [[list(map(float, s)) for s in row or []] for row in slow["audios"]]


def test_worker_processes_and_max_samples_read_the_mapped_cache(tiny_qwen3ts, tmp_path):
    records = [r for r in _records(40, seed=3) if r["timeseries"]]
    for r in records:
        r.pop("meta", None)
    data = write_dataset(tmp_path / "data", "d", records)
    one = tokenised(tiny_qwen3ts, tmp_path, data, "d", cache_dir=str(tmp_path / "c1"), max_samples=20)[0]
    two = tokenised(tiny_qwen3ts, tmp_path, data, "d", cache_dir=str(tmp_path / "c2"), max_samples=20,
                    preprocessing_num_workers=2)[0]
    assert len(one) == 20 and one["input_ids"] == two["input_ids"]
    assert [[list(s) for s in row] for row in one["audios"]] == [[list(s) for s in row] for row in two["audios"]]
    assert one["audios"] == [r["timeseries"] for r in records[:20]]


def test_bad_records_are_still_named_through_llamafactory(tiny_qwen3ts, tmp_path):
    from tsplugin.llamafactory.data import TimeSeriesDataError

    good = {"input": "a <ts><ts/>", "output": "b", "timeseries": [[1.0, 2.0, 3.0]]}
    for bad, named in (({"timeseries": [[1.0, "2.5", 3.0]]}, "record 1"),  # datasets reads it: loader_error names it
                       ({"timeseries": [[1.0, math.nan, 3.0]]}, "record 1: series 0")):
        data = write_dataset(tmp_path / f"data{len(named)}", "d", [good, {**good, **bad}])
        with pytest.raises(TimeSeriesDataError, match=named):
            tokenised(tiny_qwen3ts, tmp_path, data, "d", cache_dir=str(tmp_path / f"cache{len(named)}"))


def _parquet(path, records, row_group_size=7):
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("input", pa.string()), ("output", pa.string()), ("system", pa.string()),
                        ("timeseries", pa.list_(pa.list_(pa.float32())))])  # as tsconvert --file-type parquet writes
    rows = [{"input": r["input"], "output": r["output"], "system": r.get("system"), "timeseries": r["timeseries"]}
            for r in records]
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path, row_group_size=row_group_size)
    return path


def test_parquet_same_table_as_datasets_parquet_builder(tmp_path):
    from datasets import load_dataset

    records = _records(40, seed=4)
    a = _parquet(tmp_path / "a.parquet", records[:25])
    b = _parquet(tmp_path / "b.parquet", records[25:], row_group_size=4)
    files = [str(a), str(b)]
    want = load_dataset("parquet", data_files=files, split="train", cache_dir=str(tmp_path / "c1"))
    got = file_cache.load_files("parquet", files, "timeseries", str(tmp_path / "c2"))
    assert got is not None and got.features == want.features and got.column_names == want.column_names
    assert got.data.table.equals(want.data.table)  # float32 series kept as stored, bit for bit
    assert got.cache_files and got.cache_files[0]["filename"].endswith("train.arrow")


def test_parquet_row_groups_are_read_one_at_a_time(tmp_path):
    """pyarrow's pre-buffering (its default) keeps every row group read until the file is closed, in Python bytes
    read from the file handle: the in-memory heap grew with the file (1182 MiB at 100k records against 762 without)."""
    import tracemalloc

    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets.table import table_cast  # noqa: F401  (imported before tracing: imports allocate too)

    rng = np.random.default_rng(0)
    rows = 40 * 25
    series = pa.array([[rng.standard_normal(1000).astype(np.float32)] for _ in range(rows)],
                      type=pa.list_(pa.list_(pa.float32())))
    path = tmp_path / "big.parquet"
    pq.write_table(pa.table({"input": ["x <ts><ts/>"] * rows, "timeseries": series}), path, row_group_size=25,
                   compression="none")
    size = path.stat().st_size  # ~6 MB in 40 row groups
    tracemalloc.start()
    try:
        read = sum(make(None).num_rows for _, make in file_cache.parquet_pieces([str(path)]))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert read == rows
    assert peak < size / 4, f"{peak} bytes held while reading a {size}-byte file"


def test_an_unreadable_parquet_file_is_left_to_datasets(tmp_path, caplog):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 not really parquet PAR1")
    with caplog.at_level(logging.INFO, logger="tsplugin"):
        assert file_cache.load_files("parquet", [str(bad)], "timeseries", str(tmp_path / "c")) is None
    assert "datasets' Parquet reader used for" in caplog.text and str(bad) in caplog.text


def test_llamafactory_gets_the_same_tokenised_parquet_dataset_either_way(tiny_qwen3ts, tmp_path, monkeypatch):
    records = [r for r in _records(30, seed=5) if r["timeseries"]]
    data = tmp_path / "data"
    data.mkdir()
    _parquet(data / "p.parquet", records)
    (data / "dataset_info.json").write_text(json.dumps({"p": {"file_name": "p.parquet", "columns": {
        "prompt": "input", "response": "output", "system": "system", "timeseries": "timeseries"}}}))
    fast = tokenised(tiny_qwen3ts, tmp_path, data, "p", cache_dir=str(tmp_path / "cache_fast"))[0]
    assert list((tmp_path / "cache_fast" / "tsplugin_files").rglob("train.arrow"))
    monkeypatch.setenv(file_cache.ENV, "datasets")
    slow = tokenised(tiny_qwen3ts, tmp_path, data, "p", cache_dir=str(tmp_path / "cache_slow"))[0]
    assert not (tmp_path / "cache_slow" / "tsplugin_files").exists()
    for column in ("input_ids", "labels", "attention_mask", "audios"):
        assert fast[column] == slow[column]
