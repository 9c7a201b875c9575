"""Training refuses series that cannot train, naming the dataset file, the record and the value; the
same check (tsplugin.processing.series_values) serves tsconvert validate and conversion."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import lf_args, run_lf, tsconvert, write_dataset

from tsplugin.processing.series_values import series_problem


def _record(values, text="Look: <ts><ts/>. Odd?") -> dict:
    return {"input": text, "output": "ok", "timeseries": [values]}


GOOD = [float(i % 7) for i in range(40)]


def _train_error(model, tmp_path, records, name="bad") -> str:
    data = write_dataset(tmp_path / "data", name, records)
    with pytest.raises(ValueError) as err:
        run_lf(**lf_args(model, tmp_path / "out", dataset=name, dataset_dir=str(data)))
    return str(err.value)


@pytest.mark.parametrize(
    "values, expected",
    [
        # datasets cannot load a file whose series mix numbers and strings: the record is found by a rescan
        (GOOD[:3] + ["2.5"] + GOOD[4:], "bad.jsonl: record 1 (line 2): series 0: value 3 is '2.5' (a string), not a number."),
        (GOOD[:5] + [True] + GOOD[6:], "bad.jsonl: record 1 (line 2): series 0: value 5 is True (bool), not a number."),
        ([1e308] * 40, "bad.jsonl: record 1: series 0: value 0 is 1e+308: the series' mean overflows float64"),
        ([1.7e308, -1.7e308, 1.7e308], "bad.jsonl: record 1: series 0: value 1 is -1.7e+308: subtracting the mean"),
    ],
    ids=["string", "bool", "1e308", "inf_after_mean"],
)
def test_bad_series_values_name_file_record_and_value(values, expected, tiny_qwen3ts, tmp_path):
    message = _train_error(tiny_qwen3ts, tmp_path, [_record(GOOD), _record(values)])
    assert expected in message
    assert "Traceback" not in message


def test_all_string_series_are_refused_not_parsed_silently(tiny_qwen3ts, tmp_path):
    message = _train_error(tiny_qwen3ts, tmp_path, [_record([str(v) for v in GOOD])])
    assert message.startswith("bad.jsonl: record 0: series 0: value 0 is '0.0' (a string), not a number.")


def test_a_line_that_is_not_utf8_or_not_json_is_named(tiny_qwen3ts, tmp_path):
    data = write_dataset(tmp_path / "data", "bad", [_record(GOOD), _record(GOOD)])
    path = data / "bad.jsonl"
    lines = path.read_bytes().splitlines()
    path.write_bytes(lines[0] + b"\n" + lines[1].replace(b"Odd?", b"caf\xe9?") + b"\n")
    with pytest.raises(ValueError, match=r"bad.jsonl: record 1 \(line 2\): column \d+: byte 0xe9 is not UTF-8"):
        run_lf(**lf_args(tiny_qwen3ts, tmp_path / "out", dataset="bad", dataset_dir=str(data)))
    path.write_bytes(lines[0] + b"\n" + lines[1][:30] + b"\n")
    with pytest.raises(ValueError, match=r"bad.jsonl: record 1 \(line 2\): column \d+: Unterminated string. Fix the JSON or drop the line"):
        run_lf(**lf_args(tiny_qwen3ts, tmp_path / "out", dataset="bad", dataset_dir=str(data)))


def test_validate_agrees_with_training_on_values(tmp_path):
    path = tmp_path / "v.jsonl"
    rows = [_record(GOOD), _record([1e308] * 4), _record([1, 10**400]), _record(["1.0", "2.0"]), _record([False, 1.0])]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = tmp_path / "r.json"
    assert tsconvert(["validate", str(path), "-q", "--report", str(report)]) == 1
    assert json.loads(report.read_text())["rejected_by_reason"] == {"magnitude": 2, "non_numeric": 2}


def test_the_check_is_the_encoding_training_runs():
    from tsplugin.processing import encode_series

    rng = np.random.default_rng(0)
    for scale in (1e-3, 1.0, 1e6, 1e30):
        values = (rng.standard_normal(64) * scale).tolist()
        assert series_problem(values) is None
        features = encode_series(values)
        assert np.isfinite(features).all() and np.abs(features[:, 0]).max() <= 3.0
    # centred values beyond fp32's range are refused (the converter's rule), though float64 could centre them
    assert series_problem((rng.standard_normal(64) * 1e300).tolist()).code == "magnitude"
    # where the check refuses, training's own encoding does overflow
    for values in ([1e308, 1e308], [1.7e308, -1.7e308, 1.7e308], [9e307] * 3):
        problem = series_problem(values)
        assert problem is not None and problem.code == "magnitude"
        with np.errstate(over="ignore", invalid="ignore"):
            assert not np.isfinite(encode_series(values)).all()


def test_the_magnitude_check_is_the_converters():
    from tsplugin.processing.encodable import DTYPE_MAX, check_encodable  # what tsconvert runs at conversion

    for values in ([0.0, 2e5], [1e308, 1e308], [1.0, 3.5e38, -3.5e38]):
        for dtype in ("fp16", "fp32"):
            ours, theirs = series_problem(values, dtype), check_encodable(values, dtype)
            assert (ours is None) == (theirs is None) and (ours is None or ours.index == theirs.index)
    assert series_problem([0.0, 2e5]) is None  # training checks as fp32: the model sees [-3, 3]
    assert series_problem([0.0, 2e5], "fp16").code == "magnitude"
    assert DTYPE_MAX["fp16"] == float(np.finfo(np.float16).max) and DTYPE_MAX["fp32"] == float(np.finfo(np.float32).max)
