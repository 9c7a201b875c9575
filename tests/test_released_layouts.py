"""Every released ChatTS layout trains, exports and answers with stock LLaMA-Factory, and loads in any
Python process, from a local directory or a Hub ID, with trust_remote_code true or false.

The checkpoints are tiny twins of the releases (tests/_layouts.py): same files, config keys, parameter
names and weight formats. Their shipped .py files write a marker when imported; conftest's autouse
fixture fails any test after which a marker exists.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from conftest import assert_release_tokenizer_form, lf_args, run_lf, trainer_losses, write_dataset

# release -> (template it is prompted with, profile detected, class loaded, model_type loaded)
EXPECTED = {
    "chatts-14b": ("chatts", "chatts-14b-0801", "Qwen2TSForCausalLM", "chatts"),
    "chatts-8b": ("chatts8b", "chatts-8b", "Qwen3TSForCausalLM", "qwen3ts"),
    "chatts-14b-first": ("chatts", "chatts-14b-v1", "Qwen2TSForCausalLM", "chatts"),
}
RELEASE_NAMES = list(EXPECTED)


def _records() -> list[dict]:
    """Four short records (series 40-90 points: several patches with patch 8 and 16, partial last patches)."""
    out = []
    for k in range(4):
        n = 40 + 17 * k
        series = [float((i * (k + 3)) % 11) - 5.0 + 0.1 * i for i in range(n)]
        out.append({"input": f"Series {k}: <ts><ts/>. Is it rising?", "output": "yes" if k % 2 else "no", "timeseries": [series]})
    return out


@pytest.fixture(scope="module")
def twin_data(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("twin_data"), "twin", _records())


def _train(model: str, out, data, release: str, **overrides) -> list[float]:
    template = EXPECTED[release][0]
    run_lf(**lf_args(model, out, dataset="twin", dataset_dir=str(data), template=template, cutoff_len=512,
                     max_steps=2, learning_rate=5e-3, **overrides))
    losses = trainer_losses(out)
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses))), losses
    assert (out / "adapter_model.safetensors").is_file()
    return losses


def _adapter_targets(out) -> set[str]:
    return set(json.loads((out / "adapter_config.json").read_text())["target_modules"])


# ---------------------------------------------------------------- the twins are laid out as released


def test_twins_are_laid_out_as_the_releases(layout_twins):
    from _layouts import RELEASES

    for name, path in layout_twins.items():
        release = RELEASES[name]
        files = {p.name for p in path.iterdir()}
        config = json.loads((path / "config.json").read_text())
        assert set(release.shipped) <= files and config["auto_map"] == release.auto_map
        assert config["model_type"] == release.model_type and config["architectures"] == [release.architecture]
        weights = sorted(f for f in files if f.endswith((".bin", ".safetensors")))
        assert len(weights) == release.shards and all(f"-of-{release.shards:05d}." in f for f in weights)
        index = json.loads((path / ("pytorch_model.bin.index.json" if release.weights == "bin" else "model.safetensors.index.json")).read_text())
        assert set(index["weight_map"].values()) == set(weights)
        tok_config = json.loads((path / "tokenizer_config.json").read_text())
        if release.processor_in == "tokenizer_config":
            assert tok_config["processor_class"] == "Qwen2TSProcessor" and "AutoProcessor" in tok_config["auto_map"]
        if release.processor_in == "processor_config":
            assert json.loads((path / "processor_config.json").read_text())["processor_class"] == "Qwen3TSProcessor"
            assert "chat_template.jinja" in files
    first = json.loads((layout_twins["chatts-14b-first"] / "config.json").read_text())
    assert first["ts_token_start_index"] > first["ts_token_end_index"]  # ids read, never assumed in order


# ---------------------------------------------------------------- any Python process, no project import

FRESH_PROCESS = """
import json, os, sys
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoProcessor, AutoTokenizer
lazy = "tsplugin.models" not in sys.modules  # importing transformers alone loads no model code of ours
report = []
for name, (path, revision) in json.loads(sys.argv[1]).items():
    for trust in (False, True):
        kw = dict(trust_remote_code=trust, revision=revision)
        config = AutoConfig.from_pretrained(path, **kw)
        model, info = AutoModelForCausalLM.from_pretrained(path, output_loading_info=True, dtype=torch.float32, **kw)
        processor = AutoProcessor.from_pretrained(path, **kw)
        tokenizer = AutoTokenizer.from_pretrained(path, **kw)
        inputs = processor(text=["look <ts><ts/> and <ts><ts/>"], timeseries=[[1.0, 5.0] * 20, list(range(9))], return_tensors="pt")
        with torch.no_grad():
            logits = model(**inputs).logits
        report.append(dict(name=name, trust=trust, config=type(config).__name__, model=type(model).__name__,
            model_type=config.model_type, profile=config.ts_profile, processor=type(processor).__name__,
            tokenizer=type(tokenizer).__name__, missing=sorted(info["missing_keys"]), unexpected=sorted(info["unexpected_keys"]),
            finite=bool(torch.isfinite(logits).all()), ts_positions=int((inputs["input_ids"] == config.ts_token_start_index).sum()),
            auto_map=hasattr(config, "auto_map")))
