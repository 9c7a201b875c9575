"""ChatTS model classes: checkpoint schema, encoder, series merging, generation, round trips.

Everything runs on CPU with tiny random models and the locally trained tokenizer.
"""

import importlib
import json
import math

import pytest
import torch
from safetensors.torch import save_file
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

import tsplugin.models
from tsplugin.models import (
    ChatTSConfig,
    Qwen2TSForCausalLM,
    Qwen3TSConfig,
    Qwen3TSForCausalLM,
    TimeSeriesEmbedding,
    is_timeseries_model,
)
from tsplugin.processing import batch_series, encode_series, expand_placeholders
from tsplugin.build.tokenizer import build_tokenizer, ts_token_ids
from tsplugin.checkpoints.tokenizer_files import save_tokenizer

H = 32  # hidden size of the test models
TS_PLAIN = {"patch_size": 16, "num_layers": 5, "hidden_size": H, "num_features": 2}  # ChatTS-14B first release
TS_0801 = {  # ChatTS-14B-0801 / ChatTS-8B style
    "patch_size": 8,
    "num_layers": 5,
    "hidden_size": H,
    "num_features": 2,
    "use_position_embedding": True,
    "embedding_dim": 16,
    "max_sequence_length": 32768,
}


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def tiny_config(arch, tokenizer, ts=TS_0801, **overrides):
    start, end = ts_token_ids(tokenizer)
    common = dict(
        vocab_size=-(-len(tokenizer) // 64) * 64,
        hidden_size=H,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        ts=dict(ts),
        ts_token_start_index=start,
        ts_token_end_index=end,
    )
    common.update(overrides)
    if arch == "chatts":
        return ChatTSConfig(**common)
    return Qwen3TSConfig(head_dim=H // 4, **common)


def tiny_model(arch, tokenizer, ts=TS_0801, seed=0):
    torch.manual_seed(seed)
    model = (Qwen2TSForCausalLM if arch == "chatts" else Qwen3TSForCausalLM)(tiny_config(arch, tokenizer, ts))
    # Default init (std 0.02) gives near-uniform logits; widen it so greedy decoding is not tie-prone.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.3)
    return model.eval()


def encode(tokenizer, text, series, patch_size, profile="chatts-14b-0801"):
    expanded, feats = expand_placeholders(text, series, patch_size, profile=profile)
    return tokenizer.encode(expanded, add_special_tokens=False), feats


SERIES_A = [math.sin(i / 3.0) * 50 + i for i in range(37)]
SERIES_B = [float(i % 7) for i in range(100)]
SERIES_C = [3.0, 1.0, 4.0, 1.0, 5.0]


# ---------------------------------------------------------------- (1) released checkpoint schema


def qwen_state_dict(arch, config):
    """A state dict built by parameter NAME as in the ChatTS-14B (Qwen2) / ChatTS-8B (Qwen3) files."""
    g = torch.Generator().manual_seed(1)

    def t(*shape):
        return (torch.randn(*shape, generator=g) * 0.05).to(torch.float16)

    hid, inter, nh, nkv = config["hidden_size"], config["intermediate_size"], config["num_attention_heads"], config["num_key_value_heads"]
    hd = config.get("head_dim", hid // nh)
    sd = {"model.embed_tokens.weight": t(config["vocab_size"], hid), "model.norm.weight": t(hid), "lm_head.weight": t(config["vocab_size"], hid)}
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        sd[p + "self_attn.q_proj.weight"] = t(nh * hd, hid)
        sd[p + "self_attn.k_proj.weight"] = t(nkv * hd, hid)
        sd[p + "self_attn.v_proj.weight"] = t(nkv * hd, hid)
        sd[p + "self_attn.o_proj.weight"] = t(hid, nh * hd)
        if arch == "chatts":  # Qwen2: biases on q/k/v
            sd[p + "self_attn.q_proj.bias"] = t(nh * hd)
            sd[p + "self_attn.k_proj.bias"] = t(nkv * hd)
            sd[p + "self_attn.v_proj.bias"] = t(nkv * hd)
        else:  # Qwen3: per-head q/k RMSNorm
            sd[p + "self_attn.q_norm.weight"] = t(hd)
            sd[p + "self_attn.k_norm.weight"] = t(hd)
        sd[p + "mlp.gate_proj.weight"] = t(inter, hid)
        sd[p + "mlp.up_proj.weight"] = t(inter, hid)
        sd[p + "mlp.down_proj.weight"] = t(hid, inter)
        sd[p + "input_layernorm.weight"] = t(hid)
        sd[p + "post_attention_layernorm.weight"] = t(hid)
    ts = config["ts"]
    width = ts["patch_size"] * (1 + ts["embedding_dim"]) if ts.get("use_position_embedding") else ts["patch_size"]
    for j in range(ts["num_layers"]):
        sd[f"ts_encoder.mlp.{2 * j}.weight"] = t(ts["hidden_size"], width if j == 0 else ts["hidden_size"])
        sd[f"ts_encoder.mlp.{2 * j}.bias"] = t(ts["hidden_size"])
    if ts.get("use_position_embedding"):
        sd["ts_encoder.position_embedding.weight"] = t(ts["max_sequence_length"] + 1, ts["embedding_dim"])
    return sd


def write_released_checkpoint(path, arch, ts, tokenizer):
    """A tiny checkpoint in the exact released layout: config keys, auto_map to remote files, fp16."""
    start, end = ts_token_ids(tokenizer)
    vocab = -(-len(tokenizer) // 64) * 64
    if arch == "chatts":
        config = {
            "architectures": ["Qwen2TSForCausalLM"],
            "auto_map": {
                "AutoConfig": "configuration_qwen2.Qwen2TSConfig",
                "AutoModelForCausalLM": "modeling_qwen2.Qwen2TSForCausalLM",
                "AutoProcessor": "processing_qwen2_ts.Qwen2TSProcessor",
            },
            "attention_dropout": 0.0, "bos_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id,
            "hidden_act": "silu", "hidden_size": H, "initializer_range": 0.02, "intermediate_size": 64,
            "max_position_embeddings": 32768, "max_window_layers": 70, "model_type": "chatts",
            "num_attention_heads": 4, "num_hidden_layers": 2, "num_key_value_heads": 2, "rms_norm_eps": 1e-06,
            "rope_scaling": None, "rope_theta": 1000000.0, "sliding_window": 131072, "tie_word_embeddings": False,
            "torch_dtype": "float16", "transformers_version": "4.44.2", "use_cache": True, "use_sliding_window": False,
            "vocab_size": vocab, "ts": dict(ts), "ts_token_start_index": start, "ts_token_end_index": end,
        }
    else:
        config = {
            "architectures": ["Qwen3TSForCausalLM"],
            "auto_map": {
                "AutoConfig": "configuration_qwen3_ts.Qwen3TSConfig",
                "AutoModelForCausalLM": "modeling_qwen3_ts.Qwen3TSForCausalLM",
                "AutoProcessor": "processing_qwen3_ts.Qwen3TSProcessor",
            },
            "attention_bias": False, "attention_dropout": 0.0, "bos_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id, "head_dim": 8, "hidden_act": "silu", "hidden_size": H,
            "initializer_range": 0.02, "intermediate_size": 64, "max_position_embeddings": 40960,
            "max_window_layers": 36, "model_type": "qwen3ts", "num_attention_heads": 4, "num_hidden_layers": 2,
            "num_key_value_heads": 2, "rms_norm_eps": 1e-06, "rope_scaling": None, "rope_theta": 1000000,
            "sliding_window": None, "tie_word_embeddings": False, "torch_dtype": "float16",
            "transformers_version": "4.51.0", "use_cache": True, "use_sliding_window": False, "vocab_size": vocab,
            "ts": dict(ts), "ts_token_start_index": start, "ts_token_end_index": end,
        }
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config, indent=2))
    state = qwen_state_dict(arch, config)
    save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})
    save_tokenizer(tokenizer, path)  # as the releases ship it
    return state


