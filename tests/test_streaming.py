"""`streaming: true` with series: LLaMA-Factory's IterableDataset path trains time-series records (CPU, tiny model)."""

from __future__ import annotations

import logging

import pytest

from conftest import lf_args, run_lf, trainer_losses, write_dataset

# The trainer logs each loss rounded to 4 decimals (transformers' Trainer `_maybe_log_save_evaluate`): two runs
# computing the same losses in the same order log values at most one rounding unit apart.
LOGGED_LOSS_UNIT = 1e-4


@pytest.fixture
def lf_log(caplog):
    """LLaMA-Factory's own log lines (its loggers do not propagate to the root logger)."""
    lf_logger = logging.getLogger("llamafactory")
    lf_logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO)
    yield caplog
    lf_logger.removeHandler(caplog.handler)


def _record(k: int, length: int = 40) -> dict:
    return {"input": f"Record {k}: <ts><ts/>. Rising or falling?", "output": "rising" if k % 2 else "falling",
            "timeseries": [[float((i * (k + 1)) % 11) for i in range(length)]]}


def test_streaming_trains_with_default_workers_and_matches_the_in_memory_run_step_by_step(tiny_qwen3ts, tmp_path):
    # Orders are comparable when the in-memory run does not shuffle (`disable_shuffling`) and the stream's shuffle
    # buffer holds one record (`buffer_size: 1` yields records in file order; one shard, so no shard shuffle).
    # With LLaMA-Factory's defaults they are not: the in-memory sampler permutes the whole dataset with the seed,
    # the stream shuffles within a buffer of 16384 records with its own generator.
    losses = {}
    for streaming in (False, True):
        out = tmp_path / f"streaming_{streaming}"
        extra = dict(streaming=True, buffer_size=1) if streaming else dict(disable_shuffling=True)
        run_lf(**lf_args(tiny_qwen3ts, out, max_steps=5, **extra))  # dataloader_num_workers: LLaMA-Factory's 0
        losses[streaming] = trainer_losses(out)
    assert len(losses[True]) == len(losses[False]) == 5
    assert max(abs(a - b) for a, b in zip(losses[True], losses[False])) <= LOGGED_LOSS_UNIT, losses
    assert len(set(losses[False])) > 1  # the records differ step to step: an order mix-up would show


def test_streaming_with_interleave_probs_mixes_two_datasets_and_reports_counts_seen(tiny_qwen3ts, tmp_path, lf_log):
    # "long": every other record's series is too long for cutoff_len (800 points -> 100 patches); "short" all fit.
    long = [_record(k, length=800 if k % 2 else 40) for k in range(8)]
    data = write_dataset(tmp_path / "data", "long", long)
    write_dataset(data, "short", [_record(k) for k in range(8)])
    out = tmp_path / "out"
    run_lf(**lf_args(tiny_qwen3ts, out, dataset="long,short", dataset_dir=str(data), cutoff_len=128, streaming=True,
                     mix_strategy="interleave_under", interleave_probs="0.5,0.5", max_steps=3))
    assert len(trainer_losses(out)) == 3
    lines = [r.getMessage() for r in lf_log.records if r.getMessage().startswith("tsplugin: dataset")]
    sources = {line.split()[2].rstrip(":") for line in lines}
    assert sources == {"long", "short"}, lines  # both datasets were drawn from
    cut = [line for line in lines if line.startswith("tsplugin: dataset long:") and "dropped" in line]
    assert cut and "cutoff_len=128 cut through a series" in cut[0] and "seen so far" in cut[0], lines
    assert not any("dropped" in line for line in lines if line.startswith("tsplugin: dataset short:")), lines


def test_streaming_checks_each_record_and_names_it(tiny_qwen3ts, tmp_path):
    bad = _record(3)
    bad["input"] = "Two: <ts><ts/> <ts><ts/>"
    data = write_dataset(tmp_path / "data", "bad", [_record(0), _record(1), _record(2), bad])
    with pytest.raises(ValueError, match=r"bad.jsonl: record 3: 2 <ts><ts/> placeholders but 1 series"):
        run_lf(**lf_args(tiny_qwen3ts, tmp_path / "out", dataset="bad", dataset_dir=str(data), streaming=True,
                         buffer_size=1, max_steps=3))


