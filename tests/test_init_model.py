"""`tsplugin init-model` and its Python API `build_model` (offline, tiny, deterministic); the tokenizer
files every tsplugin writer saves load under transformers 4.57 (vLLM's) and 5.x."""

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from conftest import assert_release_tokenizer_form, make_qwen_base
from tsplugin.cli import main
from tsplugin.build.init_model import PRESETS, build_model, ts_block
from tsplugin.models import Qwen2TSForCausalLM, Qwen3TSForCausalLM, get_architecture
from tsplugin.processing import TimeSeriesProcessor
from tsplugin.build.tokenizer import build_tokenizer, ts_token_ids
from tsplugin.checkpoints.tokenizer_files import save_tokenizer, write_release_tokenizer_config

EXPECTED_FILES = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json"}


def check_loadable(path, arch):
    model, info = AutoModelForCausalLM.from_pretrained(path, output_loading_info=True)
    assert type(model) is (Qwen2TSForCausalLM if arch == "chatts" else Qwen3TSForCausalLM)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    tokenizer = AutoTokenizer.from_pretrained(path)
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == arch
    assert config["architectures"] == [type(model).__name__]
    assert (config["ts_token_start_index"], config["ts_token_end_index"]) == ts_token_ids(tokenizer)
    assert "auto_map" not in config
    assert_release_tokenizer_form(path, config)
    # a prompt with a series runs end to end through the processor built from the directory
    processor = TimeSeriesProcessor.from_pretrained(path)
    text, ts = processor("请分析下图中 PIC-3105.PV 的运行数据 <ts><ts/>", [[float(i % 13) for i in range(50)]])
    ids = torch.tensor([tokenizer.encode(text, add_special_tokens=False)])
    with torch.no_grad():
        out = model(input_ids=ids, timeseries=ts)
    assert torch.isfinite(out.logits).all()
    return model, tokenizer, config


# tokenizer_config.json exactly as transformers 5.6 saves build_tokenizer()'s tokenizer (the form 4.57 fails on).
TRANSFORMERS5_TOKENIZER_CONFIG = {
    "backend": "tokenizers", "bos_token": None, "clean_up_tokenization_spaces": False, "eos_token": "<|im_end|>",
    "extra_special_tokens": ["<ts>", "<ts/>"], "model_max_length": 32768, "pad_token": "<|endoftext|>",
    "tokenizer_class": "TokenizersBackend", "unk_token": None,
}


def test_tokenizer_saved_by_transformers5_is_rewritten_to_a_form_both_versions_load(tmp_path):
    import transformers

    tokenizer = build_tokenizer()
    tokenizer.save_pretrained(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(TRANSFORMERS5_TOKENIZER_CONFIG))
    if int(transformers.__version__.split(".")[0]) < 5:  # what vLLM's transformers says about the 5.x files
        with pytest.raises(ValueError, match="TokenizersBackend does not exist"):
            AutoTokenizer.from_pretrained(tmp_path)
    write_release_tokenizer_config(tmp_path)
    assert_release_tokenizer_form(tmp_path)
    rewritten = json.loads((tmp_path / "tokenizer_config.json").read_text())
    # nothing else changed: every other key is kept as written
    rewritten_keys = ("backend", "extra_special_tokens", "tokenizer_class")
    assert {k: v for k, v in rewritten.items() if k in TRANSFORMERS5_TOKENIZER_CONFIG and k not in rewritten_keys} == {
        k: v for k, v in TRANSFORMERS5_TOKENIZER_CONFIG.items() if k not in rewritten_keys}
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = "<|im_start|>user\n请分析 PIC-3105.PV [offset=1.0000|scaling=2.0000]<ts><ts/> 98.6<|im_end|>\n"
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert loaded.encode(text, add_special_tokens=False) == ids and loaded.decode(ids) == text
    assert ts_token_ids(loaded) == ts_token_ids(tokenizer)
    assert (loaded.eos_token, loaded.pad_token, loaded.unk_token, loaded.bos_token) == ("<|im_end|>", "<|endoftext|>", None, None)
    assert write_release_tokenizer_config(tmp_path).read_text() == (tmp_path / "tokenizer_config.json").read_text()  # idempotent


