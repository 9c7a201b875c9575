"""`tsplugin quickstart`: the whole pipeline on the bundled sample, CPU, offline, a few minutes.

Runs the same commands a user types, as subprocesses, and prints each one:
convert (tsconvert) -> build a tiny model (tsplugin init-model) -> LoRA (llamafactory-cli train)
-> merge (llamafactory-cli export) -> answer one question about one series (tsplugin chat).
It runs from the repository root (it uses `yaml_recipes/` and the bundled sample there).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SAMPLE = Path("tests/fixtures/gdsh_sample")
OUT = Path("runs/quickstart")
QUESTION = "请分析下图中 PIC-3105.PV 的运行数据：<ts><ts/>\n输出 JSON：{\"is_anomaly\": bool, \"anomaly_type\": str, \"start\": int, \"end\": int, \"reason\": str}"


def find_root(start: Path) -> Path:
    """The tsfactory checkout containing `start` (it holds yaml_recipes/ and the sample)."""
    for candidate in [start, *start.parents]:
        if (candidate / "yaml_recipes" / "tiny_cpu_demo.yaml").is_file() and (candidate / SAMPLE).is_dir():
            return candidate
    raise SystemExit(
        f"tsplugin quickstart: run it inside the tsfactory repository (no yaml_recipes/tiny_cpu_demo.yaml "
        f"and {SAMPLE} above {start})."
    )


def _tool(name: str) -> str:
    """Console script next to this interpreter (the venv's), else on PATH."""
    local = Path(sys.executable).with_name(name)
    return str(local) if local.exists() else (shutil.which(name) or name)


def _run(step: str, argv: list[str], root: Path, env: dict[str, str]) -> None:
    print(f"\n==> {step}\n$ {shlex.join(argv)}", flush=True)
    started = time.perf_counter()
    result = subprocess.run(argv, cwd=root, env=env)
    if result.returncode != 0:
        raise SystemExit(f"tsplugin quickstart: step '{step}' failed with exit code {result.returncode}.")
    print(f"    ({time.perf_counter() - started:.1f} s)", flush=True)


def run(args: argparse.Namespace) -> int:
    root = find_root(Path.cwd().resolve())
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    if args.clean and (root / OUT).exists():
        shutil.rmtree(root / OUT)
    csv = SAMPLE / "timeseries/gdsh/gdsh_second_20250601_PIC-3105.PV.csv"
    steps = [
        ("convert the bundled GDSH-like sample to ChatTS JSONL", [
            _tool("tsconvert"), str(SAMPLE / "gdsh.json"), "--csv-dir", str(SAMPLE / "timeseries/gdsh"),
            "-o", str(OUT / "data"), "--name", "gdsh_sample"]),
        ("build a tiny random ChatTS-architecture model", [
            _tool("tsplugin"), "init-model", "-o", str(OUT / "model"), "--arch", "qwen3ts", "--preset", "tiny"]),
        ("LoRA fine-tune with stock LLaMA-Factory", [
            _tool("llamafactory-cli"), "train", "yaml_recipes/tiny_cpu_demo.yaml"]),
        ("merge the adapter into a standalone model", [
            _tool("llamafactory-cli"), "export", "yaml_recipes/tiny_cpu_export.yaml"]),
        ("answer one question about one series", [
            _tool("tsplugin"), "chat", "--model", str(OUT / "merged"), "--template", "chatts8b_nothink",
            "--csv", str(csv), "--max-new-tokens", "48", QUESTION]),
    ]
    for step, argv in steps:
        _run(step, argv, root, env)

    print("\n(The answer comes from a ~1.5M-parameter random model trained for a minute: it shows the")
    print(" pipeline end to end, not a useful analysis. Point the recipes at a real checkpoint for that.)")
    print("\nArtefacts:")
    for label, path in [
        ("converted data + dataset_info.json", OUT / "data"),
        ("conversion report", OUT / "data/gdsh_sample.report.json"),
        ("tiny base model", OUT / "model"),
        ("LoRA adapter + trainer_log.jsonl", OUT / "lora"),
        ("merged model", OUT / "merged"),
    ]:
        print(f"  {label:38s} {root / path}")
    return 0


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "quickstart",
        help="run convert -> tiny model -> LoRA -> export -> answer on the bundled sample (CPU, offline)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--no-clean", dest="clean", action="store_false", help="keep runs/quickstart from a previous run")
    parser.set_defaults(func=run)
