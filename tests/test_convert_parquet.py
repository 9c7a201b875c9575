"""`tsconvert --file-type parquet`: the same records, rejects, report and dataset_info entry as JSONL, the series
as list<float32> (float64 on request), written in row groups; `validate` and training read it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from converters.cli import main as tsconvert_main

from conftest import ROOT, convert_dir, gdsh_record, lf_args, read_jsonl, run_lf, trainer_losses, tsconvert

SAMPLE = ROOT / "dataset_info" / "gdsh_sample_source"


def _convert_sample(out: Path, name: str, *extra: str) -> int:
    return tsconvert([str(SAMPLE / "gdsh.json"), "--csv-dir", str(SAMPLE / "timeseries" / "gdsh"), "-o", str(out),
                      "--name", name, "-q", *extra])


@pytest.mark.parametrize("series_dtype", ["float32", "float64"])
def test_parquet_holds_the_jsonl_records_and_the_same_entry_rejects_and_report(tmp_path, series_dtype):
    out = tmp_path / "out"
    assert _convert_sample(out, "j") == 0
    assert _convert_sample(out, "p", "--file-type", "parquet", "--series-dtype", series_dtype) == 0
    table = pq.read_table(out / "p.parquet")
    assert table.schema.field("timeseries").type == pa.list_(pa.list_(pa.from_numpy_dtype(np.dtype(series_dtype))))
    want, got = read_jsonl(out / "j.jsonl"), table.to_pylist()
    assert len(got) == len(want) == 12
    for g, w in zip(got, want):
        assert {k: v for k, v in g.items() if k != "timeseries" and v is not None} == {k: v for k, v in w.items() if k != "timeseries"}
        assert len(g["timeseries"]) == len(w["timeseries"])
        for a, b in zip(g["timeseries"], w["timeseries"]):
            # float64 keeps every bit; float32 is the float64 value rounded once to float32
            np.testing.assert_array_equal(np.asarray(a, series_dtype), np.asarray(b).astype(series_dtype))
    info = json.loads((out / "dataset_info.json").read_text())
    assert info["p"] == {**info["j"], "file_name": "p.parquet"}
    assert (out / "p.rejects.jsonl").read_bytes() == (out / "j.rejects.jsonl").read_bytes()
    report_p, report_j = (json.loads((out / f"{n}.report.json").read_text()) for n in "pj")
    assert report_p.pop("options") == {**report_j.pop("options"), "file_type": "parquet", "series_dtype": series_dtype}
    assert report_p == report_j


def test_parquet_is_written_in_row_groups_as_records_arrive(tmp_path, monkeypatch):
    from converters import filetypes

    monkeypatch.setattr(filetypes, "ROW_GROUP_ROWS", 5)
    assert _convert_sample(tmp_path / "out", "p", "--file-type", "parquet") == 0
    meta = pq.ParquetFile(tmp_path / "out" / "p.parquet").metadata
    assert [meta.row_group(g).num_rows for g in range(meta.num_row_groups)] == [5, 5, 2]


def test_sharegpt_system_prompt_first_seen_after_the_first_row_group_keeps_its_column(tmp_path, monkeypatch):
    from converters import filetypes

    monkeypatch.setattr(filetypes, "ROW_GROUP_ROWS", 2)
    records = [gdsh_record("a.PV.jpg") for _ in range(3)]
    records[2]["messages"].insert(0, {"role": "system", "content": "You read plant sensors."})
    code, out = convert_dir(tmp_path, records, {"a.PV.csv": None}, "--format", "sharegpt", "--file-type", "parquet")
    assert code == 0
    rows = pq.read_table(out / "ds.parquet").to_pylist()
    assert [m["role"] for m in rows[2]["messages"]] == ["system", "user", "assistant"]
    assert rows[2]["messages"][0]["content"] == "You read plant sensors."


def test_a_value_beyond_float32_is_a_rejection_naming_the_point_and_float64_keeps_it(tmp_path):
    rows = [f"2025-06-01 00:00:{i:02d},1e39" for i in range(20)]  # centred values are 0: fine for the fp32 model check
    code, out = convert_dir(tmp_path, [gdsh_record("a.PV.jpg")], {"a.PV.csv": rows}, "--file-type", "parquet")
    assert code == 0
    (reject,) = read_jsonl(out / "ds.rejects.jsonl")
    assert reject["reason"] == "value_out_of_range"
    assert "point 0 (value 1e+39) is beyond the float32 range" in reject["message"] and "--series-dtype float64" in reject["message"]
    code, out = convert_dir(tmp_path, [gdsh_record("a.PV.jpg")], {"a.PV.csv": rows}, "--file-type", "parquet",
                            "--series-dtype", "float64", name="wide")
    assert code == 0 and pq.read_table(out / "wide.parquet").to_pylist()[0]["timeseries"] == [[1e39] * 20]


def test_file_type_options_are_checked(tmp_path, capsys):
    from converters import cli, filetypes

    assert cli.FILE_TYPE_CHOICES == filetypes.FILE_TYPES and sorted(filetypes.SINKS.names()) == sorted(filetypes.FILE_TYPES)
    assert cli.SERIES_DTYPE_CHOICES == filetypes.SERIES_DTYPES
    src = str(SAMPLE / "gdsh.json")
    with pytest.raises(SystemExit) as exit_:
        tsconvert([src, "--csv-dir", str(SAMPLE), "--format", "parquet"])
    assert exit_.value.code == 2
    assert "the file type is --file-type: pass --file-type parquet" in capsys.readouterr().err
    assert tsconvert([src, "--csv-dir", str(SAMPLE), "-o", str(tmp_path), "--series-dtype", "float64"]) == 2
    assert "--series-dtype float64 applies to --file-type parquet" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_validate_reads_parquet_and_names_bad_records(tmp_path, capsys):
    assert _convert_sample(tmp_path, "p", "--file-type", "parquet") == 0
    assert tsconvert(["validate", str(tmp_path / "p.parquet")]) == 0
    assert "12 records: 12 valid + 0 rejected" in capsys.readouterr().out
    rows = pq.read_table(tmp_path / "p.parquet").to_pylist()
    rows[3]["input"] += " <ts><ts/>"
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "bad.parquet")
    assert tsconvert(["validate", str(tmp_path / "bad.parquet")]) == 1
    assert "bad.parquet: record 3: 2 <ts><ts/> placeholders but 1 series" in capsys.readouterr().err
    (tmp_path / "junk.parquet").write_bytes(b"not parquet\n")
    assert tsconvert(["validate", str(tmp_path / "junk.parquet")]) == 2
    assert "junk.parquet: not a readable Parquet file" in capsys.readouterr().err


def test_forecast_parquet_splits_hold_the_jsonl_windows(tmp_path):
    n = 40
    lines = ["date,a,OT"] + [f"2024-01-01 00:{i:02d}:00,{i * 0.5},{(i % 7) * 1.5}" for i in range(n)]
    csv = tmp_path / "d.csv"
    csv.write_text("\n".join(lines) + "\n")
    common = ["forecast", str(csv), "--seq-len", "6", "--pred-len", "2", "--features", "M", "-o", str(tmp_path / "out"), "-q"]
    assert tsconvert_main([*common, "--name", "j"]) == 0
    assert tsconvert_main([*common, "--name", "p", "--file-type", "parquet", "--series-dtype", "float64"]) == 0
    info = json.loads((tmp_path / "out" / "dataset_info.json").read_text())
    for split in ("train", "val", "test"):
        assert info[f"p_{split}"] == {**info[f"j_{split}"], "file_name": f"p_{split}.parquet"}
        assert pq.read_table(tmp_path / "out" / f"p_{split}.parquet").to_pylist() == read_jsonl(tmp_path / "out" / f"j_{split}.jsonl")


def test_forecast_refusal_mid_split_closes_every_sink_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    """The column checks refuse out-of-range data before any window is written; should encoding still refuse a
    window (the last guard), the run stops with one error, every split's writer is closed and nothing is left."""
    import converters.forecast as forecast
    from converters.errors import RejectError

    opened, encoded = [], []
    real_open, real_encode = forecast.open_sink, forecast.encode_series

    def recording_sink(*args, **kwargs):
        opened.append(sink := real_open(*args, **kwargs))
        return sink

    def refusing_encode(values, storage, shown, column):
        encoded.append(column)
        if len(encoded) == 36:  # the first val window (60 rows: 35 train windows)
            raise RejectError("value_out_of_range", f"{shown}: column {column!r} window does not fit {storage}")
        return real_encode(values, storage, shown, column)

    monkeypatch.setattr(forecast, "open_sink", recording_sink)
    monkeypatch.setattr(forecast, "encode_series", refusing_encode)
    csv = tmp_path / "d.csv"
    csv.write_text("date,OT\n" + "".join(f"2024-01-01 00:{i:02d}:00,{i * 0.5}\n" for i in range(60)))
    out = tmp_path / "out"
    argv = ["forecast", str(csv), "--seq-len", "6", "--pred-len", "2", "-o", str(out), "--name", "p", "--file-type", "parquet", "-q"]
    assert tsconvert_main(argv) == 2
    assert "window does not fit float32" in capsys.readouterr().err
    assert len(opened) >= 2 and all(not s.writer.is_open for s in opened if s.writer is not None)
    assert opened[-1].writer is not None  # the sink that was being written when the refusal came was closed too
    assert not out.exists() or list(out.iterdir()) == []  # nothing staged is left behind


def test_training_reads_parquet_in_memory_and_streaming_with_the_jsonl_losses(tiny_qwen3ts, tmp_path):
    data = tmp_path / "data"
    assert _convert_sample(data, "j") == 0
    assert _convert_sample(data, "p", "--file-type", "parquet", "--series-dtype", "float64") == 0
    losses = {}
    for name, extra in (("j", dict(disable_shuffling=True)), ("p", dict(disable_shuffling=True)),
                        ("p_stream", dict(streaming=True, buffer_size=1))):
        out = tmp_path / name
        run_lf(**lf_args(tiny_qwen3ts, out, dataset=name[0], dataset_dir=str(data), max_steps=3, **extra))
        losses[name] = trainer_losses(out)
    assert len(losses["j"]) == 3
    assert losses["p"] == losses["j"]  # the same float64 values, the same order: the same computation
    assert max(abs(a - b) for a, b in zip(losses["p_stream"], losses["j"])) <= 1e-4  # one unit of the logged rounding