def test_tokenizer_config_keeps_what_the_user_wrote(tmp_path):
    """Named extras, processor keys and a generic tokenizer without Qwen's tokens keep their meaning."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({"a": 0, "b": 1, "[UNK]": 2}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")
    tokenizer.add_special_tokens({"additional_special_tokens": ["<ts>", "<ts/>"]})
    tokenizer.save_pretrained(tmp_path)
    path = tmp_path / "tokenizer_config.json"
    user = json.loads(path.read_text())
    user.update(processor_class="Qwen3TSProcessor", auto_map={"AutoProcessor": "processing_qwen3_ts.Qwen3TSProcessor"})
    path.write_text(json.dumps(user))
    write_release_tokenizer_config(tmp_path)
    tok = json.loads(path.read_text())
    assert tok["tokenizer_class"] == "PreTrainedTokenizerFast"  # not Qwen-style: no claim that it is
    assert tok["processor_class"] == "Qwen3TSProcessor" and tok["auto_map"] == user["auto_map"]
    assert tok["additional_special_tokens"] == ["<ts>", "<ts/>"]
    assert AutoTokenizer.from_pretrained(tmp_path).encode("a <ts> b", add_special_tokens=False) == [0, 3, 1]


def test_tokenizer_files_that_disagree_are_refused_naming_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"tokenizer_config\.json: not found; save a fast tokenizer"):
        write_release_tokenizer_config(tmp_path)
    save_tokenizer(build_tokenizer(), tmp_path)
    path = tmp_path / "tokenizer_config.json"
    before = json.loads(path.read_text())
    path.write_text(json.dumps({**before, "additional_special_tokens": ["<ts>", "<nope>"]}))
    with pytest.raises(ValueError, match=r"tokenizer_config\.json: special tokens \['<nope>'\] are not in tokenizer\.json"):
        write_release_tokenizer_config(tmp_path)
    assert json.loads(path.read_text())["additional_special_tokens"] == ["<ts>", "<nope>"]  # left as the user had it
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"tokenizer\.json: not valid JSON"):
        write_release_tokenizer_config(tmp_path)


@pytest.mark.parametrize("arch,patch,pos_emb", [("chatts", 16, False), ("qwen3ts", 8, True)])
def test_build_model_tiny_writes_loadable_checkpoint(tmp_path, arch, patch, pos_emb):
    out = build_model(tmp_path / "m", arch=arch, preset="tiny")
    assert EXPECTED_FILES <= {p.name for p in out.iterdir()}
    model, tokenizer, config = check_loadable(out, arch)
    assert config["ts"]["patch_size"] == patch and config["ts"]["num_layers"] == 5 and config["ts"]["num_features"] == 2
    assert bool(config["ts"].get("use_position_embedding", False)) is pos_emb
    assert config["ts"]["hidden_size"] == config["hidden_size"] == PRESETS["tiny"]["hidden_size"]
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True).endswith(
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    )
    gen = GenerationConfig.from_pretrained(out)
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in gen.eos_token_id
    assert 0.5e6 < sum(p.numel() for p in model.parameters()) < 2e6
    names = {k for k in load_file(str(out / "model.safetensors")) if k.startswith("ts_encoder.")}
    assert "ts_encoder.mlp.8.bias" in names and ("ts_encoder.position_embedding.weight" in names) is pos_emb


def test_build_is_deterministic(tmp_path):
    build_model(tmp_path / "a", arch="qwen3ts", preset="tiny", seed=3)
    build_model(tmp_path / "b", arch="qwen3ts", preset="tiny", seed=3)
    build_model(tmp_path / "c", arch="qwen3ts", preset="tiny", seed=4)
    a, b, c = ((tmp_path / d / "model.safetensors").read_bytes() for d in "abc")
    assert a == b and a != c
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (tmp_path / "b" / "tokenizer.json").read_bytes()


@pytest.mark.parametrize("preset,low,high", [("tiny", 0.5e6, 2e6), ("small", 7e6, 13e6), ("medium", 22e6, 40e6), ("large", 80e6, 130e6)])
def test_preset_sizes(preset, low, high):
    tokenizer_vocab = 2304
    for arch in ("chatts", "qwen3ts"):
        config_cls, model_cls = get_architecture(arch)
        sizes = dict(PRESETS[preset])
        extra = {"head_dim": sizes["hidden_size"] // sizes["num_attention_heads"]} if arch == "qwen3ts" else {}
        with torch.device("meta"):
            model = model_cls(config_cls(vocab_size=tokenizer_vocab, ts=ts_block(arch, sizes["hidden_size"]), **sizes, **extra))
        assert low < sum(p.numel() for p in model.parameters()) < high


def test_cli_writes_loadable_dir_and_reports(tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["init-model", "-o", str(out), "--arch", "qwen3ts", "--preset", "tiny", "--patch-size", "4", "--no-position-embedding"])
    assert code == 0
    printed = capsys.readouterr().out
    assert f"wrote Qwen3TSForCausalLM (model_type qwen3ts) to {out}" in printed
    assert "parameters:" in printed and "model.safetensors" in printed and "config.json" in printed
    _, _, config = check_loadable(out, "qwen3ts")
    assert config["ts"]["patch_size"] == 4 and not config["ts"]["use_position_embedding"]


def test_cli_help_and_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["init-model", "--help"])
    assert exc.value.code == 0
    assert "--base" in capsys.readouterr().out
    assert main(["init-model", "-o", str(tmp_path / "x"), "--base", str(tmp_path / "nowhere")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert main(["init-model", "-o", str(tmp_path / "x"), "--patch-size", "0"]) == 2
    assert "--patch-size must be positive" in capsys.readouterr().err


@pytest.mark.parametrize("family,arch", [("qwen3", "qwen3ts"), ("qwen2", "chatts")])
def test_cli_base_adds_tokens_and_encoder_keeps_weights(tmp_path, capsys, family, arch):
    base = make_qwen_base(tmp_path / "base", family, tie=False)
    base_model, base_tok = AutoModelForCausalLM.from_pretrained(base), AutoTokenizer.from_pretrained(base)
    assert "<ts>" not in base_tok.get_vocab()
    out = tmp_path / "ts"
    assert main(["init-model", "-o", str(out), "--base", str(tmp_path / "base")]) == 0
    assert f"model_type {arch}" in capsys.readouterr().out
    model, tokenizer, config = check_loadable(out, arch)
    assert ts_token_ids(tokenizer) == (len(base_tok), len(base_tok) + 1)
    assert model.get_input_embeddings().weight.shape[0] >= len(tokenizer)
    assert config["vocab_size"] == model.get_input_embeddings().weight.shape[0]
    base_state = base_model.state_dict()
    state = model.state_dict()
    n = len(base_tok)
    torch.testing.assert_close(state["model.embed_tokens.weight"][:n], base_state["model.embed_tokens.weight"])
    torch.testing.assert_close(state["lm_head.weight"][:n], base_state["lm_head.weight"])
    for name, value in base_state.items():
        if "embed_tokens" not in name and "lm_head" not in name:
            torch.testing.assert_close(state[name], value, msg=name)
    # fresh encoder with Xavier-normal init: std ~ sqrt(2 / (fan_in + fan_out)), zero biases
    first = model.ts_encoder.mlp[0]
    expected_std = (2.0 / (first.in_features + first.out_features)) ** 0.5
    assert 0.7 * expected_std < first.weight.std().item() < 1.3 * expected_std
    assert torch.count_nonzero(first.bias) == 0
    # the original tokens still tokenize the same way
    text = "请分析下图中 PIC-3105.PV 的运行数据"
    assert tokenizer.encode(text, add_special_tokens=False) == base_tok.encode(text, add_special_tokens=False)


def test_base_with_conflicting_arch_is_refused(tmp_path, capsys):
    make_qwen_base(tmp_path / "base", "qwen3")
    code = main(["init-model", "-o", str(tmp_path / "o"), "--base", str(tmp_path / "base"), "--arch", "chatts"])
    assert code == 2
    assert "is a qwen3 checkpoint, which becomes --arch qwen3ts, not chatts" in capsys.readouterr().err
