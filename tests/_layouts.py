"""Tiny "layout twins" of the released ChatTS checkpoints (imported by conftest.py only).

A twin has what `shared/docs/chatts-facts.md` lists for one release: the same files, the same
config.json keys (`auto_map` to the shipped .py files, `processor_class` where the release keeps it),
the same parameter names and weight format (fp16 `.bin` shards + index for ChatTS-14B), and a tiny
decoder. The shipped `.py` files are stand-ins that write a marker file when imported: tsfactory
must never run a checkpoint's own code, so a marker anywhere is a test failure.

Parameter names are written here from the facts (Qwen2/Qwen3 names + `ts_encoder.*`), not from
tsplugin's classes, so loading a twin proves that the classes fit the released files.

| release | twin files |
|---|---|
| `chatts-14b` (current, "0801") | config.json (model_type chatts, AutoConfig/AutoModel/AutoModelForCausalLM/AutoProcessor), configuration_qwen2.py, modeling_qwen2.py, processing_qwen2_ts.py, tokenizer files with `processor_class` + AutoProcessor auto_map, generation_config.json, `pytorch_model-0000N-of-00003.bin` + index |
| `chatts-8b` | config.json (model_type qwen3ts, the same four auto_map keys), configuration_qwen3_ts.py, modeling_qwen3_ts.py, processing_qwen3_ts.py, processor_config.json, chat_template.jinja, tokenizer files, `model-0000N-of-00002.safetensors` + index (the release's weight format was not seen) |
| `chatts-14b-first` (Dec 2024) | config.json (model_type **qwen2**, AutoConfig/AutoModelForCausalLM only, patch 16), configuration_qwen2.py, modeling_qwen2.py, tokenizer files (`<ts/>` added before `<ts>`), `.bin` shards + index |
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tsplugin.checkpoints.tokenizer_files import save_tokenizer

HIDDEN = 64  # decoder and encoder width of every twin
ORG = "bytedance-research"

QWEN3_CHAT_TEMPLATE = (  # stock Qwen3 shape: a system turn only when given, optional empty think block
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
    "{% if enable_thinking is defined and enable_thinking is false %}{{ '<think>\\n\\n</think>\\n\\n' }}{% endif %}"
    "{% endif %}"
)


@dataclass(frozen=True)
class Release:
    name: str
    hub_id: str
    model_type: str
    architecture: str
    backbone: str  # qwen2 | qwen3
    ts: dict[str, Any]
    auto_map: dict[str, str]
    processor_in: str | None  # tokenizer_config | processor_config | None
    weights: str  # bin | safetensors
    shards: int
    ts_tokens_in_order: tuple[str, str] = ("<ts>", "<ts/>")
    extra_config: dict[str, Any] = field(default_factory=dict)

    @property
    def shipped(self) -> list[str]:
        return sorted({ref.split(".")[0] + ".py" for ref in self.auto_map.values()})

    @property
    def processor_ref(self) -> str | None:
        return self.auto_map.get("AutoProcessor")


TS_CURRENT = {
    "embedding_dim": 16,
    "hidden_size": HIDDEN,
    "max_length": 32768,
    "max_sequence_length": 32768,
    "num_features": 2,
    "num_layers": 5,
    "patch_size": 8,
    "use_position_embedding": True,
    "use_position_idx": False,
}

RELEASES: dict[str, Release] = {
    "chatts-14b": Release(
        name="chatts-14b",
        hub_id=f"{ORG}/ChatTS-14B",
        model_type="chatts",
        architecture="Qwen2TSForCausalLM",
        backbone="qwen2",
        ts=dict(TS_CURRENT),
        auto_map={
            "AutoConfig": "configuration_qwen2.Qwen2TSConfig",
            "AutoModel": "modeling_qwen2.Qwen2TSForCausalLM",
            "AutoModelForCausalLM": "modeling_qwen2.Qwen2TSForCausalLM",
            "AutoProcessor": "processing_qwen2_ts.Qwen2TSProcessor",
        },
        processor_in="tokenizer_config",
        weights="bin",
        shards=3,
    ),
    "chatts-8b": Release(
        name="chatts-8b",
        hub_id=f"{ORG}/ChatTS-8B",
        model_type="qwen3ts",
        architecture="Qwen3TSForCausalLM",
        backbone="qwen3",
        ts={**TS_CURRENT, "use_layer_norm": False},
        auto_map={
            "AutoConfig": "configuration_qwen3_ts.Qwen3TSConfig",
            "AutoModel": "modeling_qwen3_ts.Qwen3TSForCausalLM",
            "AutoModelForCausalLM": "modeling_qwen3_ts.Qwen3TSForCausalLM",
            "AutoProcessor": "processing_qwen3_ts.Qwen3TSProcessor",
        },
        processor_in="processor_config",
        weights="safetensors",
        shards=2,
    ),
    "chatts-14b-first": Release(
        name="chatts-14b-first",
        hub_id=f"{ORG}/ChatTS-14B",  # an older revision of the same repository
        model_type="qwen2",
        architecture="Qwen2TSForCausalLM",
        backbone="qwen2",
        ts={"hidden_size": HIDDEN, "num_features": 2, "num_layers": 5, "patch_size": 16},
        auto_map={
            "AutoConfig": "configuration_qwen2.Qwen2TSConfig",
            "AutoModelForCausalLM": "modeling_qwen2.Qwen2TSForCausalLM",
        },
        processor_in=None,
        weights="bin",
        shards=2,
        ts_tokens_in_order=("<ts/>", "<ts>"),
    ),
}


@functools.lru_cache(maxsize=1)
def _base_tokenizer() -> Any:
    from tsplugin.build.tokenizer import build_tokenizer

    return build_tokenizer(ts_tokens=False)  # trained once per process (seconds), copied per twin


def _tokenizer(release: Release) -> Any:
    tokenizer = copy.deepcopy(_base_tokenizer())
    tokenizer.add_special_tokens({"additional_special_tokens": list(release.ts_tokens_in_order)})
    return tokenizer


def _config(release: Release, tokenizer: Any) -> dict[str, Any]:
    vocab = -(-len(tokenizer) // 64) * 64
    start, end = (tokenizer.convert_tokens_to_ids(t) for t in ("<ts>", "<ts/>"))
    decoder = dict(
        attention_dropout=0.0,
        bos_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        hidden_act="silu",
        hidden_size=HIDDEN,
        initializer_range=0.02,
        intermediate_size=128,
        num_attention_heads=4,
        num_hidden_layers=2,
        num_key_value_heads=2,
        rms_norm_eps=1e-06,
        rope_scaling=None,
        rope_theta=1000000.0,
        tie_word_embeddings=False,
        torch_dtype="float16",
        use_cache=True,
        use_sliding_window=False,
        vocab_size=vocab,
    )
    if release.backbone == "qwen2":
        decoder.update(max_position_embeddings=32768, max_window_layers=70, sliding_window=131072, transformers_version="4.44.2")
    else:
        decoder.update(attention_bias=False, head_dim=HIDDEN // 4, max_position_embeddings=40960, max_window_layers=36,
                       sliding_window=None, transformers_version="4.51.0")
    return {
        "architectures": [release.architecture],
        "auto_map": dict(release.auto_map),
        "model_type": release.model_type,
        **decoder,
        "ts": dict(release.ts),
        "ts_token_start_index": start,
        "ts_token_end_index": end,
        **release.extra_config,
    }


def _state_dict(release: Release, config: dict[str, Any], seed: int) -> dict[str, Any]:
    """fp16 weights by the released parameter names; wide enough that greedy decoding has clear winners."""
    import torch

    g = torch.Generator().manual_seed(seed)

    def t(*shape: int, std: float | None = None) -> torch.Tensor:
        scale = std if std is not None else (1.5 / shape[-1] ** 0.5 if len(shape) > 1 else 0.05)
        return (torch.randn(*shape, generator=g) * scale).to(torch.float16)

    def ones(n: int) -> torch.Tensor:
        return (1.0 + torch.randn(n, generator=g) * 0.05).to(torch.float16)

    hid, inter = config["hidden_size"], config["intermediate_size"]
    nh, nkv, vocab = config["num_attention_heads"], config["num_key_value_heads"], config["vocab_size"]
    hd = config.get("head_dim", hid // nh)
    sd = {"model.embed_tokens.weight": t(vocab, hid, std=1.0), "model.norm.weight": ones(hid), "lm_head.weight": t(vocab, hid)}
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        sd[p + "self_attn.q_proj.weight"] = t(nh * hd, hid)
        sd[p + "self_attn.k_proj.weight"] = t(nkv * hd, hid)
        sd[p + "self_attn.v_proj.weight"] = t(nkv * hd, hid)
        sd[p + "self_attn.o_proj.weight"] = t(hid, nh * hd)
        if release.backbone == "qwen2":  # Qwen2: biases on q/k/v
            for name, n in (("q", nh * hd), ("k", nkv * hd), ("v", nkv * hd)):
                sd[p + f"self_attn.{name}_proj.bias"] = t(n)
        else:  # Qwen3: per-head RMSNorm on q and k
            sd[p + "self_attn.q_norm.weight"] = ones(hd)
            sd[p + "self_attn.k_norm.weight"] = ones(hd)
        sd[p + "mlp.gate_proj.weight"] = t(inter, hid)
        sd[p + "mlp.up_proj.weight"] = t(inter, hid)
        sd[p + "mlp.down_proj.weight"] = t(hid, inter)
        sd[p + "input_layernorm.weight"] = ones(hid)
        sd[p + "post_attention_layernorm.weight"] = ones(hid)
    ts = config["ts"]
    width = ts["patch_size"] * (1 + ts["embedding_dim"]) if ts.get("use_position_embedding") else ts["patch_size"]
    for j in range(ts["num_layers"]):
        sd[f"ts_encoder.mlp.{2 * j}.weight"] = t(ts["hidden_size"], width if j == 0 else ts["hidden_size"])
        sd[f"ts_encoder.mlp.{2 * j}.bias"] = t(ts["hidden_size"])
    if ts.get("use_position_embedding"):
        sd["ts_encoder.position_embedding.weight"] = t(ts["max_sequence_length"] + 1, ts["embedding_dim"], std=0.5)
    return sd


def _write_weights(release: Release, state: dict[str, Any], out: Path) -> None:
    import torch
    from safetensors.torch import save_file

    names = list(state)
    per_shard = -(-len(names) // release.shards)
    stem, ext, index = (
        ("pytorch_model", "bin", "pytorch_model.bin.index.json")
        if release.weights == "bin"
        else ("model", "safetensors", "model.safetensors.index.json")
    )
    weight_map = {}
    for k in range(release.shards):
        shard = {n: state[n].contiguous() for n in names[k * per_shard : (k + 1) * per_shard]}
        file = f"{stem}-{k + 1:05d}-of-{release.shards:05d}.{ext}"
        if release.weights == "bin":
            torch.save(shard, out / file)
        else:
            save_file(shard, str(out / file), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, file))
    total = sum(v.numel() * v.element_size() for v in state.values())
    (out / index).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))


def _stand_in(release: Release, file: str, marker_dir: Path) -> str:
    return (
        f'"""Stand-in for {release.name}\'s shipped {file}: importing it means the checkpoint\'s code ran."""\n'
        "import os, sys\n"
        f"_path = os.path.join({str(marker_dir)!r}, '{release.name}.{file}.' + str(os.getpid()))\n"
        "with open(_path, 'w') as _f:\n"
        "    _f.write(' '.join(sys.argv))\n"
    )


