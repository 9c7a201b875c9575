"""`tsplugin inspect MODEL`: exact output for minimal released-layout directories (files only, no weights read)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from tsplugin.cli import main

SIZES = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128, vocab_size=256)
# Shipped .py files: importing any of them leaves a marker next to it.
MARKER_CODE = "import pathlib\npathlib.Path(__file__).with_name('IMPORTED').write_text(__name__)\n"


def _write(directory: Path, config: dict, code: list[str], ts_ids: tuple[int, int] = (250, 251)) -> Path:
    directory.mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps(config))
    added = [{"id": ts_ids[0], "content": "<ts>", "special": False}, {"id": ts_ids[1], "content": "<ts/>", "special": False}]
    (directory / "tokenizer.json").write_text(json.dumps({"added_tokens": added, "model": {"type": "BPE", "vocab": {"a": 0}}}))
    for name in code:
        (directory / name).write_text(MARKER_CODE)
    return directory


def layout_0801(directory: Path) -> Path:
    """ChatTS-14B current: auto_map incl. AutoProcessor, processor file, 6 fp16 .bin shards + index."""
    config = {
        "architectures": ["Qwen2TSForCausalLM"], "model_type": "chatts", "torch_dtype": "float16", **SIZES,
        "auto_map": {"AutoConfig": "configuration_qwen2.Qwen2TSConfig", "AutoModelForCausalLM": "modeling_qwen2.Qwen2TSForCausalLM",
                     "AutoProcessor": "processing_qwen2_ts.Qwen2TSProcessor"},
        "ts": {"embedding_dim": 16, "hidden_size": 64, "max_length": 32768, "max_sequence_length": 32768, "num_features": 2,
               "num_layers": 5, "patch_size": 8, "use_position_embedding": True, "use_position_idx": False},
        "ts_token_start_index": 250, "ts_token_end_index": 251,
    }
    d = _write(directory, config, ["configuration_qwen2.py", "modeling_qwen2.py", "processing_qwen2_ts.py"])
    (d / "tokenizer_config.json").write_text(json.dumps({"processor_class": "Qwen2TSProcessor"}))
    for i in range(1, 7):
        (d / f"pytorch_model-{i:05d}-of-00006.bin").write_bytes(b"")
    (d / "pytorch_model.bin.index.json").write_text("{}")
    return d


def layout_first_release(directory: Path) -> Path:
    """ChatTS-14B first release: model_type qwen2, patch 16, no AutoProcessor, no processor file."""
    config = {
        "architectures": ["Qwen2TSForCausalLM"], "model_type": "qwen2", "torch_dtype": "float16", **SIZES,
        "auto_map": {"AutoConfig": "configuration_qwen2.Qwen2TSConfig", "AutoModelForCausalLM": "modeling_qwen2.Qwen2TSForCausalLM"},
        "ts": {"hidden_size": 64, "num_features": 2, "num_layers": 5, "patch_size": 16},
        "ts_token_start_index": 250, "ts_token_end_index": 251,
    }
    d = _write(directory, config, ["configuration_qwen2.py", "modeling_qwen2.py"])
    from safetensors.numpy import save_file

    save_file({"lm_head.weight": np.zeros((4, 4), np.float16), "ts_encoder.mlp.0.bias": np.zeros(4, np.float16)}, str(d / "model.safetensors"))
    return d


def run(capsys, *argv: str) -> tuple[int, list[str]]:
    """Exit code and the lines printed: the report on stdout, or the one error line on stderr."""
    code = main(["inspect", *argv])
    out, err = capsys.readouterr()
    return code, out.splitlines() + err.splitlines()


PLAN_2080 = "RTX 2080 Ti 11 GB (Turing: fp16 only, no FlashAttention-2)"


def test_current_14b_layout(tmp_path, capsys):
    d = layout_0801(tmp_path / "ChatTS-14B")
    code, lines = run(capsys, str(d))
    assert code == 0
    assert lines == [
        f"model: {d} (local directory)",
        "architecture: Qwen2TSForCausalLM (model_type chatts)",
        "profile: chatts-14b-0801: ChatTS-14B current (the 0801 update; patch 8, position embedding)",
        "  detected from: architectures Qwen2TSForCausalLM + model_type chatts + ts.use_position_embedding true + "
        "ts.patch_size 8 + processor file processing_qwen2_ts.py + processor class Qwen2TSProcessor + "
        "auto_map AutoConfig, AutoModelForCausalLM, AutoProcessor",
        "  set it with: `ts_profile` in config.json or `timeseries_profile` in the recipe",
        "  prefix before each series: [offset=..|scaling=..|length=..|max=..|min=..|left=..|right=..]",
        "  last patch: filled with the series' last value; padded points take position index max_sequence_length",
        "tokens: <ts> 250, <ts/> 251 (config.json ts_token_start_index/ts_token_end_index = tokenizer.json)",
        "patch size: 8 (ts.patch_size, position embedding); a 256-point series costs 32 <ts> positions",
        "template: chatts (the chatts-14b-0801 profile's; override with `template:`)",
        "shipped code: configuration_qwen2.py, modeling_qwen2.py, processing_qwen2_ts.py: ignored; tsplugin never "
        "imports a checkpoint's .py files (its own classes load these weights, with trust_remote_code true or false)",
        "weights: 6 .bin shards (pickled state dicts) + pytorch_model.bin.index.json; dtype float16 (config.json torch_dtype)",
        f"plan: `tsplugin plan --model {d} --gpu-mem 2080ti --series-length 5000 --text-tokens 512` -> QLoRA 4-bit, "
        f"0.51 of 10.75 GiB ({PLAN_2080}): FITS",
    ]
    assert not (d / "IMPORTED").exists()


def test_first_release_layout_and_card_choice(tmp_path, capsys):
    d = layout_first_release(tmp_path / "ChatTS-14B-v1")
    code, lines = run(capsys, str(d), "--gpu-mem", "a100-40", "--series-length", "1000")
    assert code == 0
    assert lines[2:7] == [
        "profile: chatts-14b-v1: ChatTS-14B first release (Dec 2024; patch 16, no position embedding) and paper-era data",
        "  detected from: architectures Qwen2TSForCausalLM + model_type qwen2 + ts.use_position_embedding false + "
        "ts.patch_size 16 + auto_map AutoConfig, AutoModelForCausalLM",
        "  set it with: `ts_profile` in config.json or `timeseries_profile` in the recipe",
        "  prefix before each series: [Value Offset: ..|Value Scaling: ..]",
        "  last patch: filled with zeros",
    ]
    assert lines[8:] == [
        "patch size: 16 (ts.patch_size); a 256-point series costs 16 <ts> positions",
        "template: chatts (the chatts-14b-v1 profile's; override with `template:`)",
        "shipped code: configuration_qwen2.py, modeling_qwen2.py: ignored; tsplugin never imports a checkpoint's .py "
        "files (its own classes load these weights, with trust_remote_code true or false)",
        "weights: 1 safetensors file; dtype F16 (2 tensors) (read from the headers)",
        f"plan: `tsplugin plan --model {d} --gpu-mem a100-40 --series-length 1000 --text-tokens 512` -> QLoRA 4-bit, "
        "0.50 of 39.39 GiB (A100 40 GB): FITS",
    ]
    # the recipe key's view of the same directory
    code, lines = run(capsys, str(d), "--profile", "chatts-14b-0801")
    assert lines[2:4] == [
        "profile: chatts-14b-0801: ChatTS-14B current (the 0801 update; patch 8, position embedding)",
        "  detected from: recipe timeseries_profile: chatts-14b-0801",
    ]
    assert not (d / "IMPORTED").exists()


def test_token_ids_that_disagree_are_an_error_naming_the_file_and_the_fix(tmp_path, capsys):
    d = layout_0801(tmp_path / "swapped")
    config = json.loads((d / "config.json").read_text())
    config.update(ts_token_start_index=251, ts_token_end_index=250)
    (d / "config.json").write_text(json.dumps(config))
    code, lines = run(capsys, str(d))
    assert code == 2
    assert "tokens: config.json and the tokenizer DISAGREE" in lines
    assert lines[-1] == (
        f"error: {d}/config.json: the <ts>/<ts/> token ids disagree with the tokenizer: ts_token_start_index = 251 but "
        f"{d}/tokenizer.json gives <ts> id 250; ts_token_end_index = 250 but {d}/tokenizer.json gives <ts/> id 251. The "
        "model would look for series at the wrong positions. Fix: set \"ts_token_start_index\": 250, \"ts_token_end_index\": 251 "
        f"in {d}/config.json (the ids the tokenizer actually produces), or restore the tokenizer files that came with these weights."
    )


def test_unknown_profile_in_config_lists_the_choices(tmp_path, capsys):
    d = layout_0801(tmp_path / "bad")
    config = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**config, "ts_profile": "chatts-2"}))
    code, lines = run(capsys, str(d))
    assert code == 2
    assert lines == [
        f"tsplugin inspect: error: {d}/config.json `ts_profile`: unknown time-series profile 'chatts-2'; valid: "
        "chatts-14b-0801, chatts-14b-v1, chatts-8b, tsfactory-v0 (set `timeseries_profile` in the recipe or `ts_profile` in config.json)"
    ]


def test_hub_id_from_the_offline_cache_never_downloads(tmp_path, capsys, monkeypatch):
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    snapshot = cache / "models--bytedance-research--ChatTS-14B" / "snapshots" / "0123abcd"
    layout_0801(snapshot)
    (cache / "models--bytedance-research--ChatTS-14B" / "refs").mkdir()
    (cache / "models--bytedance-research--ChatTS-14B" / "refs" / "main").write_text("0123abcd")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    code, lines = run(capsys, "bytedance-research/ChatTS-14B")
    assert code == 0
    assert lines[0] == f"model: {snapshot} (Hub ID bytedance-research/ChatTS-14B, from the HF cache)"
    assert lines[2] == "profile: chatts-14b-0801: ChatTS-14B current (the 0801 update; patch 8, position embedding)"
    code, lines = run(capsys, "bytedance-research/ChatTS-8B")
    assert code == 2
    assert lines == [
        f"tsplugin inspect: error: bytedance-research/ChatTS-8B: not in the local Hugging Face cache ({cache}); nothing is "
        "downloaded here. Fetch it once with `huggingface-cli download bytedance-research/ChatTS-8B` (or pass a local directory)."
    ]


def test_init_model_checkpoint(tiny_chatts, capsys):
    code, lines = run(capsys, str(tiny_chatts))
    assert code == 0
    assert lines[2:4] == [
        "profile: chatts-14b-0801: ChatTS-14B current (the 0801 update; patch 8, position embedding)",
        "  detected from: config.json ts_profile: chatts-14b-0801",
    ]
    assert lines[8] == "patch size: 16 (ts.patch_size); a 256-point series costs 16 <ts> positions"
    assert lines[10:12] == ["shipped code: none", "weights: 1 safetensors file; dtype F32 (61 tensors) (read from the headers)"]


@pytest.mark.parametrize("bad", ["no/such/thing", "missing-dir"])
def test_not_a_model(bad, capsys):
    code, lines = run(capsys, bad)
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"tsplugin inspect: error: {bad}: ")


HOSTILE_CONFIGS = [
    ("null", "the config.json holds null, not an object {...}"),
    ("[1, 2]", "the config.json holds an array, not an object {...}"),
    ("[" * 100_000 + "]" * 100_000, "nested deeper than JSON readers allow"),
    ('{"ts": {"patch_size": 1%s}}' % ("0" * 400), "holds a number beyond float64 (an integer of 401 digits)"),
    ('{"x": 1e400}', "holds a number beyond float64"),
    ("\xff\xfe{}", "byte 0 is not UTF-8"),
    ('{"x": ', "not valid JSON (line 1 column 7"),
]


@pytest.mark.parametrize("text,message", HOSTILE_CONFIGS, ids=[m[:30] for _, m in HOSTILE_CONFIGS])
def test_a_hostile_config_json_is_one_line_naming_it(tmp_path, capsys, text, message):
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_bytes(text.encode("utf-8", "surrogateescape") if "\xff" not in text else text.encode("latin-1"))
    code = main(["inspect", str(d)])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"tsplugin inspect: error: {d}/config.json: ") and message in err, err


def test_a_config_json_that_is_a_fifo_is_refused_without_blocking(tmp_path, capsys):
    d = tmp_path / "m"
    d.mkdir()
    os.mkfifo(d / "config.json")
    assert main(["inspect", str(d)]) == 2
    assert "is a FIFO (named pipe), not a regular file" in capsys.readouterr().err


HOSTILE_HEADERS = [
    (b"\x10\x00\x00\x00", "4 bytes, too short for a safetensors file"),
    ((2**62).to_bytes(8, "little") + b"{}", "its header length says 4611686018427387904 bytes but the file holds 2 after it"),
    (len(b"[1, 2]").to_bytes(8, "little") + b"[1, 2]", "the safetensors header is not an object of tensors with a dtype each"),
    (len(b'{"w": 3}').to_bytes(8, "little") + b'{"w": 3}', "the safetensors header is not an object of tensors with a dtype each"),
    (len(b'{"w": ').to_bytes(8, "little") + b'{"w": ', "not valid JSON"),
]


@pytest.mark.parametrize("data,message", HOSTILE_HEADERS, ids=[m[:30] for _, m in HOSTILE_HEADERS])
def test_a_hostile_safetensors_header_is_one_line_naming_the_file(tmp_path, capsys, data, message):
    d = layout_first_release(tmp_path / "m")
    (d / "model.safetensors").write_bytes(data)
    code = main(["inspect", str(d)])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"tsplugin inspect: error: {d}/model.safetensors: ") and message in err, err