RELEASED = [
    ("chatts", TS_PLAIN),  # ChatTS-14B
    ("chatts", TS_0801),  # ChatTS-14B-0801
    ("qwen3ts", {**TS_0801, "max_sequence_length": 8192}),  # ChatTS-8B
]


@pytest.mark.parametrize("arch,ts", RELEASED, ids=["14b", "14b-0801", "8b"])
@pytest.mark.parametrize("trust_remote_code", [False, True])
def test_released_schema_loads_with_no_missing_or_unexpected_keys(tmp_path, tokenizer, arch, ts, trust_remote_code):
    state = write_released_checkpoint(tmp_path, arch, ts, tokenizer)
    model, info = AutoModelForCausalLM.from_pretrained(
        tmp_path, output_loading_info=True, dtype=torch.float32, trust_remote_code=trust_remote_code
    )
    expected_cls = Qwen2TSForCausalLM if arch == "chatts" else Qwen3TSForCausalLM
    assert type(model) is expected_cls
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert set(model.state_dict()) == set(state)
    for name in ("ts_encoder.mlp.0.weight", "ts_encoder.mlp.8.bias", "model.layers.1.mlp.up_proj.weight", "lm_head.weight"):
        torch.testing.assert_close(model.state_dict()[name], state[name].float())
    config = AutoConfig.from_pretrained(tmp_path, trust_remote_code=trust_remote_code)
    assert type(config) is type(model.config)
    assert config.ts == ts and config.ts_token_start_index == tokenizer.convert_tokens_to_ids("<ts>")
    # and it runs: one series through the loaded encoder and decoder
    ids, feats = encode(tokenizer, "look <ts><ts/> here", [SERIES_A], ts["patch_size"])
    out = model(input_ids=torch.tensor([ids]), timeseries=batch_series(feats))
    assert torch.isfinite(out.logits).all()


