"""`tsplugin plan`: exact parts equal real models (both archs) and PEFT; activation model vs saved-tensor
hooks; the released shapes; CLI output, --fit proposals and errors."""

from __future__ import annotations

import pytest

from tsplugin.cli import main
from tsplugin.planner.estimate import GiB, PlanInputs, estimate, layer_activation_bytes, optimizer_state_bytes
from tsplugin.planner.shapes import PRESETS, get_preset, load_shape, lora_params, lora_tensor_sizes, parameter_counts


@pytest.fixture(scope="module", params=["tiny_chatts", "tiny_qwen3ts"])
def tiny(request):
    return request.getfixturevalue(request.param)


def test_parameter_counts_equal_the_real_model(tiny):
    from plan_measure import lora_model

    model = lora_model(tiny, rank=4)
    base = model.get_base_model()
    counts = parameter_counts(load_shape(str(tiny)))
    real_total = sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n)
    assert sum(counts.values()) == real_total
    assert counts["ts_encoder"] == sum(p.numel() for p in base.ts_encoder.parameters())
    assert counts["embed_tokens"] == base.model.embed_tokens.weight.numel()
    # PEFT's own count of trainable LoRA parameters
    trainable, _ = model.get_nb_trainable_parameters()
    assert lora_params(load_shape(str(tiny)), "all", 4) == trainable


def test_lora_count_equals_peft_for_a_subset(tiny_chatts):
    from plan_measure import lora_model

    model = lora_model(tiny_chatts, rank=8, targets=("q_proj", "v_proj"))
    assert lora_params(load_shape(str(tiny_chatts)), "q_proj,v_proj", 8) == model.get_nb_trainable_parameters()[0]


@pytest.mark.parametrize("optim", ["adamw_torch", "adamw_bnb_8bit"])
def test_optimizer_and_gradient_bytes_after_one_step(tiny_qwen3ts, optim):
    """rank 64 so most LoRA tensors pass bitsandbytes' 4096-element threshold for 8-bit state."""
    from plan_measure import lora_model, measure_training_state

    shape = load_shape(str(tiny_qwen3ts))
    measured = measure_training_state(lora_model(tiny_qwen3ts, rank=64), optim)
    assert measured["optimizer_state"] == optimizer_state_bytes(optim, lora_tensor_sizes(shape, "all", 64))
    assert measured["gradients"] == 4 * lora_params(shape, "all", 64)
    assert measured["lora"] == 4 * lora_params(shape, "all", 64)


def test_activation_model_matches_saved_tensor_hooks(tiny):
    """fp32 on CPU: the same per-tensor accounting the fp16 GPU estimate uses (measured -0.6% when written)."""
    from plan_measure import lora_model, measure_layer_activations

    measured = measure_layer_activations(lora_model(tiny, rank=8), seq=64)
    predicted = layer_activation_bytes(load_shape(str(tiny)), 4, 8, 7, gqa_native=True)
    assert abs(predicted / measured - 1) < 0.03, (predicted, measured)


def test_released_shapes():
    c14, c8 = parameter_counts(get_preset("chatts-14b")), parameter_counts(get_preset("chatts-8b"))
    assert c14["decoder_linears"] == 13_212_057_600 and c14["embed_tokens"] == c14["lm_head"] == 152064 * 5120
    assert round(sum(c14.values()) / 1e9, 2) == 14.87  # Qwen2.5-14B 14.77 B + ts_encoder 0.105 B
    assert round(sum(c8.values()) / 1e9, 2) == 8.26
    assert lora_params(get_preset("chatts-14b"), "q_proj,k_proj,v_proj", 8) == 8_650_752
    assert lora_params(get_preset("chatts-14b"), "all", 8) == 34_406_400
    assert get_preset("chatts-14b").patch_size == 16 and get_preset("chatts-14b-0801").patch_size == 8
    assert PlanInputs(get_preset("chatts-14b"), text_tokens=0).sequence_tokens() == 313 + 26
    assert PlanInputs(get_preset("chatts-8b"), text_tokens=0).sequence_tokens() == 625 + 83  # the 0801-style prefix


def test_checkpointing_and_quantisation_change_the_right_parts():
    p = PlanInputs(get_preset("chatts-8b"))
    on, off = estimate(p), estimate(p.but(gradient_checkpointing=False))
    assert off.part("activations (all layers)") > 10 * on.part("activations (checkpoints)")
    assert estimate(p.but(quant="none")).part("decoder linears") == 4 * on.part("decoder linears")
    assert on.part("logits + loss") > 12 * p.seq() * 151936  # + the dequantised weight buffer


def test_cli_2080ti_cases(capsys):
    assert main(["plan", "--model", "chatts-8b", "--gpu-mem", "2080ti"]) == 0
    out = capsys.readouterr().out
    for part in ("decoder linears", "quantisation constants", "embed_tokens", "lm_head", "norms", "ts_encoder",
                 "LoRA parameters", "gradients", "optimizer state", "logits + loss", "CUDA context", "verdict: FITS"):
        assert part in out
    assert main(["plan", "--model", "chatts-14b", "--gpu-mem", "11"]) == 1
    assert "verdict: DOES NOT FIT" in capsys.readouterr().out


