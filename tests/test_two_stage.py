"""LLaVA-style two-stage training of a qwen_ts model, run from the shipped recipes (tiny model, CPU).

Stage 1 (`yaml_recipes/qwen_ts_stage1_projector.yaml`): only `ts_projector` trains. Stage 2
(`..._stage2_lora.yaml` / `..._stage2_qlora.yaml`): LoRA on the LLM + the projector, starting from
the stage-1 model directory. The recipes are loaded as written; only paths, sizes, step counts and
the CPU dtype are overridden.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml
from safetensors.torch import load_file

from conftest import PATCHTST, ROOT, assert_release_tokenizer_form, make_qwen_base, run_lf, trainer_losses

from tsplugin.build.build_model import build_qwen_ts

RECIPES = ROOT / "yaml_recipes"
CPU_OVERRIDES = dict(bf16=False, max_steps=3, per_device_train_batch_size=2, gradient_accumulation_steps=1,
                     cutoff_len=1024, preprocessing_num_workers=None, logging_steps=1, save_strategy="no",
                     report_to="none", plot_loss=False, disable_tqdm=True, template="qwen3_ts",
                     dataset_dir=str(ROOT / "dataset_info"))


def recipe(name: str, **overrides) -> dict:
    args = yaml.safe_load((RECIPES / name).read_text())
    args.update(CPU_OVERRIDES)
    args.update(overrides)
    return {k: v for k, v in args.items() if v is not None}


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    """(initial model dir, stage-1 output dir): stage 1 run once from its recipe."""
    root = tmp_path_factory.mktemp("two_stage")
    base = make_qwen_base(root / "qwen3")
    model = build_qwen_ts(base, root / "model", encoder="patchtst", flags=PATCHTST)
    stage1 = root / "stage1"
    args = recipe("qwen_ts_stage1_projector.yaml", model_name_or_path=str(model), output_dir=str(stage1))
    assert args["finetuning_type"] == "freeze" and args["learning_rate"] == 1.0e-3
    run_lf(**args)
    return model, stage1


def load_stage2(args: dict):
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_model, load_tokenizer

    model_args, _, _, finetuning_args, _ = get_train_args(args)
    return load_model(load_tokenizer(model_args)["tokenizer"], model_args, finetuning_args, is_trainable=True)


def projector_of(model) -> dict[str, torch.Tensor]:
    """The projector weights the (PEFT-wrapped) model trains: the modules_to_save copy when there is one."""
    out = {}
    for name, param in model.named_parameters():
        if "ts_projector" not in name or "original_module" in name:
            continue
        key = "ts_projector." + name.split("ts_projector.")[1].replace("modules_to_save.default.", "")
        out[key] = param.detach().float().clone()
    return out


def test_stage1_trains_only_the_projector(stages):
    model, stage1 = stages
    losses = trainer_losses(stage1)
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    before, after = load_file(model / "model.safetensors"), load_file(stage1 / "model.safetensors")
    assert set(before) == set(after)
    changed = {k for k in before if not torch.equal(before[k], after[k].to(before[k].dtype))}
    assert changed == {k for k in before if k.startswith("ts_projector.")}  # every projector tensor, nothing else
    # the saved model loads under transformers 4.57 (vLLM's) too: the tokenizer in the released form (the tuner hook)
    assert_release_tokenizer_form(stage1, json.loads((stage1 / "config.json").read_text()))


def test_stage2_lora_starts_from_the_stage1_projector_and_trains_it(stages, tmp_path, fp_close):
    model, stage1 = stages
    out = tmp_path / "stage2"
    args = recipe("qwen_ts_stage2_lora.yaml", model_name_or_path=str(stage1), output_dir=str(out), lora_rank=8, lora_alpha=16)
    assert args["learning_rate"] == 2.0e-4 and args["additional_target"] == "ts_projector"

    start = projector_of(load_stage2(args))
    stage1_weights = {k: v for k, v in load_file(stage1 / "model.safetensors").items() if k.startswith("ts_projector.")}
    initial = {k: v for k, v in load_file(model / "model.safetensors").items() if k.startswith("ts_projector.")}
    assert set(start) == set(stage1_weights)
    assert all(torch.equal(start[k], stage1_weights[k].float()) for k in start)
    assert not any(torch.equal(start[k], initial[k].float()) for k in start)

    run_lf(**args)
    assert len(trainer_losses(out)) == 3
    adapter = load_file(out / "adapter_model.safetensors")
    saved = {k: v for k, v in adapter.items() if "ts_projector" in k}
    assert saved and any("lora_" in k for k in adapter)
    assert not any("ts_encoder" in k for k in adapter)
    trained = {k.split("ts_projector.")[1]: v for k, v in saved.items()}
    assert any(not torch.equal(v.float(), stage1_weights["ts_projector." + k].float()) for k, v in trained.items())

    # `llamafactory-cli export` merges LoRA and writes the trained projector; logits equal base + adapter.
    from llamafactory.train.tuner import export_model
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    export_model(dict(model_name_or_path=str(stage1), adapter_name_or_path=str(out), template="qwen3_ts",
                      finetuning_type="lora", export_dir=str(tmp_path / "merged")))
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(stage1), out).eval()
    series = torch.zeros(1, 80, 2)
    series[..., 0], series[..., 1] = torch.linspace(-2, 2, 80), 1.0
    ids = torch.tensor([[5, 6] + [merged.config.ts_token_start_index] * 7 + [9]])
    with torch.no_grad():
        # merged W' = W + BA vs W x + B(A x): the same sums in another order
        fp_close(merged(input_ids=ids, timeseries=series).logits, adapted(input_ids=ids, timeseries=series).logits,
                 model=merged, tokens=ids.shape[1])


def test_stage2_qlora_quantises_the_llm_not_the_encoder_or_projector(stages, tmp_path):
    bnb = pytest.importorskip("bitsandbytes")
    _, stage1 = stages
    out = tmp_path / "qlora"
    args = recipe("qwen_ts_stage2_qlora.yaml", model_name_or_path=str(stage1), output_dir=str(out), lora_rank=8,
                  lora_alpha=16, max_steps=2)
    assert args["quantization_bit"] == 4
    run_lf(**args)
    assert len(trainer_losses(out)) == 2

    model = load_stage2(args)
    kinds = {name: type(module) for name, module in model.named_modules()}
    assert any(issubclass(k, bnb.nn.Linear4bit) for n, k in kinds.items() if "layers.0.self_attn.q_proj.base_layer" in n)
    ts_linears = {n: k for n, k in kinds.items() if ("ts_encoder" in n or "ts_projector" in n) and issubclass(k, torch.nn.Linear)}
    assert ts_linears and not any(issubclass(k, bnb.nn.Linear4bit) for k in ts_linears.values())
    assert any("ts_projector" in n and p.requires_grad and p.dtype == torch.float32 for n, p in model.named_parameters())


def test_stage2_can_train_the_encoder_too(stages, tmp_path):
    _, stage1 = stages
    args = recipe("qwen_ts_stage2_lora.yaml", model_name_or_path=str(stage1), output_dir=str(tmp_path / "o"),
                  additional_target="ts_projector,ts_encoder", lora_rank=8)
    names = {n for n, p in load_stage2(args).named_parameters() if p.requires_grad}
    assert any("ts_encoder" in n and "backbone" in n for n in names)
    assert any("ts_projector" in n for n in names)