print(json.dumps(report))
print(json.dumps([lazy] + sorted(m for m in sys.modules if m.startswith("tsplugin"))))
"""


def _fresh_python(code: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                          cwd="/", timeout=600, env={**os.environ, **env})


def test_pip_install_alone_loads_every_layout_in_a_fresh_process(layout_twins, twin_hub):
    """`python -c` with no tsplugin import: Auto* classes give tsplugin's classes, local dirs and Hub IDs alike."""
    targets = {name: (str(path), None) for name, path in layout_twins.items()}
    targets.update({f"hub:{name}": twin_hub["ids"][name] for name in ("chatts-14b", "chatts-14b-first")})
    result = _fresh_python(FRESH_PROCESS, json.dumps(targets), HF_HUB_CACHE=str(twin_hub["cache"]), HF_HUB_OFFLINE="1")
    assert result.returncode == 0, result.stderr[-3000:]
    report_line, modules_line = result.stdout.strip().splitlines()[-2:]
    report = json.loads(report_line)
    assert len(report) == 2 * len(targets)
    for row in report:
        _, profile, model_cls, model_type = EXPECTED[row["name"].removeprefix("hub:")]
        assert (row["model"], row["model_type"], row["profile"], row["processor"]) == (model_cls, model_type, profile, "ChatTSProcessor"), row
        assert not row["missing"] and not row["unexpected"] and row["finite"] and not row["auto_map"], row
        patch = 16 if profile == "chatts-14b-v1" else 8
        assert row["ts_positions"] == -(-40 // patch) + -(-9 // patch), row
    lazy, *modules = json.loads(modules_line)
    assert lazy and "tsplugin.models" in modules  # registered by the start-up hook on the first ChatTS config


def test_transformers_hooks_fail_loudly_on_shape_change_but_never_break_the_import(monkeypatch):
    from types import ModuleType

    import transformers.models.auto.processing_auto  # noqa: F401

    from tsplugin.llamafactory import hooks

    assert {"transformers.configuration_utils", "transformers.models.auto.processing_auto"} <= hooks.applied()
    fake = ModuleType("transformers.models.auto.processing_auto")
    with pytest.raises(ImportError, match=r"processing_auto has no AutoProcessor; transformers changed shape"):
        hooks.hook_processing_auto(fake)
    monkeypatch.setattr(hooks, "_applied", set())
    with pytest.warns(UserWarning, match="released ChatTS checkpoints will not load with tsfactory's classes"):
        hooks.on_import("transformers.models.auto.processing_auto", fake)  # what the start-up hook calls


def test_not_a_time_series_checkpoint_is_left_alone(tmp_path):
    from transformers import AutoConfig, PretrainedConfig

    from tsplugin.checkpoints.layouts import read_config

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"],
                                                      "auto_map": {"AutoConfig": "x.Y"}, "hidden_size": 64}))
    raw, _ = PretrainedConfig.get_config_dict(str(tmp_path))
    assert raw["auto_map"] == {"AutoConfig": "x.Y"} and read_config(tmp_path) is None
    assert type(AutoConfig.from_pretrained(tmp_path, trust_remote_code=False)).__name__ == "Qwen2Config"


