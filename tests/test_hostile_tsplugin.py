"""`tsplugin` commands against a table of hostile inputs, each in a fresh process (as a user runs them).

Every case checks: the exit code, exactly one line on stderr that names the file or option, no
traceback, every input file byte-for-byte unchanged, nothing written outside the case's folder,
and no hang (a FIFO among the inputs must be refused, not read: the run has a timeout).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from conftest import ROOT

TIMEOUT = 240  # seconds: far above a refused run (< 10 s even when transformers is imported on a busy box)


@dataclass(frozen=True)
class Case:
    name: str
    setup: Callable[[Path], list[str]]  # writes the inputs under the folder; returns argv after `tsplugin`
    code: int
    message: str  # must be in the one stderr line ({d} is the case's folder)


def _csv(path: Path, n: int = 50) -> Path:
    path.write_text("timestamp,value\n" + "".join(f"2024-01-01 00:{i // 60:02d}:{i % 60:02d},{i % 7}.5\n" for i in range(n)))
    return path


def _config(text: str) -> Callable[[Path], list[str]]:
    def setup(d: Path) -> list[str]:
        (d / "m").mkdir()
        (d / "m" / "config.json").write_text(text)
        return ["inspect", str(d / "m")]

    return setup


def _safetensors(data: bytes) -> Callable[[Path], list[str]]:
    def setup(d: Path) -> list[str]:
        (d / "m").mkdir()
        (d / "m" / "config.json").write_text(json.dumps({"architectures": ["Qwen2TSForCausalLM"], "model_type": "chatts",
                                                         "ts": {"patch_size": 16}}))
        (d / "m" / "model.safetensors").write_bytes(data)
        return ["inspect", str(d / "m")]

    return setup


def _chat_mismatch(d: Path) -> list[str]:
    (d / "m").mkdir()
    return ["chat", "--model", str(d / "m"), "--csv", str(_csv(d / "a.csv")), "<ts><ts/> vs <ts><ts/>"]


def _forecast_scaling(content: str) -> Callable[[Path], list[str]]:
    def setup(d: Path) -> list[str]:
        (d / "m").mkdir()
        (d / "s.json").write_text(content)
        return ["forecast", "--model", str(d / "m"), "--csv", str(_csv(d / "a.csv")), "--columns", "value", "--scaling", str(d / "s.json")]

    return setup


def _forecast_output_is_input(d: Path) -> list[str]:
    (d / "m").mkdir()
    (d / "t.jsonl").write_text('{"timeseries": [[1.0, 2.0]]}\n')
    return ["forecast", "--model", str(d / "m"), "--data", str(d / "t.jsonl"), "-o", str(d / "t.jsonl")]


def _forecast_fifo(d: Path) -> list[str]:
    (d / "m").mkdir()
    os.mkfifo(d / "t.jsonl")
    return ["forecast", "--model", str(d / "m"), "--data", str(d / "t.jsonl")]


def _run_dir(d: Path) -> Path:
    (d / "run").mkdir()
    (d / "run" / "trainer_log.jsonl").write_text(
        '{"current_steps": 1, "total_steps": 2, "loss": 1.0, "lr": 0.001}\n{"current_steps": 2, "total_steps": 2, "loss": 0.9, "lr": 0.001}\n')
    return d / "run"


def _monitor_plot(target: str) -> Callable[[Path], list[str]]:
    def setup(d: Path) -> list[str]:
        run = _run_dir(d)
        return ["monitor", str(run), "--plot", str(d / target)]

    return setup


def _eval_json_is_input(d: Path) -> list[str]:
    (d / "p.jsonl").write_text('{"predict": "{}", "label": "{}"}\n')
    return ["eval", "anomaly", str(d / "p.jsonl"), "--json", str(d / "p.jsonl")]


CASES = [
    Case("inspect config null", _config("null"), 2, "{d}/m/config.json: the config.json holds null"),
    Case("inspect config list", _config("[]"), 2, "{d}/m/config.json: the config.json holds an array"),
    Case("inspect config deep", _config("[" * 100_000 + "]" * 100_000), 2, "nested deeper than JSON readers allow"),
    Case("inspect config 10**400", _config('{"a": %d}' % 10**400), 2, "holds a number beyond float64"),
    Case("inspect safetensors 4 bytes", _safetensors(b"\x00\x00\x00\x00"), 2, "{d}/m/model.safetensors: 4 bytes, too short"),
    Case("inspect safetensors 2**62", _safetensors((2**62).to_bytes(8, "little") + b"{}"), 2,
         "{d}/m/model.safetensors: its header length says 4611686018427387904 bytes"),
    Case("inspect safetensors list header", _safetensors((2).to_bytes(8, "little") + b"[]"), 2, "not an object of tensors"),
    Case("chat missing model", lambda d: ["chat", "--model", str(d / "nope"), "--csv", str(_csv(d / "a.csv")), "hi"], 2,
         "{d}/nope: no such directory"),
    Case("chat placeholders vs CSVs", _chat_mismatch, 2, "the question has 2 <ts><ts/> placeholder(s) but 1 series"),
    Case("forecast scaling list", _forecast_scaling("[1, 2]"), 2, "{d}/s.json: the scaling file holds an array"),
    Case("forecast scaling no variables", _forecast_scaling('{"value": {"mean": 0, "std": 1}}'), 2, "{d}/s.json: no `variables` object"),
    Case("forecast scaling std 0", _forecast_scaling('{"variables": {"value": {"mean": 0, "std": 0}}}'), 2, "a positive `std`"),
    Case("forecast -o is --data", _forecast_output_is_input, 2, "output {d}/t.jsonl is the input {d}/t.jsonl"),
    Case("forecast --data FIFO", _forecast_fifo, 2, "{d}/t.jsonl is a FIFO (named pipe), not a regular file"),
    Case("monitor --plot missing folder", _monitor_plot("missing/curves.png"), 1, "folder {d}/missing does not exist"),
    Case("monitor --plot a run file", _monitor_plot("run/trainer_log.jsonl"), 1, "name an image file"),
    Case("eval --json is the predictions", _eval_json_is_input, 2, "output {d}/p.jsonl is the input {d}/p.jsonl"),
]


def _snapshot(root: Path) -> dict[str, str]:
    """Every path under root -> sha256 of a regular file's bytes ("fifo"/"dir" otherwise)."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_fifo():
            out[str(path)] = "fifo"
        elif path.is_dir():
            out[str(path)] = "dir"
        else:
            out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def run_case(case: Case, tmp_path: Path) -> None:
    d = tmp_path / "case"
    d.mkdir()
    argv = case.setup(d)
    before = _snapshot(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-m", "tsplugin.cli", *argv], capture_output=True, text=True, cwd=tmp_path,
                            env=env, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    lines = result.stderr.splitlines()
    assert result.returncode == case.code, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and len(lines) == 1, result.stderr[-3000:]
    assert case.message.format(d=d) in lines[0], lines[0]
    assert lines[0].startswith(f"tsplugin {argv[0]}: error: "), lines[0]
    assert _snapshot(tmp_path) == before  # inputs unchanged, nothing new (no report, plot or output written)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_input_is_one_line_and_changes_nothing(case, tmp_path):
    run_case(case, tmp_path)


def test_chat_refuses_a_series_longer_than_the_position_table_before_loading(tiny_qwen3ts, tmp_path):
    table = json.loads((tiny_qwen3ts / "config.json").read_text())["ts"]["max_sequence_length"]

    def setup(d: Path) -> list[str]:
        return ["chat", "--model", str(tiny_qwen3ts), "--csv", str(_csv(d / "long.csv", table + 1)), "trend?"]

    run_case(Case("chat long series", setup, 2,
                  f"{{d}}/long.csv: the series has {table + 1} points but this model's encoder takes at most {table}"), tmp_path)


def test_chat_refuses_values_the_training_rule_refuses(tiny_qwen3ts, tmp_path):
    """1e39 is finite in float64 but not in the float32 the encoder sees: the one series rule refuses it."""

    def setup(d: Path) -> list[str]:
        (d / "big.csv").write_text("timestamp,value\n2024-01-01 00:00:00,1\n2024-01-01 00:00:01,1e39\n2024-01-01 00:00:02,2\n")
        return ["chat", "--model", str(tiny_qwen3ts), "--csv", str(d / "big.csv"), "trend?"]

    run_case(Case("chat 1e39", setup, 2, "{d}/big.csv: value 1 is 1e+39"), tmp_path)


def test_a_scaling_file_as_tsconvert_writes_it_is_read(tmp_path):
    from tsplugin.forecast import read_scaling

    path = tmp_path / "d.scaling.json"
    path.write_text(json.dumps({"normalized": True, "variables": {"OT": {"mean": 1.5, "std": 2.0}, "HUFL": {"mean": 0, "std": 1}}}))
    assert read_scaling(path, ["OT"]) == {"OT": {"mean": 1.5, "std": 2.0}, "HUFL": {"mean": 0, "std": 1}}
