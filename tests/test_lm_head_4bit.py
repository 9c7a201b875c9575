"""`quantize_lm_head: true`: lm_head loads as bitsandbytes Linear4bit, the encoder never; LLaMA-Factory trains
with it (and with the chunked loss); export merges the adapter into the fp16 base, a 4-bit base is refused."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import lf_args, run_lf, trainer_losses

bnb = pytest.importorskip("bitsandbytes")


def load(model_dir, out, **overrides):
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_model, load_tokenizer

    model_args, _, _, finetuning_args, _ = get_train_args(lf_args(model_dir, out, **{"quantization_bit": 4, **overrides}))
    return load_model(load_tokenizer(model_args)["tokenizer"], model_args, finetuning_args, is_trainable=True)


def kinds(model) -> dict[str, type]:
    return {name: type(module) for name, module in model.named_modules()}


def test_lm_head_is_4bit_only_when_asked_and_the_encoder_never(tiny_qwen3ts, tmp_path):
    quantised = kinds(load(tiny_qwen3ts, tmp_path / "a", quantize_lm_head=True))
    stock = kinds(load(tiny_qwen3ts, tmp_path / "b"))
    head = [k for n, k in quantised.items() if n.endswith("lm_head")]
    assert head and issubclass(head[0], bnb.nn.Linear4bit)
    assert not any(issubclass(k, bnb.nn.Linear4bit) for n, k in stock.items() if n.endswith("lm_head"))
    for table in (quantised, stock):
        encoder = [k for n, k in table.items() if "ts_encoder" in n and issubclass(k, torch.nn.Linear)]
        assert encoder and not any(issubclass(k, bnb.nn.Linear4bit) for k in encoder)
        assert any(issubclass(k, bnb.nn.Linear4bit) for n, k in table.items() if n.endswith("q_proj.base_layer"))


def test_refused_without_4bit_or_with_tied_embeddings(tiny_qwen3ts, tmp_path):
    with pytest.raises(ValueError, match="needs `quantization_bit: 4`"):
        load(tiny_qwen3ts, tmp_path / "a", quantize_lm_head=True, quantization_bit=None)
    with pytest.raises(ValueError, match="needs `quantization_bit: 4`"):
        load(tiny_qwen3ts, tmp_path / "b", quantize_lm_head=True, quantization_bit=8)

    from types import SimpleNamespace

    from tsplugin.llamafactory.memory_options import loading, skip_modules

    tied = SimpleNamespace(tie_word_embeddings=True)
    args = SimpleNamespace(quantization_bit=4, model_name_or_path="my/tied-model")
    with loading(SimpleNamespace(quantize_lm_head=True)):
        with pytest.raises(ValueError, match="my/tied-model ties lm_head"):
            skip_modules(tied, args, None, ["ts_encoder"])
        assert skip_modules(SimpleNamespace(tie_word_embeddings=False), args, None, ["ts_encoder"]) == ["ts_encoder"]
    # outside a quantize_lm_head load: lm_head and the encoder are skipped, as before
    assert skip_modules(tied, args, None, ["ts_encoder", "ts_projector"]) == ["lm_head", "ts_encoder", "ts_projector"]


def test_trains_with_4bit_lm_head_and_chunked_loss_then_exports_into_the_fp16_base(tiny_qwen3ts, tmp_path):
    from llamafactory.train.tuner import export_model

    adapter, merged = tmp_path / "lora", tmp_path / "merged"
    run_lf(**lf_args(tiny_qwen3ts, adapter, quantization_bit=4, quantize_lm_head=True, timeseries_chunked_loss=8,
                     max_steps=2, optim="adamw_torch"))
    losses = trainer_losses(adapter)
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)

    export = dict(model_name_or_path=str(tiny_qwen3ts), adapter_name_or_path=str(adapter), template="chatts8b_nothink",
                  finetuning_type="lora", export_dir=str(merged), export_size=1, export_device="cpu",
                  export_legacy_format=False)
    with pytest.raises(ValueError, match="Cannot merge adapters to a quantized model"):
        export_model(dict(export, quantization_bit=4, quantize_lm_head=True))
    export_model(export)  # the documented path (yaml_recipes/export_merge.yaml): the unquantised base
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(merged)
    assert type(model.lm_head) is torch.nn.Linear and model.lm_head.weight.dtype in (torch.float16, torch.float32)