def test_present_remote_code_is_not_run(tmp_path, tokenizer):
    """With tsplugin.models imported, its classes win over a checkpoint's own .py files."""
    write_released_checkpoint(tmp_path, "chatts", TS_PLAIN, tokenizer)
    for name in ("configuration_qwen2.py", "modeling_qwen2.py", "processing_qwen2_ts.py"):
        (tmp_path / name).write_text("raise RuntimeError('remote code was executed')\n")
    model = AutoModelForCausalLM.from_pretrained(tmp_path, trust_remote_code=True)
    assert type(model) is Qwen2TSForCausalLM


def test_released_tokenizer_has_ts_tokens(tmp_path, tokenizer):
    write_released_checkpoint(tmp_path, "chatts", TS_PLAIN, tokenizer)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert ts_token_ids(loaded) == ts_token_ids(tokenizer)
    assert loaded.encode("<ts><ts/>", add_special_tokens=False) == list(ts_token_ids(tokenizer))


def test_registration_is_idempotent():
    importlib.reload(tsplugin.models)
    tsplugin.models.register_auto_classes()
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    assert CONFIG_MAPPING["chatts"].__name__ == "ChatTSConfig"
    assert CONFIG_MAPPING["qwen3ts"].__name__ == "Qwen3TSConfig"
    with pytest.raises(ValueError, match=r"unknown time-series model_type 'qwen2'; valid: chatts, qwen3ts, qwen_ts, timellm"):
        tsplugin.models.get_architecture("qwen2")


def test_config_rejects_encoder_width_mismatch():
    with pytest.raises(ValueError, match="ts.hidden_size=16 differs from the LLM hidden_size=32"):
        ChatTSConfig(hidden_size=32, num_attention_heads=4, ts={**TS_PLAIN, "hidden_size": 16})


def test_never_quantise_list_and_detection(tokenizer):
    assert tsplugin.models.get_spec("chatts").no_quantize_modules == tsplugin.models.get_spec("qwen3ts").no_quantize_modules == ("ts_encoder",)
    model = tiny_model("chatts", tokenizer)
    assert is_timeseries_model(model)
    assert not is_timeseries_model(torch.nn.Linear(2, 2))


# ---------------------------------------------------------------- (4) encoder vs a loop reference


