"""Shared test support: tiny models built locally, in-process LLaMA-Factory and tsconvert runs, small
inputs written in the users' shapes, float tolerances (no network).

Test modules import helpers from here (`from conftest import lf_args`), never from one another or
from bench/. Larger support lives beside it: _layouts.py (twins of the released checkpoints),
plan_measure.py (the planner's measurement harness, shared with bench/plan_vs_measured.py) and
browser_helpers.py (chromium and a LLaMA-Factory server for the browser tier) and _hostile.py (the
runner for tables of hostile command lines).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from converters.cli import main as tsconvert_main
from converters.writer import update_dataset_info

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"  # test-only data (chatts_dev: ChatTS's own dev set)
CHATTS_DEV = FIXTURES / "chatts_dev"
# The GDSH-shaped sample users see (chat JSON + one CSV per plot); dataset_info/gdsh_sample*.jsonl are its conversion.
GDSH_SAMPLE = ROOT / "dataset_info" / "gdsh_sample_source"
GDSH = GDSH_SAMPLE / "gdsh.json"
GDSH_CSV = GDSH_SAMPLE / "timeseries" / "gdsh"


VLLM_VENV_ERROR = "TSFACTORY_VLLM_VENV_ERROR"  # .ci/run sets it when the vLLM venv could not be built


def vllm_unavailable() -> str | None:
    """Why the `vllm` tier cannot run here (the venv error .ci/run passed on, or vLLM's import error), or None."""
    reason = os.environ.get(VLLM_VENV_ERROR)
    if reason:
        return f"the vLLM venv could not be built: {reason}"
    try:
        import vllm  # noqa: F401
    except Exception as err:  # vLLM raises more than ImportError when its platform or torch does not fit
        return f"vllm does not import: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    return None


@pytest.hookimpl(trylast=True)  # after `-m` deselection: vLLM is imported only when a vllm test is selected
def pytest_collection_modifyitems(config, items):
    """`-m vllm` where vLLM is missing: the tests skip with the reason (built by `.ci/vllm-venv.sh`)."""
    selected = [item for item in items if item.get_closest_marker("vllm") is not None]
    if not selected:
        return
    reason = vllm_unavailable()
    if reason is not None:
        for item in selected:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def tiny_qwen3ts(tmp_path_factory) -> Path:
    """A tiny ChatTS-8B-architecture model (Qwen3 backbone, patch 8, position embedding)."""
    from tsplugin.build.init_model import build_model

    return build_model(tmp_path_factory.mktemp("models") / "qwen3ts", arch="qwen3ts", preset="tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_chatts(tmp_path_factory) -> Path:
    """A tiny ChatTS-14B-architecture model (Qwen2 backbone, patch 16)."""
    from tsplugin.build.init_model import build_model

    return build_model(tmp_path_factory.mktemp("models") / "chatts", arch="chatts", preset="tiny", seed=0)


@pytest.fixture(scope="session")
def dataset_dir() -> Path:
    """The repository's dataset_info/ (bundled samples, as the recipes use it)."""
    return ROOT / "dataset_info"


def fp_atol(dtype, reduce_size: int, depth: int, scale: float = 1.0) -> float:
    """Largest difference two float computations of the same value may show when only the summation
    order differs (another BLAS kernel, batch shape, thread count, CPU).

    Higham's bound for a length-n dot product is gamma_n * sum|a_i * b_i|, gamma_n ~ n * u (u = eps / 2,
    the unit roundoff); two orders can differ by twice that; `depth` chained reductions (matmuls,
    attention, norms) add their errors while normalisation keeps activations at `scale` (>= 1). A real
    bug (a wrong mask, a shifted position) moves outputs by O(scale), orders of magnitude above this.
    """
    import torch

    unit_roundoff = torch.finfo(dtype).eps / 2
    return 2.0 * depth * reduce_size * unit_roundoff * max(float(scale), 1.0)


def rounding_sizes(model, tokens: int = 0, backward: bool = False) -> tuple[int, int]:
    """(longest reduction, depth) of a model for fp_atol: any Linear's input width and the tokens
    attention sums over; with the backward pass also the output widths (the vocabulary of the loss's
    softmax, a gradient's sum over outputs). Four chained reductions per decoder layer (attention
    scores, attention x values, output, MLP) plus encoder and head, twice with the backward pass."""
    import torch

    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    layers = sum(1 for name, _ in model.named_modules() if name.endswith("self_attn"))
    widths = [m.in_features for m in linears] + ([m.out_features for m in linears] if backward else [])
    depth = 4 * layers + 2
    return max(widths + [tokens]), 2 * depth if backward else depth


def assert_fp_close(got, want, reduce_size: int | None = None, depth: int | None = None, *, model=None,
                    tokens: int = 0, backward: bool = False) -> None:
    """`torch.testing.assert_close` with the tolerance derived from dtype and sizes (see fp_atol):
    give the sizes, or the model (and the sequence length) to read them from."""
    import torch

    if model is not None:
        reduce_size, depth = rounding_sizes(model, tokens, backward)
    atol = fp_atol(want.dtype, reduce_size, depth, want.abs().max().item() if want.numel() else 1.0)
    torch.testing.assert_close(got, want, atol=atol, rtol=0)


@pytest.fixture(scope="session")
def fp_close():
    """The dtype-and-size-derived comparison (assert_fp_close), for tests comparing float paths."""
    return assert_fp_close


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (servers and torchrun rendezvous in tests never use fixed ports)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_dataset(directory: Path, name: str, records: list[dict], columns: dict | None = None, **entry) -> Path:
    """Write records as JSONL plus their dataset_info.json entry (through tsconvert's own writer, which
    keeps the other entries); returns the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / f"{name}.jsonl", "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    columns = columns or {"prompt": "input", "response": "output", "timeseries": "timeseries"}
    update_dataset_info(directory / "dataset_info.json", name, {"file_name": f"{name}.jsonl", "columns": columns, **entry})
    return directory


def lf_args(model: Path, output_dir: Path, **overrides) -> dict:
    """Arguments of a short, deterministic LoRA SFT run on CPU (LLaMA-Factory's own YAML keys)."""
    args = dict(
        model_name_or_path=str(model),
        stage="sft",
        do_train=True,
        finetuning_type="lora",
        lora_target="all",
        lora_rank=8,
        dataset="gdsh_sample",
        dataset_dir=str(ROOT / "dataset_info"),
        template="chatts8b_nothink",
        cutoff_len=1024,
        overwrite_cache=True,
        preprocessing_num_workers=None,
        output_dir=str(output_dir),
        logging_steps=1,
        save_strategy="no",
        overwrite_output_dir=True,
        report_to="none",
        per_device_train_batch_size=2,
        learning_rate=1e-3,
        max_steps=3,
        bf16=False,
        seed=42,
        disable_tqdm=True,
    )
    args.update(overrides)
    return {k: v for k, v in args.items() if v is not None}


def tokenised(model: Path, tmp_path: Path, data: Path, dataset: str, **overrides) -> tuple[Any, dict]:
    """(train dataset, tokenizer module) from LLaMA-Factory's `get_dataset` as training runs it, in-process (a short
    SFT run's arguments, `lf_args`, on `dataset` in `data`)."""
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    args = lf_args(model, tmp_path / "out", dataset=dataset, dataset_dir=str(data), **overrides)
    model_args, data_args, training_args, _, _ = get_train_args(args)
    module = load_tokenizer(model_args)
    template = get_template_and_fix_tokenizer(module["tokenizer"], data_args)
    return get_dataset(template, model_args, data_args, training_args, "sft", **module)["train_dataset"], module


def run_lf(**args) -> None:
    """`llamafactory-cli train` in-process (the CLI's import alone costs seconds)."""
    from llamafactory.train.tuner import run_exp

    run_exp(args)


def trainer_losses(output_dir: Path) -> list[float]:
    lines = (Path(output_dir) / "trainer_log.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines if "loss" in json.loads(line)]


# --- tsconvert inputs in the users' shape, and the CLI in-process ----------------------------------


def write_csv(path: Path, n: int = 40, *, header: str = "timestamp,value", start: float = 1.0, rows: list[str] | None = None,
              encoding: str = "utf-8", sep: str = ",") -> Path:
    """A small regular CSV (timestamps one second apart, values start + i*0.5) or the given rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if rows is None:
        rows = [f"2025-06-01 00:{i // 60:02d}:{i % 60:02d}{sep}{start + i * 0.5}" for i in range(n)]
    path.write_bytes((header + "\n" + "\n".join(rows) + "\n").encode(encoding))
    return path


def gdsh_record(*images: str, text: str | None = None, answer: str = '{"is_anomaly": false}') -> dict:
    """A GDSH-style ShareGPT record with one <image> per image."""
    if text is None:
        text = "分析：" + "".join("<image>" for _ in images)
    return {"messages": [{"role": "user", "content": text}, {"role": "assistant", "content": answer}], "images": list(images)}


def write_json(path: Path, records: list, jsonl: bool = False) -> Path:
    if jsonl:
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    else:
        path.write_text(json.dumps(records, ensure_ascii=False, indent=2), encoding="utf-8")
    return path


def tsconvert(args: list[str]) -> int:
    """`tsconvert ARGS` in-process, single worker (fast, deterministic) unless ARGS say otherwise."""
    extra = [] if "--workers" in args or args[0] in ("validate", "preview") else ["--workers", "1"]
    return tsconvert_main([*args, *extra])


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def convert_dir(tmp_path: Path, records: list, csvs: dict[str, list[str] | None] | None = None, *extra: str,
                name: str = "ds", jsonl: bool = False) -> tuple[int, Path]:
    """Write records + CSVs (name -> rows, None = regular 40-row CSV) under tmp_path and convert."""
    csv_dir = tmp_path / "csv"
    csv_dir.mkdir(exist_ok=True)
    for fname, rows in (csvs or {}).items():
        write_csv(csv_dir / fname, rows=rows)
    src = write_json(tmp_path / ("in.jsonl" if jsonl else "in.json"), records, jsonl=jsonl)
    out = tmp_path / "out"
    code = tsconvert([str(src), "--csv-dir", str(csv_dir), "-o", str(out), "--name", name, "-q", *extra])
    return code, out


# --- tiny models ---------------------------------------------------------------------------------


def make_qwen_base(directory: Path, model_type: str = "qwen3", tie: bool = True) -> Path:
    """A tiny random Qwen2/Qwen3 checkpoint + Qwen-style tokenizer without <ts> tokens (what a user has)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

    from tsplugin.build.tokenizer import build_tokenizer
    from tsplugin.checkpoints.tokenizer_files import save_tokenizer

    tokenizer = build_tokenizer(ts_tokens=False)
    sizes = dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=tie, bos_token_id=None,
                 eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    if model_type == "qwen3":
        config, cls = Qwen3Config(head_dim=16, **sizes), Qwen3ForCausalLM
    else:
        config, cls = Qwen2Config(**sizes), Qwen2ForCausalLM
    torch.manual_seed(0)
    cls(config).save_pretrained(directory)
    save_tokenizer(tokenizer, directory)  # as Qwen ships it: transformers 4.57 and 5.x load it
    return directory


def assert_release_tokenizer_form(path, config=None):
    """tokenizer_config.json as the released checkpoints ship it, which transformers 4.57 loads: 4.57 knows no
    class `TokenizersBackend` and reads `extra_special_tokens` as a dict of named tokens (`.keys()`)."""
    path = Path(path)
    tok = json.loads((path / "tokenizer_config.json").read_text())
    assert tok["tokenizer_class"] == "Qwen2Tokenizer"
    assert "backend" not in tok and not isinstance(tok.get("extra_special_tokens", {}), list)
    assert tok.get("extra_special_tokens", {"named": 1}) != {}  # an empty dict hides the list under 5.x
    assert {"<ts>", "<ts/>"} <= set(tok["additional_special_tokens"])
    decoder = {entry["content"]: int(i) for i, entry in tok["added_tokens_decoder"].items()}
    added = {t["content"]: t["id"] for t in json.loads((path / "tokenizer.json").read_text())["added_tokens"]}
    assert decoder == added
    assert all(entry["special"] for entry in tok["added_tokens_decoder"].values())
    if config is not None and "ts_token_start_index" in config:
        assert (decoder["<ts>"], decoder["<ts/>"]) == (config["ts_token_start_index"], config["ts_token_end_index"])


# A small PatchTST encoder block (qwen_ts tests, two-stage training).
PATCHTST = {"context_window": 64, "patch_len": 16, "stride": 8, "d_model": 32, "num_layers": 2, "num_heads": 4, "ffn_dim": 64}


TIMELLM_BLOCK = dict(seq_len=32, pred_len=8, patch_len=8, stride=4, d_model=16, d_ff=16, num_heads=2, num_prototypes=16,
                     dropout=0.1, description="A test series.")


@pytest.fixture(scope="session")
def tiny_timellm(tmp_path_factory) -> Path:
    """A tiny Time-LLM forecaster (`tsplugin build-forecaster` on a random 2-layer Qwen2, seq 32 -> pred 8)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from tsplugin.build.build_forecaster import build_timellm
    from tsplugin.build.tokenizer import build_tokenizer
    from tsplugin.checkpoints.tokenizer_files import save_tokenizer

    root = tmp_path_factory.mktemp("timellm")
    tokenizer = build_tokenizer(ts_tokens=False)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         intermediate_size=128, tie_word_embeddings=False, bos_token_id=None, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).save_pretrained(root / "base")
    save_tokenizer(tokenizer, root / "base")
    return build_timellm(root / "base", root / "model", TIMELLM_BLOCK, seed=0)


# --- layout twins of the released ChatTS checkpoints (tests/_layouts.py) --------------------------

_TWIN_MARKERS: list[Path] = []  # marker directories of the twins built in this session


@pytest.fixture(scope="session")
def twin_markers(tmp_path_factory) -> Path:
    """Where the twins' shipped .py files write a marker when imported (must stay empty)."""
    path = tmp_path_factory.mktemp("shipped_code_markers")
    _TWIN_MARKERS.append(path)
    return path


@pytest.fixture(scope="session")
def layout_twins(tmp_path_factory, twin_markers) -> dict[str, Path]:
    """release name -> a tiny twin of that release, laid out as released (see tests/_layouts.py)."""
    from _layouts import RELEASES, build_twin

    root = tmp_path_factory.mktemp("twins")
    return {name: build_twin(name, root / name, twin_markers) for name in RELEASES}


@pytest.fixture(scope="session")
def twin_hub(tmp_path_factory, layout_twins) -> dict:
    """An offline HF Hub cache holding the twins as `bytedance-research/ChatTS-14B` (main: current release;
    the first release at an older revision) and `bytedance-research/ChatTS-8B`.

    Returns {"cache": HF_HUB_CACHE dir, "ids": {release: (repo id, revision or None)}}.
    """
    from _layouts import RELEASES, add_to_hub_cache

    cache = tmp_path_factory.mktemp("hf_home") / "hub"
    ids = {}
    for name in ("chatts-14b-first", "chatts-14b", "chatts-8b"):  # first release written first: main moves on
        revision = add_to_hub_cache(cache, RELEASES[name].hub_id, layout_twins[name])
        ids[name] = (RELEASES[name].hub_id, revision if name == "chatts-14b-first" else None)
    return {"cache": cache, "ids": ids}


@pytest.fixture(autouse=True)
def _no_checkpoint_code_runs():
    """Every test: no twin's shipped .py file was imported (by LLaMA-Factory, tsplugin or transformers)."""
    yield
    from _layouts import markers

    ran = [name for path in _TWIN_MARKERS for name in markers(path)]
    assert not ran, f"a checkpoint's own code was imported: {ran}"


def recipe_synth_command(recipe: str, **overrides: str) -> list[str]:
    """The `tsplugin synth ...` arguments a recipe's header names (after `tsplugin`), with options replaced
    (`records="48"` sets --records 48; `out_dir` sets -o)."""
    import shlex

    lines = (ROOT / "yaml_recipes" / recipe).read_text(encoding="utf-8").splitlines()
    line = next(line for line in lines if line.startswith("#") and "tsplugin synth " in line)
    argv = shlex.split(line.lstrip("#").strip())[1:]
    for key, value in overrides.items():
        flag = "-o" if key == "out_dir" else "--" + key.replace("_", "-")
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    return argv
