"""Every shipped recipe: the header comment, LLaMA-Factory's own argument parsing (unknown keys fail),
the safe defaults of GPU training recipes, DeepSpeed JSON files, and header numbers == `tsplugin plan`.
Their dataset_dir, dataset_info/: every entry is a file of its own, and its files are tsconvert's output
of the sample next to them (a clone works without tests/)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

from conftest import GDSH, GDSH_CSV, ROOT, tsconvert

RECIPES_DIR = ROOT / "yaml_recipes"
DATASET_DIR = ROOT / "dataset_info"
RECIPES = sorted(p.name for p in RECIPES_DIR.glob("*.yaml"))
CPU_RECIPES = {"tiny_cpu_demo.yaml", "tiny_cpu_export.yaml", "tiny_cpu_predict.yaml"}
HEADER_KEYS = ("Card:", "Peak memory", "Edit:", "Launch:")
# Recipes owned elsewhere whose header is known to be incomplete (strict xfail: fixing them fails here, remove the entry).
KNOWN_HEADER_GAPS: dict[str, str] = {}


def load(name: str) -> dict:
    return yaml.safe_load((RECIPES_DIR / name).read_text(encoding="utf-8"))


def header(name: str) -> list[str]:
    lines = (RECIPES_DIR / name).read_text(encoding="utf-8").splitlines()
    out = []
    for line in lines:
        if not line.startswith("#") or line.startswith("###"):
            break
        out.append(line)
    return out


def is_gpu_train(name: str) -> bool:
    return name not in CPU_RECIPES and bool(load(name).get("do_train"))


def test_recipes_found():
    assert {"chatts_qlora_2080ti.yaml", "chatts8b_qlora_2080ti.yaml", "chatts_fp16_deepspeed.yaml",
            "chatts_zero3_offload.yaml", "export_merge.yaml", "predict.yaml", "tiny_cpu_demo.yaml"} <= set(RECIPES)


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.xfail(reason=KNOWN_HEADER_GAPS[n], strict=True)) if n in KNOWN_HEADER_GAPS else n
    for n in RECIPES])
def test_header(name):
    """Opens with a comment naming the card, the peak memory, what to edit and the exact launch command."""
    head = header(name)
    assert head and head[0].startswith(f"# {name}:"), f"{name}: first line must be '# {name}: <what it does>'"
    text = "\n".join(head)
    for key in ("Card:", "Peak memory", "Launch:") if name in CPU_RECIPES else HEADER_KEYS:
        assert key in text, f"{name}: header lacks {key!r}"
    launch = next(line for line in head if "Launch:" in line)
    assert f"yaml_recipes/{name}" in launch and "llamafactory-cli" in launch


def _substitute(name: str, args: dict, models: dict[str, Path], tmp_path: Path) -> dict:
    template = args.get("template", "")
    arch = "qwen3ts" if template.startswith("chatts8b") else "chatts"
    args["model_name_or_path"] = str(models[arch])
    if "dataset_dir" in args:
        args["dataset_dir"] = str(ROOT / "dataset_info")
    for key in ("output_dir", "export_dir"):
        if key in args:
            args[key] = str(tmp_path / key)
    if "adapter_name_or_path" in args:
        args["adapter_name_or_path"] = str(tmp_path / "adapter")
    if "deepspeed" in args:
        ds = ROOT / args["deepspeed"]
        assert ds.is_file(), f"{name}: deepspeed file {args['deepspeed']} does not exist"
        args["deepspeed"] = str(ds)
    return args


@pytest.mark.parametrize("name", RECIPES)
def test_parses_with_llamafactory(name, tiny_chatts, tiny_qwen3ts, tmp_path):
    """LLaMA-Factory's own dataclasses (HfArgumentParser, allow_extra_keys=False): unknown keys fail.

    `get_train_args` is not used: it refuses a non-distributed CPU process. Without deepspeed installed,
    transformers cannot build its DeepSpeed config, so the `deepspeed` file is checked by accelerate's
    HfDeepSpeedConfig (the object the Trainer builds on) and the rest is parsed without it."""
    import importlib.util

    from accelerate.utils.deepspeed import HfDeepSpeedConfig
    from transformers import HfArgumentParser

    import llamafactory.hparams.parser as lf_parser

    args = _substitute(name, load(name), {"chatts": tiny_chatts, "qwen3ts": tiny_qwen3ts}, tmp_path)
    if "deepspeed" in args:
        ds = HfDeepSpeedConfig(args["deepspeed"])
        assert ds.is_zero3() == ("z3" in Path(args["deepspeed"]).name)
        if importlib.util.find_spec("deepspeed") is None:
            del args["deepspeed"]
    export = "export_dir" in args
    if not export:
        import torch

        if not torch.cuda.is_available():
            args["use_cpu"] = True  # only so that transformers' bf16 check accepts a GPU recipe on this CPU machine
    classes = lf_parser._INFER_ARGS if export else lf_parser._TRAIN_ARGS
    parsed = HfArgumentParser(classes).parse_dict(args, allow_extra_keys=False)
    by_type = {type(x).__name__: x for x in parsed}
    assert by_type["ModelArguments"].model_name_or_path == args["model_name_or_path"]
    if not export:
        training = by_type["TrainingArguments"]
        assert training.fp16 == bool(args.get("fp16", False))


@pytest.mark.parametrize("name", [n for n in RECIPES if is_gpu_train(n)])
def test_gpu_recipe_safe_defaults(name):
    """What made the users' runs stop blowing up is the default of every GPU recipe."""
    args = load(name)
    text = (RECIPES_DIR / name).read_text(encoding="utf-8")
    head = "\n".join(header(name))
    expected = dict(max_grad_norm=0.3, plot_loss=True, report_to="none", train_on_prompt=False, timeseries_nan_guard=True)
    for key, value in expected.items():
        assert args.get(key) == value, f"{name}: {key} should be {value!r}, is {args.get(key)!r}"
    assert not args.get("disable_gradient_checkpointing", False), f"{name}: gradient checkpointing must stay on"
    assert "freeze_vision_tower" in args, f"{name}: say whether the encoder trains (freeze_vision_tower: true unless the recipe trains it)"
    assert not (args.get("fp16") and args.get("bf16")), f"{name}: fp16 and bf16 both set"
    if "2080" in head or "Turing" in head:  # no bf16 on Turing
        assert args.get("fp16") is True and not args.get("bf16"), f"{name}: a Turing recipe trains in fp16"
    if args["finetuning_type"] == "lora":
        assert args["warmup_ratio"] == 0.1 and args["learning_rate"] <= 2e-4, f"{name}: LoRA lr <= 2e-4 with 10% warmup"
    if args.get("quantization_bit"):
        assert args["optim"] == "adamw_bnb_8bit"
    if args["template"] in ("chatts", "chatts8b"):  # the users' ChatTS plan: batch 1 x 16, 3 epochs, lr 1e-4
        plan = dict(per_device_train_batch_size=1, gradient_accumulation_steps=16, num_train_epochs=3.0, dataset="gdsh", dataset_dir="dataset_info")
        for key, value in plan.items():
            assert args.get(key) == value, f"{name}: {key} should be {value!r}, is {args.get(key)!r}"
        if args["finetuning_type"] == "lora":
            assert args["learning_rate"] == 1e-4
    assert {"logging_steps", "save_steps", "cutoff_len"} <= set(args)
    assert [line for line in text.splitlines() if line.startswith("### ")][:5] == [
        "### model", "### method", "### dataset", "### output", "### train"]


