"""Training refuses series that cannot train, naming the dataset file, the record and the value; the
same check (tsplugin.processing.series_values) serves tsconvert validate and conversion."""

from __future__ import annotations

import json
import os

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


def _bad_file(kind: str, path) -> str:
    """Make `path` (the dataset's file) hostile; returns the expected message."""
    if kind == "empty":
        path.write_bytes(b"")
        return f"{path}: the file is empty (0 bytes): no records to train on"
    if kind == "fifo":
        path.unlink()
        os.mkfifo(path)
        return f"{path} is a FIFO (named pipe), not a regular file, and was not read"
    if kind == "dev-zero":
        path.unlink()
        path.symlink_to("/dev/zero")
        return f"{path} is a character device, not a regular file, and was not read"
    lines = path.read_text().splitlines()
    record = json.loads(lines[1])
    record["timeseries"] = {"a": GOOD}
    path.write_text(lines[0] + "\n" + json.dumps(record) + "\n")
    return f"{path}: record 1 (line 2): column 'timeseries' is an object {{...}}, not a list of series"


@pytest.mark.parametrize("kind", ["empty", "fifo", "dev-zero", "dict-series"])
def test_an_unusable_dataset_file_is_named_before_the_loader_reads_it(kind, tiny_qwen3ts, tmp_path):
    from tsplugin.llamafactory.data import TimeSeriesDataError

    data = write_dataset(tmp_path / "data", "bad", [_record(GOOD), _record(GOOD)])
    expected = _bad_file(kind, data / "bad.jsonl")
    with pytest.raises(TimeSeriesDataError) as err:  # no hang on the FIFO, no read of /dev/zero
        run_lf(**lf_args(tiny_qwen3ts, tmp_path / "out", dataset="bad", dataset_dir=str(data)))
    assert str(err.value).startswith(expected), str(err.value)


def test_a_fifo_inside_a_dataset_folder_is_named(tiny_qwen3ts, tmp_path):
    from tsplugin.llamafactory.data import TimeSeriesDataError

    data = write_dataset(tmp_path / "data", "bad", [_record(GOOD)])
    (data / "folder").mkdir()
    (data / "bad.jsonl").rename(data / "folder" / "a.jsonl")
    os.mkfifo(data / "folder" / "b.jsonl")
    info = json.loads((data / "dataset_info.json").read_text())
    info["bad"]["file_name"] = "folder"
    (data / "dataset_info.json").write_text(json.dumps(info))
    with pytest.raises(TimeSeriesDataError, match=r"folder/b.jsonl is a FIFO \(named pipe\), not a regular file"):
        run_lf(**lf_args(tiny_qwen3ts, tmp_path / "out", dataset="bad", dataset_dir=str(data)))


@pytest.mark.slow
@pytest.mark.parametrize("torchrun", [False, True], ids=["one-process", "torchrun"])
def test_llamafactory_cli_train_prints_one_line_and_exits_2(tiny_qwen3ts, tmp_path, torchrun):
    """The real `llamafactory-cli train` (a fresh process: ~20-60 s of imports on a busy 2-core box), alone and
    as multi-GPU users run it: LLaMA-Factory starts torchrun, whose workers run `llamafactory/launcher.py`."""
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    data = write_dataset(tmp_path / "data", "bad", [_record(GOOD), _record(GOOD)])
    expected = _bad_file("dict-series", data / "bad.jsonl")
    recipe = tmp_path / "train.yaml"
    recipe.write_text(yaml.safe_dump(lf_args(tiny_qwen3ts, tmp_path / "out", dataset="bad", dataset_dir=str(data))))
    result = subprocess.run([str(Path(sys.executable).parent / "llamafactory-cli"), "train", str(recipe)], capture_output=True,
                            text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1",
                                                         **({"FORCE_TORCHRUN": "1", "NPROC_PER_NODE": "1",  # LF runs `torchrun` from PATH
                                                                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
                                                               if torchrun else {})})
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("llamafactory-cli")]
    assert len(errors) == 1 and errors[0].startswith(f"llamafactory-cli train: error: {expected}"), result.stderr[-2000:]
    if not torchrun:  # torchrun and torch's C++ side log a few lines of their own after it (no traceback)
        assert result.stderr.splitlines()[-1] == errors[0]


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
