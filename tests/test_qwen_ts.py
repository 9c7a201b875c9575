"""qwen_ts: your own Qwen2/Qwen3 + registry encoder + projector (tiny random models, CPU, offline)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from conftest import PATCHTST, assert_release_tokenizer_form, lf_args, make_qwen_base, run_lf, trainer_losses, write_dataset

from tsplugin.build.build_model import build_qwen_ts
from tsplugin.models.encoders import ENCODERS, build_encoder, get_encoder, register_encoder
from tsplugin.models.projectors import PROJECTORS, build_projector, get_projector, register_projector

# Small geometry per encoder, for the flags each one takes (registry-wide tests use these).
SMALL_FLAGS = {"chatts_mlp": {"patch_len": 8}, "patchtst": PATCHTST,
               "timellm": {"context_window": 64, "patch_len": 16, "stride": 8, "d_model": 16, "num_heads": 2}}


@pytest.fixture(scope="session")
def qwen3_base(tmp_path_factory):
    return make_qwen_base(tmp_path_factory.mktemp("base") / "qwen3")


@pytest.fixture(scope="session")
def qwen_ts_patchtst(qwen3_base, tmp_path_factory):
    return build_qwen_ts(qwen3_base, tmp_path_factory.mktemp("qts") / "patchtst", encoder="patchtst", flags=PATCHTST)


def series_batch(lengths, seed: int = 0) -> torch.Tensor:
    """(S, T_max, 2) [value, mask], right-padded like tsplugin.processing.batch_series."""
    g = torch.Generator().manual_seed(seed)
    out = torch.zeros(len(lengths), max(lengths), 2)
    for i, n in enumerate(lengths):
        out[i, :n, 0] = torch.randn(n, generator=g)
        out[i, :n, 1] = 1.0
    return out


def load(path):
    from transformers import AutoModelForCausalLM

    import tsplugin.models  # noqa: F401

    return AutoModelForCausalLM.from_pretrained(path).eval()


def prompt_ids(model, series: torch.Tensor) -> torch.Tensor:
    """A prompt with the right number of <ts> positions for `series`."""
    ts_id = model.config.ts_token_start_index
    _, counts = model.ts_encoder(series)
    ids = [5, 6]
    for c in counts.tolist():
        ids += [7] + [ts_id] * c + [8]
    return torch.tensor([ids + [9, 10]])


@pytest.mark.parametrize(
    "encoder,llm_type", [(name, "qwen3") for name in sorted(ENCODERS)] + [("patchtst", "qwen2")]
)
def test_build_model_save_load_round_trip_gives_equal_logits(encoder, llm_type, tmp_path):
    base = make_qwen_base(tmp_path / "base", llm_type, tie=llm_type == "qwen3")
    flags = SMALL_FLAGS.get(encoder, {})
    out = build_qwen_ts(base, tmp_path / "built", encoder=encoder, projector="mlp2x_gelu", flags=flags)
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "qwen_ts" and config["text_config"]["model_type"] == llm_type
    assert config["ts"]["encoder"]["name"] == encoder and config["ts"]["projector"] == "mlp2x_gelu"

    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert_release_tokenizer_form(out, config)  # transformers 4.57 (vLLM's) loads it too
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.convert_tokens_to_ids("<ts>") == config["ts_token_start_index"]
    assert tokenizer.convert_tokens_to_ids("<ts/>") == config["ts_token_end_index"]
    model = load(out)
    assert type(model).__name__ == "QwenTSForCausalLM"
    from tsplugin.chat import default_template

    assert default_template(model.config) == {"qwen2": "qwen_ts", "qwen3": "qwen3_ts"}[llm_type]
    assert model.get_input_embeddings().weight.shape[0] >= len(tokenizer)
    # The LLM weights are the base checkpoint's, verbatim.
    plain = AutoModelForCausalLM.from_pretrained(base)
    assert torch.equal(model.language_model.model.layers[1].mlp.up_proj.weight, plain.model.layers[1].mlp.up_proj.weight)

    series = series_batch([40, 90])
    ids = prompt_ids(model, series)
    with torch.no_grad():
        logits = model(input_ids=ids, timeseries=series).logits
    model.save_pretrained(tmp_path / "again")
    with torch.no_grad():
        again = load(tmp_path / "again")(input_ids=ids, timeseries=series).logits
    assert torch.equal(logits, again)


@pytest.mark.parametrize("encoder", ["chatts_mlp", "patchtst"])
def test_a_series_gets_the_same_features_alone_or_padded_in_a_batch(encoder, fp_close):
    from transformers import Qwen3Config

    block = {"name": encoder, **({"patch_size": 8} if encoder == "chatts_mlp" else PATCHTST)}
    torch.manual_seed(0)
    module = build_encoder(block, Qwen3Config(hidden_size=32)).eval()
    batch = series_batch([30, 100, 7])
    alone = series_batch([30])
    with torch.no_grad():
        f_batch, counts = module(batch)
        f_alone, count_alone = module(alone)
    assert counts.tolist()[0] == count_alone.item() == type(module).num_positions(30, block)
    fp_close(f_batch[: counts[0]], f_alone, model=module, tokens=batch.shape[1])
    assert [type(module).num_positions(n, block) for n in (30, 100, 7)] == counts.tolist()


def test_patchtst_keeps_the_last_context_window_points_and_front_pads_short_series(fp_close):
    torch.manual_seed(0)
    module = build_encoder({"name": "patchtst", **PATCHTST}, None).eval()
    long = series_batch([200], seed=1)
    tail = long[:, -64:].clone()
    with torch.no_grad():
        fp_close(module(long)[0], module(tail)[0], model=module, tokens=PATCHTST["context_window"])
    values, observed = module.window(series_batch([10]))
    assert observed[0, :54].sum() == 0 and observed[0, 54:].sum() == 10
    assert module.num_positions(1, PATCHTST) == module.num_positions(5000, PATCHTST) == (64 - 16) // 8 + 1


def test_frozen_patchtst_keeps_batchnorm_statistics_while_the_model_trains():
    module = build_encoder({"name": "patchtst", **PATCHTST}, None)
    before = {k: v.clone() for k, v in module.state_dict().items() if "running" in k}
    assert before  # PatchTST's default norm is BatchNorm
    module.requires_grad_(False)
    module.train()
    module(series_batch([64, 64, 64]))
    assert all(torch.equal(v, module.state_dict()[k]) for k, v in before.items())
    module.requires_grad_(True)
    module.train()
    module(series_batch([64, 64, 64]))
    assert any(not torch.equal(v, module.state_dict()[k]) for k, v in before.items())


def test_registries_reject_unknown_and_duplicate_names():
    with pytest.raises(ValueError, match=r"unknown time-series encoder 'nope'; valid: chatts_mlp, patchtst"):
        get_encoder("nope")
    with pytest.raises(ValueError, match="already registered"):
        register_encoder("patchtst", get_encoder("patchtst"))
    with pytest.raises(ValueError, match=r"unknown projector 'mlp2x_relu'; valid: identity, linear, mlp2x_gelu \(or mlpNx_gelu, N >= 1\)"):
        get_projector("mlp2x_relu")
    with pytest.raises(ValueError, match="already registered"):
        register_projector("linear", PROJECTORS["linear"])
    mlp3 = build_projector("mlp3x_gelu", 8, 16)
    assert [type(m).__name__ for m in mlp3] == ["Linear", "GELU", "Linear", "GELU", "Linear"]
    assert [type(m).__name__ for m in build_projector("mlp2x_gelu", 8, 16)] == ["Linear", "GELU", "Linear"]
    assert type(build_projector("linear", 8, 16)).__name__ == "Linear"
    with pytest.raises(ValueError, match="unknown projector 'conv'"):
        build_qwen_ts("/nonexistent", "/tmp/x", projector="conv")


def test_build_model_cli_errors_name_the_fix(qwen3_base, tmp_path, capsys):
    from tsplugin.cli import main

    assert main(["build-model", "--llm", str(qwen3_base), "--encoder", "patchtst", "--projector", "mlp2x_relu", "-o", str(tmp_path / "o")]) == 2
    assert "unknown projector 'mlp2x_relu'; valid: identity, linear, mlp2x_gelu (or mlpNx_gelu, N >= 1)" in capsys.readouterr().err
    assert main(["build-model", "--llm", str(qwen3_base), "--encoder", "chatts_mlp", "--stride", "4", "-o", str(tmp_path / "o")]) == 2
    assert "--encoder chatts_mlp does not take ['--stride']" in capsys.readouterr().err
    assert main(["build-model", "--llm", str(tmp_path), "-o", str(tmp_path / "o")]) == 2
    assert "no config.json there" in capsys.readouterr().err


def test_encoder_ckpt_from_a_transformers_patchtst_directory(qwen3_base, tmp_path):
    from transformers import PatchTSTConfig, PatchTSTForPrediction

    config = PatchTSTConfig(num_input_channels=1, context_length=48, patch_length=8, patch_stride=8, d_model=16,
                            num_hidden_layers=1, num_attention_heads=2, ffn_dim=32, prediction_length=4)
    torch.manual_seed(3)
    forecaster = PatchTSTForPrediction(config)
    forecaster.save_pretrained(tmp_path / "patchtst")
    out = build_qwen_ts(qwen3_base, tmp_path / "built", encoder="patchtst", encoder_ckpt=tmp_path / "patchtst")
    block = json.loads((out / "config.json").read_text())["ts"]["encoder"]
    assert (block["context_window"], block["patch_len"], block["stride"], block["d_model"]) == (48, 8, 8, 16)
    model = load(out)
    theirs = forecaster.model.state_dict()
    ours = model.ts_encoder.backbone.state_dict()
    assert set(theirs) == set(ours) and all(torch.equal(theirs[k], ours[k]) for k in theirs)
    with pytest.raises(ValueError, match=r"--context-window 64 contradicts --encoder-ckpt .*context_window=48"):
        build_qwen_ts(qwen3_base, tmp_path / "x", encoder="patchtst", encoder_ckpt=tmp_path / "patchtst", flags={"context_window": 64})


def test_processor_counts_positions_with_the_encoder_and_mismatch_names_both_numbers(qwen_ts_patchtst):
    from tsplugin.processing import TimeSeriesProcessor

    processor = TimeSeriesProcessor.from_pretrained(qwen_ts_patchtst)
    assert processor.num_patches(10) == processor.num_patches(5000) == 7
    text, ts = processor("a <ts><ts/> b <ts></ts>", [[1.0] * 10, [2.0] * 300])
    assert text.count("<ts>") == 14 and ts.shape == (2, 300, 2)
    model = load(qwen_ts_patchtst)
    ids = prompt_ids(model, series_batch([20]))
    with pytest.raises(ValueError, match=r"the batch has 7 <ts> positions but 14 patch embeddings from 2 series"):
        model(input_ids=ids, timeseries=series_batch([20, 30]))


def test_generation_consumes_series_at_prefill_only(qwen_ts_patchtst):
    model = load(qwen_ts_patchtst)
    series = series_batch([50])
    ids = prompt_ids(model, series)
    with_cache = model.generate(input_ids=ids, timeseries=series, max_new_tokens=6, do_sample=False)
    no_cache = model.generate(input_ids=ids, timeseries=series, max_new_tokens=6, do_sample=False, use_cache=False)
    assert torch.equal(with_cache, no_cache) and with_cache.shape[1] == ids.shape[1] + 6
    shifted = series.clone()
    shifted[..., 0] = shifted[..., 0] * 3 + 1  # other values, same lengths
    other = model.generate(input_ids=ids, timeseries=shifted, max_new_tokens=1, do_sample=False, output_logits=True,
                           return_dict_in_generate=True)
    first = model.generate(input_ids=ids, timeseries=series, max_new_tokens=1, do_sample=False, output_logits=True,
                           return_dict_in_generate=True)
    assert not torch.equal(other.logits[0], first.logits[0])  # the series reach the logits


def test_time_series_column_and_closing_tag_spelling_train(qwen_ts_patchtst, tmp_path):
    records = [
        {"input": f"Compare <ts></ts> with <ts><ts/>. Record {i}.", "output": "The second is higher.",
         "time_series": [[math.sin(j / 5) for j in range(40 + i)], [2.0 + math.cos(j / 3) for j in range(90)]]}
        for i in range(4)
    ]
    data = write_dataset(tmp_path / "data", "seed_format", records,
                         columns={"prompt": "input", "response": "output", "timeseries": "time_series"})
    out = tmp_path / "out"
    run_lf(**lf_args(qwen_ts_patchtst, out, dataset="seed_format", dataset_dir=str(data), template="qwen3_ts", max_steps=2))
    losses = trainer_losses(out)
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)


def test_default_lora_targets_only_the_llm_and_freezes_encoder_and_projector(qwen_ts_patchtst, tmp_path):
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_model, load_tokenizer

    def trainable(**overrides):
        model_args, _, _, finetuning_args, _ = get_train_args(lf_args(qwen_ts_patchtst, tmp_path / "o", template="qwen3_ts", **overrides))
        model = load_model(load_tokenizer(model_args)["tokenizer"], model_args, finetuning_args, is_trainable=True)
        return {n for n, p in model.named_parameters() if p.requires_grad}, model

    names, model = trainable()
    assert names and all("lora_" in n and ".language_model." in n for n in names)
    lora_modules = {n.split(".lora_")[0] for n in names}
    assert not any("lm_head" in n or "ts_" in n for n in lora_modules)

    names, _ = trainable(additional_target="ts_projector")
    assert any("ts_projector" in n and "lora_" not in n for n in names)
    assert not any("ts_encoder" in n for n in names)

    names, _ = trainable(additional_target="ts_projector,ts_encoder")
    assert any("ts_encoder" in n and "backbone" in n and "lora_" not in n for n in names)
