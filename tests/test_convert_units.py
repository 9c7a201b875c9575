"""Units behind tsconvert: streaming JSON reader, registries, float encoding, validate, preview."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from converters import jsonenc, jsonstream
from converters.cleaning import MISSING_POLICIES, register_missing_policy
from converters.downsample import DOWNSAMPLERS, get_downsampler, lttb_indices
from converters.errors import InputError, RejectError
from converters.paths import resolve_csv
from converters.records import INPUT_FORMATS, get_input_format, parse_record
from conftest import CHATTS_DEV, GDSH, GDSH_CSV, gdsh_record, read_jsonl, tsconvert


def test_array_stream_matches_json_load_across_tiny_chunks(tmp_path, monkeypatch):
    rng = random.Random(0)
    recs = [{"i": i, "t": "中文" * rng.randint(0, 30), "x": [rng.random() for _ in range(rng.randint(0, 20))], "n": 12345678901}
            for i in range(200)]
    path = tmp_path / "a.json"
    path.write_text("\ufeff" + json.dumps(recs, ensure_ascii=False, indent=1), encoding="utf-8")
    monkeypatch.setattr(jsonstream, "_CHUNK", 7)
    assert list(jsonstream.iter_records(path)) == recs


def test_array_error_position_after_many_chunks(tmp_path, monkeypatch):
    path = tmp_path / "a.json"
    path.write_text("[\n" + ",\n".join('{"k": %d}' % i for i in range(50)) + ",\n{\"k\": tru}\n]")
    monkeypatch.setattr(jsonstream, "_CHUNK", 16)
    with pytest.raises(InputError) as err:
        list(jsonstream.iter_records(path))
    assert str(err.value) == "a.json: line 52 column 7: invalid JSON: Expecting value. Fix the file at that position."


@pytest.mark.parametrize("chunk", [1, 3, 7, 64])
def test_array_records_over_the_cap_are_skipped_unread_whatever_the_chunk_boundaries(tmp_path, monkeypatch, chunk):
    """An array element over --max-record-bytes is one record_too_large rejection naming its line, found by a
    scanner that drops what it read block by block (strings with escaped quotes and brackets, nesting, a bare
    number, a bare string); every record around it is read exactly as json.load reads it."""
    big = [{"note": 'a\\"]}[{,' * 40, "deep": [[[{"x": "]"}]]], "v": list(range(30))}, "q" * 300, 10 ** 200, [[], {}, "}" * 90]]
    small = [{"k": i, "s": 'x\\"y]'} for i in range(len(big) + 1)]
    items = [small[0]]
    for i, value in enumerate(big):
        items += [value, small[i + 1]]
    text = "[\n" + ",\n".join(json.dumps(v) for v in items) + "\n]"
    path = tmp_path / "a.json"
    path.write_text(text)
    monkeypatch.setattr(jsonstream, "_CHUNK", chunk)
    got = list(jsonstream.iter_raw_records(path, max_record_bytes=100))
    assert [r.value for r in got if r.error is None] == small
    rejected = [r.error for r in got if r.error is not None]
    assert [code for code, _ in rejected] == ["record_too_large"] * len(big)
    for k, ((_, message), value) in enumerate(zip(rejected, big)):
        assert message.startswith(f"line {3 + 2 * k}: a record of {len(json.dumps(value))} characters, above --max-record-bytes 100;"), message


@pytest.mark.parametrize("chunk", [1, 3, 7, 64])
def test_array_records_the_parser_cannot_take_are_kept_whole_whatever_the_chunk_boundaries(tmp_path, monkeypatch, chunk):
    """Elements json cannot finish (nested past its recursion limit, an integer past the digit limit) are
    unparseable_record rejections carrying their exact text (found by the same bracket-counting scanner as the
    over-cap skip, keeping what it reads); the records around them are read as json.load reads them."""
    bad = ["[" * 5000 + "]" * 5000, '{"n": ' + "9" * 5000 + ', "s": "]}\\"[{"}', "9" * 5000]
    small = [{"k": i, "s": 'x\\"y]'} for i in range(len(bad) + 1)]
    parts = [json.dumps(small[0])]
    for i, raw in enumerate(bad):
        parts += [raw, json.dumps(small[i + 1])]
    path = tmp_path / "a.json"
    path.write_text("[\n" + ",\n".join(parts) + "\n]")
    monkeypatch.setattr(jsonstream, "_CHUNK", chunk)
    got = list(jsonstream.iter_raw_records(path, max_record_bytes=1 << 20))
    assert [r.value for r in got if r.error is None] == small
    assert [(r.text, r.error[0]) for r in got if r.error is not None] == [(raw, "unparseable_record") for raw in bad]


def test_empty_array_and_empty_file(tmp_path):
    (tmp_path / "e.json").write_text(" [ ] ")
    assert list(jsonstream.iter_records(tmp_path / "e.json")) == []
    (tmp_path / "z.json").write_text("")
    with pytest.raises(InputError, match="file is empty"):
        list(jsonstream.iter_records(tmp_path / "z.json"))


@pytest.mark.parametrize("registry", [INPUT_FORMATS, MISSING_POLICIES, DOWNSAMPLERS])
def test_registries_refuse_duplicates_and_list_names(registry):
    name = registry.names()[0]
    with pytest.raises(ValueError, match="already registered"):
        registry.register(name, registry.get(name))
    with pytest.raises(KeyError, match="valid: " + ", ".join(registry.names())):
        registry.get("nope")


def test_register_missing_policy_refuses_builtin():
    with pytest.raises(ValueError):
        register_missing_policy("interpolate", lambda v, b, s: (v, ~b))


def test_get_input_format_unknown():
    with pytest.raises(KeyError, match="unknown input format 'llava'; valid: alpaca, openai, sharegpt"):
        get_input_format("llava")


def test_parse_record_rejects_non_object():
    with pytest.raises(RejectError) as err:
        parse_record([1, 2])
    assert err.value.reject.code == "invalid_record"


@pytest.mark.parametrize("method", DOWNSAMPLERS.names())
def test_downsamplers_cap_length(method):
    y = np.sin(np.arange(5000) / 50.0)
    y[4321] = 9.0
    out = get_downsampler(method)(y, 500)
    assert 0 < len(out) <= 500
    if method != "window":
        assert out.max() == 9.0


def test_lttb_keeps_endpoints_and_is_increasing():
    idx = lttb_indices(np.random.default_rng(0).normal(size=1000), 100)
    assert len(idx) == 100 and idx[0] == 0 and idx[-1] == 999 and np.all(np.diff(idx) > 0)


def test_float_encoding_round_trips_and_fallback_agrees(monkeypatch):
    vals = np.array([0.1, 47.8174, -1e-7, 1e22, 123456789.0, 5e-324, 2.0 ** 0.5])
    fast = jsonenc.dumps_series(vals)
    assert json.loads(fast) == vals.tolist()
    monkeypatch.setattr(jsonenc, "orjson", None)
    slow = jsonenc.dumps_series(vals)
    assert json.loads(slow) == vals.tolist()
    line = jsonenc.record_line({"input": "中<ts><ts/>", "output": "o"}, [slow])
    assert json.loads(line) == {"input": "中<ts><ts/>", "output": "o", "timeseries": [vals.tolist()]}


def test_conversion_without_orjson_gives_same_values(tmp_path, monkeypatch):
    assert tsconvert([str(GDSH), "--csv-dir", str(GDSH_CSV), "-o", str(tmp_path / "a"), "-q"]) == 0
    monkeypatch.setattr(jsonenc, "orjson", None)
    assert tsconvert([str(GDSH), "--csv-dir", str(GDSH_CSV), "-o", str(tmp_path / "b"), "-q"]) == 0
    assert read_jsonl(tmp_path / "a" / "gdsh.jsonl") == read_jsonl(tmp_path / "b" / "gdsh.jsonl")


def test_resolve_csv_maps_by_stem(tmp_path):
    d = tmp_path.resolve()
    assert resolve_csv(r"D:\plots\gdsh\x.PV.bmp", d) == d / "x.PV.csv"
    assert resolve_csv("/a/b/x.PV.jpg", d, "{parent}/{stem}.csv") == d / "b" / "x.PV.csv"


def test_validate_accepts_chatts_dev(capsys):
    assert tsconvert(["validate", str(CHATTS_DEV / "chatts_dev.jsonl")]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "chatts_dev.jsonl: 100 records: 100 valid + 0 rejected"


def test_validate_flags_each_problem(tmp_path, capsys):
    lines = [
        {"input": "<ts><ts/>", "output": "o", "timeseries": [[1, 2, 3]]},
        {"input": "<ts><ts/><ts><ts/>", "output": "o", "timeseries": [[1.0]]},
        {"input": "<ts><ts/>", "output": "o", "timeseries": [[1.0, "x"]]},
        {"input": "<ts><ts/>", "output": "o", "timeseries": [[]]},
    ]
    path = tmp_path / "v.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"input": "<ts><ts/>", "output": "o", "timeseries": [[NaN]]}\n')
    report = tmp_path / "r.json"
    assert tsconvert(["validate", str(path), "--report", str(report)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "v.jsonl: record 1 (line 2): 2 <ts><ts/> placeholders but 1 series. Make them equal.",
        "v.jsonl: record 2 (line 3): series 0: value 1 is 'x' (a string), not a number. Clean the data (`tsconvert` "
        "reads historian strings and repairs gaps) and convert again.",
        "v.jsonl: record 3 (line 4): series 0: no values. Give a non-empty list of numbers, or drop the series and its "
        "placeholder.",
        "v.jsonl: record 4 (line 5): series 0: value 0 is nan, not a finite number. Clean the data (`tsconvert` "
        "interpolates NaN runs) and convert again.",
    ]
    rep = json.loads(report.read_text())
    assert rep["input"] == 5 and rep["valid"] == 1 and rep["rejected"] == 4


def test_preview_writes_png_with_span(tmp_path):
    pytest.importorskip("matplotlib")
    assert tsconvert([str(GDSH), "--csv-dir", str(GDSH_CSV), "-o", str(tmp_path), "-q"]) == 0
    assert tsconvert(["preview", str(tmp_path / "gdsh.jsonl"), "-r", "0,10", "-o", str(tmp_path / "png")]) == 0
    for i in (0, 10):
        data = (tmp_path / "png" / f"gdsh.rec{i}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert tsconvert(["preview", str(tmp_path / "gdsh.jsonl"), "-r", "99", "-o", str(tmp_path / "png")]) == 1


def test_anomaly_span_parsing():
    from converters.preview import anomaly_span

    assert anomaly_span('{"is_anomaly": true, "anomaly_type": "spike", "start": 3, "end": 9}') == (3, 9, "spike")
    assert anomaly_span('{"is_anomaly": false, "start": -1, "end": -1}') is None
    assert anomaly_span("not json") is None


def test_ts_tokens_already_in_text_are_rejected(tmp_path):
    from conftest import convert_dir

    code, out = convert_dir(tmp_path, [gdsh_record("/a/a.PV.jpg", text="<ts><ts/> <image>")], {"a.PV.csv": None})
    assert read_jsonl(out / "ds.rejects.jsonl")[0]["reason"] == "ts_token_in_text"


def test_stem_strips_only_image_extensions(tmp_path):
    d = tmp_path.resolve()
    assert resolve_csv("/a/FIC-1203.PV", d) == d / "FIC-1203.PV.csv"
    assert resolve_csv("/a/FIC-1203.PV.JPEG", d) == d / "FIC-1203.PV.csv"
    assert resolve_csv("sub/FIC-1203.PV.png", d, "{relstem}.csv") == d / "sub" / "FIC-1203.PV.csv"


def test_progress_bar_only_on_a_tty(tmp_path, capsys, monkeypatch):
    import sys

    assert tsconvert([str(GDSH), "--csv-dir", str(GDSH_CSV), "-o", str(tmp_path)]) == 0
    assert "rec" not in capsys.readouterr().err  # captured stderr is not a TTY: no bar
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert tsconvert([str(GDSH), "--csv-dir", str(GDSH_CSV), "-o", str(tmp_path)]) == 0
    assert "12rec" in capsys.readouterr().err.replace(" ", "")
    assert tsconvert([str(GDSH), "--csv-dir", str(GDSH_CSV), "-o", str(tmp_path), "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_preview_draws_what_it_can_and_names_the_rest(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    big = "1" + "0" * 400
    lines = [
        ('{"input": "<ts><ts/>", "output": "{\\"is_anomaly\\": true, \\"start\\": 1, \\"end\\": 99999999999999999999}", '
         '"timeseries": [[1, 2, 3, 1e400, NaN, ' + big + ']]}').encode(),
        b"[1, 2]",
        b'{"input": "x", "output": 5, "timeseries": [["a", 1]]}',
        b'{"input": "caf\xe9"}',
        b"[" * 3000,
        b'{"messages": [1, {"role": "assistant", "content": 3}], "timeseries": [' + b",".join([b"[1,2]"] * 70) + b"]}",
    ]
    path = tmp_path / "p.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert tsconvert(["preview", str(path), "-r", "0-6", "-o", str(tmp_path / "png")]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == [str(tmp_path / "png" / "p.rec0.png"), str(tmp_path / "png" / "p.rec5.png")]
    assert err.splitlines() == [
        "tsconvert: p.jsonl: record 0: 3 non-finite point(s) left as gaps.",
        "tsconvert: p.jsonl: record 1 (line 2): expected a JSON object, got list; not drawn.",
        "tsconvert: p.jsonl: record 2 (line 3): series 0 value 0 is 'a', not a number; not drawn.",
        "tsconvert: p.jsonl: record 3 (line 4): column 15: byte 0xe9 is not UTF-8 (a Latin-1/cp1252 file, or a character "
        "cut in half). Re-save the file as UTF-8, e.g. `iconv -f latin1 -t utf-8 IN > OUT`; not drawn.",
        "tsconvert: p.jsonl: record 4 (line 5): nested deeper than JSON readers allow (about 1000 levels); no record needs "
        "that. Fix or drop the line; not drawn.",
        "tsconvert: p.jsonl: record 5: first 64 of 70 series drawn.",
        "tsconvert: p.jsonl has no record [6] (6 records, numbered from 0)",
    ]


def test_preview_unusable_arguments_and_files_exit_2(tmp_path, capsys):
    path = tmp_path / "p.jsonl"
    path.write_text('{"input": "<ts><ts/>", "output": "o", "timeseries": [[1, 2]]}\n')
    assert tsconvert(["preview", str(path), "-r", "0-99999999999", "-o", str(tmp_path / "png")]) == 2
    assert tsconvert(["preview", str(path), "-r", "5-2", "-o", str(tmp_path / "png")]) == 2
    assert tsconvert(["preview", str(path), "-o", str(path / "sub")]) == 2
    wide = tmp_path / "w.jsonl"
    wide.write_text(path.read_text(), encoding="utf-16")
    assert tsconvert(["preview", str(wide), "-o", str(tmp_path / "png")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("tsconvert: error: --records '0-99999999999': '0-99999999999' must be a range low-high")
    assert err[2] == f"tsconvert: error: -o {path / 'sub'}: cannot create the folder: Not a directory. Pick a writable folder"
    assert err[3].startswith(f"tsconvert: error: {wide}: the file is UTF-16 text, not UTF-8")


def test_validate_names_every_hostile_line_and_never_tracebacks(tmp_path, capsys):
    ok = b'{"input": "<ts><ts/>", "output": "o", "timeseries": [[1, 2, 3]]}'
    lines = [
        ok,
        b'{"input": "<ts><ts/>", "output": "o", "timeseries": [[1, ' + b"9" * 400 + b"]]}",  # beyond float64
        b'{"input": "<ts><ts/>", "output": "o", "timeseries": [[1, ' + b"9" * 5000 + b"]]}",  # beyond Python's parser
        b'{"input": "<ts><ts/>", "output": "o", "timeseries": ' + b"[" * 5000 + b"1" + b"]" * 5000 + b"}",
        b'{"input": "<ts><ts/> caf\xe9", "output": "o", "timeseries": [[1]]}',  # Latin-1
        b'{"input": "<ts><ts/>", "output": "o", "timeseries": [[NaN, Infinity]]}',
        b'{"input": "<ts><ts/>", "output": "o", "system": 5, "timeseries": [[1]]}',
        b'{"input": "<ts></ts>", "output": "o", "timeseries": [[1]]}',  # the spelling training accepts
        b'{"input": "x", "output": "<ts><ts/>", "timeseries": [[1]]}',
    ]
    path = tmp_path / "h.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    report = tmp_path / "r.json"
    assert tsconvert(["validate", str(path), "--report", str(report), "-q"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert [line.split(": ", 2)[1] for line in err.splitlines()] == [f"record {i} (line {i + 1})" for i in (1, 2, 3, 4, 5, 6, 8)]
    assert json.loads(report.read_text())["rejected_by_reason"] == {
        "invalid_json": 2, "invalid_record": 1, "magnitude": 1, "non_finite": 1, "not_utf8": 1, "placeholder_outside_user": 1,
    }
    wide = tmp_path / "w.jsonl"
    wide.write_bytes(ok.decode().encode("utf-16") + "\n".encode("utf-16-le"))
    assert tsconvert(["validate", str(wide)]) == 2
    assert capsys.readouterr().err.startswith(f"tsconvert: error: {wide}: the file is UTF-16 text, not UTF-8")