@pytest.mark.parametrize("release", RELEASE_NAMES)
def test_processor_saves_the_tokenizer_in_the_released_form(layout_twins, tmp_path, release):
    """`AutoProcessor.save_pretrained` (a user's own script, or LLaMA-Factory saving the processor) writes the
    tokenizer as the releases ship it, so the saved folder loads under transformers 4.57 (vLLM's) too."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(layout_twins[release], trust_remote_code=True)
    files = processor.save_pretrained(tmp_path)
    assert any(str(f).endswith("tokenizer_config.json") for f in files), files
    assert_release_tokenizer_form(tmp_path, json.loads((layout_twins[release] / "config.json").read_text()))
    (tmp_path / "config.json").write_bytes((layout_twins[release] / "config.json").read_bytes())  # saved beside the model
    again = AutoProcessor.from_pretrained(tmp_path)
    text = "<ts><ts/> rises"
    assert again.tokenizer(text)["input_ids"] == processor.tokenizer(text)["input_ids"]


# ---------------------------------------------------------------- stock LLaMA-Factory: train, export, reload, chat


@pytest.mark.parametrize("release", RELEASE_NAMES)
def test_lora_trains_every_release_from_a_local_dir(layout_twins, twin_data, tmp_path, release):
    _train(str(layout_twins[release]), tmp_path / "lora", twin_data, release, trust_remote_code=False)


def test_lora_from_a_hub_id_with_trust_remote_code_true(twin_hub, twin_data, tmp_path):
    """The recipes' `bytedance-research/ChatTS-14B` from an offline HF cache, trust_remote_code: true."""
    repo, _ = twin_hub["ids"]["chatts-14b"]
    _train(repo, tmp_path / "lora", twin_data, "chatts-14b", trust_remote_code=True, cache_dir=str(twin_hub["cache"]))


def test_qlora_trains_the_first_release(layout_twins, twin_data, tmp_path):
    pytest.importorskip("bitsandbytes")
    _train(str(layout_twins["chatts-14b-first"]), tmp_path / "qlora", twin_data, "chatts-14b-first",
           quantization_bit=4, optim="adamw_torch")


def test_export_reload_and_chat_answer(layout_twins, twin_data, tmp_path, capsys):
    """8B twin: LoRA (+ encoder), `llamafactory-cli export`, reload the export, `tsplugin chat` answers."""
    from llamafactory.train.tuner import export_model
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from tsplugin.chat import TimeSeriesChat
    from tsplugin.cli import main

    base, adapter, merged = layout_twins["chatts-8b"], tmp_path / "lora", tmp_path / "merged"
    _train(str(base), adapter, twin_data, "chatts-8b", additional_target="ts_encoder")
    export_model(dict(model_name_or_path=str(base), adapter_name_or_path=str(adapter), template="chatts8b",
                      finetuning_type="lora", export_dir=str(merged), export_size=1, export_device="cpu",
                      export_legacy_format=False, trust_remote_code=True))
    config = json.loads((merged / "config.json").read_text())
    assert config["model_type"] == "qwen3ts" and config["ts_profile"] == "chatts-8b" and "auto_map" not in config
    assert not [f.name for f in merged.iterdir() if f.suffix == ".py"]
    tok_config = json.loads((merged / "tokenizer_config.json").read_text())
    assert "auto_map" not in tok_config and tok_config.get("processor_class") not in ("Qwen2TSProcessor", "Qwen3TSProcessor")

    # The export keeps the release's float16. Reference: base + adapter merged in float32 by PEFT, then
    # rounded to float16; LLaMA-Factory's merge may round differently by an ulp or two of each weight.
    chat = TimeSeriesChat.from_pretrained(merged)
    exported = chat.model.state_dict()
    base_model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    base_encoder = base_model.ts_encoder.mlp[0].weight.detach().clone()
    expected = PeftModel.from_pretrained(base_model, adapter).merge_and_unload().state_dict()
    assert not torch.equal(expected["ts_encoder.mlp.0.weight"], base_encoder)  # the encoder trained (additional_target)
    assert set(exported) == set(expected)
    for name, weight in expected.items():
        assert exported[name].dtype == torch.float16, name
        ulp = 2.0 ** (torch.floor(torch.log2(weight.abs().max().clamp(min=2**-14))) - 10)  # float16 spacing at the largest value
        torch.testing.assert_close(exported[name].float(), weight.half().float(), rtol=0, atol=float(2 * ulp), msg=name)
    inputs = chat.encode("Is it rising? <ts><ts/>", [_records()[1]["timeseries"][0]])
    with torch.no_grad():
        assert torch.isfinite(chat.model(**inputs).logits).all()

    csv = tmp_path / "series.csv"
    csv.write_text("timestamp,value\n" + "".join(f"{i},{v}\n" for i, v in enumerate(_records()[2]["timeseries"][0])))
    assert main(["chat", "--model", str(merged), "--csv", str(csv), "--max-new-tokens", "4", "Is it rising?"]) == 0
    assert capsys.readouterr().out.strip()