def reference_encoder(enc, x):
    """Straightforward per-series loop, written from the ChatTS description."""
    p = enc.patch_size
    x = x.reshape(x.shape[0], -1, enc.num_features)
    lengths = [int(v) for v in x[:, :, -1].sum(1)]
    rows = []
    for i, n in enumerate(lengths):
        if n == 0:
            continue
        pc = -(-n // p)
        pad = x[i, n - 1, 0] if enc.last_patch_padding == "repeat_last" else torch.zeros(())
        vals = list(x[i, :n, 0]) + [pad] * (pc * p - n)
        positions = list(range(n)) + [None] * (pc * p - n)
        for k in range(pc):
            v = torch.stack(vals[k * p : (k + 1) * p])
            pos = positions[k * p : (k + 1) * p]
            if enc.use_position_embedding:
                idx = torch.tensor([enc.max_sequence_length if q is None else q for q in pos])
                rows.append(torch.cat([v, enc.position_embedding(idx).flatten()]))
            elif enc.use_position_idx:
                denom = max(1, max(lengths) - 1)
                pv = torch.tensor([-1.0 if q is None else q / denom for q in pos])
                rows.append(torch.stack([v, pv], dim=1).flatten())
            else:
                rows.append(v)
    return enc.mlp(torch.stack(rows)), torch.tensor([-(-n // p) for n in lengths])


ENCODER_VARIANTS = {
    "plain": (TS_PLAIN, "repeat_last"),
    "plain_zero_padded": (TS_PLAIN, "zeros"),  # the first ChatTS-14B release
    "position_embedding": ({**TS_0801, "max_sequence_length": 256}, "repeat_last"),
    "position_embedding_zero_padded": ({**TS_0801, "max_sequence_length": 256}, "zeros"),
    "position_idx": ({**TS_PLAIN, "patch_size": 4, "use_position_idx": True}, "repeat_last"),
    "layer_norm": ({**TS_PLAIN, "patch_size": 8, "num_layers": 2, "use_layer_norm": True}, "repeat_last"),
}


@pytest.mark.parametrize("variant", list(ENCODER_VARIANTS))
def test_encoder_matches_loop_reference(variant, fp_close):
    torch.manual_seed(0)
    ts, padding = ENCODER_VARIANTS[variant]
    enc = TimeSeriesEmbedding(ts, last_patch_padding=padding).eval()
    lengths = [37, 16, 1, 100, 8]  # ragged, exact multiples, a single point
    feats = [torch.stack([torch.randn(n) * 2, torch.ones(n)], 1).numpy() for n in lengths]
    x = batch_series(feats)
    with torch.no_grad():
        got, counts = enc(x)
        want, want_counts = reference_encoder(enc, x)
        flat, _ = enc(x.reshape(x.shape[0], -1))  # the (S, 2T) interleaved form
    assert counts.tolist() == want_counts.tolist()
    assert got.shape == (sum(want_counts.tolist()), H)
    linears = [m for m in enc.mlp if isinstance(m, torch.nn.Linear)]
    fp_close(got, want, reduce_size=max(m.in_features for m in linears), depth=len(linears) + 1)
    torch.testing.assert_close(flat, got)


def test_last_patch_padding_follows_the_profile():
    """Zero padding (first 14B release) and last-value padding (0801, 8B) give different last patches only."""
    torch.manual_seed(0)
    repeat = TimeSeriesEmbedding(TS_PLAIN, last_patch_padding="repeat_last").eval()
    zeros = TimeSeriesEmbedding(TS_PLAIN, last_patch_padding="zeros").eval()
    zeros.load_state_dict(repeat.state_dict())
    x = batch_series([encode_series([float(i) for i in range(20)])])  # patch 16: one full patch, one of 4 points
    patches_r, _ = repeat.build_patches(x)
    patches_z, _ = zeros.build_patches(x)
    assert patches_r[1].tolist()[4:] == [patches_r[1, 3].item()] * 12 and patches_z[1].tolist()[4:] == [0.0] * 12
    torch.testing.assert_close(patches_r[0], patches_z[0])
    with pytest.raises(ValueError, match=r"last_patch_padding 'edge' is not one of \['repeat_last', 'zeros'\]"):
        TimeSeriesEmbedding(TS_PLAIN, last_patch_padding="edge")


@pytest.mark.parametrize(
    "config,padding,profile",
    [
        ({"architectures": ["Qwen2TSForCausalLM"], "model_type": "chatts", "ts_profile": "chatts-14b-v1"}, "zeros", "chatts-14b-v1"),
        ({"auto_map": {"AutoConfig": "configuration_qwen2.Qwen2TSConfig"}}, "zeros", "chatts-14b-v1"),  # first release's files
        ({}, "repeat_last", "tsfactory-v0"),  # what tsplugin wrote before profiles
    ],
)
def test_model_encoder_padding_comes_from_the_checkpoint_profile(tokenizer, config, padding, profile):
    cfg = tiny_config("chatts", tokenizer, ts=TS_PLAIN, **config)
    model = Qwen2TSForCausalLM(cfg)
    assert model.ts_encoder.last_patch_padding == padding and model.config.ts_profile == profile
    model.use_profile("chatts-14b-0801")
    assert model.ts_encoder.last_patch_padding == "repeat_last" and model.config.ts_profile == "chatts-14b-0801"


def test_encoder_input_widths_match_released_shapes():
    assert TimeSeriesEmbedding(TS_PLAIN).mlp[0].weight.shape == (H, 16)
    enc = TimeSeriesEmbedding(TS_0801)
    assert enc.mlp[0].weight.shape == (H, 8 * 17) and enc.position_embedding.weight.shape == (32769, 16)
    assert TimeSeriesEmbedding({**TS_PLAIN, "use_position_idx": True}).mlp[0].weight.shape == (H, 32)
    names = [n for n, _ in TimeSeriesEmbedding(TS_PLAIN).named_parameters()]
    assert names == [f"mlp.{i}.{w}" for i in (0, 2, 4, 6, 8) for w in ("weight", "bias")]


def test_encoder_rejects_series_longer_than_position_table():
    enc = TimeSeriesEmbedding({**TS_0801, "max_sequence_length": 10})
    with pytest.raises(ValueError, match="12 points .* max_sequence_length=10"):
        enc(batch_series([torch.stack([torch.zeros(12), torch.ones(12)], 1).numpy()]))


# ---------------------------------------------------------------- (2) batching and padding invariance

SAMPLES = [
    ("Describe <ts><ts/> please.", [SERIES_A]),
    ("No series in this one, only a longer sentence of plain text to pad against.", []),
    ("请分析 <ts><ts/> 和 <ts><ts/> 的关系", [SERIES_B, SERIES_C]),
]


@pytest.mark.parametrize("arch", ["chatts", "qwen3ts"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_batched_forward_equals_per_sample(tokenizer, arch, side, fp_close):
    model = tiny_model(arch, tokenizer)
    patch = model.config.ts["patch_size"]
    encoded = [encode(tokenizer, text, series, patch) for text, series in SAMPLES]
    singles = []
    with torch.no_grad():
        for ids, feats in encoded:
            ts = batch_series(feats) if feats else None
            singles.append(model(input_ids=torch.tensor([ids]), timeseries=ts).logits[0])
        width = max(len(ids) for ids, _ in encoded)
        input_ids = torch.full((len(encoded), width), tokenizer.pad_token_id)
        mask = torch.zeros_like(input_ids)
        for row, (ids, _) in enumerate(encoded):
            cols = slice(width - len(ids), width) if side == "left" else slice(0, len(ids))
            input_ids[row, cols] = torch.tensor(ids)
            mask[row, cols] = 1
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        all_feats = [f for _, feats in encoded for f in feats]
        batched = model(
            input_ids=input_ids, attention_mask=mask, position_ids=position_ids, timeseries=batch_series(all_feats)
        ).logits
    for row, (ids, _) in enumerate(encoded):
        cols = slice(width - len(ids), width) if side == "left" else slice(0, len(ids))
        # Batched and single rows differ only in summation order (kernel blocking depends on the batch shape).
        fp_close(batched[row, cols], singles[row], model=model, tokens=width)


def test_series_change_the_output(tokenizer):
    model = tiny_model("chatts", tokenizer)
    ids, feats = encode(tokenizer, "x <ts><ts/> y", [SERIES_B], 8)
    other = [[v * -1.0 + 3 for v in SERIES_B]]
    ids2, feats2 = encode(tokenizer, "x <ts><ts/> y", other, 8)
    with torch.no_grad():
        a = model(input_ids=torch.tensor([ids]), timeseries=batch_series(feats)).logits
        b = model(input_ids=torch.tensor([ids]), timeseries=batch_series(feats2)).logits
    assert not torch.allclose(a[0, -1], b[0, -1])


# ---------------------------------------------------------------- (3) loud mismatches


def test_count_mismatch_names_both_numbers(tokenizer):
    model = tiny_model("chatts", tokenizer)  # patch 8: SERIES_A (37 points) -> 5 patches
    ids, feats = encode(tokenizer, "a <ts><ts/> b", [SERIES_A], 8)
    ts_id = model.config.ts_token_start_index
    dropped = list(ids)
    dropped.remove(ts_id)
    with pytest.raises(ValueError, match=r"4 <ts> positions but 5 patch embeddings from 1 series"):
        model(input_ids=torch.tensor([dropped]), timeseries=batch_series(feats))
    with pytest.raises(ValueError, match=r"5 <ts> positions but 7 patch embeddings"):
        model(input_ids=torch.tensor([ids]), timeseries=batch_series(feats + [encode_series([1.0] * 10)]))


def test_ts_tokens_without_series_fail_on_prefill(tokenizer):
    model = tiny_model("qwen3ts", tokenizer)
    ids, _ = encode(tokenizer, "a <ts><ts/> b", [SERIES_A], 8)
    with pytest.raises(ValueError, match="5 <ts> tokens but no `timeseries`"):
        model(input_ids=torch.tensor([ids]))


def test_missing_token_id_in_config_is_explained(tokenizer):
    config = tiny_config("chatts", tokenizer, ts_token_start_index=None)
    model = Qwen2TSForCausalLM(config).eval()
    with pytest.raises(ValueError, match="ts_token_start_index is not set"):
        model(input_ids=torch.tensor([[1, 2, 3]]))


# ---------------------------------------------------------------- (9) text-only equals the parent model


@pytest.mark.parametrize("arch", ["chatts", "qwen3ts"])
def test_text_only_forward_equals_parent_model(tokenizer, arch):
    model = tiny_model(arch, tokenizer)
    fields = model.config.to_dict()
    for key in ("ts", "ts_token_start_index", "ts_token_end_index", "model_type", "architectures"):
        fields.pop(key, None)
    parent_cls, parent_cfg = (Qwen2ForCausalLM, Qwen2Config) if arch == "chatts" else (Qwen3ForCausalLM, Qwen3Config)
    parent = parent_cls(parent_cfg(**fields)).eval()
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("ts_encoder.")}
    parent.load_state_dict(state, strict=True)
    ids = torch.tensor([tokenizer.encode("Plain text only, 没有序列。", add_special_tokens=False)])
    with torch.no_grad():
        ours = model(input_ids=ids, labels=ids)
        theirs = parent(input_ids=ids, labels=ids)
    torch.testing.assert_close(ours.logits, theirs.logits, atol=0, rtol=0)
    torch.testing.assert_close(ours.loss, theirs.loss, atol=0, rtol=0)


def test_training_text_only_batch_keeps_encoder_in_graph(tokenizer):
    """DDP/ZeRO-3: a batch without series still gives the encoder (zero) gradients, same loss."""
    model = tiny_model("chatts", tokenizer)
    ids = torch.tensor([tokenizer.encode("Plain text only.", add_special_tokens=False)])
    with torch.no_grad():
        eval_loss = model(input_ids=ids, labels=ids).loss
    model.train()
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    torch.testing.assert_close(loss.detach(), eval_loss, atol=0, rtol=0)
    for name, param in model.ts_encoder.named_parameters():
        assert param.grad is not None and torch.count_nonzero(param.grad) == 0, name
    assert model.model.layers[0].mlp.up_proj.weight.grad.abs().sum() > 0


# ---------------------------------------------------------------- (5) generation


def greedy_no_cache(model, ids, ts, steps):
    cur = torch.tensor([ids])
    for _ in range(steps):
        with torch.no_grad():
            logits = model(input_ids=cur, timeseries=ts, use_cache=False).logits
        cur = torch.cat([cur, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return cur[0, len(ids) :].tolist()


@pytest.mark.parametrize("arch", ["chatts", "qwen3ts"])
def test_generate_with_series_equals_manual_greedy(tokenizer, arch):
    model = tiny_model(arch, tokenizer)
    model.generation_config.eos_token_id = None  # generate exactly max_new_tokens
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    ids, feats = encode(tokenizer, "请分析 <ts><ts/> 和 <ts><ts/>", [SERIES_B, SERIES_A], model.config.ts["patch_size"])
    ts = batch_series(feats)
    want = greedy_no_cache(model, ids, ts, 6)
    out = model.generate(torch.tensor([ids]), timeseries=ts, max_new_tokens=6, do_sample=False)
    assert out[0, len(ids) :].tolist() == want
    out = model.generate(torch.tensor([ids]), timeseries=ts, max_new_tokens=6, do_sample=False, use_cache=False)
    assert out[0, len(ids) :].tolist() == want
    # decode steps never see the series, but the prefill must
    with pytest.raises(ValueError, match="no `timeseries`"):
        model.generate(torch.tensor([ids]), max_new_tokens=2, do_sample=False)


def test_batched_left_padded_generate_equals_single(tokenizer):
    model = tiny_model("qwen3ts", tokenizer)
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    encoded = [encode(tokenizer, text, series, 8) for text, series in SAMPLES]
    singles = []
    for ids, feats in encoded:
        ts = batch_series(feats) if feats else None
        singles.append(model.generate(torch.tensor([ids]), timeseries=ts, max_new_tokens=4, do_sample=False)[0, len(ids) :].tolist())
    width = max(len(ids) for ids, _ in encoded)
    input_ids = torch.full((len(encoded), width), tokenizer.pad_token_id)
    mask = torch.zeros_like(input_ids)
    for row, (ids, _) in enumerate(encoded):
        input_ids[row, width - len(ids) :] = torch.tensor(ids)
        mask[row, width - len(ids) :] = 1
    ts = batch_series([f for _, feats in encoded for f in feats])
    out = model.generate(input_ids, attention_mask=mask, timeseries=ts, max_new_tokens=4, do_sample=False)
    assert out[:, width:].tolist() == singles


# ---------------------------------------------------------------- (6) save / load round trip


@pytest.mark.parametrize("arch", ["chatts", "qwen3ts"])
def test_save_pretrained_round_trip(tmp_path, tokenizer, arch):
    model = tiny_model(arch, tokenizer)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == arch and saved["architectures"] == [type(model).__name__]
    assert saved["ts"] == model.config.ts and saved["ts_token_start_index"] == model.config.ts_token_start_index
    loaded, info = AutoModelForCausalLM.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    ids, feats = encode(tokenizer, "a <ts><ts/> b", [SERIES_A], model.config.ts["patch_size"])
    with torch.no_grad():
        a = model(input_ids=torch.tensor([ids]), timeseries=batch_series(feats)).logits
        b = loaded.eval()(input_ids=torch.tensor([ids]), timeseries=batch_series(feats)).logits
    torch.testing.assert_close(a, b, atol=0, rtol=0)


# ---------------------------------------------------------------- training paths


def test_training_step_with_gradient_checkpointing(tokenizer):
    model = tiny_model("chatts", tokenizer)
    model.train()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    ids, feats = encode(tokenizer, "a <ts><ts/> b <ts><ts/>", [SERIES_A, SERIES_C], 8)
    input_ids = torch.tensor([ids])
    labels = input_ids.clone()
    labels[input_ids == model.config.ts_token_start_index] = -100
    out = model(input_ids=input_ids, labels=labels, timeseries=batch_series(feats))
    out.loss.backward()
    assert model.ts_encoder.mlp[0].weight.grad is not None and model.ts_encoder.mlp[0].weight.grad.abs().sum() > 0
    assert model.model.layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("encoder", ["modules_to_save", "lora"])
def test_peft_lora_wrapping_forward_and_generate(tokenizer, encoder):
    peft = pytest.importorskip("peft")
    model = tiny_model("qwen3ts", tokenizer)
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    if encoder == "modules_to_save":  # encoder fully trained beside LoRA on attention
        lora = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], modules_to_save=["ts_encoder"])
    else:  # LoRA on the encoder's linears too (ChatTS-Training's LoRA recipe)
        lora = peft.LoraConfig(r=4, lora_alpha=8, target_modules=r".*(q_proj|v_proj|ts_encoder\.mlp\.[02468])")
    wrapped = peft.get_peft_model(model, lora)
    assert is_timeseries_model(wrapped)
    ids, feats = encode(tokenizer, "a <ts><ts/> b", [SERIES_B], 8)
    input_ids, ts = torch.tensor([ids]), batch_series(feats)
    out = wrapped(input_ids=input_ids, labels=input_ids, timeseries=ts)
    out.loss.backward()
    trainable = {n for n, p in wrapped.named_parameters() if p.requires_grad and p.grad is not None}
    assert any("lora_A" in n for n in trainable) and any("ts_encoder" in n for n in trainable)
    wrapped.eval()
    gen = wrapped.generate(input_ids=input_ids, timeseries=ts, max_new_tokens=3, do_sample=False)
    assert gen.shape == (1, len(ids) + 3)
