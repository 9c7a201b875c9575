"""Encoding profiles: registry, prefix formats per release, detection from what a checkpoint ships, token ids."""

import json
import logging

import numpy as np
import pytest

from tsplugin.processing import (
    PROFILES,
    TimeSeriesProcessor,
    TSProfile,
    check_ts_token_ids,
    format_prefix,
    get_profile,
    register_profile,
    resolve_profile,
    tokenizer_file_token_ids,
)

# config.json keys of each release as chatts-facts.md describes them (sizes shrunk).
TS_0801 = {"embedding_dim": 16, "hidden_size": 64, "max_length": 32768, "max_sequence_length": 32768, "num_features": 2,
           "num_layers": 5, "patch_size": 8, "use_position_embedding": True, "use_position_idx": False}
CONFIG_14B_0801 = {
    "architectures": ["Qwen2TSForCausalLM"], "model_type": "chatts", "ts": TS_0801,
    "auto_map": {"AutoConfig": "configuration_qwen2.Qwen2TSConfig", "AutoModelForCausalLM": "modeling_qwen2.Qwen2TSForCausalLM",
                 "AutoProcessor": "processing_qwen2_ts.Qwen2TSProcessor"},
}
CONFIG_8B = {
    "architectures": ["Qwen3TSForCausalLM"], "model_type": "qwen3ts", "ts": {**TS_0801, "use_layer_norm": False},
    "auto_map": {"AutoConfig": "configuration_qwen3_ts.Qwen3TSConfig", "AutoModelForCausalLM": "modeling_qwen3_ts.Qwen3TSForCausalLM",
                 "AutoProcessor": "processing_qwen3_ts.Qwen3TSProcessor"},
}
CONFIG_14B_V1 = {
    "architectures": ["Qwen2TSForCausalLM"], "model_type": "qwen2",
    "ts": {"hidden_size": 64, "num_features": 2, "num_layers": 5, "patch_size": 16},
    "auto_map": {"AutoConfig": "configuration_qwen2.Qwen2TSConfig", "AutoModelForCausalLM": "modeling_qwen2.Qwen2TSForCausalLM"},
}
# What `tsplugin init-model --arch chatts` wrote before profiles existed.
CONFIG_OLD_INIT = {"architectures": ["Qwen2TSForCausalLM"], "model_type": "chatts",
                   "ts": {"hidden_size": 64, "num_features": 2, "num_layers": 5, "patch_size": 16}}


def _facts_example_series() -> np.ndarray:
    """256 points with the statistics of chatts-facts.md's example prefix."""
    x = np.empty(256)
    x[0], x[-1], x[1], x[2] = 0.0, -8.2047, 4.9979, -15.0
    x[3:-1] = (-6.0772 * 256 - (0.0 - 8.2047 + 4.9979 - 15.0)) / 252
    return x


def test_current_prefix_matches_the_documented_example_to_the_character():
    expected = "[offset=6.0772|scaling=3.6917|length=256|max=4.9979|min=-15.0000|left=0.0000|right=-8.2047]"
    assert format_prefix(_facts_example_series(), "chatts-14b-0801") == expected
    assert format_prefix(_facts_example_series(), "chatts-8b") == expected


def test_first_release_prefix():
    assert format_prefix([0.0, 10.0, 20.0, 30.0], "chatts-14b-v1") == "[Value Offset: -15.0000|Value Scaling: 5.0000]"
    assert format_prefix([0.0, 10.0, 20.0, 30.0], "tsfactory-v0") == "[Value Offset: -15.0000|Value Scaling: 5.0000]"


def test_registry_lists_names_and_refuses_duplicates():
    assert {"chatts-14b-v1", "chatts-14b-0801", "chatts-8b", "tsfactory-v0"} <= set(PROFILES)
    with pytest.raises(ValueError, match=r"unknown time-series profile 'chatts-99b'; valid: chatts-14b-0801, "
                                         r"chatts-14b-v1, chatts-8b, tsfactory-v0 \(set `timeseries_profile`"):
        get_profile("chatts-99b")
    with pytest.raises(ValueError, match="already registered"):
        register_profile(PROFILES["chatts-8b"])
    with pytest.raises(ValueError, match="last_patch_padding 'edge'"):
        TSProfile("x", "x", "stats", "edge", None, False, None)


