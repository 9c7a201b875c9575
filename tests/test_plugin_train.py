"""Stock LLaMA-Factory trains time-series models through the plugin (CPU, in-process, tiny models)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from conftest import FIXTURES, lf_args, run_lf, trainer_losses, write_dataset


def test_lora_sft_on_converted_gdsh_sample_loss_goes_down(tiny_qwen3ts, tmp_path):
    out = tmp_path / "lora"
    run_lf(**lf_args(tiny_qwen3ts, out, max_steps=12, learning_rate=3e-3, lora_rank=16))
    losses = trainer_losses(out)
    assert len(losses) == 12
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.05, losses
    assert (out / "adapter_model.safetensors").is_file()


def test_chatts_dev_trains_unmodified_with_its_own_dataset_info(tiny_chatts, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(FIXTURES / "chatts_dev" / "chatts_dev.jsonl", data)
    shutil.copy(FIXTURES / "chatts_dev" / "dataset_info.json", data)
    out = tmp_path / "out"
    run_lf(**lf_args(tiny_chatts, out, dataset="chatts_dev", dataset_dir=str(data), template="chatts", cutoff_len=2048, max_steps=2))
    assert len(trainer_losses(out)) == 2


def test_sharegpt_form_with_system_prompt_trains(tiny_qwen3ts, tmp_path):
    out = tmp_path / "out"
    run_lf(**lf_args(tiny_qwen3ts, out, dataset="gdsh_sample_sharegpt", max_steps=2))
    assert len(trainer_losses(out)) == 2


def _record(n_series: int, n_placeholders: int | None = None, length: int = 40, answer: str = "ok") -> dict:
    n_placeholders = n_series if n_placeholders is None else n_placeholders
    return {
        "input": "Look: " + " and ".join(["<ts><ts/>"] * n_placeholders) + ". Anything odd?",
        "output": answer,
        "timeseries": [[float(i % 7) for i in range(length + 8 * k)] for k in range(n_series)],
    }


def test_placeholder_series_mismatch_names_dataset_and_record(tiny_qwen3ts, tmp_path):
    data = write_dataset(tmp_path / "data", "bad", [_record(1), _record(1), _record(1, n_placeholders=2)])
    with pytest.raises(ValueError) as err:
        run_lf(**lf_args(tiny_qwen3ts, tmp_path / "out", dataset="bad", dataset_dir=str(data)))
    message = str(err.value)
    assert "bad.jsonl: record 2: 2 <ts><ts/> placeholders but 1 series in column 'timeseries'" in message


def test_non_numeric_series_value_is_an_error_naming_the_record(tiny_qwen3ts, tmp_path):
    record = _record(1)
    record["timeseries"][0][3] = None
    data = write_dataset(tmp_path / "data", "nan", [_record(1), record])
    with pytest.raises(ValueError, match=r"nan.jsonl: record 1: series 0: value 3 is None"):
        run_lf(**lf_args(tiny_qwen3ts, tmp_path / "out", dataset="nan", dataset_dir=str(data)))


def test_mixed_lengths_text_only_records_and_several_series_per_record(tiny_qwen3ts, tmp_path):
    records = [_record(1, length=30), _record(0), _record(3, length=50), _record(2, length=17), _record(0)]
    data = write_dataset(tmp_path / "data", "mixed", records)
    out = tmp_path / "out"
    run_lf(**lf_args(tiny_qwen3ts, out, dataset="mixed", dataset_dir=str(data), per_device_train_batch_size=5, max_steps=2))
    assert len(trainer_losses(out)) == 2


@pytest.fixture
def lf_log(caplog):
    """LLaMA-Factory's own log lines (its loggers do not propagate to the root logger)."""
    import logging

    lf_logger = logging.getLogger("llamafactory")
    lf_logger.addHandler(caplog.handler)
    yield caplog
    lf_logger.removeHandler(caplog.handler)


