"""Messy inputs built in tmp_path: encodings, delimiters, historian strings, gaps, order, paths,
placeholders, input forms. Every case checks the accounting invariant and, where it matters, the
exact message a user reads."""

from __future__ import annotations

import json
import os

import pytest

from conftest import convert_dir, gdsh_record, read_jsonl, write_csv

A = "/home/wyx/data/images/gdsh/a.PV.jpg"
B = "/home/wyx/data/images/gdsh/b.PV.jpg"


def _outcome(out, name="ds"):
    rows = read_jsonl(out / f"{name}.jsonl")
    rejects = read_jsonl(out / f"{name}.rejects.jsonl")
    report = json.loads((out / f"{name}.report.json").read_text(encoding="utf-8"))
    assert report["converted"] + report["rejected"] == report["input"]
    assert (len(rows), len(rejects)) == (report["converted"], report["rejected"])
    return rows, rejects, report


def test_missing_csv_exact_message_and_original_record_kept(tmp_path):
    rec = gdsh_record(A)
    code, out = convert_dir(tmp_path, [rec])
    rows, rejects, report = _outcome(out)
    assert code == 0 and rows == []
    assert rejects == [{
        "index": 0,
        "reason": "missing_csv",
        "message": "in.json: record 0: image 1 of 1 (a.PV.jpg): a.PV.csv not found in --csv-dir. "
                   "Put the CSV there or pass --csv-pattern matching your file names.",
        "record": rec,
    }]
    assert report["rejected_by_reason"] == {"missing_csv": 1}


def test_placeholder_mismatch_exact_message(tmp_path):
    recs = [gdsh_record(A), gdsh_record(A, text="<image> vs <image>")]
    code, out = convert_dir(tmp_path, recs, {"a.PV.csv": None})
    rows, rejects, _ = _outcome(out)
    assert len(rows) == 1
    assert rejects[0]["message"] == (
        "in.json: record 1: 2 <image> placeholders but 1 image. Fix the record so each image has one <image> in the text."
    )


def test_windows_paths_and_other_extensions_map_by_stem(tmp_path):
    recs = [gdsh_record(r"C:\Users\wyx\plots\a.PV.png"), gdsh_record(r"\\server\share\b.PV.jpeg"), gdsh_record("b.PV.JPG")]
    code, out = convert_dir(tmp_path, recs, {"a.PV.csv": None, "b.PV.csv": None})
    rows, rejects, _ = _outcome(out)
    assert rejects == [] and len(rows) == 3


def test_csv_pattern_fields(tmp_path):
    (tmp_path / "csv" / "gdsh").mkdir(parents=True)
    write_csv(tmp_path / "csv" / "gdsh" / "a.PV.jpg.csv")
    code, out = convert_dir(tmp_path, [gdsh_record(A)], None, "--csv-pattern", "{parent}/{name}.csv")
    rows, rejects, _ = _outcome(out)
    assert rejects == [] and len(rows[0]["timeseries"][0]) == 40


def test_pattern_with_dotdot_is_rejected(tmp_path):
    write_csv(tmp_path / "a.PV.csv")  # exists, but outside csv-dir
    code, out = convert_dir(tmp_path, [gdsh_record(A)], None, "--csv-pattern", "../{stem}.csv")
    _, rejects, _ = _outcome(out)
    assert rejects[0]["reason"] == "path_outside_csv_dir"
    assert rejects[0]["message"] == (
        "in.json: record 0: CSV path '../a.PV.csv' for image '/home/wyx/data/images/gdsh/a.PV.jpg' leaves --csv-dir. "
        "Only files inside --csv-dir are read: fix the image path or --csv-pattern."
    )


def test_relative_image_path_with_dotdot_and_relstem(tmp_path):
    write_csv(tmp_path / "secret.csv")
    write_csv(tmp_path / "csv" / "sub" / "ok.csv")
    recs = [gdsh_record("../secret.jpg"), gdsh_record("sub/ok.jpg"), gdsh_record(A)]
    code, out = convert_dir(tmp_path, recs, None, "--csv-pattern", "{relstem}.csv")
    rows, rejects, _ = _outcome(out)
    assert len(rows) == 1
    assert [r["reason"] for r in rejects] == ["path_outside_csv_dir", "path_outside_csv_dir"]


