"""tsconvert against hostile records and CSVs: confinement to --csv-dir (links, swaps, FIFOs,
devices, hard links, size), one bad record or file never stopping the run, rejected records kept
byte-faithful, number formats, ambiguous columns and magnitudes the model cannot encode."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from converters import convert as convert_mod
from converters.errors import RejectError
from converters.safeio import ReadLimits, read_descriptor
from conftest import convert_dir, gdsh_record, read_jsonl, tsconvert, write_csv
from tsplugin.processing.encodable import DTYPE_MAX, canonical_dtype, check_encodable

A = "/home/u/img/a.PV.jpg"
B = "/home/u/img/b.PV.jpg"
SECRET = "SECRET-HEADER-BYTES"


def _outcome(out, name="ds"):
    rows = read_jsonl(out / f"{name}.jsonl")
    # the head of each line (index, reason, message); the record part may hold what Python's json refuses
    rejects = [json.loads(line[:line.index(',"record":')] + "}")
               for line in (out / f"{name}.rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    report = json.loads((out / f"{name}.report.json").read_text(encoding="utf-8"))
    assert report["converted"] + report["rejected"] == report["input"]
    assert (len(rows), len(rejects)) == (report["converted"], report["rejected"])
    return rows, rejects, report


def _outside(tmp_path):
    """A file outside --csv-dir whose bytes must never reach any output or message."""
    rows = [f"2025-06-01 00:00:{i:02d},{777000 + i},0" for i in range(40)]
    return write_csv(tmp_path / "outside" / "secret.csv", header=f"timestamp,value,{SECRET}", rows=rows)


def _no_secret(tmp_path, out, capsys=None):
    for p in out.iterdir():
        text = p.read_text(encoding="utf-8", errors="replace")
        assert SECRET not in text and "777000" not in text, p
    if capsys is not None:
        captured = capsys.readouterr()
        assert SECRET not in captured.err + captured.out


# --- CSV reads confined for real -------------------------------------------------------------------

def test_csv_swapped_for_a_symlink_after_the_path_check_is_not_followed(tmp_path, monkeypatch, capsys):
    """TOCTOU: the path check passes on a regular file, then the file becomes a link to outside."""
    outside = _outside(tmp_path)
    write_csv(tmp_path / "csv" / "a.PV.csv")
    real = convert_mod.resolve_csv

    def check_then_swap(image, csv_dir, pattern):
        path = real(image, csv_dir, pattern)  # the check saw a plain file inside --csv-dir
        path.unlink()
        os.symlink(outside, path)
        return path

    monkeypatch.setattr(convert_mod, "resolve_csv", check_then_swap)
    code, out = convert_dir(tmp_path, [gdsh_record(A)])
    rows, rejects, _ = _outcome(out)
    assert code == 0 and rows == []
    assert rejects[0]["reason"] == "path_outside_csv_dir"
    _no_secret(tmp_path, out, capsys)


def test_directory_swapped_for_a_symlink_is_not_followed(tmp_path, monkeypatch):
    _outside(tmp_path)
    write_csv(tmp_path / "csv" / "img" / "secret.csv")
    real = convert_mod.resolve_csv

    def check_then_swap(image, csv_dir, pattern):
        path = real(image, csv_dir, pattern)
        (csv_dir / "img").rename(csv_dir / "gone")
        os.symlink(tmp_path / "outside", csv_dir / "img")
        return path

    monkeypatch.setattr(convert_mod, "resolve_csv", check_then_swap)
    code, out = convert_dir(tmp_path, [gdsh_record("/x/img/secret.png")], None, "--csv-pattern", "{parent}/{stem}.csv")
    rows, rejects, _ = _outcome(out)
    assert rows == [] and rejects[0]["reason"] == "path_outside_csv_dir"
    _no_secret(tmp_path, out)


def test_links_inside_csv_dir_still_work_and_relative_escapes_do_not(tmp_path):
    csv = tmp_path / "csv"
    write_csv(csv / "real.csv", start=5.0)
    (csv / "sub").mkdir()
    os.symlink("../real.csv", csv / "sub" / "a.PV.csv")       # relative, stays inside
    os.symlink("../outside/secret.csv", csv / "b.PV.csv")     # relative, leaves
    _outside(tmp_path)
    recs = [gdsh_record("sub/a.PV.png"), gdsh_record("b.PV.png")]
    code, out = convert_dir(tmp_path, recs, None, "--csv-pattern", "{relstem}.csv")
    rows, rejects, _ = _outcome(out)
    assert rows[0]["timeseries"][0][0] == 5.0
    assert [r["reason"] for r in rejects] == ["path_outside_csv_dir"]
    _no_secret(tmp_path, out)


@pytest.mark.timeout(120)
def test_fifo_is_refused_without_blocking(tmp_path, capsys):
    (tmp_path / "csv").mkdir()
    os.mkfifo(tmp_path / "csv" / "a.PV.csv")  # nobody ever writes: an open without O_NONBLOCK would hang
    write_csv(tmp_path / "csv" / "b.PV.csv")
    code, out = convert_dir(tmp_path, [gdsh_record(A), gdsh_record(B)])
    rows, rejects, _ = _outcome(out)
    assert len(rows) == 1 and rejects[0]["reason"] == "not_a_regular_file"
    assert "a.PV.csv is a FIFO (named pipe), not a regular file" in rejects[0]["message"]


def test_character_device_is_refused_on_its_descriptor():
    fd = os.open(os.devnull, os.O_RDONLY | os.O_NONBLOCK)
    with pytest.raises(RejectError) as err:
        read_descriptor(fd, "x.csv", ReadLimits())
    assert err.value.reject.code == "not_a_regular_file" and "character device" in err.value.reject.message
    with pytest.raises(OSError):
        os.fstat(fd)  # read_descriptor closed it


def test_hard_link_is_refused_unless_allowed_and_size_limit(tmp_path, capsys):
    outside = _outside(tmp_path)
    (tmp_path / "csv").mkdir()
    os.link(outside, tmp_path / "csv" / "a.PV.csv")
    code, out = convert_dir(tmp_path, [gdsh_record(A)])
    rows, rejects, _ = _outcome(out)
    assert rejects[0]["reason"] == "hard_linked_csv" and "--allow-hard-links" in rejects[0]["message"]
    _no_secret(tmp_path, out, capsys)
    code, out = convert_dir(tmp_path, [gdsh_record(A)], None, "--allow-hard-links")
    rows, rejects, _ = _outcome(out)
    assert rows[0]["timeseries"][0][0] == 777000.0
    code, out = convert_dir(tmp_path, [gdsh_record(A)], None, "--allow-hard-links", "--max-csv-bytes", "100")
    rows, rejects, _ = _outcome(out)
    assert rejects[0]["reason"] == "csv_too_large" and "above --max-csv-bytes 100" in rejects[0]["message"]


def test_header_listing_is_bounded(tmp_path):
    header = ",".join(["timestamp"] + [f"c{i}_" + "x" * 60 for i in range(30)])
    write_csv(tmp_path / "csv" / "a.PV.csv", header=header, rows=["1," + ",".join("1" for _ in range(30))])
    code, out = convert_dir(tmp_path, [gdsh_record(A)])
    _, rejects, _ = _outcome(out)
    msg = rejects[0]["message"]
    assert rejects[0]["reason"] == "missing_value_column" and "... (11 more)" in msg and len(msg) < 1500


# --- one bad record or file never stops the run ---------------------------------------------------

def _raw_records() -> list[str]:
    ok = json.dumps(gdsh_record(A), ensure_ascii=False)
    return [
        ok,
        '{"messages": [{"role": "user", "content": "<image>"}, {"role": "assistant", "content": "x"}], '
        '"images": ["/i/missing.jpg"], "score": NaN, "big": -Infinity, "id": 123456789012345678901234567890}',
        '{"id": ' + "9" * 5000 + "}",
        "[" * 3000 + "]" * 3000,
        '{"messages": [{"role": "user", "content": "<image> \\ud800"}, {"role": "assistant", "content": "y"}], "images": ["/i/a.PV.jpg"]}',
        '{"messages": [{"role": "user", "content": "<image>"}, {"role": "assistant", "content": "z"}], "images": ["/i/a\\u0000b.jpg"]}',
        '{"messages": [{"role": "user", "content": "<image>"}, {"role": "assistant", "content": "\\ud800"}], "images": ["/i/missing.jpg"]}',
        ok,
    ]


@pytest.mark.parametrize("jsonl", [True, False])
def test_every_bad_record_becomes_a_reject_kept_byte_faithful(tmp_path, jsonl):
    raws = _raw_records()
    src = tmp_path / ("in.jsonl" if jsonl else "in.json")
    src.write_text("\n".join(raws) + "\n" if jsonl else "[\n" + ",\n".join(raws) + "\n]\n", encoding="utf-8")
    write_csv(tmp_path / "csv" / "a.PV.csv")
    out = tmp_path / "out"
    assert tsconvert([str(src), "--csv-dir", str(tmp_path / "csv"), "-o", str(out), "--name", "ds", "-q"]) == 0
    rows, rejects, report = _outcome(out)
    assert report["input"] == len(raws) and len(rows) == 2
    assert [r["index"] for r in rejects] == [1, 2, 3, 4, 5, 6]
    assert [r["reason"] for r in rejects] == ["missing_csv", "unparseable_record", "unparseable_record", "unencodable_text",
                                              "invalid_image_path", "missing_csv"]
    lines = (out / "ds.rejects.jsonl").read_text(encoding="utf-8").splitlines()
    for line, raw in zip(lines, raws[1:7]):
        # the record is the original text (only whitespace between tokens dropped): NaN, -Infinity,
        # the 30- and 5000-digit integers and the \ud800 escape exactly as written
        assert line.endswith(',"record":' + raw.replace(", ", ",").replace(": ", ":") + "}")
    assert "digits" in rejects[1]["message"] and "nested deeper" in rejects[2]["message"]
    assert "contains a NUL byte" in rejects[4]["message"]


def test_json_array_record_over_8_mib_converts(tmp_path):
    answer = "长" * (3 << 20)  # 9 MiB of UTF-8 in one string
    write_csv(tmp_path / "csv" / "a.PV.csv")
    code, out = convert_dir(tmp_path, [gdsh_record(A, answer=answer), gdsh_record(A)])
    rows, _, _ = _outcome(out)
    assert len(rows) == 2 and rows[0]["output"] == answer


def test_unexpected_failure_reading_one_csv_is_a_reject(tmp_path, monkeypatch):
    from converters import series

    real = series.read_series

    def explode(path, *args, **kwargs):
        if path.name == "a.PV.csv":
            raise ZeroDivisionError("simulated bug")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(series, "read_series", explode)
    code, out = convert_dir(tmp_path, [gdsh_record(A), gdsh_record(B)], {"a.PV.csv": None, "b.PV.csv": None})
    rows, rejects, _ = _outcome(out)
    assert len(rows) == 1 and rejects[0]["reason"] == "csv_error" and "ZeroDivisionError: simulated bug" in rejects[0]["message"]


CR_ROWS = [f"2025-06-01 00:00:{i:02d},{i * 0.5}" for i in range(30)]


def test_cr_only_line_endings_in_convert_forecast_and_chat(tmp_path):
    path = tmp_path / "csv" / "a.PV.csv"
    path.parent.mkdir()
    path.write_bytes(("timestamp,value\r" + "\r".join(CR_ROWS) + "\r").encode())
    code, out = convert_dir(tmp_path, [gdsh_record(A)])
    rows, rejects, _ = _outcome(out)
    assert rejects == [] and rows[0]["timeseries"][0] == [i * 0.5 for i in range(30)]

    from tsplugin.chat import read_csv_series

    assert read_csv_series([str(path)]) == [[i * 0.5 for i in range(30)]]

    ett = tmp_path / "ett.csv"
    ett.write_bytes(("date,OT\r" + "\r".join(f"2024-01-01 {i // 60:02d}:{i % 60:02d}:00,{i}" for i in range(100)) + "\r").encode())
    from converters.cli import main

    assert main(["forecast", str(ett), "--seq-len", "8", "--pred-len", "2", "-o", str(tmp_path / "f"), "-q"]) == 0
    assert len(read_jsonl(tmp_path / "f" / "ett_train.jsonl")) > 0


@pytest.mark.timeout(120)
def test_chat_csv_refuses_a_fifo(tmp_path):
    from tsplugin.chat import read_csv_series

    os.mkfifo(tmp_path / "p.csv")
    with pytest.raises(ValueError, match="FIFO"):  # `tsplugin chat` prints it and exits 1; the web UI shows it
        read_csv_series([str(tmp_path / "p.csv")])


# --- numbers --------------------------------------------------------------------------------------

def _rows(cells: list[str], sep: str = ",") -> list[str]:
    return [f"2025-06-01 00:00:{i:02d}{sep}{c}" for i, c in enumerate(cells)]


def test_thousands_separators_in_a_minority_of_cells_are_read_not_interpolated(tmp_path):
    cells = [f"{1000 + i}.5" for i in range(30)]
    cells[3], cells[10] = '"1,003.5"', '"1,010.5"'
    code, out = convert_dir(tmp_path, [gdsh_record(A)], {"a.PV.csv": _rows(cells)})
    rows, rejects, report = _outcome(out)
    assert rows[0]["timeseries"][0] == [1000.5 + i for i in range(30)]
    assert report["repairs"] == {} and report["notes"] == {"number_format_thousands_comma": 1}


def test_decimal_comma_file_is_detected(tmp_path):
    cells = [f"{i},25" for i in range(30)]
    cells[5] = "1.005,25"
    write_csv(tmp_path / "csv" / "a.PV.csv", header="timestamp;value", rows=_rows(cells, ";"))
    code, out = convert_dir(tmp_path, [gdsh_record(A)])
    rows, _, report = _outcome(out)
    assert rows[0]["timeseries"][0][:6] == [0.25, 1.25, 2.25, 3.25, 4.25, 1005.25]
    assert report["notes"] == {"number_format_decimal_comma": 1}


@pytest.mark.parametrize("cells,extra,reason,words", [
    (["1,5", "2.5"] + [str(i) for i in range(28)], [], "mixed_number_format", "data row 1 has '1,5' while data row 2 has '2.5'"),
    (["1,234", "2,345"] + [str(i) for i in range(28)], [], "ambiguous_number_format", "Pass --number-format thousands-comma"),
    (["1,234.5"] + [f"{i}.5" for i in range(29)], ["--number-format", "plain"], "mixed_number_format",
     "'1,234.5' is a number but not in --number-format plain"),
])
def test_mixed_or_ambiguous_number_formats_are_rejected(tmp_path, cells, extra, reason, words):
    rows = _rows([f'"{c}"' if "," in c else c for c in cells])
    code, out = convert_dir(tmp_path, [gdsh_record(A)], {"a.PV.csv": rows}, *extra)
    _, rejects, _ = _outcome(out)
    assert rejects[0]["reason"] == reason and words in rejects[0]["message"], rejects[0]["message"]


def test_explicit_number_format_resolves_ambiguity(tmp_path):
    cells = ['"1,234"'] + [str(i) for i in range(29)]
    code, out = convert_dir(tmp_path, [gdsh_record(A)], {"a.PV.csv": _rows(cells)}, "--number-format", "thousands-comma")
    rows, _, _ = _outcome(out)
    assert rows[0]["timeseries"][0][:2] == [1234.0, 0.0]


def test_two_columns_named_value_are_an_error_listing_them(tmp_path):
    rows = [f"2025-06-01 00:00:{i:02d},{i},{-i}" for i in range(30)]
    write_csv(tmp_path / "csv" / "a.PV.csv", header="timestamp,Value, value ", rows=rows)
    code, out = convert_dir(tmp_path, [gdsh_record(A)])
    _, rejects, _ = _outcome(out)
    assert rejects[0]["reason"] == "ambiguous_column"
    assert "2 columns match 'value': columns 2 ('Value'), 3 ('value')" in rejects[0]["message"]


# --- magnitudes the model's dtype cannot hold ------------------------------------------------------

def test_check_encodable_follows_the_encoding():
    assert check_encodable([1.0, 2.0, 3.0]) is None
    assert check_encodable([1e308, 1e308]).reason.startswith("the series' mean overflows")
    p = check_encodable([1e308, -1e308, 0.0])  # mean 0: fine in float64, but x - m exceeds fp32
    assert p.index == 0 and "exceeds the fp32 range" in p.reason
    ramp = np.linspace(0, 2e5, 100)
    assert check_encodable(ramp, "fp32") is None and check_encodable(ramp + 1e9, "fp16") is not None
    assert check_encodable(ramp[:30] + 1e9, "fp16") is None  # large but centred values are fine
    assert check_encodable(np.array([1.0, np.inf])).reason == "not a finite number"
    assert canonical_dtype("torch.bfloat16") == "bf16" and set(DTYPE_MAX) == {"fp16", "bf16", "fp32"}
    with pytest.raises(ValueError, match="valid: fp16, bf16, fp32"):
        canonical_dtype("int8")


def test_values_the_dtype_cannot_hold_are_rejected_with_record_and_value(tmp_path):
    huge = _rows(["1e308"] * 15 + ["-1e308"] * 15)
    ramp = _rows([str(i * 5000) for i in range(30)])
    csvs = {"a.PV.csv": huge, "b.PV.csv": ramp}
    code, out = convert_dir(tmp_path, [gdsh_record(A), gdsh_record(B)], csvs)
    rows, rejects, _ = _outcome(out)
    assert len(rows) == 1 and rejects[0]["reason"] == "value_out_of_range"
    assert rejects[0]["message"].startswith("in.json: record 0: image 1 of 1 (a.PV.jpg): a.PV.csv: column 'value' point 0 (value 1e+308)")
    code, out = convert_dir(tmp_path, [gdsh_record(A), gdsh_record(B)], csvs, "--dtype", "fp16", name="h")
    rows, rejects, _ = _outcome(out, "h")
    assert rows == [] and rejects[1]["reason"] == "value_out_of_range" and "exceeds the fp16 range" in rejects[1]["message"]


def test_forecast_refuses_values_that_overflow(tmp_path, capsys):
    from converters.cli import main

    ett = write_csv(tmp_path / "e.csv", header="date,OT",
                    rows=[f"2024-01-01 {i // 60:02d}:{i % 60:02d}:00,{'1e308' if i % 2 else '-1e308'}" for i in range(100)])
    assert main(["forecast", str(ett), "--seq-len", "8", "--pred-len", "2", "-o", str(tmp_path / "f"), "-q"]) == 2
    assert "column 'OT' data point" in capsys.readouterr().err
    assert not (tmp_path / "f").exists() or list((tmp_path / "f").iterdir()) == []


def test_cli_choices_and_defaults_match_their_definitions():
    from converters import cli
    from converters.numbers import NUMBER_FORMATS
    from converters.safeio import DEFAULT_MAX_CSV_BYTES
    from tsplugin.processing.encodable import DEFAULT_DTYPE

    assert sorted(cli.NUMBER_FORMAT_CHOICES) == sorted(["auto", *NUMBER_FORMATS.names()])
    assert sorted(cli.DTYPE_CHOICES) == sorted(DTYPE_MAX)
    convert = cli.build_parser()._subparsers._group_actions[0].choices["convert"]  # argparse has no public accessor
    defaults = {a.dest: a.default for a in convert._actions}
    assert defaults["dtype"] == DEFAULT_DTYPE and defaults["max_csv_bytes"] == DEFAULT_MAX_CSV_BYTES