def _header_plan(name: str) -> tuple[float, list[str]]:
    head = header(name)
    peak = next((line for line in head if "Peak memory" in line), "")
    found = re.search(r"\(planner estimate[^)]*\):\s*([\d.]+) GiB", peak)
    command = next((line for line in head if line.lstrip("# ").startswith("tsplugin plan ")), None)
    assert found and command, (f"{name}: header needs '# Peak memory (planner estimate, ...): X.XX GiB' followed by the "
                               "exact '#   tsplugin plan ...' command that prints X.XX")
    return float(found.group(1)), shlex.split(command.lstrip("# "))[2:]


def is_planned(name: str) -> bool:
    """ChatTS training recipes (the planner's presets), and any recipe claiming a planner estimate."""
    return is_gpu_train(name) and (load(name).get("template") in ("chatts", "chatts8b")
                                   or "planner estimate" in "\n".join(header(name)))


@pytest.mark.parametrize("name", [n for n in RECIPES if is_planned(n)])
def test_header_number_comes_from_planner(name, capsys):
    """The header's peak is what the `tsplugin plan` command written next to it prints, and it fits."""
    from tsplugin.planner.cli import inputs_from_args
    from tsplugin.planner.estimate import GiB, estimate
    from tsplugin.cli import build_parser

    number, argv = _header_plan(name)
    est = estimate(inputs_from_args(build_parser().parse_args(["plan", *argv])))
    assert round(est.total() / GiB, 2) == number, f"{name}: header says {number} GiB, the planner says {est.total() / GiB:.2f}"
    assert est.fits()
    args = load(name)
    assert f"--cutoff-len {args['cutoff_len']}" in " ".join(argv), f"{name}: plan command must use the recipe's cutoff_len"
    rank_target = (str(args["lora_rank"]), args["lora_target"])
    assert ("--lora-rank" not in argv or argv[argv.index("--lora-rank") + 1] == rank_target[0])
    assert argv[argv.index("--lora-target") + 1] == rank_target[1]
    if "deepspeed" in args and "z3" in args["deepspeed"]:
        assert "--gpus" in argv, f"{name}: ZeRO-3 recipes are planned per card with --gpus"