def test_chat_answers_from_a_released_layout_directly(layout_twins, capsys, tmp_path):
    """`tsplugin chat` on the first-release twin itself (model_type qwen2, no processor files)."""
    from tsplugin.cli import main

    csv = tmp_path / "series.csv"
    csv.write_text("timestamp,value\n" + "".join(f"{i},{(i * 7) % 5}\n" for i in range(50)))
    assert main(["chat", "--model", str(layout_twins["chatts-14b-first"]), "--csv", str(csv), "--max-new-tokens", "3", "Trend?"]) == 0
    assert capsys.readouterr().out.strip()


@pytest.mark.slow
def test_chat_cli_answers_from_a_hub_id(twin_hub):
    """`tsplugin chat --model bytedance-research/ChatTS-8B` in a fresh process, offline HF cache."""
    csv_rows = "timestamp,value\n" + "".join(f"{i},{(i * 3) % 7}\n" for i in range(60))
    code = f"""
import sys, tempfile, os
path = os.path.join(tempfile.mkdtemp(), "s.csv")
open(path, "w").write({csv_rows!r})
from tsplugin.cli import main
sys.exit(main(["chat", "--model", "{twin_hub['ids']['chatts-8b'][0]}", "--csv", path, "--max-new-tokens", "3", "Trend?"]))
"""
    result = _fresh_python(code, HF_HUB_CACHE=str(twin_hub["cache"]), HF_HUB_OFFLINE="1")
    assert result.returncode == 0 and result.stdout.strip(), result.stderr[-3000:]


# ---------------------------------------------------------------- the full matrix (slow)

MATRIX = [
    (release, method, trust, source)
    for release in RELEASE_NAMES
    for method in ("lora", "qlora")
    for trust in (False, True)
    for source in ("local", "hub")
]


@pytest.mark.slow
@pytest.mark.parametrize("release,method,trust,source", MATRIX, ids=["-".join(map(str, m)) for m in MATRIX])
def test_full_matrix_train_export_reload(layout_twins, twin_hub, twin_data, tmp_path, release, method, trust, source):
    from llamafactory.train.tuner import export_model

    from tsplugin.chat import TimeSeriesChat

    if method == "qlora":
        pytest.importorskip("bitsandbytes")
    if source == "local":
        model, hub = str(layout_twins[release]), {}
    else:
        model, revision = twin_hub["ids"][release]
        hub = {"cache_dir": str(twin_hub["cache"]), **({"model_revision": revision} if revision else {})}
    extra = dict(quantization_bit=4, optim="adamw_torch") if method == "qlora" else {}
    adapter, merged = tmp_path / "adapter", tmp_path / "merged"
    _train(model, adapter, twin_data, release, trust_remote_code=trust, **hub, **extra)
    export_model(dict(model_name_or_path=model, adapter_name_or_path=str(adapter), template=EXPECTED[release][0],
                      finetuning_type="lora", export_dir=str(merged), export_size=1, export_device="cpu",
                      export_legacy_format=False, trust_remote_code=trust, **hub))
    config = json.loads((merged / "config.json").read_text())
    assert (config["model_type"], config["ts_profile"]) == (EXPECTED[release][3], EXPECTED[release][1])
    chat = TimeSeriesChat.from_pretrained(merged)
    assert type(chat.model).__name__ == EXPECTED[release][2]
    assert isinstance(chat.ask("Rising? <ts><ts/>", [list(range(30))], max_new_tokens=3), str)