def test_cutoff_len_never_cuts_a_series_records_are_dropped_and_counted(tiny_qwen3ts, tmp_path, lf_log):
    # 2 short records fit in cutoff_len (~110 tokens with the current prefix); 2 long ones (800 points -> 100 patches) do not.
    records = [_record(1, length=40), _record(1, length=800), _record(1, length=40), _record(1, length=800)]
    data = write_dataset(tmp_path / "data", "long", records)
    write_dataset(data, "short", [_record(1, length=40), _record(0)])
    out = tmp_path / "out"
    run_lf(**lf_args(tiny_qwen3ts, out, dataset="long,short", dataset_dir=str(data), cutoff_len=128, max_steps=1))
    lines = [r.getMessage() for r in lf_log.records if r.getMessage().startswith("tsplugin: dataset")]
    assert lines == [
        "tsplugin: dataset long: kept 2 of 4 records, dropped 2 (2 cutoff_len=128 cut through a series). "
        "Raise cutoff_len or shorten the series (`tsconvert --max-length`).",
        "tsplugin: dataset short: kept 2 of 2 records.",
    ]


def test_chatts_training_cutoff_mode_counts_two_tokens_per_series(tiny_qwen3ts, tmp_path, lf_log):
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    # ~105 tokens of prompt and prefix a record. 1600 points = 200 patches: cut when every position counts,
    # kept when a series counts 2 tokens; a ~300-token answer after a short series: LLaMA-Factory truncates
    # the answer only (kept), ChatTS-Training drops the record.
    records = [_record(1, length=40), _record(1, length=1600), _record(1, length=40, answer="ok " * 150), _record(0, answer="ok " * 150)]
    data = write_dataset(tmp_path / "data", "cmp", records)

    def load(mode):
        lf_log.clear()
        args = lf_args(tiny_qwen3ts, tmp_path / mode, dataset="cmp", dataset_dir=str(data), cutoff_len=240, timeseries_cutoff_mode=mode)
        model_args, data_args, training_args, _, _ = get_train_args(args)
        module = load_tokenizer(model_args)
        template = get_template_and_fix_tokenizer(module["tokenizer"], data_args)
        dataset = get_dataset(template, model_args, data_args, training_args, "sft", **module)["train_dataset"]
        lines = [r.getMessage() for r in lf_log.records if r.getMessage().startswith("tsplugin: dataset")]
        return dataset, lines, module["tokenizer"].convert_tokens_to_ids("<ts>")

    dataset, lines, ts_id = load("expanded")
    assert lines == ["tsplugin: dataset cmp: kept 3 of 4 records, dropped 1 (1 cutoff_len=240 cut through a series). "
                     "Raise cutoff_len or shorten the series (`tsconvert --max-length`)."]
    assert set(dataset.column_names) == {"input_ids", "attention_mask", "labels", "images", "videos", "audios"}
    assert max(len(ids) for ids in dataset["input_ids"]) <= 240
    assert sorted(ids.count(ts_id) for ids in dataset["input_ids"]) == [0, 5, 5]

    dataset, lines, ts_id = load("chatts_training")
    assert lines == ["tsplugin: dataset cmp: kept 3 of 4 records, dropped 1 (1 longer than cutoff_len=240 counting 2 tokens "
                     "per series, ChatTS-Training's rule (timeseries_cutoff_mode: chatts_training)). "
                     "Raise cutoff_len or shorten the series (`tsconvert --max-length`)."]
    assert max(len(ids) for ids in dataset["input_ids"]) > 240  # the long series is whole: its patches come on top
    assert sorted(ids.count(ts_id) for ids in dataset["input_ids"]) == [0, 5, 200]

    with pytest.raises(ValueError, match=r"`timeseries_cutoff_mode: whole` is unknown; choose one of \['expanded', 'chatts_training'\]"):
        get_train_args(lf_args(tiny_qwen3ts, tmp_path / "y", timeseries_cutoff_mode="whole"))


def test_chatts_training_selection_rule():
    from tsplugin.llamafactory.data import chatts_training_keeps

    assert chatts_training_keeps([(90, 10, True)], 100)  # exactly cutoff_len: nothing is cut
    assert not chatts_training_keeps([(91, 10, True)], 100)  # one token over, with a series: dropped
    assert chatts_training_keeps([(91, 10, False)], 100)  # no series: LLaMA-Factory truncates it, kept
    # second turn has the series and no room left: dropped; a first turn with series that fits is kept
    assert not chatts_training_keeps([(50, 40, False), (20, 5, True)], 100)
    assert chatts_training_keeps([(50, 40, True), (20, 5, False)], 100)


