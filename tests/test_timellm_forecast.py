"""Time-LLM forecaster (`timellm`): the head's loss, what trains, channel independence, RevIN, and the whole
LLaMA-Factory path (train -> do_predict -> eval forecast -> export -> tsplugin forecast), tiny and on CPU."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import TIMELLM_BLOCK, assert_release_tokenizer_form, run_lf, trainer_losses

SEQ, PRED = TIMELLM_BLOCK["seq_len"], TIMELLM_BLOCK["pred_len"]
TOL = dict(rtol=1e-4, atol=1e-5)  # float32 through a 2-layer decoder: reduction order only


@pytest.fixture(scope="module")
def model(tiny_timellm):
    from tsplugin.forecast import load_forecaster

    return load_forecaster(tiny_timellm)


def series_batch(*arrays):
    from tsplugin.processing import batch_series

    return batch_series([np.stack([np.asarray(a, np.float32), np.ones(len(a), np.float32)], axis=1) for a in arrays])


def waves(n=3, length=SEQ + 5, seed=0):
    g = np.random.default_rng(seed)
    t = np.arange(length)
    return [np.sin(2 * np.pi * t / (6 + 3 * k)) * (1 + k) + 0.1 * g.standard_normal(length) + k for k in range(n)]


def test_build_forecaster_writes_the_released_tokenizer_form(tiny_timellm):
    """transformers 4.57 (vLLM's) loads the forecaster's tokenizer too."""
    assert_release_tokenizer_form(tiny_timellm, json.loads((tiny_timellm / "config.json").read_text()))


def test_revin_round_trip_and_forecast_is_the_head_output_denormalised(model):
    from tsplugin.models.timellm.layers import EPS, revin_denormalize, revin_normalize

    x = torch.tensor(np.stack(waves()), dtype=torch.float64)
    normed, mean, std = revin_normalize(x)
    torch.testing.assert_close(revin_denormalize(normed, mean, std), x)
    torch.testing.assert_close(normed.mean(1), torch.zeros(3, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(normed.var(1, unbiased=False), (std.squeeze(1) ** 2 - EPS) / std.squeeze(1) ** 2)
    # the model: forecast = head output (normalised scale) * window std + window mean, per series
    seen = []
    handle = model.ts_head.register_forward_hook(lambda module, args, out: seen.append(out.detach()))
    try:
        forecast = model.forecast(series_batch(*waves()))
    finally:
        handle.remove()
    windows = np.stack([w[-SEQ:] for w in waves()]).astype(np.float32).astype(np.float64)  # the points the model reads
    w_mean, w_std = windows.mean(1, keepdims=True), np.sqrt(windows.var(1, keepdims=True) + EPS)
    expected = seen[0].double().numpy() * w_std + w_mean
    np.testing.assert_allclose(forecast.detach().double().numpy(), expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())  # float32


def test_loss_is_mse_of_denormalised_forecast_against_targets(model):
    ts = series_batch(*waves())
    g = torch.Generator().manual_seed(0)
    target = torch.randn(2, PRED, generator=g) * 5 + 10  # targets on the data's own scale
    series = torch.tensor([2, 0])
    out = model(timeseries=ts, forecast_target=target, forecast_series=series)
    expected = ((model.forecast(ts)[series] - target) ** 2).mean()
    torch.testing.assert_close(out.loss, expected, **TOL)
    assert out.forecast.shape == (3, PRED)
    with pytest.raises(ValueError, match=f"pred_len={PRED}"):
        model(timeseries=ts, forecast_target=target[:, :-1], forecast_series=series)
    with pytest.raises(ValueError, match=f"seq_len={SEQ}; convert with `tsconvert forecast --seq-len {SEQ}`"):
        model(timeseries=series_batch(np.zeros(SEQ - 1)))


def test_gradients_reach_reprogramming_and_head_only(tiny_timellm):
    from tsplugin.forecast import load_forecaster

    model = load_forecaster(tiny_timellm).train()
    model.language_model.requires_grad_(False)  # what `lora_target: none` leaves of the LLM
    ts = series_batch(*waves())
    model(timeseries=ts, forecast_target=torch.ones(3, PRED), forecast_series=torch.arange(3)).loss.backward()
    trained = {n: p for n, p in model.named_parameters() if not n.startswith("language_model.")}
    assert {n.split(".")[0] for n in trained} == {"ts_encoder", "ts_head"}
    for name, p in trained.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(p.grad is None for n, p in model.named_parameters() if n.startswith("language_model."))


def test_channel_independence(model, fp_close):
    series = waves(3)
    before = model.forecast(series_batch(*series))
    changed = [series[0], series[1][::-1] * 40 + 3, series[2]]  # another channel j = 1: other prompt, other patches
    after = model.forecast(series_batch(*changed))
    # Rows differ only in batch shape (kernel blocking, padding of other rows): rounding-level differences.
    fp_close(after[[0, 2]], before[[0, 2]], model=model)
    assert (after[1] - before[1]).abs().max() > 1e-3
    alone = model.forecast(series_batch(series[2]))  # and a channel alone = the same channel in a batch
    fp_close(alone[0], before[2], model=model)


def test_generate_writes_the_converter_answer_format_that_eval_parses(model):
    from tsplugin.eval.forecast import parse_numbers

    ts = series_batch(*waves(3))
    rows = torch.tensor([0, 0, 1])
    ids = torch.full((2, 4), model.tokenizer.pad_token_id)
    out = model.generate(input_ids=ids, timeseries=ts, timeseries_rows=rows, forecast_series=torch.tensor([1, 0, 2]),
                         forecast_names=["OT", "a", "OT"], max_new_tokens=5, do_sample=False)
    texts = model.tokenizer.batch_decode(out[:, 4:], skip_special_tokens=True)
    pred = model.forecast(ts).detach().numpy()
    np.testing.assert_allclose(parse_numbers(texts[0], PRED, ["a", "OT"]), pred[[0, 1]], atol=1e-4)
    np.testing.assert_allclose(parse_numbers(texts[1], PRED), pred[[2]], atol=1e-4)
    assert texts[0].startswith("OT: ") and "\na: " in texts[0]


def _converted(tmp_path, features="M"):
    from converters.forecast import ForecastOptions, convert_forecast

    t = np.arange(260)
    with open(tmp_path / "d.csv", "w") as f:
        f.write("date,a,OT\n")
        for i in t:
            f.write(f"2020-01-01 {i:03d},{np.sin(2 * np.pi * i / 12):.5f},{np.cos(2 * np.pi * i / 8) + i / 260:.5f}\n")
    convert_forecast(ForecastOptions(csv=tmp_path / "d.csv", seq_len=SEQ, pred_len=PRED, out_dir=tmp_path / "data", name="d",
                                     features=features, stride=3, max_windows_per_split=12))
    return tmp_path / "data"


def lf_forecast_args(model_dir, data, out, **overrides):
    args = dict(model_name_or_path=str(model_dir), stage="sft", template="qwen_ts", dataset_dir=str(data), cutoff_len=2048,
                overwrite_cache=True, report_to="none", bf16=False, seed=0, disable_tqdm=True, overwrite_output_dir=True,
                finetuning_type="lora", lora_target="none", additional_target="ts_encoder,ts_head", output_dir=str(out))
    args.update(overrides)
    return args


def test_llamafactory_train_predict_eval_export_forecast(tiny_timellm, tmp_path):
    """Stock LLaMA-Factory trains the head on its MSE (frozen LLM), do_predict writes the head's numbers,
    `tsplugin eval forecast` scores them unchanged, and the exported (merged) directory forecasts the same."""
    from safetensors import safe_open

    from tsplugin.eval.forecast import evaluate_forecast

    data = _converted(tmp_path)
    lora = tmp_path / "lora"
    run_lf(**lf_forecast_args(tiny_timellm, data, lora, do_train=True, dataset="d_train", per_device_train_batch_size=4,
                              learning_rate=3e-3, max_steps=8, logging_steps=1, save_strategy="no"))
    losses = trainer_losses(lora)
    assert len(losses) == 8 and all(np.isfinite(losses))
    with safe_open(str(lora / "adapter_model.safetensors"), "pt") as f:  # what trained: reprogramming + head, no LoRA layer
        keys = list(f.keys())
    assert keys and not any("lora_" in k for k in keys)
    assert {k.split("base_model.model.")[-1].split(".")[0] for k in keys} == {"ts_encoder", "ts_head"}

    run_lf(**lf_forecast_args(tiny_timellm, data, tmp_path / "pred", adapter_name_or_path=str(lora), do_predict=True,
                              predict_with_generate=True, eval_dataset="d_test", per_device_eval_batch_size=5))
    predictions = tmp_path / "pred" / "generated_predictions.jsonl"
    report = evaluate_forecast(predictions, data / "d_test.jsonl", season=12)
    assert report["windows"] == 12 and report["unparseable"] == 0 and report["targets"] == 2
    assert np.isfinite(report["normalized"]["model"]["mse"])

    merged = tmp_path / "merged"
    from llamafactory.train.tuner import export_model

    export_model(dict(model_name_or_path=str(tiny_timellm), adapter_name_or_path=str(lora), template="qwen_ts",
                      finetuning_type="lora", export_dir=str(merged)))
    from tsplugin.cli import main

    assert main(["forecast", "--model", str(merged), "--data", str(data / "d_test.jsonl"), "-o", str(tmp_path / "merged.jsonl")]) == 0
    again = evaluate_forecast(tmp_path / "merged.jsonl", data / "d_test.jsonl", season=12)
    assert again["normalized"]["model"]["mse"] == pytest.approx(report["normalized"]["model"]["mse"], rel=1e-3)


@pytest.mark.slow
def test_lora_on_the_llm_option(tiny_timellm, tmp_path):
    from safetensors import safe_open

    data = _converted(tmp_path, features="S")
    out = tmp_path / "lora_llm"
    run_lf(**lf_forecast_args(tiny_timellm, data, out, lora_target="all", lora_rank=4, do_train=True, dataset="d_train",
                              per_device_train_batch_size=4, learning_rate=1e-3, max_steps=2, save_strategy="no"))
    with safe_open(str(out / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    lora_keys = [k for k in keys if "lora_" in k]
    assert lora_keys and all(".language_model." in k for k in lora_keys)  # LoRA in the LLM only; encoder/head in full
    assert any(".ts_head." in k for k in keys) and any(".ts_encoder." in k for k in keys)
    with pytest.raises(ValueError, match="additional_target"):
        run_lf(**lf_forecast_args(tiny_timellm, data, tmp_path / "x", additional_target=None, do_train=True, dataset="d_train", max_steps=1))


def test_bad_forecast_targets_name_the_dataset_record_and_fix():
    from datasets import Dataset

    from tsplugin.llamafactory.data import check_aligned, encode_target

    def row(targets, n_series=1):
        return {"_prompt": [{"role": "user", "content": "<ts><ts/> " * n_series}], "_response": [{"role": "assistant", "content": "1"}],
                "_audios": [[1.0, 2.0, 3.0]] * n_series, "_videos": [encode_target(t) for t in targets]}

    good = {"series": 0, "name": "OT", "values": [1.0, 2.0]}
    check_aligned(Dataset.from_list([row([good])]), "d.jsonl", "timeseries", "forecast_target")
    cases = [
        ({**good, "series": 5}, r"record 1: column 'forecast_target' entry 0: series index 5 does not name one of the record's 1 series"),
        ({**good, "values": [1.0, None]}, r"record 1: column 'forecast_target' entry 0: values: value 1 is None"),
        ({**good, "name": 3}, r"record 1: column 'forecast_target' entry 0: name 3 is not a string"),
    ]
    for bad, message in cases:
        with pytest.raises(ValueError, match=r"d.jsonl: " + message):
            check_aligned(Dataset.from_list([row([good]), row([bad])]), "d.jsonl", "timeseries", "forecast_target")
    with pytest.raises(ValueError, match=r"record 0: forecast targets of different lengths \[1, 2\]"):
        check_aligned(Dataset.from_list([row([good, {**good, "values": [1.0]}])]), "d.jsonl", "timeseries", "forecast_target")
