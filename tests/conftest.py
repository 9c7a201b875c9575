"""Shared fixtures: tiny models built locally, and in-process LLaMA-Factory runs (no network)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"


@pytest.fixture(scope="session")
def tiny_qwen3ts(tmp_path_factory) -> Path:
    """A tiny ChatTS-8B-architecture model (Qwen3 backbone, patch 8, position embedding)."""
    from tsplugin.init_model import build_model

    return build_model(tmp_path_factory.mktemp("models") / "qwen3ts", arch="qwen3ts", preset="tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_chatts(tmp_path_factory) -> Path:
    """A tiny ChatTS-14B-architecture model (Qwen2 backbone, patch 16)."""
    from tsplugin.init_model import build_model

    return build_model(tmp_path_factory.mktemp("models") / "chatts", arch="chatts", preset="tiny", seed=0)


@pytest.fixture(scope="session")
def dataset_dir() -> Path:
    """The repository's dataset_info/ (bundled samples, as the recipes use it)."""
    return ROOT / "dataset_info"


def write_dataset(directory: Path, name: str, records: list[dict], columns: dict | None = None, **entry) -> Path:
    """Write records as JSONL plus a dataset_info.json entry; returns the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / f"{name}.jsonl", "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    info_path = directory / "dataset_info.json"
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    info[name] = {
        "file_name": f"{name}.jsonl",
        "columns": columns or {"prompt": "input", "response": "output", "timeseries": "timeseries"},
        **entry,
    }
    info_path.write_text(json.dumps(info, indent=2))
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


def run_lf(**args) -> None:
    """`llamafactory-cli train` in-process (the CLI's import alone costs seconds)."""
    from llamafactory.train.tuner import run_exp

    run_exp(args)


def trainer_losses(output_dir: Path) -> list[float]:
    lines = (Path(output_dir) / "trainer_log.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines if "loss" in json.loads(line)]


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


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
