"""`offload_embed_tokens: true`: the frozen input embedding stays in CPU RAM, the model computes the same
loss and gradients, `.to()` cannot move it back, LLaMA-Factory trains with the same losses."""

from __future__ import annotations

import pytest
import torch

from conftest import lf_args, run_lf, trainer_losses

from tsplugin.models.cpu_embedding import CPUEmbedding, offload_input_embedding


def load_lf(model_dir, out, **overrides):
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_model, load_tokenizer

    model_args, _, _, finetuning_args, _ = get_train_args(lf_args(model_dir, out, **overrides))
    return load_model(load_tokenizer(model_args)["tokenizer"], model_args, finetuning_args, is_trainable=True)


def test_llamafactory_key_offloads_keeps_hooks_and_pins_the_weight(tiny_qwen3ts, tmp_path):
    model = load_lf(tiny_qwen3ts, tmp_path, offload_embed_tokens=True)
    emb = model.get_base_model().get_input_embeddings()
    assert isinstance(emb, CPUEmbedding) and emb.weight.device.type == "cpu" and not emb.weight.requires_grad
    assert emb._forward_hooks  # LLaMA-Factory's enable_input_require_grads hook is still attached
    assert emb(torch.tensor([[1, 2, 3]])).requires_grad
    dtype = emb.weight.dtype
    model.to(torch.float64)  # stands in for model.to("cuda"): the CPU copy is never moved or cast
    assert emb.weight.dtype == dtype and emb.weight.device.type == "cpu"
    assert model.get_base_model().lm_head.weight.dtype == torch.float64
    stock = load_lf(tiny_qwen3ts, tmp_path)
    assert type(stock.get_base_model().get_input_embeddings()) is torch.nn.Embedding


def test_same_loss_and_gradients_and_refusals(tiny_chatts):
    from transformers import AutoModelForCausalLM

    import tsplugin.models  # noqa: F401

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_chatts, dtype=torch.float32)
    with pytest.raises(ValueError, match="trains in this run"):
        offload_input_embedding(model)  # every parameter trains here
    model.get_input_embeddings().weight.requires_grad_(False)
    ids = torch.randint(10, 200, (2, 12))
    model.train()

    def run():
        model.zero_grad(set_to_none=True)
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        return out.loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    before = run()
    offload_input_embedding(model)
    after = run()
    torch.testing.assert_close(before[0], after[0])
    assert before[1].keys() == after[1].keys()
    for name in before[1]:
        torch.testing.assert_close(before[1][name], after[1][name], msg=name)


def test_tied_embeddings_are_refused(tiny_chatts):
    from transformers import AutoModelForCausalLM

    import tsplugin.models  # noqa: F401

    model = AutoModelForCausalLM.from_pretrained(tiny_chatts, dtype=torch.float32)
    model.lm_head.weight = model.get_input_embeddings().weight  # as tie_word_embeddings: true does
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="tied to lm_head"):
        offload_input_embedding(model)


def test_llamafactory_trains_with_the_same_losses(tiny_qwen3ts, tmp_path):
    stock, offloaded = tmp_path / "stock", tmp_path / "offloaded"
    run_lf(**lf_args(tiny_qwen3ts, stock, max_steps=2))
    run_lf(**lf_args(tiny_qwen3ts, offloaded, max_steps=2, offload_embed_tokens=True, timeseries_chunked_loss=16))
    a, b = trainer_losses(stock), trainer_losses(offloaded)
    assert len(a) == len(b) == 2 and a == pytest.approx(b, rel=1e-4, abs=1e-5)