def build_twin(name: str, out: Path, marker_dir: Path, seed: int = 0) -> Path:
    """Write the twin of release `name` to `out` and return `out`."""
    release = RELEASES[name]
    out.mkdir(parents=True, exist_ok=True)
    marker_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer(release)
    config = _config(release, tokenizer)
    (out / "config.json").write_text(json.dumps(config, indent=2))
    (out / "generation_config.json").write_text(json.dumps({
        "bos_token_id": tokenizer.pad_token_id, "do_sample": True, "eos_token_id": [tokenizer.eos_token_id, tokenizer.pad_token_id],
        "pad_token_id": tokenizer.pad_token_id, "repetition_penalty": 1.05, "temperature": 0.7, "top_k": 20, "top_p": 0.8,
    }, indent=2))
    _write_weights(release, _state_dict(release, config, seed), out)

    template = tokenizer.chat_template
    # The releases were written by transformers 4.x: Qwen2Tokenizer, added_tokens_decoder,
    # additional_special_tokens (the form save_tokenizer writes), and (ChatTS-14B) the chat template inside
    # tokenizer_config.json; ChatTS-8B: chat_template.jinja.
    tok_config_path = save_tokenizer(tokenizer, out)
    (out / "chat_template.jinja").unlink(missing_ok=True)
    tok_config = json.loads(tok_config_path.read_text())
    if release.backbone == "qwen3":
        (out / "chat_template.jinja").write_text(QWEN3_CHAT_TEMPLATE)
    else:
        tok_config["chat_template"] = template
    if release.processor_in == "tokenizer_config":
        tok_config["processor_class"] = release.processor_ref.split(".")[1]
        tok_config["auto_map"] = {"AutoProcessor": release.processor_ref}
    tok_config_path.write_text(json.dumps(tok_config, indent=2))
    if release.processor_in == "processor_config":
        (out / "processor_config.json").write_text(json.dumps(
            {"auto_map": {"AutoProcessor": release.processor_ref}, "processor_class": release.processor_ref.split(".")[1]}, indent=2))
    for file in release.shipped:
        (out / file).write_text(_stand_in(release, file, marker_dir))
    return out


def snapshot_hash(directory: Path) -> str:
    """A commit-like 40-hex id of a directory's content (what a Hub snapshot is named by)."""
    digest = hashlib.sha1()
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def add_to_hub_cache(hub_cache: Path, repo_id: str, twin: Path, main: bool = True) -> str:
    """Put `twin` into an HF Hub cache as a snapshot of `repo_id`; `main`: refs/main points at it. Returns the revision."""
    revision = snapshot_hash(twin)
    repo = hub_cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / revision
    if not snapshot.exists():
        shutil.copytree(twin, snapshot)
    if main:
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(revision)
    return revision


def markers(marker_dir: Path) -> list[str]:
    """Names of the marker files: one per (release, shipped file, process) that imported it."""
    return sorted(p.name for p in Path(marker_dir).iterdir()) if Path(marker_dir).is_dir() else []


__all__ = ["RELEASES", "Release", "add_to_hub_cache", "build_twin", "markers", "snapshot_hash"]
