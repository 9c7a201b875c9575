"""Time-LLM reprogramming encoder: shapes, counts, vocabulary as an external source, gradients, padding."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from tsplugin.models.encoders import encoder_num_positions, get_encoder
from tsplugin.models.encoders.timellm import TimeLLMEncoder
from tsplugin.processing import batch_series, encode_series

VOCAB, D_LLM = 50, 24
BLOCK = {"name": "timellm", "context_window": 40, "patch_len": 8, "stride": 4, "d_model": 16, "num_heads": 2,
         "d_keys": 6, "num_prototypes": 10, "dropout": 0.0}


class TinyLLM(nn.Module):
    """Stands in for the LLM: an embedding table behind get_input_embeddings()."""

    def __init__(self):
        super().__init__()
        self.embed_tokens = nn.Embedding(VOCAB, D_LLM)
        self.config = SimpleNamespace(hidden_size=D_LLM, vocab_size=VOCAB)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens


def make(seed=0, **overrides):
    torch.manual_seed(seed)
    llm = TinyLLM()
    encoder = get_encoder("timellm")({**BLOCK, **overrides}, llm.config)
    encoder.bind_word_embeddings(llm.get_input_embeddings)
    return encoder.eval(), llm


def batch(lengths, seed=1):
    g = torch.Generator().manual_seed(seed)
    return batch_series([encode_series(torch.randn(n, generator=g).cumsum(0).numpy()) for n in lengths])


def expected_count(n):
    m = min(n, BLOCK["context_window"])
    return max(1, (m + BLOCK["stride"] - BLOCK["patch_len"]) // BLOCK["stride"] + 1)


def test_shapes_counts_and_num_positions():
    encoder, _ = make()
    lengths = [3, 8, 21, 40, 97]
    features, counts = encoder(batch(lengths))
    want = [expected_count(n) for n in lengths]
    assert counts.dtype == torch.long and counts.tolist() == want
    assert want == [1, 2, 5, 10, 10]  # end padding adds one patch; past the window the count stays fixed
    assert features.shape == (sum(want), D_LLM) and encoder.out_dim == D_LLM
    assert [encoder_num_positions(BLOCK, n) for n in lengths] == want
    assert [TimeLLMEncoder.num_positions(n, BLOCK) for n in lengths] == want
    assert torch.isfinite(features).all()


def test_instance_statistics_are_exposed():
    encoder, _ = make()
    ts = batch([30, 60])
    encoder(ts)
    values = ts[1, :60, 0][-BLOCK["context_window"]:]  # the second series keeps its last 40 points
    assert math.isclose(float(encoder.last_loc[1]), float(values.mean()), rel_tol=1e-5, abs_tol=1e-6)
    assert math.isclose(float(encoder.last_scale[1]), math.sqrt(float(values.var(unbiased=False)) + 1e-5), rel_tol=1e-5)


def test_output_depends_on_the_word_embeddings():
    encoder, llm = make()
    ts = batch([25, 12])
    before, _ = encoder(ts)
    with torch.no_grad():
        llm.embed_tokens.weight.mul_(-2.0).add_(0.5)
    after, _ = encoder(ts)
    assert (before - after).abs().max() > 1e-3


def test_gradients_reach_encoder_not_frozen_vocabulary():
    encoder, llm = make()
    encoder.train()
    llm.requires_grad_(False)
    features, _ = encoder(batch([25, 12, 40]))
    features.square().mean().backward()
    for name in ("mapping.weight", "patch_embedding.weight", "query.weight", "key.weight", "value.weight", "out.weight"):
        grad = dict(encoder.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert llm.embed_tokens.weight.grad is None


def test_trainable_vocabulary_still_gets_no_encoder_gradient():
    """Detached by design: the encoder never pushes gradients into the LLM's word embeddings."""
    encoder, llm = make()
    features, _ = encoder(batch([25]))
    features.sum().backward()
    assert llm.embed_tokens.weight.requires_grad and llm.embed_tokens.weight.grad is None


