"""The nan guard (`timeseries_nan_guard: true`): bad updates are skipped, named, and stop the run."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import AutoTokenizer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from conftest import lf_args, write_dataset
from tsplugin.models.chatts.modeling_chatts import Qwen3TSForCausalLM
from tsplugin.nan_guard import NanGuardCallback, TrainingDiverged


def _records(poisoned: set[int], n: int = 8) -> list[dict]:
    return [
        {
            "input": ("POISON record " if i in poisoned else f"Record {i}: ") + "look at <ts><ts/> please",
            "output": f"answer {i}",
            "timeseries": [[float((i + j) % 5) for j in range(40)]],
        }
        for i in range(n)
    ]


@pytest.fixture
def poison_forward(monkeypatch, tiny_qwen3ts):
    """Training forwards of batches holding a 'POISON' prompt return a NaN loss (and so NaN gradients)."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_qwen3ts)
    original = Qwen3TSForCausalLM.forward

    def forward(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        ids = kwargs.get("input_ids")
        if self.training and out.loss is not None and ids is not None:
            if any("POISON" in text for text in tokenizer.batch_decode(ids)):
                out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(Qwen3TSForCausalLM, "forward", forward)


class ParamProbe(TrainerCallback):
    """Records, per optimizer step, whether any trainable parameter changed and whether all stay finite."""

    def __init__(self) -> None:
        self.changed: dict[int, bool] = {}
        self.finite = True
        self._before: list[torch.Tensor] = []

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        self._before = [p.detach().clone() for p in model.parameters() if p.requires_grad]

    def on_step_end(self, args, state, control, model=None, **kwargs):
        after = [p.detach() for p in model.parameters() if p.requires_grad]
        self.changed[state.global_step] = any(not torch.equal(a, b) for a, b in zip(self._before, after))
        self.finite = self.finite and all(bool(torch.isfinite(a).all()) for a in after)


def _run(args: dict, callbacks: list) -> None:
    from llamafactory.train.tuner import run_exp

    run_exp(args, callbacks=callbacks)


def _bad_steps(text: str) -> list[int]:
    return [int(line.split("step ")[1].split(":")[0]) for line in text.splitlines() if "non-finite loss" in line and "nan guard: step" in line]


def test_yaml_option_skips_the_bad_update_names_the_rows_and_keeps_training(tiny_qwen3ts, tmp_path, poison_forward, caplog):
    # seed 42 puts record 0 at epoch position 2: the poisoned batch (size 2) is step 2 of 4
    data = write_dataset(tmp_path / "data", "poison", _records({0}))
    out = tmp_path / "out"
    probe = ParamProbe()
    args = lf_args(
        tiny_qwen3ts, out, dataset="poison", dataset_dir=str(data), max_steps=4, timeseries_nan_guard=True,
        nan_guard_max_bad_steps=2,
    )
    with caplog.at_level("WARNING", logger="tsplugin"):
        _run(args, [probe])
    bad = _bad_steps(caplog.text)
    assert bad == [2], caplog.text
    assert probe.changed[bad[0]] is False  # the NaN update never reached the parameters (nor Adam's state)
    assert all(probe.changed[s] for s in probe.changed if s != bad[0]), probe.changed
    assert probe.finite
    assert "update skipped (1 bad in a row, stop at 2)" in caplog.text
    assert "train row 0 (epoch position 2, loss nan): 'user POISON record look at" in caplog.text
    steps = [json.loads(line)["current_steps"] for line in (out / "trainer_log.jsonl").read_text().splitlines()]
    assert steps[-1] == 4  # training went on after the skipped step
    assert (out / "adapter_model.safetensors").is_file()


def test_without_the_guard_the_same_batch_corrupts_the_weights(tiny_qwen3ts, tmp_path, poison_forward):
    data = write_dataset(tmp_path / "data", "poison", _records({5}))
    probe = ParamProbe()
    _run(lf_args(tiny_qwen3ts, tmp_path / "out", dataset="poison", dataset_dir=str(data), max_steps=4), [probe])
    assert not probe.finite  # what the guard prevents


def test_consecutive_bad_steps_stop_training_with_a_clear_error(tiny_qwen3ts, tmp_path, poison_forward, caplog):
    data = write_dataset(tmp_path / "data", "poison", _records(set(range(8))))
    out = tmp_path / "out"
    args = lf_args(
        tiny_qwen3ts, out, dataset="poison", dataset_dir=str(data), max_steps=4, timeseries_nan_guard=True,
        nan_guard_max_bad_steps=2,
    )
    with caplog.at_level("WARNING", logger="tsplugin"), pytest.raises(TrainingDiverged) as err:
        _run(args, [])
    assert str(err.value).startswith(
        "tsplugin nan guard: 2 consecutive steps with non-finite loss or gradients (steps 1-2); training stopped."
    )
    assert _bad_steps(caplog.text) == [1, 2]
    assert not (out / "adapter_model.safetensors").exists()  # a diverged run is not saved as if it finished


def _state(step: int) -> TrainerState:
    state = TrainerState()
    state.global_step = step
    return state


def test_grad_norm_spikes_are_flagged_against_the_running_median(caplog):
    guard = NanGuardCallback(grad_spike_factor=10.0)
    args, control = TrainingArguments(output_dir="unused", report_to="none"), TrainerControl()
    norms = [1.0, 1.2, 0.8, 1.1, 0.9, 15.0, 1.0, float("nan"), 9.0]
    with caplog.at_level("WARNING", logger="tsplugin"):
        for step, norm in enumerate(norms, start=1):
            guard.on_log(args, _state(step), control, logs={"loss": 1.0, "grad_norm": norm})
    assert guard.report.spikes == [(6, 15.0, 1.0)]
    assert "step 6: grad-norm spike 15 > 10 x running median 1." in caplog.text
    assert not math.isnan(guard.report.spikes[0][1])


@pytest.mark.parametrize("kwargs", [{"max_bad_steps": 0}, {"grad_spike_factor": 1.0}])
def test_bad_guard_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        NanGuardCallback(**kwargs)