def test_fit_names_keys_and_unavailable_savings(capsys):
    assert main(["plan", "--model", "chatts-14b", "--gpu-mem", "9", "--optim", "adamw_torch", "--fit"]) == 0
    out = capsys.readouterr().out
    assert "optim: adamw_bnb_8bit" in out and "lora_target: q_proj,k_proj,v_proj" in out and "use_unsloth_gc: true" in out
    assert "tsconvert ... --max-length" in out and "still DOES NOT FIT" in out
    assert "not available" in out and "timeseries_chunked_loss: 128" in out and "offload_embed_tokens: true" in out
    # long records: the recomputed layer is the peak, so a 4-bit lm_head's backward buffer is off it and it pays
    assert main(["plan", "--model", "chatts-14b", "--gpu-mem", "2080ti", "--series-length", "20000", "--series-count", "6", "--fit"]) == 0
    out = capsys.readouterr().out
    assert "=> fits with cutoff_len:" in out and "--max-length" in out and "how: quantize_lm_head: true" in out


def test_bad_input_errors(capsys, tmp_path):
    assert main(["plan", "--model", "chatts-99b"]) == 2
    assert "chatts-14b" in capsys.readouterr().out  # lists the presets
    assert main(["plan", "--gpu-mem", "h900"]) == 2
    assert "2080ti" in capsys.readouterr().out
    assert main(["plan", "--lora-target", "q_proj,foo"]) == 2
    assert "unknown LoRA target(s) ['foo']" in capsys.readouterr().out
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    assert main(["plan", "--model", str(tmp_path)]) == 2
    assert "not a ChatTS/Qwen architecture" in capsys.readouterr().out


def test_presets_registry_refuses_duplicates():
    from tsplugin.planner.estimate import register_gpu
    from tsplugin.planner.shapes import register_preset

    with pytest.raises(ValueError, match="already registered"):
        register_preset(PRESETS["chatts-8b"])
    with pytest.raises(ValueError, match="already registered"):
        register_gpu("2080ti", 11.0, "dup")


def test_chunked_loss_lm_head_4bit_and_embed_offload_parts_are_exact():
    from tsplugin.planner.estimate import nf4_constant_bytes

    s = get_preset("chatts-14b")
    p = PlanInputs(s, cutoff_len=896)
    counts = parameter_counts(s)
    biggest = max(i * o for i, o in s.linear_shapes().values())
    stock, chunked = estimate(p), estimate(p.but(loss_chunk=128))
    assert stock.part("logits + loss") == 896 * 152064 * 12 + biggest * 2
    assert chunked.part("logits + loss") == 128 * 152064 * 12 + biggest * 2
    assert estimate(p.but(loss_chunk=5000)).part("logits + loss") == stock.part("logits + loss")  # one chunk = all rows
    q = estimate(p.but(quantize_lm_head=True))
    assert q.part("lm_head") == counts["lm_head"] / 2
    assert q.part("quantisation constants") == nf4_constant_bytes(counts["decoder_linears"] + counts["lm_head"])
    assert q.part("logits + loss") == 896 * 152064 * 12 + counts["lm_head"] * 2  # whole lm_head dequantised in backward
    off = estimate(p.but(offload_embed=True))
    assert off.part("embed_tokens") == 0 and stock.part("embed_tokens") == counts["embed_tokens"] * 2
    with pytest.raises(ValueError, match="needs --quant 4"):
        p.but(quant="none", quantize_lm_head=True)
    with pytest.raises(ValueError, match="ZeRO-3"):
        p.but(gpus=2, offload_embed=True)


def test_nf4_bytes_equal_bitsandbytes_on_cpu():
    """The NF4 weight + double-quant constant bytes the planner uses, against bitsandbytes' own tensors."""
    bnb_f = pytest.importorskip("bitsandbytes.functional")
    import torch

    from tsplugin.planner.estimate import nf4_constant_bytes

    w = torch.randn(512, 256, dtype=torch.float16)
    packed, state = bnb_f.quantize_4bit(w, blocksize=64, compress_statistics=True, quant_type="nf4")
    consts = state.absmax.numel() * state.absmax.element_size() + state.state2.absmax.numel() * 4
    assert packed.numel() * packed.element_size() == w.numel() / 2
    assert consts == pytest.approx(nf4_constant_bytes(w.numel()), abs=4)  # a partial last block of 256


def test_fit_one_2080ti_for_14b_with_the_plugin_options(capsys):
    assert main(["plan", "--model", "chatts-14b", "--gpu-mem", "2080ti", "--fit"]) == 0
    out = capsys.readouterr().out
    fit = out[out.index("== --fit"):]
    assert "timeseries_chunked_loss: 128" in fit and "offload_embed_tokens: true" in fit and "=> fits with cutoff_len: 896" in fit
    assert "--max-length" not in fit and "lora_target" not in fit  # nothing the user asked for is given up
    assert "available, not proposed" in fit and "quantize_lm_head: true: +" in fit
    assert main(["plan", "--model", "chatts-14b", "--gpu-mem", "2080ti", "--chunked-loss", "128", "--offload-embed-tokens",
                 "--lora-target", "q_proj,k_proj,v_proj", "--cutoff-len", "896"]) == 0
    out = capsys.readouterr().out
    assert "verdict: FITS" in out and "chunked loss 128, embed_tokens in CPU RAM" in out


def test_gib_is_binary():
    assert GiB == 2**30
