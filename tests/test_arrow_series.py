"""The series stay in Arrow in memory (tsplugin.llamafactory.arrow_series), and a streamed local file is read by
`datasets` itself, without LLaMA-Factory's whole-file load into the Arrow cache (CPU, tiny model, no training)."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import tokenised, write_dataset


def _record(k: int, lengths: tuple[int, ...]) -> dict:
    return {"input": f"Record {k}: " + " ".join("<ts><ts/>" for _ in lengths) + " Rising?", "output": f"answer {k}",
            "timeseries": [[round(0.25 * i + k, 2) for i in range(n)] for n in lengths]}


def _ts_positions(module, ids: list[int]) -> int:
    return ids.count(module["tokenizer"].convert_tokens_to_ids("<ts>"))


def test_in_memory_rows_get_their_own_series_back_after_drops_and_across_datasets(tiny_qwen3ts, tmp_path):
    from tsplugin.processing import TimeSeriesProcessor

    # cutoff_len 256: the 2400-point records (300 patches) are dropped, so the kept rows are not 0..N-1.
    a = [_record(0, (40,)), _record(1, (2400,)), _record(2, ()), _record(3, (17, 33)), _record(4, (2400,))]
    b = [_record(5, (25,)), _record(6, (9,))]
    data = write_dataset(tmp_path / "data", "a", a)
    write_dataset(data, "b", b)
    dataset, module = tokenised(tiny_qwen3ts, tmp_path, data, "a,b", cutoff_len=256)
    kept = [r for r in a + b if 2400 not in [len(s) for s in r["timeseries"]]]
    assert len(dataset) == len(kept)
    assert [row or [] for row in dataset["audios"]] == [r["timeseries"] for r in kept]  # exact values, in order
    patches = TimeSeriesProcessor.from_pretrained(tiny_qwen3ts).num_patches
    for row, record in zip(dataset, kept):  # each row's text and series belong together
        assert _ts_positions(module, row["input_ids"]) == sum(patches(len(s)) for s in record["timeseries"])
    assert "_ts_row" not in dataset.column_names


@pytest.mark.parametrize("series, safe", [
    ([[[1.0, -2.5]], None, [[3.0], [4.0, 5.0]]], True),
    ([[[1.0, float("nan")]]], False),
    ([[[1.0, float("inf")]]], False),
    ([[[1.0, None]]], False),
    ([[[1.0], None]], False),  # a null series inside a record
    ([[[]]], False),  # an empty series
    ([[[1.0, 20000.0]]], False),  # beyond fp16's safe magnitude (65504 / 4)
])
def test_all_values_safe_is_a_sufficient_test_for_the_per_series_checks(series, safe):
    from datasets import Dataset

    from tsplugin.llamafactory.arrow_series import all_values_safe
    from tsplugin.processing.encodable import safe_magnitude
    from tsplugin.processing.series_values import series_problem

    dataset = Dataset.from_dict({"_audios": series})
    assert all_values_safe(dataset, "_audios", safe_magnitude("fp16")) is safe
    if safe:  # what it passes, the per-series check passes too
        assert all(series_problem(s, "fp16") is None for row in series for s in row or [])


def test_a_stray_placeholder_in_a_text_only_dataset_merged_with_series_is_still_refused(tiny_qwen3ts, tmp_path):
    # the tokeniser skips the second placeholder check only for records with series (check_aligned checked those);
    # a text-only dataset beside them was not checked by check_aligned
    data = write_dataset(tmp_path / "data", "a", [_record(0, (40,))])
    write_dataset(data, "t", [{"input": "plain <ts><ts/> text", "output": "x"}], columns={"prompt": "input", "response": "output"})
    with pytest.raises(ValueError, match="placeholder"):
        tokenised(tiny_qwen3ts, tmp_path, data, "a,t")


def test_a_null_in_an_arrow_series_is_named_as_before():
    from datasets import Dataset

    from tsplugin.llamafactory.arrow_series import has_numeric_series, series_rows
    from tsplugin.llamafactory.data import TimeSeriesDataError, check_aligned, check_row

    prompt = [{"role": "user", "content": "See <ts><ts/>"}]
    rows = [{"_prompt": prompt, "_response": [{"role": "assistant", "content": "ok"}], "_system": "", "_audios": s}
            for s in ([[1.0, 2.0]], [[1.0, None, 3.0]])]
    dataset = Dataset.from_list(rows)
    assert has_numeric_series(dataset, "_audios")
    assert [s if s is None else [list(x) for x in s] for s in series_rows(dataset, "_audios")] == [[[1.0, 2.0]], [[1.0, None, 3.0]]]
    with pytest.raises(TimeSeriesDataError) as arrow_path:
        check_aligned(dataset, "d.jsonl", "timeseries")
    with pytest.raises(TimeSeriesDataError) as list_path:
        check_row(rows[1], 1, "d.jsonl", "timeseries")
    assert str(arrow_path.value) == str(list_path.value)
    assert "d.jsonl: record 1: series 0: value 1 is None" in str(arrow_path.value)


def test_streamed_local_file_is_read_in_file_order_without_the_arrow_cache(tiny_qwen3ts, tmp_path):
    records = [_record(k, (20 + 8 * k,)) for k in range(5)]
    data = write_dataset(tmp_path / "data", "s", records)
    cache = tmp_path / "cache"
    dataset, module = tokenised(tiny_qwen3ts, tmp_path, data, "s", streaming=True, buffer_size=1, max_steps=2,
                                 cache_dir=str(cache))
    rows = list(dataset)
    assert [row["audios"] for row in rows] == [r["timeseries"] for r in records]
    # LLaMA-Factory 0.9.5 loads a file_name entry whole into the cache first (load_dataset without streaming).
    assert not list(cache.rglob("*.arrow")), sorted(p.name for p in cache.rglob("*"))


def test_a_streamed_file_that_datasets_cannot_read_names_the_record(tiny_qwen3ts, tmp_path):
    from tsplugin.llamafactory.data import TimeSeriesDataError

    bad = _record(1, (30,))
    bad["timeseries"][0][3] = "x"
    data = write_dataset(tmp_path / "data", "bad", [_record(0, (30,)), bad])
    with pytest.raises(TimeSeriesDataError, match=r"bad.jsonl: record 1 .*series 0: value 3 is 'x'"):
        dataset, _ = tokenised(tiny_qwen3ts, tmp_path, data, "bad", streaming=True, buffer_size=1, max_steps=2)
        list(dataset)


def test_a_float32_parquet_file_and_a_jsonl_file_of_whole_numbers_train_together(tiny_qwen3ts, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from conftest import update_dataset_info

    ints = [{**_record(k, ()), "timeseries": [[k + i for i in range(24)]]} for k in range(2)]  # int64 in Arrow
    for r in ints:
        r["input"] = "Record: <ts><ts/> Rising?"
    data = write_dataset(tmp_path / "data", "j", ints)
    floats = [_record(k, (30,)) for k in range(2, 4)]
    table = pa.table({"input": [r["input"] for r in floats], "output": [r["output"] for r in floats],
                      "timeseries": pa.array([r["timeseries"] for r in floats], pa.list_(pa.list_(pa.float32())))})
    pq.write_table(table, data / "p.parquet")
    update_dataset_info(data / "dataset_info.json", "p", {"file_name": "p.parquet", "columns": {
        "prompt": "input", "response": "output", "timeseries": "timeseries"}})
    dataset, _ = tokenised(tiny_qwen3ts, tmp_path, data, "j,p")
    expected = [r["timeseries"] for r in ints] + [[[float(v) for v in pa.array(s, pa.float32()).to_pylist()]
                                                   for s in r["timeseries"]] for r in floats]
    assert dataset["audios"] == expected


def _write_parquet(path, records: list[dict], rows_per_group: int, **options) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"input": [r["input"] for r in records], "output": [r["output"] for r in records],
                      "timeseries": pa.array([r["timeseries"] for r in records], pa.list_(pa.list_(pa.float64())))})
    pq.write_table(table, path, row_group_size=rows_per_group, **options)


def test_a_streamed_parquet_folder_gives_the_in_memory_records_file_by_file_in_row_order(tiny_qwen3ts, tmp_path):
    # A folder's files are the stream's shards (as in `datasets`' own streams): LLaMA-Factory's `shuffle(buffer_size)`
    # may change the order of the files; buffer_size 1 keeps each file's row order.
    from conftest import update_dataset_info

    records = [_record(k, (20 + 8 * (k % 4),) * (1 + k % 2)) for k in range(11)]
    folder = tmp_path / "data" / "p"
    folder.mkdir(parents=True)
    _write_parquet(folder / "a.parquet", records[:7], rows_per_group=3)  # row groups of 3, 3, 1 records
    _write_parquet(folder / "b.parquet", records[7:], rows_per_group=2)
    update_dataset_info(tmp_path / "data" / "dataset_info.json", "p", {"file_name": "p", "columns": {
        "prompt": "input", "response": "output", "timeseries": "timeseries"}})
    cache = tmp_path / "cache"
    streamed, _ = tokenised(tiny_qwen3ts, tmp_path, tmp_path / "data", "p", streaming=True, buffer_size=1,
                             max_steps=2, cache_dir=str(cache))
    in_memory, _ = tokenised(tiny_qwen3ts, tmp_path, tmp_path / "data", "p", disable_shuffling=True)
    rows = list(streamed)
    by_file = [r["timeseries"] for r in records]
    assert [row["audios"] for row in rows] in (by_file, by_file[7:] + by_file[:7])  # exact values, row order
    assert [row["audios"] for row in rows] == in_memory["audios"]  # here the in-memory order too (b.parquet first)
    assert [row["input_ids"] for row in rows] == in_memory["input_ids"]
    assert [row["labels"] for row in rows] == in_memory["labels"]
    assert not list(cache.rglob("*.arrow")), sorted(p.name for p in cache.rglob("*"))


def test_a_streamed_jsonl_folder_gives_each_record_once_and_names_the_bad_files_record(tiny_qwen3ts, tmp_path):
    # Each file is a shard: the error-naming wrapper streams each shard's own files (it once streamed every file
    # once per shard: two files gave every record twice).
    from conftest import update_dataset_info
    from tsplugin.llamafactory.data import TimeSeriesDataError

    records = [_record(k, (20 + 8 * (k % 4),)) for k in range(7)]
    folder = tmp_path / "data" / "j"
    folder.mkdir(parents=True)
    for name, part in (("a.jsonl", records[:4]), ("b.jsonl", records[4:])):
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in part))
    update_dataset_info(tmp_path / "data" / "dataset_info.json", "j", {"file_name": "j", "columns": {
        "prompt": "input", "response": "output", "timeseries": "timeseries"}})
    streamed, _ = tokenised(tiny_qwen3ts, tmp_path, tmp_path / "data", "j", streaming=True, buffer_size=1, max_steps=2)
    got = [row["audios"] for row in streamed]
    by_file = [r["timeseries"] for r in records]
    assert got in (by_file, by_file[4:] + by_file[:4])
    bad = dict(records[5], timeseries=[[1.0, "x", 2.0]])
    (folder / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (records[4], bad)))
    with pytest.raises(TimeSeriesDataError, match=r"b.jsonl: record 1 .*series 0: value 1 is 'x'"):
        streamed, _ = tokenised(tiny_qwen3ts, tmp_path, tmp_path / "data", "j", streaming=True, buffer_size=1, max_steps=2)
        list(streamed)


def test_the_parquet_stream_holds_one_batch_of_rows_not_the_row_groups_read_so_far(tmp_path):
    # pyarrow's pre-buffering (its default, and `datasets`' Parquet stream) keeps every row group read until the file
    # is closed: its memory pool grew by the file's size over one pass. Random float64 do not compress: 4096 records
    # of 512 points in row groups of 32 records (128 KiB) make a 16 MiB file; a batch of rows is 256 records (1 MiB).
    import numpy as np
    import pyarrow as pa

    from tsplugin.llamafactory.parquet_stream import stream_parquet

    rng = np.random.default_rng(0)
    records = [{"input": f"{k}: <ts><ts/>", "output": "ok", "timeseries": [rng.normal(size=512).tolist()]} for k in range(4096)]
    path = tmp_path / "big.parquet"
    _write_parquet(path, records, rows_per_group=32)
    assert path.stat().st_size > 16 << 20
    baseline = pa.total_allocated_bytes()
    peak = 0
    for k, row in enumerate(stream_parquet([str(path)])):
        peak = max(peak, pa.total_allocated_bytes() - baseline)
        assert row["timeseries"][0][:3] == records[k]["timeseries"][0][:3]
    assert k == 4095
    assert peak < 6 << 20, f"{peak / 2**20:.1f} MiB of Arrow memory held while streaming a 16 MiB file"


def test_a_parquet_file_corrupt_past_its_first_batch_names_the_record_reached(tmp_path):
    import pyarrow.parquet as pq

    from tsplugin.llamafactory.data import TimeSeriesDataError
    from tsplugin.llamafactory.parquet_stream import stream_parquet

    path = tmp_path / "p.parquet"
    _write_parquet(path, [_record(k, (30,)) for k in range(600)], rows_per_group=256, compression="none")  # one batch each
    offset = pq.ParquetFile(path).metadata.row_group(1).column(0).data_page_offset
    with open(path, "r+b") as f:  # the page header of the second row group's first column
        f.seek(offset)
        f.write(b"\xff" * 16)
    stream = iter(stream_parquet([str(path)]))
    assert [next(stream)["output"] for _ in range(256)] == [f"answer {k}" for k in range(256)]
    with pytest.raises(TimeSeriesDataError, match=r"p.parquet: not a readable Parquet file at record 256 \(.*convert the "
                                                  r"records again with --file-type parquet"):
        next(stream)


def test_reading_a_streams_column_names_leaves_no_file_open(tmp_path):
    import os

    from tsplugin.llamafactory.data import _first_columns
    from tsplugin.llamafactory.parquet_stream import stream_parquet

    path = tmp_path / "p.parquet"
    _write_parquet(path, [_record(k, (30,)) for k in range(6)], rows_per_group=2)

    def open_copies() -> int:
        fds = os.listdir("/proc/self/fd")
        return sum(1 for fd in fds if os.path.realpath(f"/proc/self/fd/{fd}") == str(path))

    stream = stream_parquet([str(path)]).map(lambda row: {"extra": 1})  # column names unknown after a map
    assert _first_columns(stream) == ["input", "output", "timeseries", "extra"]
    assert open_copies() == 0

def test_ids_labels_and_series_equal_the_plain_path_for_jsonl_and_float32_parquet(tiny_qwen3ts, tmp_path, monkeypatch):
    """The fast path (series in Arrow, float32 read as stored, `<ts>` runs spliced as ids) against the plain one
    (series as Python lists through LLaMA-Factory's maps, the whole expanded text to the tokenizer): the same
    input_ids, labels and series per record, from a JSONL file and from a float32 Parquet file of the same values."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    import tsplugin.llamafactory.arrow_series as arrow_series
    import tsplugin.llamafactory.data as lf_data
    import tsplugin.llamafactory.position_ids as position_ids
    from conftest import update_dataset_info

    rng = np.random.default_rng(3)
    shapes = [(), (1,), (17, 40), (9, 33, 250)]
    records = [{"input": f"Look{k}:" + "".join(f"<ts><ts/>{'' if j % 2 else ' then '}" for j in range(len(n))) + "ok?",
                "output": f"answer {k}",
                "timeseries": [np.float32(rng.normal(size=m) * 40 + 1000).astype(np.float64).tolist() for m in n]}
               for k, n in enumerate(shapes)]
    data = write_dataset(tmp_path / "data", "j", records)
    table = pa.table({"input": [r["input"] for r in records], "output": [r["output"] for r in records],
                      "timeseries": pa.array([r["timeseries"] for r in records], pa.list_(pa.list_(pa.float32())))})
    pq.write_table(table, data / "p.parquet")
    update_dataset_info(data / "dataset_info.json", "p", {"file_name": "p.parquet", "columns": {
        "prompt": "input", "response": "output", "timeseries": "timeseries"}})

    def rows(name: str) -> list[tuple]:
        dataset, module = tokenised(tiny_qwen3ts, tmp_path, data, name)
        return [(r["input_ids"], r["labels"], r["audios"] or []) for r in dataset]

    fast = {name: rows(name) for name in ("j", "p")}
    monkeypatch.setattr(position_ids, "splice_id", lambda tokenizer, token: None)  # the whole text to the tokenizer
    monkeypatch.setattr(arrow_series, "has_numeric_series", lambda dataset, column: False)  # series as Python lists
    monkeypatch.setattr(lf_data, "has_numeric_series", lambda dataset, column: False)
    plain = rows("j")
    assert [r[2] for r in plain] == [r["timeseries"] for r in records]
    assert fast["j"] == plain
    assert fast["p"] == plain


_TEXT = st.lists(st.sampled_from(["<ts><ts/>", "<ts></ts>", "<ts>", "<ts/>", "</ts>", "<t", "s>", "s/>", "<", "x", " "]),
                 max_size=5).map("".join)
_MESSAGE = st.fixed_dictionaries({"role": st.sampled_from(["user", "user", "assistant", "function"]), "content": _TEXT})
_ROW = st.fixed_dictionaries({"_prompt": st.lists(_MESSAGE, min_size=1, max_size=3),
                              "_response": st.lists(_MESSAGE.map(lambda m: {**m, "role": "assistant"}), max_size=1),
                              "_system": st.one_of(st.just(""), _TEXT), "n": st.integers(0, 3)})


@settings(max_examples=300, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_ROW, min_size=1, max_size=6))
def test_placeholders_fit_says_yes_exactly_when_no_record_has_a_placeholder_problem(rows):
    # the Arrow column test lets check_aligned skip the per-record loop: what it passes, every record passes
    from datasets import Dataset

    from tsplugin.llamafactory.arrow_series import placeholders_fit
    from tsplugin.llamafactory.data import _turns
    from tsplugin.processing.placeholders import placeholder_problem

    records = [{**{k: v for k, v in row.items() if k != "n"}, "_audios": [[1.0]] * row["n"]} for row in rows]
    dataset = Dataset.from_list(records)
    every_record_fits = all(placeholder_problem(_turns(r), len(r["_audios"])) is None for r in records)
    assert placeholders_fit(dataset, "_audios") is every_record_fits


def test_placeholders_fit_leaves_what_it_cannot_read_to_the_per_record_checks():
    from datasets import Dataset

    from tsplugin.llamafactory.arrow_series import placeholders_fit

    good = {"_prompt": [{"role": "user", "content": "<ts><ts/>"}], "_response": [{"role": "assistant", "content": "ok"}],
            "_system": "", "_audios": [[1.0]]}
    assert placeholders_fit(Dataset.from_list([good]), "_audios")
    assert placeholders_fit(Dataset.from_list([good, good]).select([1]), "_audios")  # a select view: the whole table
    assert not placeholders_fit(Dataset.from_list([{**good, "_system": 5}]), "_audios")  # not a string column
    assert not placeholders_fit(Dataset.from_list([{**good, "_prompt": [{"role": None, "content": "<ts><ts/>"}]}]), "_audios")
    assert not placeholders_fit(Dataset.from_list([good]).remove_columns(["_response"]), "_audios")