def test_symlink_escaping_csv_dir_is_rejected(tmp_path):
    outside = write_csv(tmp_path / "outside" / "real.csv")
    (tmp_path / "csv").mkdir()
    os.symlink(outside, tmp_path / "csv" / "a.PV.csv")
    write_csv(tmp_path / "csv" / "inner.csv")
    os.symlink(tmp_path / "csv" / "inner.csv", tmp_path / "csv" / "b.PV.csv")  # a link that stays inside is fine
    code, out = convert_dir(tmp_path, [gdsh_record(A), gdsh_record(B)])
    rows, rejects, _ = _outcome(out)
    assert len(rows) == 1 and rejects[0]["index"] == 0
    assert rejects[0]["message"] == (
        f"in.json: record 0: a.PV.csv is a link to {outside}, outside --csv-dir. Copy the file into --csv-dir instead of linking."
    )


@pytest.mark.parametrize("encoding,sep,header", [
    ("utf-8-sig", ",", "timestamp,value"),
    ("utf-8", ";", "timestamp;value"),
    ("utf-8", "\t", "timestamp\tvalue"),
    ("gbk", ",", "时间戳,数值"),
    ("utf-8-sig", ";", " Timestamp ; VALUE "),
])
def test_encodings_delimiters_and_header_spelling(tmp_path, encoding, sep, header):
    rows = [f"2025-06-01 00:00:{i:02d}{sep}{i * 1.25}" for i in range(20)]
    write_csv(tmp_path / "csv" / "a.PV.csv", header=header, rows=rows, encoding=encoding)
    value_col = "数值" if "数值" in header else "value"
    code, out = convert_dir(tmp_path, [gdsh_record(A)], None, "--value-col", value_col)
    got, rejects, _ = _outcome(out)
    assert rejects == []
    assert got[0]["timeseries"] == [[i * 1.25 for i in range(20)]]


def test_unknown_value_column_lists_columns(tmp_path):
    code, out = convert_dir(tmp_path, [gdsh_record(A)], {"a.PV.csv": None}, "--value-col", "PV")
    _, rejects, _ = _outcome(out)
    assert rejects[0]["message"] == (
        "in.json: record 0: image 1 of 1 (a.PV.jpg): a.PV.csv has no column 'PV' (columns: 'timestamp', 'value'). "
        "Pass --value-col with one of them."
    )


HISTORIAN = ["2025-06-01 00:00:%02d,%s" % (i, v) for i, v in enumerate(
    ["1.0", "2.0", "Bad Input", "4.0", "I/O Timeout", "", "7.0", "NaN", "9.0", "No Data"] + [str(10 + i) for i in range(20)])]


def test_historian_strings_are_interpolated_and_counted(tmp_path):
    code, out = convert_dir(tmp_path, [gdsh_record(A)], {"a.PV.csv": HISTORIAN})
    rows, _, report = _outcome(out)
    assert rows[0]["timeseries"][0][:10] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 9.5]
    assert report["cells_repaired"] == 5
    assert report["repairs"] == {"cells_interpolated": 5, "missing_empty_or_nan": 2, "missing_non_numeric": 3}


def test_drop_and_reject_policies(tmp_path):
    code, out = convert_dir(tmp_path, [gdsh_record(A)], {"a.PV.csv": HISTORIAN}, "--missing", "drop")
    rows, _, report = _outcome(out)
    assert rows[0]["timeseries"][0][:5] == [1.0, 2.0, 4.0, 7.0, 9.0]
    assert report["repairs"]["rows_dropped_missing"] == 5
    code, out = convert_dir(tmp_path, [gdsh_record(A)], {"a.PV.csv": HISTORIAN}, "--missing", "reject")
    _, rejects, _ = _outcome(out)
    assert rejects[0]["message"] == (
        "in.json: record 0: image 1 of 1 (a.PV.jpg): a.PV.csv: 5 missing or non-numeric values (first at data row 3) and "
        "--missing reject. Fix the CSV or pass --missing interpolate/drop."
    )


