"""Out of the model: export merges adapters faithfully, batch prediction and the chat API answer."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from conftest import GDSH_CSV, ROOT, assert_release_tokenizer_form, lf_args, run_lf

CSV = GDSH_CSV / "gdsh_second_20250601_PIC-3105.PV.csv"


@pytest.fixture(scope="module")
def trained(tiny_qwen3ts, tmp_path_factory):
    """A LoRA adapter (encoder trained fully as well) and its merged export."""
    from llamafactory.train.tuner import export_model

    root = tmp_path_factory.mktemp("export")
    adapter, merged = root / "lora", root / "merged"
    run_lf(**lf_args(tiny_qwen3ts, adapter, max_steps=4, additional_target="ts_encoder", learning_rate=5e-3))
    export_model(
        dict(
            model_name_or_path=str(tiny_qwen3ts),
            adapter_name_or_path=str(adapter),
            template="chatts8b_nothink",
            finetuning_type="lora",
            export_dir=str(merged),
            export_size=1,
            export_device="cpu",
            export_legacy_format=False,
        )
    )
    return tiny_qwen3ts, adapter, merged


def test_export_writes_the_tokenizer_in_the_released_form(trained):
    """`llamafactory-cli export` (tsplugin's export_model hook): transformers 4.57 (vLLM's) loads what it wrote."""
    from transformers import AutoTokenizer

    _, _, merged = trained
    config = json.loads((merged / "config.json").read_text())
    assert_release_tokenizer_form(merged, config)
    assert AutoTokenizer.from_pretrained(merged).convert_tokens_to_ids("<ts>") == config["ts_token_start_index"]


def _inputs(model_dir):
    from tsplugin.chat import TimeSeriesChat, read_csv_series

    chat = TimeSeriesChat.from_pretrained(model_dir, template="chatts8b_nothink")
    return chat, chat.encode("Is there a spike? <ts><ts/>", read_csv_series([CSV]))


def test_merged_model_logits_equal_base_plus_adapter(trained, fp_close):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base_dir, adapter, merged = trained
    chat, inputs = _inputs(merged)
    with torch.no_grad():
        merged_logits = chat.model(**inputs).logits
        base = AutoModelForCausalLM.from_pretrained(base_dir)
        base_logits = base(**inputs).logits
        peft_model = PeftModel.from_pretrained(base, adapter).eval()
        adapted_logits = peft_model(**inputs).logits
    assert not torch.allclose(base_logits, adapted_logits, atol=1e-3)  # the adapter changes the model
    fp_close(merged_logits, adapted_logits, model=chat.model, tokens=inputs["input_ids"].shape[1])


def test_merged_dir_reloads_without_remote_code_and_answers(trained):
    _, _, merged = trained
    config = json.loads((merged / "config.json").read_text())
    assert config["model_type"] == "qwen3ts" and "ts" in config
    chat, _ = _inputs(merged)
    answer = chat.ask("Is there a spike? <ts><ts/>", [[1.0, 2.0, 50.0, 2.0] * 20], max_new_tokens=5)
    assert isinstance(answer, str)


def test_chat_cli_answers_one_question(trained):
    """`python -m tsplugin.chat ARGS` is `tsplugin chat ARGS` (in-process `tsplugin chat` is tested with the layout twins)."""
    _, _, merged = trained
    result = subprocess.run(
        [sys.executable, "-m", "tsplugin.chat", "--model", str(merged), "--template", "chatts8b_nothink",
         "--csv", str(CSV), "--max-new-tokens", "4", "Any anomaly?"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip(), "no answer printed"


def test_batch_prediction_with_generate_on_a_time_series_test_set(trained, tmp_path):
    base_dir, adapter, _ = trained
    out = tmp_path / "predict"
    run_lf(
        **lf_args(
            base_dir, out, do_train=False, do_predict=True, predict_with_generate=True,
            adapter_name_or_path=str(adapter), eval_dataset="gdsh_sample", dataset=None,
            per_device_eval_batch_size=3, max_new_tokens=6, max_steps=None, max_samples=5,
        )
    )
    lines = (out / "generated_predictions.jsonl").read_text().splitlines()
    assert len(lines) == 5
    row = json.loads(lines[0])
    assert {"prompt", "predict", "label"} <= row.keys()
    assert "<ts>" in row["prompt"] and "[offset=" in row["prompt"]  # the chatts-8b profile init-model writes
