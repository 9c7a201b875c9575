"""`tsconvert forecast`: windows, chronological split, train-only scaling, answers and errors, checked
by hand on a 30-row CSV (seq 4 -> pred 2: train targets rows [0,21), val [21,24), test [24,30))."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from converters.cli import main
from converters.errors import InputError
from converters.forecast import ForecastOptions, cap_evenly, convert_forecast, min_rows, split_borders, window_starts

N = 30


def write_csv(path: Path, a=None, ot=None, header="date,a,OT") -> Path:
    a = np.arange(N, dtype=float) if a is None else a
    ot = np.arange(N, dtype=float) ** 2 if ot is None else ot
    lines = [header] + [f"2024-01-01 {i // 60:02d}:{i % 60:02d}:00,{x},{y}" for i, (x, y) in enumerate(zip(a, ot))]
    path.write_text("\n".join(lines) + "\n")
    return path


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def convert(tmp_path: Path, csv: Path | None = None, **kw) -> tuple[dict, Path]:
    csv = csv or write_csv(tmp_path / "d.csv")
    out = tmp_path / kw.pop("out", "out")
    opts = dict(csv=csv, seq_len=4, pred_len=2, out_dir=out, name="d")
    opts.update(kw)
    return convert_forecast(ForecastOptions(**opts)), out


def test_split_borders_and_window_starts_by_hand():
    assert split_borders(N) == {"train": (0, 21), "val": (21, 24), "test": (24, 30)}
    b = split_borders(N)
    assert window_starts(b["train"], 4, 2) == list(range(0, 16))    # last window: inputs 15..18, targets 19, 20
    assert window_starts(b["val"], 4, 2) == [17, 18]                  # targets 21-22 and 22-23
    assert window_starts(b["test"], 4, 2) == [20, 21, 22, 23, 24]     # inputs start 4 points before row 24
    assert window_starts(b["train"], 4, 2, stride=5) == [0, 5, 10, 15]
    assert window_starts((21, 22), 4, 2) == []
    assert cap_evenly(list(range(16)), 4) == [0, 5, 10, 15]
    assert cap_evenly(list(range(16)), 1) == [0]
    assert cap_evenly([3, 4], 5) == [3, 4]
    # 11 rows: train 7 >= seq+pred, val 2 and test 2 >= pred; 10 rows leave val 1 point.
    assert min_rows(4, 2) == 11 and split_borders(10)["val"] == (7, 8)


def test_univariate_records_exact_values_scaling_and_targets_inside_their_split(tmp_path):
    report, out = convert(tmp_path, features="S", precision=3)
    train, val, test = (read(out / f"d_{s}.jsonl") for s in ("train", "val", "test"))
    assert [r["window_start"] for r in train] == list(range(16))
    assert [r["window_start"] for r in val] == [17, 18]
    assert [r["window_start"] for r in test] == [20, 21, 22, 23, 24]
    ot = np.arange(N, dtype=float) ** 2
    # Train rows 0..20 only, ddof 0: sum i^2 = 2870, sum i^4 = 722666.
    mean, std = 2870 / 21, math.sqrt(722666 / 21 - (2870 / 21) ** 2)
    first = train[0]
    assert first["scaling"] == {"OT": {"mean": pytest.approx(mean), "std": pytest.approx(std)}}
    assert first["normalized"] is True and first["variables"] == ["OT"] and first["targets"] == ["OT"]
    np.testing.assert_allclose(first["timeseries"], [(ot[0:4] - mean) / std])
    assert first["output"] == ", ".join(f"{v:.3f}" for v in (ot[4:6] - mean) / std)
    assert first["input"].count("<ts><ts/>") == 1
    assert "next 2 values of OT" in first["input"] and "3 decimals" in first["input"]
    # No target of a split comes from an earlier split's rows.
    for recs, (lo, hi) in ((train, (0, 21)), (val, (21, 24)), (test, (24, 30))):
        for r in recs:
            assert lo <= r["window_start"] + 4 and r["window_start"] + 6 <= hi
    assert report["windows"]["test"] == {"available": 5, "written": 5, "first_start": 20, "last_start": 24}
    scaling = json.loads((out / "d.scaling.json").read_text())
    assert scaling["fit_rows"] == [0, 21] and scaling["variables"]["OT"]["mean"] == pytest.approx(mean)
    info = json.loads((out / "dataset_info.json").read_text())
    assert info["d_test"] == {"file_name": "d_test.jsonl", "columns": {"prompt": "input", "response": "output", "timeseries": "timeseries",
                                                                     "forecast_target": "forecast_target"}}
    assert set(info) == {"d_train", "d_val", "d_test"}


def test_changing_test_period_values_changes_no_train_or_val_record_nor_the_scaling(tmp_path):
    _, out1 = convert(tmp_path, csv=write_csv(tmp_path / "d1.csv"), features="M", out="o1")
    ot = np.arange(N, dtype=float) ** 2
    ot[24:] = 1e6                     # every test-period target
    a = np.arange(N, dtype=float)
    a[29] = -5e5
    _, out2 = convert(tmp_path, csv=write_csv(tmp_path / "d2.csv", a=a, ot=ot), features="M", out="o2")
    for name in ("d_train.jsonl", "d_val.jsonl", "d.scaling.json"):
        assert (out1 / name).read_bytes() == (out2 / name).read_bytes(), name
    assert (out1 / "d_test.jsonl").read_bytes() != (out2 / "d_test.jsonl").read_bytes()


def test_multivariate_answer_labels_every_variable_and_ms_predicts_only_the_target(tmp_path):
    _, out = convert(tmp_path, features="M", precision=2)
    rec = read(out / "d_val.jsonl")[0]                # window_start 17: inputs 17..20, targets 21, 22
    a, ot = np.arange(N, dtype=float), np.arange(N, dtype=float) ** 2
    za = lambda v: (v - a[:21].mean()) / a[:21].std()      # noqa: E731
    zo = lambda v: (v - ot[:21].mean()) / ot[:21].std()    # noqa: E731
    assert rec["output"] == f"a: {za(21):.2f}, {za(22):.2f}\nOT: {zo(ot[21]):.2f}, {zo(ot[22]):.2f}"
    assert rec["input"].count("<ts><ts/>") == 2 and "a: <ts><ts/>\nOT: <ts><ts/>" in rec["input"]
    np.testing.assert_allclose(rec["timeseries"], [za(a[17:21]), zo(ot[17:21])])
    # the numeric targets (Time-LLM head): unrounded, and which series each one continues
    assert [(t["series"], t["name"]) for t in rec["forecast_target"]] == [(0, "a"), (1, "OT")]
    np.testing.assert_allclose([t["values"] for t in rec["forecast_target"]], [za(a[21:23]), zo(ot[21:23])])
    _, out = convert(tmp_path, features="MS", out="ms")
    rec = read(out / "d_val.jsonl")[0]
    assert rec["variables"] == ["a", "OT"] and rec["targets"] == ["OT"]
    assert rec["output"] == f"{zo(ot[21]):.3f}, {zo(ot[22]):.3f}" and len(rec["timeseries"]) == 2
    assert [(t["series"], t["name"]) for t in rec["forecast_target"]] == [(1, "OT")]
    np.testing.assert_allclose(rec["forecast_target"][0]["values"], zo(ot[21:23]))


def test_no_normalize_keeps_raw_values_but_records_train_statistics(tmp_path):
    _, out = convert(tmp_path, features="S", target="a", normalize=False, precision=1)
    rec = read(out / "d_train.jsonl")[3]
    assert rec["timeseries"] == [[3.0, 4.0, 5.0, 6.0]] and rec["output"] == "7.0, 8.0"
    assert rec["normalized"] is False and rec["scaling"]["a"]["mean"] == 10.0


def test_stride_and_evenly_spaced_cap_are_deterministic(tmp_path):
    report, out = convert(tmp_path, stride=2, max_windows_per_split=3)
    assert [r["window_start"] for r in read(out / "d_train.jsonl")] == [0, 8, 14]   # of 0,2,..,14
    assert [r["window_start"] for r in read(out / "d_test.jsonl")] == [20, 22, 24]
    assert report["windows"]["train"]["available"] == 8 and report["windows"]["train"]["written"] == 3


def test_non_numeric_cells_are_interpolated_and_counted_or_rejected(tmp_path):
    csv = write_csv(tmp_path / "d.csv")
    lines = csv.read_text().splitlines()
    lines[3] = lines[3].rsplit(",", 1)[0] + ",Bad Input"           # data row 3, OT = 4 -> neighbours 1 and 9
    csv.write_text("\n".join(lines) + "\n")
    report, out = convert(tmp_path, csv=csv, normalize=False)
    assert report["repairs"]["missing_non_numeric"] == 1 and report["repairs"]["cells_interpolated"] == 1
    assert read(out / "d_train.jsonl")[0]["timeseries"] == [[0.0, 1.0, 5.0, 9.0]]
    with pytest.raises(InputError, match=r"d.csv: 1 missing or non-numeric values \(first at data row 3\) and --missing reject"):
        convert(tmp_path, csv=csv, missing="reject")


def test_errors_name_the_file_and_the_fix(tmp_path, capsys):
    with pytest.raises(InputError, match=r"d.csv has no date column 'date' \(columns: 'time', 'a', 'OT'\)\. Pass --date-col"):
        convert(tmp_path, csv=write_csv(tmp_path / "d.csv", header="time,a,OT"))
    with pytest.raises(InputError, match=r"unknown --target 'oil'; variable columns: 'a', 'OT'"):
        convert(tmp_path, target="oil")
    with pytest.raises(InputError, match=r"30 rows after cleaning, too short for --seq-len 20 \+ --pred-len 6 .*\(needs at least 44 rows"):
        convert(tmp_path, seq_len=20, pred_len=6)
    csv = write_csv(tmp_path / "d.csv")
    assert main(["forecast", str(csv), "--seq-len", "4", "--pred-len", "2", "--stride", "0", "-o", str(tmp_path)]) == 2
    assert "--stride 0: must be at least 1" in capsys.readouterr().err


def test_cli_writes_outputs_and_they_validate(tmp_path, capsys):
    csv = write_csv(tmp_path / "d.csv")
    assert main(["forecast", str(csv), "--seq-len", "4", "--pred-len", "2", "--features", "M", "-o", str(tmp_path / "o")]) == 0
    text = capsys.readouterr().out
    assert "train: targets from rows [0, 21), 16 windows written of 16" in text
    assert "test: targets from rows [24, 30), 5 windows written of 5" in text
    for split in ("train", "val", "test"):
        assert main(["validate", str(tmp_path / "o" / f"d_{split}.jsonl"), "-q"]) == 0
    assert json.loads((tmp_path / "o" / "d.report.json").read_text())["borders"]["val"] == [21, 24]