def test_nan_run_too_long_is_rejected(tmp_path):
    rows = [f"2025-06-01 00:00:{i:02d},{'nan' if 3 <= i < 30 else i}" for i in range(40)]
    code, out = convert_dir(tmp_path, [gdsh_record(A)], {"a.PV.csv": rows})
    _, rejects, _ = _outcome(out)
    assert rejects[0]["reason"] == "too_many_missing"
    assert "27 of 40 rows (68%)" in rejects[0]["message"]
    code, out = convert_dir(tmp_path, [gdsh_record(A)], {"a.PV.csv": rows}, "--max-missing", "0.9")
    got, _, _ = _outcome(out)
    assert got[0]["timeseries"][0][3] == pytest.approx(3.0) and len(got[0]["timeseries"][0]) == 40


def test_unsorted_and_duplicate_timestamps(tmp_path):
    rows = [f"2025-06-01 00:00:{i:02d},{i}" for i in range(20)]
    rows[5], rows[6] = rows[6], rows[5]
    rows.insert(10, "2025-06-01 00:00:09,99")
    code, out = convert_dir(tmp_path, [gdsh_record(A)], {"a.PV.csv": rows})
    got, _, report = _outcome(out)
    assert got[0]["timeseries"][0] == [float(i) for i in range(20)]
    assert report["repairs"] == {"duplicate_rows_dropped": 1, "rows_reordered": 2}
    code, out = convert_dir(tmp_path, [gdsh_record(A)], {"a.PV.csv": rows}, "--duplicates", "last")
    got, _, _ = _outcome(out)
    assert got[0]["timeseries"][0][9] == 99.0
    code, out = convert_dir(tmp_path, [gdsh_record(A)], {"a.PV.csv": rows}, "--unsorted", "reject")
    _, rejects, _ = _outcome(out)
    assert rejects[0]["reason"] == "unsorted_timestamps"
    assert rejects[0]["message"].endswith("timestamps go backwards at data row 7 and --unsorted reject. "
                                          "Sort the CSV or pass --unsorted sort.")
    code, out = convert_dir(tmp_path, [gdsh_record(A)], {"a.PV.csv": rows}, "--duplicates", "reject")
    _, rejects, _ = _outcome(out)
    assert rejects[0]["reason"] == "duplicate_timestamps"


def test_empty_short_and_constant_series(tmp_path):
    csvs = {"a.PV.csv": [], "b.PV.csv": ["2025-06-01 00:00:00,1", "2025-06-01 00:00:01,2"], "c.PV.csv": [f"{i},5" for i in range(30)]}
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "a.PV.csv").write_text("timestamp,value\n")
    csvs.pop("a.PV.csv")
    recs = [gdsh_record(A), gdsh_record(B), gdsh_record("x/c.PV.jpg")]
    code, out = convert_dir(tmp_path, recs, csvs)
    rows, rejects, report = _outcome(out)
    assert [r["reason"] for r in rejects] == ["empty_series", "series_too_short"]
    assert rejects[1]["message"] == (
        "in.json: record 1: image 1 of 1 (b.PV.jpg): b.PV.csv: 2 points, fewer than --min-length 16. "
        "Drop the record or lower --min-length."
    )
    assert rows[0]["timeseries"] == [[5.0] * 30]
    assert report["notes"]["constant_series"] == 1


def test_multiple_value_columns_become_series_in_order(tmp_path):
    rows = [f"2025-06-01 00:00:{i:02d},{i},{-i}" for i in range(20)]
    write_csv(tmp_path / "csv" / "a.PV.csv", header="timestamp,PV,SP", rows=rows)
    write_csv(tmp_path / "csv" / "b.PV.csv", header="timestamp,PV,SP", rows=rows)
    code, out = convert_dir(tmp_path, [gdsh_record(A, B)], None, "--value-col", "sp", "--value-col", "pv")
    got, _, _ = _outcome(out)
    assert got[0]["input"] == "分析：" + "<ts><ts/>" * 4
    assert got[0]["timeseries"][0] == [-float(i) for i in range(20)]
    assert got[0]["timeseries"][1] == [float(i) for i in range(20)]


def test_jsonl_input_and_other_record_forms(tmp_path):
    recs = [
        {"conversations": [{"from": "human", "value": "看 <image>"}, {"from": "gpt", "value": "ok"}], "images": [A]},
        {"instruction": "看", "input": "<image>", "output": "ok", "image": A},
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "看 "}, {"type": "image_url", "image_url": {"url": A}}]},
                      {"role": "assistant", "content": "ok"}]},
        {"text": "unknown form"},
    ]
    code, out = convert_dir(tmp_path, recs, {"a.PV.csv": None}, jsonl=True)
    rows, rejects, _ = _outcome(out)
    assert [r["input"] for r in rows] == ["看 <ts><ts/>", "看\n<ts><ts/>", "看 <ts><ts/>"]
    assert rejects[0]["message"] == (
        "in.jsonl: record 3: no known format (keys: text). Give 'messages', 'conversations' or "
        "'instruction'/'output', or pass --input-format."
    )