def test_state_dict_holds_no_copy_of_the_vocabulary():
    encoder, llm = make()
    state = encoder.state_dict()
    assert all(tuple(t.shape) != (VOCAB, D_LLM) for t in state.values())
    assert not any("embed" in k and "patch" not in k for k in state)
    assert set(state) == {f"{m}.{p}" for m in ("patch_embedding", "mapping", "query", "key", "value", "out")
                          for p in ("weight", "bias")}
    assert all(p.data_ptr() != llm.embed_tokens.weight.data_ptr() for p in encoder.parameters())


def test_padding_invariance_across_a_batch(fp_close):
    encoder, _ = make()
    lengths = [5, 33, 70, 12]
    together, counts = encoder(batch(lengths))
    pieces = together.split(counts.tolist())
    full = batch(lengths)
    for i, n in enumerate(lengths):
        alone, c = encoder(full[i:i + 1, :n])  # the same series with no batch padding
        assert c.tolist() == [counts[i].item()]
        # chained reductions: patch embedding, prototype mapping (over the vocabulary), q/k/v, scores,
        # attention x values, output projection, RevIN statistics (over the points): 8
        fp_close(pieces[i], alone, reduce_size=max(VOCAB, D_LLM, max(lengths)), depth=8)


def test_unbound_and_wrong_embeddings_are_explained():
    torch.manual_seed(0)
    encoder = TimeLLMEncoder(BLOCK, SimpleNamespace(hidden_size=D_LLM, vocab_size=VOCAB))
    with pytest.raises(RuntimeError, match="bind_word_embeddings"):
        encoder(batch([10]))
    encoder.bind_word_embeddings(torch.zeros(VOCAB - 1, D_LLM))
    with pytest.raises(ValueError, match=rf"\({VOCAB - 1}, {D_LLM}\).*\({VOCAB}, {D_LLM}\)"):
        encoder(batch([10]))
    encoder.bind_word_embeddings(torch.randn(VOCAB + 3, D_LLM))  # tokens added after the build: first rows used
    features, _ = encoder(batch([10]))
    assert features.shape == (expected_count(10), D_LLM)
    with pytest.raises(ValueError, match="unknown keys \\['patch_size'\\]"):
        TimeLLMEncoder({**BLOCK, "patch_size": 4}, SimpleNamespace(hidden_size=D_LLM, vocab_size=VOCAB))


def test_works_under_peft_with_frozen_llm():
    """Binding a callable sees the embedding module PEFT ends up with (here a trained-token wrapper)."""
    peft = pytest.importorskip("peft")
    from transformers import PretrainedConfig

    class TinyLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed_tokens = nn.Embedding(VOCAB, D_LLM)
            self.proj = nn.Linear(D_LLM, D_LLM)
            self.config = PretrainedConfig(hidden_size=D_LLM, vocab_size=VOCAB, tie_word_embeddings=False)

        def get_input_embeddings(self):
            return self.embed_tokens

        def forward(self, x):
            return self.proj(self.embed_tokens(x))

    torch.manual_seed(0)
    base = TinyLM()
    encoder = TimeLLMEncoder(BLOCK, base.config)
    encoder.bind_word_embeddings(base.get_input_embeddings)
    ts = batch([20])
    before, _ = encoder.eval()(ts)
    model = peft.get_peft_model(base, peft.LoraConfig(target_modules=["proj"], modules_to_save=["embed_tokens"]))
    assert not base.proj.weight.requires_grad
    after, _ = encoder(ts)  # resolves the (now wrapped) embedding at forward time
    torch.testing.assert_close(before, after)
    with torch.no_grad():
        model.base_model.model.embed_tokens.modules_to_save["default"].weight.add_(1.0)
    changed, _ = encoder(ts)
    assert (changed - before).abs().max() > 1e-4  # follows the adapter's active embedding copy
