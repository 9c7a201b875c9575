"""The training data path reads each series once per stage: LLaMA-Factory's preprocessing (get_dataset:
the plugin writes the prefix and the `<ts>` positions) and its collator (get_mm_inputs: the encoder's
features). Every read of a series' values goes through `sp_stats` (mean, scale and the checks), so
counting its calls counts the reads."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import lf_args, write_dataset

import tsplugin.processing as processing
import tsplugin.processing.profiles as profiles
from tsplugin.processing import TimeSeriesProcessor

SERIES_PER_RECORD = (2, 1, 3)


def _records() -> list[dict]:
    rng = np.random.default_rng(0)
    return [
        {"input": "Compare " + "<ts><ts/> " * n + "please.", "output": "They differ.",
         "timeseries": [np.round(rng.normal(size=20 + 7 * k) * 40, 3).tolist() for k in range(n)]}
        for n in SERIES_PER_RECORD
    ]


@pytest.fixture
def sp_stats_calls(monkeypatch) -> list[int]:
    calls: list[int] = []
    original = profiles.sp_stats

    def counting(values):
        calls.append(len(values))
        return original(values)

    # Both names the package binds; prefix_from_stats and _features take the stats, never the series.
    monkeypatch.setattr(profiles, "sp_stats", counting)
    monkeypatch.setattr(processing, "sp_stats", counting)
    return calls


def test_each_series_is_read_once_when_tokenised_and_once_when_collated(tiny_chatts, tmp_path, sp_stats_calls):
    from llamafactory.data import MultiModalDataCollatorForSeq2Seq, get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    records = _records()
    lengths = [len(s) for r in records for s in r["timeseries"]]
    data = write_dataset(tmp_path / "data", "ts", records)
    args = lf_args(tiny_chatts, tmp_path / "o", dataset="ts", dataset_dir=str(data), template="chatts")
    model_args, data_args, training_args, _, _ = get_train_args(args)
    module = load_tokenizer(model_args)
    template = get_template_and_fix_tokenizer(module["tokenizer"], data_args)

    dataset = get_dataset(template, model_args, data_args, training_args, "sft", **module)["train_dataset"]
    assert len(dataset) == len(records)
    assert sorted(sp_stats_calls) == sorted(lengths)  # one read per series: the prefix (no features yet)

    sp_stats_calls.clear()
    collator = MultiModalDataCollatorForSeq2Seq(template=template, pad_to_multiple_of=8, label_pad_token_id=-100, **module)
    batch = collator([dataset[i] for i in range(len(records))])
    assert sorted(sp_stats_calls) == sorted(lengths)  # one read per series: the features
    ts_id = module["tokenizer"].convert_tokens_to_ids("<ts>")
    positions = TimeSeriesProcessor.from_pretrained(tiny_chatts).num_patches
    assert int((batch["input_ids"] == ts_id).sum()) == sum(positions(n) for n in lengths)
    assert tuple(batch["timeseries"].shape) == (len(lengths), max(lengths), 2)