def test_sharegpt_output_keeps_system_and_turns(tmp_path):
    rec = {"messages": [{"role": "system", "content": "你是专家"}, {"role": "user", "content": "<image>?"},
                        {"role": "assistant", "content": "a1"}, {"role": "user", "content": "and <image>?"},
                        {"role": "assistant", "content": "a2"}], "images": [A, B]}
    code, out = convert_dir(tmp_path, [rec], {"a.PV.csv": None, "b.PV.csv": None})
    _, rejects, _ = _outcome(out)
    assert rejects[0]["reason"] == "multi_turn"
    assert rejects[0]["message"] == (
        "in.json: record 0: 2 conversation rounds, but the ChatTS format holds one prompt and one answer. "
        "Pass --format sharegpt to keep conversations."
    )
    code, out = convert_dir(tmp_path, [rec], None, "--format", "sharegpt")
    rows, rejects, _ = _outcome(out)
    assert rows[0]["messages"][0] == {"role": "system", "content": "你是专家"}
    assert [m["content"] for m in rows[0]["messages"][1:]] == ["<ts><ts/>?", "a1", "and <ts><ts/>?", "a2"]
    assert len(rows[0]["timeseries"]) == 2
    entry = json.loads((out / "dataset_info.json").read_text())["ds"]
    assert entry["formatting"] == "sharegpt" and entry["tags"]["system_tag"] == "system"


def test_bad_turn_order_is_rejected_not_dropped(tmp_path):
    rec = {"messages": [{"role": "assistant", "content": "hi"}, {"role": "user", "content": "<image>"}], "images": [A]}
    code, out = convert_dir(tmp_path, [rec], {"a.PV.csv": None}, "--format", "sharegpt")
    _, rejects, _ = _outcome(out)
    assert rejects[0]["reason"] == "bad_turns"


def test_downsampling_caps_length_and_keeps_spike(tmp_path):
    rows = [f"2025-06-01 00:{i // 60:02d}:{i % 60:02d},{100.0 if i == 1234 else 0.0}" for i in range(3000)]
    for method in ("lttb", "minmax", "window"):
        code, out = convert_dir(tmp_path, [gdsh_record(A)], {"a.PV.csv": rows}, "--max-length", "256", "--downsample", method)
        got, _, report = _outcome(out)
        series = got[0]["timeseries"][0]
        assert len(series) <= 256
        assert (100.0 in series) == (method != "window"), method
        assert report["notes"][f"downsampled_{method}"] == 1


def test_time_column_optional(tmp_path):
    rows = [f"{i * 2.5}" for i in range(20)]
    write_csv(tmp_path / "csv" / "a.PV.csv", header="value", rows=rows)
    code, out = convert_dir(tmp_path, [gdsh_record(A)], None)
    got, _, report = _outcome(out)
    assert got[0]["timeseries"] == [[i * 2.5 for i in range(20)]]
    assert report["notes"] == {"no_time_column": 1}
    code, out = convert_dir(tmp_path, [gdsh_record(A)], None, "--time-col", "")
    _, _, report = _outcome(out)
    assert report["notes"] == {}


@pytest.mark.parametrize("fmt,note", [
    ("2025/06/01 00:00:{i:02d}", {}),
    ("{epoch}", {}),
    ("06/01/2025 00:00:{i:02d}", {}),
    ("t{i}x", {"timestamps_unparsed": 1}),
])
def test_timestamp_formats_are_ordered_or_noted(tmp_path, fmt, note):
    order = [1, 0] + list(range(2, 20))
    rows = [fmt.format(i=i, epoch=1_700_000_000 + i) + f",{i}" for i in order]
    write_csv(tmp_path / "csv" / "a.PV.csv", rows=rows)
    code, out = convert_dir(tmp_path, [gdsh_record(A)], None)
    got, _, report = _outcome(out)
    assert report["notes"] == note
    expected = [float(i) for i in (order if note else range(20))]
    assert got[0]["timeseries"][0] == expected