@pytest.mark.parametrize(
    "config,files,name,reason_part",
    [
        (CONFIG_14B_0801, {"processing_qwen2_ts.py": ""}, "chatts-14b-0801", "processor file processing_qwen2_ts.py"),
        (CONFIG_8B, {"processing_qwen3_ts.py": "", "processor_config.json": json.dumps(
            {"auto_map": {"AutoProcessor": "processing_qwen3_ts.Qwen3TSProcessor"}, "processor_class": "Qwen3TSProcessor"})},
         "chatts-8b", "processor class Qwen3TSProcessor"),
        (CONFIG_14B_V1, {}, "chatts-14b-v1", "model_type qwen2"),
        (CONFIG_OLD_INIT, {}, "tsfactory-v0", "no auto_map: so written by tsplugin before ts_profile existed"),
        ({**CONFIG_OLD_INIT, "architectures": ["Qwen3TSForCausalLM"], "model_type": "qwen3ts", "ts": TS_0801}, {},
         "tsfactory-v0", "no auto_map: so written by tsplugin before ts_profile existed"),
    ],
)
def test_resolve_from_what_the_checkpoint_ships(tmp_path, caplog, config, files, name, reason_part):
    for fname, text in files.items():
        (tmp_path / fname).write_text(text)
    with caplog.at_level(logging.WARNING, logger="tsplugin"):
        profile, reason = resolve_profile(config, tmp_path)
    assert profile.name == name and reason_part in reason
    assert "GUESSED" not in reason and not caplog.records


def test_release_is_not_decided_by_model_type_alone():
    # the first release's model_type, but the current release's ts block and processor: 0801
    profile, reason = resolve_profile({**CONFIG_14B_0801, "model_type": "qwen2"})
    assert profile.name == "chatts-14b-0801" and "model_type qwen2 + ts.use_position_embedding true" in reason
    # model_type chatts, but nothing a release ships: tsplugin's own pre-profile checkpoint
    assert resolve_profile({"model_type": "chatts", "ts": TS_0801})[0].name == "tsfactory-v0"


def test_config_key_and_recipe_override(tmp_path):
    assert resolve_profile({**CONFIG_14B_V1, "ts_profile": "chatts-14b-0801"})[0].name == "chatts-14b-0801"
    profile, reason = resolve_profile({**CONFIG_14B_V1, "ts_profile": "chatts-14b-0801"}, override="chatts-8b")
    assert profile.name == "chatts-8b" and reason == "recipe timeseries_profile: chatts-8b"
    with pytest.raises(ValueError, match=r"config.json `ts_profile`: unknown time-series profile 'v2'; valid"):
        resolve_profile({**CONFIG_14B_V1, "ts_profile": "v2"}, tmp_path)
    with pytest.raises(ValueError, match=r"recipe `timeseries_profile`: unknown time-series profile 'v2'"):
        resolve_profile(CONFIG_14B_V1, override="v2")


def test_ambiguous_evidence_warns_naming_the_keys(tmp_path, caplog):
    (tmp_path / "processing_qwen2_ts.py").write_text("")
    config = {**CONFIG_14B_V1, "model_type": "chatts"}  # no position embedding but a later release's processor
    with caplog.at_level(logging.WARNING, logger="tsplugin"):
        profile, reason = resolve_profile(config, tmp_path)
    assert profile.name == "chatts-14b-v1" and reason.startswith("GUESSED from")
    (message,) = [r.getMessage() for r in caplog.records]
    assert "cannot tell which ChatTS release" in message and "`ts_profile: <name>` in config.json" in message
    assert "`timeseries_profile: <name>` in the recipe" in message and str(tmp_path) in message


def test_no_ts_block_is_an_error(tmp_path):
    with pytest.raises(ValueError, match=r"config.json: no `ts` block"):
        resolve_profile({"model_type": "qwen2"}, tmp_path)


def test_processor_uses_the_profile(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(CONFIG_14B_V1))
    proc = TimeSeriesProcessor.from_pretrained(tmp_path)
    assert proc.profile.name == "chatts-14b-v1" and proc.patch_size == 16
    text, feats = proc.expand("a <ts><ts/> b", [[1.0, 2.0, 3.0]])
    assert text == "a [Value Offset: -2.0000|Value Scaling: 1.0000]<ts> b"
    proc = TimeSeriesProcessor.from_pretrained(tmp_path, profile="chatts-14b-0801")
    text, _ = proc.expand("a <ts><ts/> b", [[1.0, 2.0, 3.0]])
    assert text == "a [offset=-2.0000|scaling=1.0000|length=3|max=3.0000|min=1.0000|left=1.0000|right=3.0000]<ts> b"


def test_token_ids_from_files_and_mismatch_error(tmp_path):
    (tmp_path / "tokenizer.json").write_text(json.dumps(
        {"added_tokens": [{"id": 7, "content": "<ts>"}, {"id": 8, "content": "<ts/>"}], "model": {"vocab": {"a": 0}}}
    ))
    ids, source = tokenizer_file_token_ids(tmp_path, ["<ts>", "<ts/>"])
    assert ids == {"<ts>": 7, "<ts/>": 8} and source == "tokenizer.json"
    assert check_ts_token_ids({"ts_token_start_index": 7, "ts_token_end_index": 8}, ids) == (7, 8)
    swapped = {"ts_token_start_index": 8, "ts_token_end_index": 7}
    with pytest.raises(ValueError) as err:
        check_ts_token_ids(swapped, ids, "ckpt/config.json", "ckpt/tokenizer.json")
    assert str(err.value) == (
        "ckpt/config.json: the <ts>/<ts/> token ids disagree with the tokenizer: ts_token_start_index = 8 but "
        "ckpt/tokenizer.json gives <ts> id 7; ts_token_end_index = 7 but ckpt/tokenizer.json gives <ts/> id 8. "
        "The model would look for series at the wrong positions. Fix: set \"ts_token_start_index\": 7, "
        "\"ts_token_end_index\": 8 in ckpt/config.json (the ids the tokenizer actually produces), or restore the "
        "tokenizer files that came with these weights."
    )
    with pytest.raises(ValueError, match=r"tok.json has no <ts/> token"):
        check_ts_token_ids(swapped, {"<ts>": 7}, tokenizer_file="tok.json")


