"""A run killed with SIGKILL resumes from its last checkpoint and ends where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from conftest import lf_args, run_lf

MAX_STEPS, SAVE_STEPS = 30, 5


def _recipe(model: Path, out: Path, **overrides) -> dict:
    settings = dict(
        max_steps=MAX_STEPS, save_strategy="steps", save_steps=SAVE_STEPS, overwrite_output_dir=False,
        data_seed=42, full_determinism=True, learning_rate=3e-3,
    )
    return lf_args(model, out, **{**settings, **overrides})


def _complete_checkpoints(out: Path) -> list[Path]:
    """Checkpoints whose trainer_state.json (written last by transformers) exists, oldest first."""
    found = [p for p in out.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def _final(out: Path) -> tuple[int, float]:
    state = json.loads((out / "trainer_state.json").read_text())
    losses = [e["loss"] for e in state["log_history"] if "loss" in e]
    return state["global_step"], losses[-1]


def _cli(recipe: dict, path: Path) -> subprocess.Popen:
    path.write_text(yaml.safe_dump(recipe))
    cli = shutil.which("llamafactory-cli") or str(Path(os.sys.executable).parent / "llamafactory-cli")
    return subprocess.Popen([cli, "train", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_sigkilled_run_resumes_to_the_same_end(tiny_qwen3ts, tmp_path):
    reference = tmp_path / "reference"
    run_lf(**_recipe(tiny_qwen3ts, reference, overwrite_output_dir=True))

    out = tmp_path / "killed"
    proc = _cli(_recipe(tiny_qwen3ts, out), tmp_path / "train.yaml")
    deadline = time.monotonic() + 240
    while not _complete_checkpoints(out) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"the run ended before it could be killed:\n{err[-3000:]}"
    assert not (out / "trainer_state.json").exists()  # it really died mid-training
    last = _complete_checkpoints(out)[-1]
    assert int(last.name.split("-")[1]) < MAX_STEPS

    resumed = _cli(_recipe(tiny_qwen3ts, out, resume_from_checkpoint=str(last)), tmp_path / "resume.yaml")
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err[-3000:]

    ref_step, ref_loss = _final(reference)
    step, loss = _final(out)
    assert step == ref_step == MAX_STEPS
    assert loss == pytest.approx(ref_loss, rel=1e-3, abs=1e-4), (loss, ref_loss)
    assert (out / "adapter_model.safetensors").is_file()
