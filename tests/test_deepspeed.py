"""DeepSpeed for real: stock `llamafactory-cli train` under torchrun (2 processes, CPU, gloo, fp32) with
the shipped ZeRO-2 / ZeRO-3 configs, the time-series encoder trainable and frozen; save, resume, and
export from a ZeRO-3 checkpoint. The export answers as a single-process run with the same global batch.

The single-process twin has the same global batch (one record x 2 accumulation steps). SGD without
clipping keeps the comparison exact up to rounding: its update is linear in the gradient,
so two runs whose gradients differ only in summation order (2 ranks vs one batch of 2) end with weights
that differ only by rounding too. (Adam divides by the gradient's running magnitude, which amplifies
rounding in near-zero coordinates.) Slow: every torchrun start imports LLaMA-Factory twice on 2 cores,
and DeepSpeed builds its CPU op once (cached under ~/.cache/torch_extensions).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from conftest import ROOT, free_port, lf_args, run_lf, trainer_losses

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

DS_CONFIGS = {"z2": ROOT / "yaml_recipes/deepspeed/ds_z2_fp16.json", "z3": ROOT / "yaml_recipes/deepspeed/ds_z3_fp16.json"}
STEPS = 4


def train_args(model: Path, out: Path, encoder_trainable: bool, **overrides) -> dict:
    """Same data order in every run: no shuffling, a global batch of 2 records, each weighted as its own mean
    (LLaMA-Factory turns `model_accepts_loss_kwargs` off for multimodal processors, so 2 ranks x 1 record
    average two per-record means: the single-process twin is 1 record x 2 accumulation steps)."""
    args = lf_args(
        model, out, template="chatts", max_steps=STEPS, optim="sgd", learning_rate=0.05, max_grad_norm=0.0,
        lr_scheduler_type="constant", disable_shuffling=True, save_steps=2, save_strategy="steps",
        per_device_train_batch_size=1, gradient_accumulation_steps=2, preprocessing_num_workers=None,
    )
    if encoder_trainable:
        args["additional_target"] = "ts_encoder"
    args.update(overrides)
    return args


def torchrun_train(args: dict, stage: str, tmp_path: Path) -> str:
    """`FORCE_TORCHRUN=1 NPROC_PER_NODE=2 llamafactory-cli train recipe.yaml`, as a user launches it."""
    args = {**args, "gradient_accumulation_steps": 1, "deepspeed": str(DS_CONFIGS[stage]), "ddp_backend": "gloo"}
    recipe = tmp_path / f"{Path(args['output_dir']).name}.yaml"
    recipe.write_text(yaml.safe_dump(args))
    bindir = os.path.dirname(sys.executable)
    env = {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", ""), "FORCE_TORCHRUN": "1",
           "NPROC_PER_NODE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
           "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([os.path.join(bindir, "llamafactory-cli"), "train", str(recipe)], capture_output=True,
                            text=True, cwd=ROOT, env=env, timeout=1500)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-6000:]
    return log


def export(model: Path, adapter: Path, out: Path) -> Path:
    from llamafactory.train.tuner import export_model

    export_model(dict(model_name_or_path=str(model), adapter_name_or_path=str(adapter), template="chatts",
                      finetuning_type="lora", export_dir=str(out), export_size=1, export_device="cpu",
                      export_legacy_format=False))
    return out


def logits(model_dir: Path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    ts_id = model.config.ts_token_start_index
    patch = model.config.ts["patch_size"]
    values = torch.sin(torch.linspace(0, 12, 5 * patch))
    series = torch.stack([values, torch.ones_like(values)], -1)[None]  # (S=1, T, 2) [value, mask]
    ids = torch.tensor([[11, 12, 13] + [ts_id] * 5 + [14, 15]])
    with torch.no_grad():
        return model, model(input_ids=ids, timeseries=series).logits


def encoder_state(model_dir: Path) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    return {k: v.clone() for k, v in model.state_dict().items() if k.startswith("ts_encoder.")}


@pytest.fixture(scope="module")
def reference(tiny_chatts, tmp_path_factory):
    """The single-process, non-DeepSpeed run (encoder trainable) and its export."""
    root = tmp_path_factory.mktemp("reference")
    run_lf(**train_args(tiny_chatts, root / "lora", encoder_trainable=True))
    return root / "lora", export(tiny_chatts, root / "lora", root / "merged")


def test_zero3_trains_saves_and_exports_the_same_model_as_a_single_process_run(tiny_chatts, reference, tmp_path,
                                                                                fp_close):
    ref_adapter, ref_merged = reference
    out = tmp_path / "z3"
    torchrun_train(train_args(tiny_chatts, out, encoder_trainable=True), "z3", tmp_path)
    losses = trainer_losses(out)
    assert len(losses) == STEPS and losses[-1] < losses[0], losses
    assert losses == pytest.approx(trainer_losses(ref_adapter), rel=1e-4)
    ckpt = out / f"checkpoint-{STEPS}"
    assert (ckpt / "adapter_model.safetensors").is_file() and (ckpt / f"global_step{STEPS}").is_dir()
    saved = load_file(ckpt / "adapter_model.safetensors")
    assert any(k.startswith("base_model.model.ts_encoder.") for k in saved), sorted(saved)[:8]  # modules_to_save
    assert all(v.numel() > 0 for v in saved.values())  # gathered from the ZeRO-3 partitions, not empty shards

    merged = export(tiny_chatts, ckpt, tmp_path / "merged")  # the export reads the ZeRO-3 checkpoint
    model, got = logits(merged)
    _, want = logits(ref_merged)
    _, base = logits(tiny_chatts)
    assert not torch.allclose(got, base, atol=1e-3)  # training changed the model
    # Same global batches, SGD: the runs differ by summation order in every step's gradients.
    fp_close(got, want, model=model, tokens=got.shape[1], backward=True)
    assert encoder_state(merged).keys() == encoder_state(ref_merged).keys()


def test_zero3_resumes_from_its_checkpoint_to_the_same_model(tiny_chatts, reference, tmp_path, fp_close):
    out = tmp_path / "z3"
    args = train_args(tiny_chatts, out, encoder_trainable=True, max_steps=2)
    torchrun_train(args, "z3", tmp_path)
    resumed = {**args, "max_steps": STEPS, "resume_from_checkpoint": str(out / "checkpoint-2"),
               "overwrite_output_dir": False}
    log = torchrun_train(resumed, "z3", tmp_path)
    assert "Continuing training from checkpoint" in log or "resum" in log.lower(), log[-3000:]
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == STEPS
    model, got = logits(export(tiny_chatts, out / f"checkpoint-{STEPS}", tmp_path / "merged"))
    _, want = logits(reference[1])
    fp_close(got, want, model=model, tokens=got.shape[1], backward=True)


# ZeRO-3 with the encoder trainable is the single-process comparison above.
@pytest.mark.parametrize("stage,encoder_trainable", [("z2", False), ("z2", True), ("z3", False)],
                         ids=["z2-encoder_frozen", "z2-encoder_trainable", "z3-encoder_frozen"])
def test_encoder_trains_only_when_asked(tiny_chatts, tmp_path, stage, encoder_trainable):
    out = tmp_path / stage
    torchrun_train(train_args(tiny_chatts, out, encoder_trainable=encoder_trainable), stage, tmp_path)
    losses = trainer_losses(out)
    assert len(losses) == STEPS and losses[-1] < losses[0], losses
    before, after = encoder_state(tiny_chatts), encoder_state(export(tiny_chatts, out, tmp_path / "merged"))
    assert before.keys() == after.keys() and before
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    if encoder_trainable:
        assert sorted(changed) == sorted(before), "every encoder tensor trains with additional_target: ts_encoder"
    else:
        assert changed == [], f"frozen encoder changed: {changed}"