def test_default_lora_freezes_encoder_additional_target_trains_it_with_its_own_lr(tiny_qwen3ts, tmp_path):
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_model, load_tokenizer
    from llamafactory.train.trainer_utils import create_custom_optimizer

    def trainable(**overrides):
        model_args, _, training_args, finetuning_args, _ = get_train_args(lf_args(tiny_qwen3ts, tmp_path / "o", **overrides))
        tokenizer = load_tokenizer(model_args)["tokenizer"]
        model = load_model(tokenizer, model_args, finetuning_args, is_trainable=True)
        names = {n for n, p in model.named_parameters() if p.requires_grad}
        return model, names, training_args, finetuning_args

    _, names, _, _ = trainable()
    assert names and not any("ts_encoder" in n for n in names)
    assert all("lora_" in n for n in names)

    model, names, training_args, finetuning_args = trainable(additional_target="ts_encoder", timeseries_learning_rate=5e-5)
    assert any("ts_encoder" in n and "lora_" not in n for n in names)
    optimizer = create_custom_optimizer(model, training_args, finetuning_args)
    lrs = {group["lr"] for group in optimizer.param_groups}
    assert lrs == {5e-5, training_args.learning_rate}

    _, names, _, _ = trainable(lora_timeseries_encoder=True)
    encoder = {n for n in names if "ts_encoder" in n}
    assert encoder and all("lora_" in n for n in encoder)
    assert {n.split(".lora_")[0] for n in encoder} == {f"base_model.model.ts_encoder.mlp.{i}" for i in (0, 2, 4, 6, 8)}


def test_qlora_quantises_the_llm_not_the_encoder(tiny_qwen3ts, tmp_path):
    pytest.importorskip("bitsandbytes")
    import bitsandbytes as bnb

    out = tmp_path / "out"
    run_lf(**lf_args(tiny_qwen3ts, out, quantization_bit=4, max_steps=2, optim="adamw_torch"))
    assert len(trainer_losses(out)) == 2

    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_model, load_tokenizer

    model_args, _, _, finetuning_args, _ = get_train_args(lf_args(tiny_qwen3ts, out, quantization_bit=4))
    model = load_model(load_tokenizer(model_args)["tokenizer"], model_args, finetuning_args, is_trainable=True)
    kinds = {name: type(module) for name, module in model.named_modules()}
    assert any(issubclass(k, bnb.nn.Linear4bit) for n, k in kinds.items() if "layers.0.self_attn.q_proj.base_layer" in n)
    encoder = [k for n, k in kinds.items() if "ts_encoder.mlp." in n and n.split(".")[-1].isdigit()]
    assert encoder and not any(issubclass(k, bnb.nn.Linear4bit) for k in encoder)


def test_labels_mask_every_prompt_and_series_position(tiny_qwen3ts, tmp_path, dataset_dir):
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    model_args, data_args, training_args, _, _ = get_train_args(lf_args(tiny_qwen3ts, tmp_path / "o"))
    module = load_tokenizer(model_args)
    template = get_template_and_fix_tokenizer(module["tokenizer"], data_args)
    dataset = get_dataset(template, model_args, data_args, training_args, "sft", **module)["train_dataset"]
    tokenizer = module["tokenizer"]
    ts_id = tokenizer.convert_tokens_to_ids("<ts>")
    answer_start = tokenizer.encode("<|im_start|>assistant\n", add_special_tokens=False)
    for row in dataset:
        ids, labels = row["input_ids"], row["labels"]
        assert ids.count(ts_id) > 300  # a ~5000-point series, patch 8
        first_label = next(i for i, label in enumerate(labels) if label != -100)
        assert all(label == -100 for label, t in zip(labels, ids) if t == ts_id)
        assert ids[first_label - len(answer_start) : first_label] == answer_start
        assert all(label == -100 for label in labels[:first_label])
        assert labels[first_label:] == ids[first_label:]