@pytest.mark.parametrize("path", sorted((RECIPES_DIR / "deepspeed").glob("*.json")), ids=lambda p: p.name)
def test_deepspeed_json(path):
    config = json.loads(path.read_text(encoding="utf-8"))
    assert config["fp16"]["enabled"] == "auto" and config["bf16"]["enabled"] is False, "fp16 for Turing cards"
    stage = config["zero_optimization"]["stage"]
    assert f"z{stage}" in path.name
    assert ("offload_param" in config["zero_optimization"]) == ("offload" in path.name)
    used = {load(n).get("deepspeed") for n in RECIPES}
    assert f"yaml_recipes/deepspeed/{path.name}" in used, f"{path.name} is used by no recipe"


def test_dataset_info_points_at_its_own_files():
    """dataset_info/ is the recipes' dataset_dir: every entry is a file in that folder (nothing in tests/)."""
    entries = json.loads((DATASET_DIR / "dataset_info.json").read_text(encoding="utf-8"))
    assert entries
    for name, entry in entries.items():
        path = (DATASET_DIR / entry["file_name"]).resolve()
        assert path.parent == DATASET_DIR.resolve() and path.is_file(), f"dataset_info.json entry {name!r} points at {entry['file_name']}"


@pytest.mark.parametrize("name", [n for n in RECIPES if load(n).get("dataset_dir") == "dataset_info"])
def test_recipe_datasets_are_in_dataset_info_unless_marked_yours(name):
    """A dataset a recipe names in dataset_info/ exists there, unless its line says to edit it (your own data)."""
    entries = json.loads((DATASET_DIR / "dataset_info.json").read_text(encoding="utf-8"))
    lines = (RECIPES_DIR / name).read_text(encoding="utf-8").splitlines()
    for key in ("dataset", "eval_dataset"):
        line = next((line for line in lines if line.startswith(f"{key}:")), None)
        if line is None or "# edit" in line:
            continue
        for dataset in str(load(name)[key]).split(","):
            assert dataset.strip() in entries, f"{name}: {key} {dataset!r} is not in dataset_info/dataset_info.json"


def test_dataset_info_files_are_tsconvert_output_of_the_sample_beside_them(tmp_path):
    """Converting dataset_info/gdsh_sample_source as its report says writes dataset_info/'s files byte for byte."""
    for name, extra in (("gdsh_sample", []), ("gdsh_sample_sharegpt", ["--format", "sharegpt"])):
        assert tsconvert([str(GDSH), "--csv-dir", str(GDSH_CSV), "-o", str(tmp_path), "--name", name, "-q", *extra]) == 0
    shipped = sorted(p.name for p in DATASET_DIR.iterdir() if p.is_file())
    assert shipped == sorted(p.name for p in tmp_path.iterdir())
    for file_name in shipped:
        assert (tmp_path / file_name).read_bytes() == (DATASET_DIR / file_name).read_bytes(), file_name
