"""tsconvert end to end on the bundled GDSH sample: output, accounting, idempotence, atomicity, CLI surface."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from converters import cli, writer
from conftest import GDSH, GDSH_CSV, read_jsonl, tsconvert, write_json


def _convert(out: Path, *extra: str) -> int:
    return tsconvert([str(GDSH), "--csv-dir", str(GDSH_CSV), "-o", str(out), "--name", "gdsh_sample", *extra])


def test_sample_converts_every_record_with_exact_values(tmp_path, capsys):
    assert _convert(tmp_path) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "gdsh.json: 12 records: 12 converted + 0 rejected"
    rows = read_jsonl(tmp_path / "gdsh_sample.jsonl")
    src = json.loads(GDSH.read_text(encoding="utf-8"))
    assert len(rows) == len(src) == 12
    for rec, row in zip(src, rows):
        assert set(row) == {"input", "output", "timeseries"}
        assert row["input"] == rec["messages"][0]["content"].replace("<image>", "<ts><ts/>")
        assert row["output"] == rec["messages"][1]["content"]
        assert row["input"].count("<ts><ts/>") == len(row["timeseries"]) == len(rec["images"])
        for image, series in zip(rec["images"], row["timeseries"]):
            stem = image.rsplit("/", 1)[1].rsplit(".", 1)[0]
            lines = (GDSH_CSV / f"{stem}.csv").read_text(encoding="utf-8").splitlines()[1:]
            assert series == [float(line.split(",")[1]) for line in lines]  # exactly as read, no rounding
    report = json.loads((tmp_path / "gdsh_sample.report.json").read_text(encoding="utf-8"))
    assert report["input"] == report["converted"] + report["rejected"] == 12
    assert report["lengths"]["series"] == 13
    assert (tmp_path / "gdsh_sample.rejects.jsonl").read_text() == ""
    info = json.loads((tmp_path / "dataset_info.json").read_text(encoding="utf-8"))
    assert info == {"gdsh_sample": {"file_name": "gdsh_sample.jsonl",
                                    "columns": {"prompt": "input", "response": "output", "timeseries": "timeseries"}}}


def test_second_run_is_byte_identical_and_workers_do_not_change_output(tmp_path):
    names = ["gdsh_sample.jsonl", "gdsh_sample.rejects.jsonl", "gdsh_sample.report.json", "dataset_info.json"]
    assert _convert(tmp_path / "a", "-q") == 0
    first = {n: (tmp_path / "a" / n).read_bytes() for n in names}
    assert _convert(tmp_path / "a", "-q") == 0
    assert {n: (tmp_path / "a" / n).read_bytes() for n in names} == first
    assert _convert(tmp_path / "b", "-q", "--workers", "2") == 0
    assert {n: (tmp_path / "b" / n).read_bytes() for n in names} == first


def test_dataset_info_keeps_other_entries(tmp_path):
    (tmp_path / "dataset_info.json").write_text(json.dumps({"other": {"file_name": "o.json"}, "gdsh_sample": {"file_name": "old"}}))
    assert _convert(tmp_path, "-q") == 0
    info = json.loads((tmp_path / "dataset_info.json").read_text())
    assert list(info) == ["other", "gdsh_sample"]
    assert info["other"] == {"file_name": "o.json"}
    assert info["gdsh_sample"]["file_name"] == "gdsh_sample.jsonl"


def test_convert_subcommand_alias_and_default_name(tmp_path):
    assert cli.main(["convert", str(GDSH), "--csv-dir", str(GDSH_CSV), "-o", str(tmp_path), "-q", "--workers", "1"]) == 0
    assert len(read_jsonl(tmp_path / "gdsh.jsonl")) == 12
    assert "gdsh" in json.loads((tmp_path / "dataset_info.json").read_text())


def test_crash_while_replacing_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch, capsys):
    assert _convert(tmp_path, "-q") == 0
    before = (tmp_path / "gdsh_sample.jsonl").read_bytes()
    real_replace = os.replace

    def crash(src, dst):
        if str(dst).endswith(".jsonl"):
            raise OSError("disk full (simulated)")
        return real_replace(src, dst)

    monkeypatch.setattr(writer.os, "replace", crash)
    assert _convert(tmp_path, "-q", "--value-col", "VALUE") == cli.EXIT_OUTPUT  # an I/O error: exit 3, no traceback
    assert "disk full (simulated)" in capsys.readouterr().err
    assert (tmp_path / "gdsh_sample.jsonl").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("file_type", ["jsonl", "parquet"])
def test_crash_mid_write_keeps_old_file(tmp_path, monkeypatch, file_type):
    assert _convert(tmp_path, "-q", "--file-type", file_type) == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    from converters.filetypes import SINKS

    calls = {"n": 0}
    sink = SINKS.get(file_type)
    real = sink.write

    def explode(*args):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("killed mid-write (simulated)")
        return real(*args)

    monkeypatch.setattr(sink, "write", explode)
    with pytest.raises(RuntimeError, match="simulated"):
        _convert(tmp_path, "-q", "--file-type", file_type)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_malformed_json_array_reports_line_and_column(tmp_path, capsys):
    src = tmp_path / "bad.json"
    src.write_text('[\n  {"messages": []},\n  {"messages": [}\n]\n', encoding="utf-8")
    (tmp_path / "csv").mkdir()
    assert tsconvert([str(src), "--csv-dir", str(tmp_path / "csv"), "-o", str(tmp_path / "out"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err == "tsconvert: error: bad.json: line 3 column 17: invalid JSON: Expecting value. Fix the file at that position.\n"
    assert not (tmp_path / "out" / "bad.jsonl").exists()


def test_malformed_jsonl_line_is_one_reject_with_its_line(tmp_path, capsys):
    """A JSONL line that is not JSON is that record's rejection (line and column named); the run goes on."""
    src = tmp_path / "bad.jsonl"
    src.write_text('{"messages": []}\n{"messages": [1,}\n', encoding="utf-8")
    (tmp_path / "csv").mkdir()
    assert tsconvert([str(src), "--csv-dir", str(tmp_path / "csv"), "-o", str(tmp_path / "out"), "-q"]) == 0
    rejects = [json.loads(line) for line in (tmp_path / "out" / "bad.rejects.jsonl").read_text().splitlines()]
    assert [(r["index"], r["reason"]) for r in rejects] == [(0, "bad_turns"), (1, "unparseable_record")]
    assert rejects[1]["message"] == "bad.jsonl: record 1: line 2: column 17: Expecting value. Fix the JSON or drop the line."
    assert rejects[1]["record"] == '{"messages": [1,}'