def test_report_lines_for_streamed_counts_double_then_restart_each_pass():
    from tsplugin.llamafactory.data import DROP_CUT, StreamingReport

    logged: list[str] = []
    report = StreamingReport(64, "dataset", logged.append)
    marks = [("a", ""), ("a", DROP_CUT), ("a", ""), ("a", ""), ("a", DROP_CUT)]
    assert [report(s, r, i) for i, (s, r) in enumerate(marks)] == [True, False, True, True, False]
    assert logged == [
        "tsplugin: dataset a: kept 1 of 1 records seen so far.",
        "tsplugin: dataset a: kept 1 of 2 records seen so far, dropped 1 (1 cutoff_len=64 cut through a series). "
        "Raise cutoff_len or shorten the series (`tsconvert --max-length`).",
        "tsplugin: dataset a: kept 3 of 4 records seen so far, dropped 1 (1 cutoff_len=64 cut through a series). "
        "Raise cutoff_len or shorten the series (`tsconvert --max-length`).",
    ]
    logged.clear()
    assert report("a", "", 0)  # a second pass: the first one's totals, then counting from zero
    assert logged == [
        "tsplugin: dataset a: kept 3 of 5 records seen so far, dropped 2 (2 cutoff_len=64 cut through a series). "
        "Raise cutoff_len or shorten the series (`tsconvert --max-length`). (one full pass)",
        "tsplugin: dataset a: kept 1 of 1 records seen so far.",
    ]


def test_hub_style_folder_streams_through_datasets_own_loader(tiny_qwen3ts, tmp_path):
    # A `script_url` entry is loaded the way a Hub repo is (`load_dataset(FOLDER, streaming=True)`: an IterableDataset
    # from `datasets` itself, with known features), as the plugin now streams a `file_name` entry too.
    import json

    from converters.writer import update_dataset_info

    folder = tmp_path / "data" / "hubstyle" / "data"
    folder.mkdir(parents=True)
    with open(folder / "train-00000-of-00001.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(_record(k)) + "\n" for k in range(6))
    update_dataset_info(tmp_path / "data" / "dataset_info.json", "hubstyle", {
        "script_url": "hubstyle", "columns": {"prompt": "input", "response": "output", "timeseries": "timeseries"}})
    out = tmp_path / "out"
    run_lf(**lf_args(tiny_qwen3ts, out, dataset="hubstyle", dataset_dir=str(tmp_path / "data"), streaming=True,
                     max_steps=2))
    assert len(trainer_losses(out)) == 2


@pytest.mark.parametrize("streaming", [False, True])
def test_sp_stats_runs_once_per_series_to_write_the_text_and_once_to_batch_the_features(tiny_qwen3ts, tmp_path,
                                                                                         monkeypatch, streaming):
    """The data path reads each series twice by design, once per job: tokenising writes its prefix (`expand_text`, no
    features) and the collator encodes its features (`encode_series`). Never twice in one job."""
    import tsplugin.processing as processing

    calls = {"n": 0}
    real = processing.sp_stats

    def counting(values):
        calls["n"] += 1
        return real(values)

    monkeypatch.setattr(processing, "sp_stats", counting)
    records = [{**_record(k), "timeseries": [_record(k)["timeseries"][0]] * 2, "input": f"{k}: <ts><ts/> <ts><ts/>"}
               for k in range(6)]
    data = write_dataset(tmp_path / "data", "two", records)
    # batch 2, 2 steps: accelerate's DataLoaderShard collates one batch ahead (to know the last one), so 3 batches of
    # 2 records x 2 series are collated. In memory the 6 records x 2 series are tokenised once before training.
    # Streamed, tokenising is lazy and per preprocessing batch (1000 records: all 6 here): once when LLaMA-Factory
    # prints an example (`next(iter(dataset))`), once when the trainer reads the stream.
    extra = dict(streaming=True, buffer_size=1) if streaming else dict(disable_shuffling=True)
    run_lf(**lf_args(tiny_qwen3ts, tmp_path / "out", dataset="two", dataset_dir=str(data), max_steps=2, **extra))
    collated = (2 + 1) * 2 * 2
    tokenised = 6 * 2 * (2 if streaming else 1)
    assert calls["n"] == tokenised + collated


def test_streamed_time_series_batches_are_not_dispatched_and_a_recipe_asking_for_it_is_refused():
    from transformers import Seq2SeqTrainingArguments

    from tsplugin.llamafactory.hooks import keep_batches_whole

    args = Seq2SeqTrainingArguments(output_dir="unused")
    keep_batches_whole(args)
    assert args.accelerator_config.dispatch_batches is False
    args = Seq2SeqTrainingArguments(output_dir="unused", accelerator_config={"dispatch_batches": True})
    with pytest.raises(ValueError, match=r"accelerator_config.dispatch_batches: true with streaming: true"):
        keep_batches_whole(args)
