"""One definition of "how many decoder positions a series of L points takes" per encoder
(tsplugin.processing.positions): every registered torch encoder, run on many lengths, outputs exactly
that many positions, the processor expands a placeholder into that many `<ts>` tokens, and the
encoder's first layer is as wide as the rule says."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from transformers import Qwen3Config

from tsplugin.models.encoders import ENCODERS, build_encoder
from tsplugin.models.encoders.ts_embedding import TimeSeriesEmbedding
from tsplugin.processing import TimeSeriesProcessor, batch_series, encode_series
from tsplugin.processing.positions import POSITION_RULES, input_width, num_positions, positions_formula

LLM = Qwen3Config(hidden_size=16, vocab_size=40)
# Blocks small enough to build in milliseconds, covering each rule's branches (windows shorter and
# longer than the lengths drawn, padding and CLS patches, position tables and indices).
BLOCKS = {
    "chatts_mlp/p8": {"name": "chatts_mlp", "patch_size": 8, "num_layers": 2, "hidden_size": 12},
    "chatts_mlp/p5+pos_embedding": {"name": "chatts_mlp", "patch_size": 5, "num_layers": 1, "hidden_size": 12,
                                    "use_position_embedding": True, "embedding_dim": 3, "max_sequence_length": 256},
    "chatts_mlp/p3+pos_idx": {"name": "chatts_mlp", "patch_size": 3, "num_layers": 1, "hidden_size": 12, "use_position_idx": True},
    "patchtst/w32": {"name": "patchtst", "context_window": 32, "patch_len": 8, "stride": 4, "d_model": 8, "num_layers": 1,
                     "num_heads": 2, "ffn_dim": 16},
    "patchtst/w30+padding_end": {"name": "patchtst", "context_window": 30, "patch_len": 6, "stride": 5, "d_model": 8,
                                 "num_layers": 1, "num_heads": 2, "ffn_dim": 16, "padding_patch": "end"},
    "patchtst/w24+cls": {"name": "patchtst", "context_window": 24, "patch_len": 8, "stride": 8, "d_model": 8, "num_layers": 1,
                         "num_heads": 2, "ffn_dim": 16, "extra": {"use_cls_token": True}},
    "timellm/w40": {"name": "timellm", "context_window": 40, "patch_len": 8, "stride": 4, "d_model": 8, "num_heads": 2,
                    "d_keys": 4, "num_prototypes": 5, "dropout": 0.0},
    "timellm/w20s7": {"name": "timellm", "context_window": 20, "patch_len": 6, "stride": 7, "d_model": 8, "num_heads": 2,
                      "d_keys": 4, "num_prototypes": 5, "dropout": 0.0},
}
LENGTHS = st.lists(st.integers(min_value=1, max_value=90), min_size=1, max_size=4)


@functools.cache
def encoder(case: str) -> nn.Module:
    torch.manual_seed(0)
    module = build_encoder(dict(BLOCKS[case]), LLM).eval()
    if hasattr(module, "bind_word_embeddings"):  # timellm reads the LLM's vocabulary
        module.bind_word_embeddings(torch.randn(LLM.vocab_size, LLM.hidden_size))
    return module


def batch(lengths: list[int]) -> torch.Tensor:
    rng = np.random.default_rng(sum(lengths))
    return batch_series([encode_series(rng.normal(size=n) * 10 + 3) for n in lengths])


def expanded_ts_tokens(processor: TimeSeriesProcessor, lengths: list[int]) -> int:
    text, _ = processor.expand("x" + "<ts><ts/>" * len(lengths), [np.linspace(0, 1, n) for n in lengths])
    return text.count("<ts>")


def test_every_registered_encoder_has_a_rule_and_a_case_here():
    assert set(ENCODERS) == set(POSITION_RULES)  # (registries iterate their names)
    assert {block["name"] for block in BLOCKS.values()} == set(ENCODERS)


@pytest.mark.parametrize("case", sorted(BLOCKS))
@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(lengths=LENGTHS)
def test_encoder_outputs_the_rule_count_and_the_processor_expands_to_it(case, lengths):
    block = BLOCKS[case]
    with torch.no_grad():
        features, counts = encoder(case)(batch(lengths))
    want = [num_positions(block, n) for n in lengths]
    assert counts.tolist() == want
    assert features.shape[0] == sum(want)
    processor = TimeSeriesProcessor(encoder=block, profile="tsfactory-v0")
    assert [processor.num_patches(n) for n in lengths] == want
    assert expanded_ts_tokens(processor, lengths) == sum(want)


@pytest.mark.parametrize("case", [c for c in sorted(BLOCKS) if c.startswith("chatts_mlp")])
@settings(max_examples=15, deadline=None, derandomize=True)
@given(lengths=LENGTHS)
def test_chatts_checkpoint_encoder_and_processor_follow_the_same_rule(case, lengths):
    """A ChatTS checkpoint's `ts` block has no `name`: its ts_encoder and patch_size processor use the chatts_mlp rule."""
    ts = {k: v for k, v in BLOCKS[case].items() if k != "name"}
    torch.manual_seed(0)
    embedding = TimeSeriesEmbedding(ts, last_patch_padding="zeros").eval()
    series = batch(lengths)
    with torch.no_grad():
        features, counts = embedding(series)
    want = [num_positions(ts, n) for n in lengths]
    assert counts.tolist() == embedding.patch_counts(series).tolist() == want == [-(-n // ts["patch_size"]) for n in lengths]
    assert features.shape[0] == sum(want)
    assert expanded_ts_tokens(TimeSeriesProcessor(patch_size=ts["patch_size"], profile="chatts-14b-0801"), lengths) == sum(want)


def _first_layer_width(module: nn.Module) -> int:
    if hasattr(module, "embedding"):  # chatts_mlp: ChatTS's MLP
        return module.embedding.mlp[0].in_features
    if hasattr(module, "patch_embedding"):  # timellm
        return module.patch_embedding.in_features
    linears = [m for name, m in module.named_modules() if name.endswith("input_embedding") and isinstance(m, nn.Linear)]
    assert len(linears) == 1, [name for name, _ in module.named_modules()]  # patchtst: transformers' PatchTSTEmbedding
    return linears[0].in_features


@pytest.mark.parametrize("case", sorted(BLOCKS))
def test_encoder_input_width_is_the_rule(case):
    assert _first_layer_width(encoder(case)) == input_width(BLOCKS[case])


def test_formulas_name_the_numbers_of_the_block():
    assert positions_formula({"patch_size": 16}) == "ceil(length / patch_size=16)"
    assert positions_formula(BLOCKS["patchtst/w30+padding_end"]) == (
        "(context_window=30 - patch_len=6) // stride=5 + 1 + 1 (padding_patch: end) = 6, whatever the length")
    assert "context_window=40" in positions_formula(BLOCKS["timellm/w40"])


def test_unknown_encoder_and_bad_lengths_are_refused_with_the_valid_names():
    with pytest.raises(ValueError, match=r"unknown time-series encoder 'nope'; valid: chatts_mlp, patchtst, timellm"):
        num_positions({"name": "nope"}, 10)
    with pytest.raises(ValueError, match="needs at least one value"):
        num_positions({"patch_size": 4}, 0)
    with pytest.raises(ValueError, match="needs a patch_size"):
        num_positions({"name": "chatts_mlp"}, 10)