def test_a_lone_brace_on_line_one_is_a_usage_error(tmp_path, capsys):
    src = tmp_path / "obj.jsonl"
    src.write_text('{\n  "messages": []\n}\n', encoding="utf-8")
    (tmp_path / "csv").mkdir()
    assert tsconvert([str(src), "--csv-dir", str(tmp_path / "csv"), "-o", str(tmp_path / "out"), "-q"]) == 2
    assert "a single JSON object is not supported" in capsys.readouterr().err


def test_truncated_json_array(tmp_path, capsys):
    src = write_json(tmp_path / "t.json", [{"a": 1}, {"b": 2}])
    src.write_text(src.read_text()[:-3])
    (tmp_path / "csv").mkdir()
    assert tsconvert([str(src), "--csv-dir", str(tmp_path / "csv"), "-o", str(tmp_path), "-q"]) == 2
    assert "invalid JSON" in capsys.readouterr().err


def test_missing_csv_dir_is_a_usage_error(tmp_path, capsys):
    assert tsconvert([str(GDSH), "--csv-dir", str(tmp_path / "nope"), "-o", str(tmp_path), "-q"]) == 2
    assert capsys.readouterr().err == (
        f"tsconvert: error: --csv-dir {tmp_path / 'nope'}: not a directory. Pass the folder holding the CSV files\n"
    )


def test_strict_exits_nonzero_on_reject(tmp_path, capsys):
    csv_dir = tmp_path / "csv"
    shutil.copytree(GDSH_CSV, csv_dir)
    next(csv_dir.iterdir()).unlink()
    args = [str(GDSH), "--csv-dir", str(csv_dir), "-o", str(tmp_path), "-q"]
    assert tsconvert(args) == 0
    assert tsconvert([*args, "--strict"]) == 1
    assert "--strict: 1 record(s) rejected" in capsys.readouterr().err


def test_console_script_help(tmp_path):
    exe = Path(sys.executable).parent / "tsconvert"
    cmd = [str(exe), "--help"] if exe.exists() else [sys.executable, "-m", "converters.cli", "--help"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert "usage: tsconvert" in proc.stdout and "validate" in proc.stdout and "preview" in proc.stdout
    mod = subprocess.run([sys.executable, "-m", "converters.cli", "convert", "--help"], capture_output=True, text=True, timeout=60)
    assert mod.returncode == 0 and "--csv-dir" in mod.stdout


def test_no_torch_or_heavy_imports_for_help():
    code = ("import sys; from converters.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'pyarrow', 'matplotlib', 'pandas') if m in sys.modules]\n"
            "print(','.join(heavy))\n"
            "import converters.convert, converters.validate, converters.preview\n"
            "print('torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-2:] == ["", "False"]


def test_every_option_has_help():
    parser = cli.build_parser()
    subs = parser._subparsers._group_actions[0].choices  # argparse has no public accessor
    for name, sub in subs.items():
        for action in sub._actions:
            assert action.help, f"{name} {action.option_strings or action.dest} has no help"


def test_cli_choices_match_registries():
    from converters.cleaning import DUPLICATE_POLICIES, MISSING_POLICIES, UNSORTED_POLICIES
    from converters.downsample import DOWNSAMPLERS
    from converters.formats import OUTPUT_FORMATS
    from converters.records import INPUT_FORMATS

    assert list(cli.MISSING_CHOICES) == MISSING_POLICIES.names()
    assert list(cli.DOWNSAMPLE_CHOICES) == DOWNSAMPLERS.names()
    assert list(cli.UNSORTED_CHOICES) == UNSORTED_POLICIES.names()
    assert list(cli.DUPLICATE_CHOICES) == DUPLICATE_POLICIES.names()
    assert list(cli.FORMAT_CHOICES) == OUTPUT_FORMATS.names()
    assert sorted(cli.INPUT_FORMAT_CHOICES) == sorted(["auto", *INPUT_FORMATS.names()])


def test_records_are_streamed_not_loaded_up_front(tmp_path, monkeypatch):
    from converters import convert as convert_mod
    from converters.filetypes import JsonlSink

    yielded = {"n": 0, "at_first_line": None}
    real_iter, real_line = convert_mod.iter_records, JsonlSink.write

    def counting_iter(path, *args):
        for rec in real_iter(path, *args):
            yielded["n"] += 1
            yield rec

    def watching_line(*args):
        if yielded["at_first_line"] is None:
            yielded["at_first_line"] = yielded["n"]
        return real_line(*args)

    monkeypatch.setattr(convert_mod, "iter_records", counting_iter)
    monkeypatch.setattr(JsonlSink, "write", watching_line)
    assert _convert(tmp_path, "-q") == 0
    assert yielded == {"n": 12, "at_first_line": 1}  # the first line is written before the second record is read