# ---------------------------------------------------------------- the override in LLaMA-Factory and chat


def test_recipe_key_overrides_the_profile_for_prefix_padding_and_saved_config(tiny_qwen3ts, tmp_path):
    import tsplugin._bootstrap  # noqa: F401
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_model, load_tokenizer

    from conftest import lf_args

    model_args, _, _, finetuning_args, _ = get_train_args(lf_args(tiny_qwen3ts, tmp_path / "o", timeseries_profile="chatts-14b-v1"))
    module = load_tokenizer(model_args)
    assert module["processor"].profile.name == "chatts-14b-v1"
    assert module["processor"].prefix([1.0, 2.0, 3.0]) == "[Value Offset: -2.0000|Value Scaling: 1.0000]"
    model = load_model(module["tokenizer"], model_args, finetuning_args, is_trainable=False)
    assert model.ts_encoder.last_patch_padding == "zeros" and model.config.ts_profile == "chatts-14b-v1"

    model_args, *_ = get_train_args(lf_args(tiny_qwen3ts, tmp_path / "o"))
    assert load_tokenizer(model_args)["processor"].profile.name == "chatts-8b"  # config.json ts_profile
    with pytest.raises(ValueError, match=r"recipe `timeseries_profile`: unknown time-series profile 'v3'; valid"):
        get_train_args(lf_args(tiny_qwen3ts, tmp_path / "o", timeseries_profile="v3"))


def test_load_tokenizer_refuses_disagreeing_token_ids(tiny_qwen3ts, tmp_path):
    import shutil

    import tsplugin._bootstrap  # noqa: F401
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    from conftest import lf_args

    ckpt = shutil.copytree(tiny_qwen3ts, tmp_path / "ckpt")
    config = json.loads((ckpt / "config.json").read_text())
    start, end = config["ts_token_start_index"], config["ts_token_end_index"]
    (ckpt / "config.json").write_text(json.dumps({**config, "ts_token_start_index": end, "ts_token_end_index": start}))
    model_args, *_ = get_train_args(lf_args(ckpt, tmp_path / "o"))
    with pytest.raises(ValueError, match=rf"{ckpt}/config.json: the <ts>/<ts/> token ids disagree with the tokenizer: "
                                         rf"ts_token_start_index = {end} but the tokenizer in {ckpt} gives <ts> id {start}.*"
                                         rf"Fix: set \"ts_token_start_index\": {start}, \"ts_token_end_index\": {end} in {ckpt}/config.json"):
        load_tokenizer(model_args)


def test_chat_profile_option(tiny_qwen3ts):
    from tsplugin.chat import TimeSeriesChat

    chat = TimeSeriesChat.from_pretrained(tiny_qwen3ts, profile="chatts-14b-v1")
    assert chat.model.ts_encoder.last_patch_padding == "zeros"
    text = chat.tokenizer.decode(chat.encode("Look at <ts><ts/>", [[1.0, 2.0, 3.0]])["input_ids"][0])
    assert "[Value Offset: -2.0000|Value Scaling: 1.0000]<ts><|im_end|>" in text
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>")  # the chatts-14b-v1 template
    chat = TimeSeriesChat.from_pretrained(tiny_qwen3ts)
    text = chat.tokenizer.decode(chat.encode("Look at <ts><ts/>", [[1.0, 2.0, 3.0]])["input_ids"][0])
    assert "[offset=-2.0000|scaling=1.0000|length=3|max=3.0000|min=1.0000|left=1.0000|right=3.0000]<ts><|im_end|>" in text


def test_the_contract_module_stays_torch_free():
    import subprocess
    import sys

    code = "import sys, tsplugin.processing, tsplugin.processing.profiles; print(sorted(m for m in ('torch', 'transformers', 'llamafactory') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stderr[-2000:]


def test_init_model_profile_choice():
    from tsplugin.build.init_model import init_profile

    assert init_profile("chatts", None) == "chatts-14b-0801" and init_profile("qwen3ts", None) == "chatts-8b"
    assert init_profile("chatts", "chatts-14b-v1") == "chatts-14b-v1"
    with pytest.raises(ValueError, match=r"^--profile: unknown time-series profile 'latest'; valid: chatts-14b-0801"):
        init_profile("qwen3ts", "latest")
