"""Round trip: tsconvert output loads with datasets.load_dataset and through LLaMA-Factory's own
dataset_info parser and converters (chatts and sharegpt entries), with nothing dropped."""

from __future__ import annotations

import json

import pytest

from conftest import GDSH, GDSH_CSV, convert_dir, gdsh_record, tsconvert

datasets = pytest.importorskip("datasets")
parser = pytest.importorskip("llamafactory.data.parser")
converter = pytest.importorskip("llamafactory.data.converter")
hparams = pytest.importorskip("llamafactory.hparams")


def _load_through_llamafactory(out, name):
    (attr,) = parser.get_dataset_list([name], str(out))
    ds = datasets.load_dataset("json", data_files=str(out / attr.dataset_name), split="train")
    conv = converter.get_dataset_converter(attr.formatting, attr, hparams.DataArguments(dataset_dir=str(out)))
    return attr, ds, [conv(row) for row in ds]


def test_chatts_output_round_trips(tmp_path):
    assert tsconvert([str(GDSH), "--csv-dir", str(GDSH_CSV), "-o", str(tmp_path), "--name", "gdsh_sample", "-q"]) == 0
    attr, ds, converted = _load_through_llamafactory(tmp_path, "gdsh_sample")
    assert (attr.load_from, attr.formatting, attr.prompt, attr.response) == ("file", "alpaca", "input", "output")
    assert ds.num_rows == 12 and set(ds.column_names) == {"input", "output", "timeseries"}
    assert len(ds[10]["timeseries"]) == 2 and len(ds[10]["timeseries"][0]) > 4000
    for row, conv in zip(ds, converted):
        assert conv["_prompt"] == [{"role": "user", "content": row["input"]}]
        assert conv["_response"] == [{"role": "assistant", "content": row["output"]}]


def test_sharegpt_output_round_trips_with_system(tmp_path):
    a = "/x/a.PV.jpg"
    recs = [
        {"messages": [{"role": "system", "content": "你是专家"}, {"role": "user", "content": "<image>?"},
                      {"role": "assistant", "content": "a1"}, {"role": "user", "content": "again?"},
                      {"role": "assistant", "content": "a2"}], "images": [a]},
        gdsh_record(a),
    ]
    code, out = convert_dir(tmp_path, recs, {"a.PV.csv": None}, "--format", "sharegpt")
    assert code == 0
    attr, ds, converted = _load_through_llamafactory(out, "ds")
    assert attr.formatting == "sharegpt" and attr.messages == "messages" and attr.system_tag == "system"
    assert ds.num_rows == 2
    assert converted[0]["_system"] == "你是专家"
    assert [m["content"] for m in converted[0]["_prompt"]] == ["<ts><ts/>?", "a1", "again?"]
    assert converted[0]["_response"] == [{"role": "assistant", "content": "a2"}]
    assert converted[1]["_system"] == "" and converted[1]["_response"][0]["content"] == '{"is_anomaly": false}'


def test_chatts_dev_entry_shape_matches_ours(tmp_path):
    from conftest import CHATTS_DEV

    ref = json.loads((CHATTS_DEV / "dataset_info.json").read_text())["chatts_dev"]
    tsconvert([str(GDSH), "--csv-dir", str(GDSH_CSV), "-o", str(tmp_path), "--name", "x", "-q"])
    ours = json.loads((tmp_path / "dataset_info.json").read_text())["x"]
    assert ours["columns"] == ref["columns"]


def test_chatts_system_prompt_column_round_trips(tmp_path):
    recs = [
        {"messages": [{"role": "system", "content": "你是工艺专家"}, {"role": "user", "content": "<image>"},
                      {"role": "assistant", "content": "ok"}], "images": ["/x/a.PV.jpg"]},
        {"messages": [{"role": "user", "content": "no series here"}, {"role": "assistant", "content": "fine"}]},
    ]
    code, out = convert_dir(tmp_path, recs, {"a.PV.csv": None})
    assert code == 0
    attr, ds, converted = _load_through_llamafactory(out, "ds")
    assert attr.system == "system"
    assert converted[0]["_system"] == "你是工艺专家" and converted[1]["_system"] in ("", None)
    assert ds[1]["timeseries"] == []
    report = json.loads((out / "ds.report.json").read_text())
    assert report["notes"] == {"records_without_series": 1}
