"""`tsplugin quickstart`: train a tiny model that reads series, and show the evidence (CPU, offline, minutes).

Runs the commands a user types, as subprocesses, and prints each one:
  1. tsconvert the bundled GDSH-shaped sample (the shape of your data: chat JSON + one CSV per plot);
  2. write a learnable task in that same shape (tsplugin.quickstart.ramps: two noisy ramps per record, "which
     one rises?", answers that only the series carry) and tsconvert it: training records, held-out
     records, and the held-out records with their series shuffled between records;
  3. tsplugin init-model (a tiny random ChatTS-8B-architecture model, with the offset/scale-only prefix
     of profile tsfactory-v0, so that the answer can only reach the model through its encoder);
  4. llamafactory-cli train (LoRA), llamafactory-cli export (merge), llamafactory-cli train with
     do_predict (answers to the held-out questions);
then prints held-out accuracy with the series and with the series shuffled (the gap is the model
reading the series), one example question and answer, and writes training_curves.png.
Everything is seeded: the same machine prints the same numbers.

Inside a tsfactory clone it works in the clone's root; elsewhere (after `pip install` of a wheel) in
the current folder. Either way the recipes and the sample come from tsplugin.quickstart.bundled, and the outputs
go to runs/quickstart/.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Sequence

import yaml

from tsplugin.quickstart.bundled import bundled
from tsplugin.monitor import PLOT_NAME, analyze, plot_curves, read_rows, summary
from tsplugin.quickstart.ramps import derangement, make_records

OUT = Path("runs/quickstart")
DATA = OUT / "data"  # the recipes' dataset_dir
TASK = OUT / "ramps"  # the task in the users' shape (JSON + CSVs), before conversion
LOGS = OUT / "logs"
RECIPES = ("tiny_cpu_demo.yaml", "tiny_cpu_export.yaml", "tiny_cpu_predict.yaml")
PREDICTIONS = OUT / "predict" / "generated_predictions.jsonl"
LORA = OUT / "lora"
# The task: 960 training records = one epoch of 60 steps x batch 16 (tiny_cpu_demo.yaml), 200 held out.
TRAIN_RECORDS, HELD_OUT, LENGTH = 960, 200, 64
TRAIN_SEED, HELD_OUT_SEED, SHUFFLE_SEED = 0, 1000, 7
SPLITS = ("ramps_train", "ramps_test", "ramps_test_shuffled")  # dataset names the recipes use
START = datetime(2025, 6, 1)
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def work_root(start: Path) -> Path:
    """The tsfactory clone containing `start` (its recipes and runs/ live there), else `start`."""
    for candidate in [start, *start.parents]:
        if (candidate / "yaml_recipes" / RECIPES[0]).is_file() and (candidate / "tsplugin" / "quickstart" / "__init__.py").is_file():
            return candidate
    return start


def _tool(name: str) -> str:
    """Console script next to this interpreter (the venv's), else on PATH."""
    local = Path(sys.executable).with_name(name)
    return str(local) if local.exists() else (shutil.which(name) or name)


def _shown(path: Path, root: Path) -> str:
    """A path as the user would type it from `root` (relative when inside it)."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


# ----------------------------------------------------------------------------- the task, in the users' shape


def write_task(root: Path) -> dict[str, Path]:
    """Write the ramps task as LLaVA-style ShareGPT JSON + one CSV per series (what tsconvert reads).

    Returns {dataset name: JSON file}. The shuffled held-out file asks the held-out questions with
    another held-out record's CSVs (a derangement): same text and answers, series that do not match."""
    task, csv_dir = root / TASK, root / TASK / "csv"
    if task.exists():
        shutil.rmtree(task)
    csv_dir.mkdir(parents=True)
    stamps = [(START + timedelta(seconds=i)).strftime("%Y-%m-%d %H:%M:%S") for i in range(LENGTH)]

    def write_csvs(prefix: str, records: list[dict]) -> list[list[str]]:
        images = []
        for i, record in enumerate(records):
            names = []
            for side, series in zip("ab", record["timeseries"]):
                stem = f"{prefix}_{i:05d}_{side}"
                rows = "".join(f"{t},{v:.4f}\n" for t, v in zip(stamps, series))
                (csv_dir / f"{stem}.csv").write_text("timestamp,value\n" + rows, encoding="utf-8")
                names.append(f"plots/{stem}.jpg")
            images.append(names)
        return images

    def write_json(name: str, records: list[dict], images: list[list[str]]) -> Path:
        rows = [{"messages": [{"role": "user", "content": r["input"].replace("<ts><ts/>", "<image>")},
                              {"role": "assistant", "content": r["output"]}], "images": imgs}
                for r, imgs in zip(records, images)]
        path = task / f"{name}.json"
        path.write_text(json.dumps(rows, indent=1, ensure_ascii=False), encoding="utf-8")
        return path

    train = make_records(TRAIN_RECORDS, LENGTH, TRAIN_SEED)
    held_out = make_records(HELD_OUT, LENGTH, HELD_OUT_SEED)
    held_out_images = write_csvs("test", held_out)
    donors = derangement(HELD_OUT, SHUFFLE_SEED)
    return {
        SPLITS[0]: write_json("train", train, write_csvs("train", train)),
        SPLITS[1]: write_json("test", held_out, held_out_images),
        SPLITS[2]: write_json("test_shuffled", held_out, [held_out_images[j] for j in donors]),
    }


# ----------------------------------------------------------------------------- the evidence


@dataclass
class Accuracy:
    correct: int
    n: int

    @property
    def value(self) -> float:
        return self.correct / self.n

    def __str__(self) -> str:
        return f"{self.value:.2f} ({self.correct}/{self.n})"


def read_predictions(path: Path, n: int) -> tuple[list[dict], list[dict]]:
    """LLaMA-Factory's generated_predictions.jsonl for eval_dataset ramps_test,ramps_test_shuffled
    (concatenated in that order): the aligned half and the shuffled half."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(rows) != 2 * n:
        raise SystemExit(
            f"tsplugin quickstart: {path} has {len(rows)} predictions, expected {2 * n} ({n} held-out records with "
            f"their series, then the same {n} with shuffled series). Was a record dropped by cutoff_len? See {LOGS}/predict.log."
        )
    return rows[:n], rows[n:]


def accuracy(rows: Sequence[dict]) -> Accuracy:
    return Accuracy(sum(r["predict"].strip() == r["label"].strip() for r in rows), len(rows))


def _describe(series: Sequence[float]) -> str:
    head = ", ".join(f"{v:.1f}" for v in series[:4])
    tail = ", ".join(f"{v:.1f}" for v in series[-2:])
    return f"{len(series)} points: {head}, ..., {tail}"


def report(root: Path, log: Any = print) -> tuple[Accuracy, Accuracy]:
    """Print the held-out accuracies, one example, the run's health; write training_curves.png."""
    aligned, shuffled = read_predictions(root / PREDICTIONS, HELD_OUT)
    with_series, without = accuracy(aligned), accuracy(shuffled)
    log(f"\n==> held-out accuracy ({HELD_OUT} records the model never saw; chance is 0.50)")
    log(f"  with the series:                          {with_series}")
    log(f"  series shuffled between records:          {without}")
    log("  The text and the answers are the same in both; only the series moved. The gap is the model")
    log("  reading the series.")

    test = [json.loads(line) for line in (root / DATA / f"{SPLITS[1]}.jsonl").read_text(encoding="utf-8").splitlines()]
    example, answer = test[0], aligned[0]["predict"].strip()
    log("\n==> one held-out question and the model's answer")
    for line in example["input"].splitlines():
        log(f"  Q: {line}")
    for side, series in zip("AB", example["timeseries"]):
        log(f"     series {side}: {_describe(series)}")
    log(f"  model: {answer!r}   expected: {example['output']!r}")
    csvs = [root / TASK / "csv" / f"test_00000_{side}.csv" for side in "ab"]
    template = yaml.safe_load((bundled("yaml_recipes") / RECIPES[2]).read_text(encoding="utf-8"))["template"]
    log("  Ask it yourself:")
    log("  $ " + shlex.join([_tool("tsplugin"), "chat", "--model", _shown(root / OUT / "merged", root),
                             "--template", template, "--csv", _shown(csvs[0], root), "--csv", _shown(csvs[1], root), example["input"]]))

    rows = read_rows(root / LORA)
    health = analyze(rows)
    plot = plot_curves(rows, health, root / LORA / PLOT_NAME)
    log(f"\n==> training: {summary(rows, health)}")
    log(f"  curves: {_shown(plot, root)}")
    return with_series, without


# ----------------------------------------------------------------------------- the pipeline


WRITE_TASK = (f"write the 'which series rises' task ({TRAIN_RECORDS} training + {HELD_OUT} held-out records, two "
              f"{LENGTH}-point series each) in the same shape (tsplugin.quickstart.ramps)")
SPLIT_LABELS = {
    SPLITS[0]: ("train", "the task's training records"),
    SPLITS[1]: ("test", "the held-out records"),
    SPLITS[2]: ("test_shuffled", "the held-out records again, each with another record's series"),
}


def steps(root: Path) -> list[tuple[str, list[str] | None, str]]:
    """(what, argv, log name) of every step, in order; argv None is the in-process task writer."""
    sample = bundled("gdsh_sample")
    recipes = bundled("yaml_recipes")
    recipe = {name: _shown(recipes / name, root) for name in RECIPES}
    convert = [
        (f"convert {label}", [
            _tool("tsconvert"), _shown(root / TASK / f"{stem}.json", root), "--csv-dir", _shown(root / TASK / "csv", root),
            "-o", str(DATA), "--name", name, "--workers", "1", "-q"], f"convert_{name}")
        for name, (stem, label) in SPLIT_LABELS.items()
    ]
    return [
        ("convert the bundled GDSH-shaped sample (the shape of your data: chat JSON + one CSV per plot)", [
            _tool("tsconvert"), _shown(sample / "gdsh.json", root), "--csv-dir", _shown(sample / "timeseries" / "gdsh", root),
            "-o", str(OUT / "gdsh_sample"), "--name", "gdsh_sample", "-q"], "convert_gdsh_sample"),
        (WRITE_TASK, None, "write_task"),
        *convert,
        # Profile tsfactory-v0 writes only offset/scale before each series, which by the task's symmetry carry no
        # answer; the current releases' prefix also writes left=/right= (first and last value), from which a model
        # could read "which one rises" as text. So here the answer can only come through the encoder.
        ("build a tiny random ChatTS-8B-architecture model (~1.5M parameters; offset/scale prefix only)", [
            _tool("tsplugin"), "init-model", "-o", str(OUT / "model"), "--arch", "qwen3ts", "--preset", "tiny", "--seed", "0",
            "--profile", "tsfactory-v0"],
         "init_model"),
        ("LoRA fine-tune with stock LLaMA-Factory (60 steps)", [_tool("llamafactory-cli"), "train", recipe[RECIPES[0]]], "train"),
        ("merge the adapter into a standalone model", [_tool("llamafactory-cli"), "export", recipe[RECIPES[1]]], "export"),
        ("answer the held-out questions, with their series and with shuffled series", [
            _tool("llamafactory-cli"), "train", recipe[RECIPES[2]]], "predict"),
    ]


def _run(step: str, argv: list[str], root: Path, env: dict[str, str], log_path: Path | None) -> None:
    where = "" if log_path is None else f"\n    (output: {_shown(log_path, root)})"
    print(f"\n==> {step}\n$ {shlex.join(argv)}{where}", flush=True)
    started = time.perf_counter()
    if log_path is None:
        result = subprocess.run(argv, cwd=root, env=env)
    else:
        with open(log_path, "w", encoding="utf-8") as out:
            result = subprocess.run(argv, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        if log_path is not None:
            tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-30:]
            print("\n".join(["    | " + line for line in tail]), file=sys.stderr)
        raise SystemExit(f"tsplugin quickstart: step '{step}' failed with exit code {result.returncode}"
                         + ("" if log_path is None else f"; full output in {log_path}") + ".")
    print(f"    ({time.perf_counter() - started:.1f} s)", flush=True)


def run(args: argparse.Namespace) -> int:
    root = work_root(Path.cwd().resolve())
    plan = steps(root)
    print(f"tsplugin quickstart: working in {root}; outputs in {_shown(root / OUT, root)}/", flush=True)
    print(f"recipes: {bundled('yaml_recipes')}\nsample:  {bundled('gdsh_sample')}", flush=True)
    if args.dry_run:
        for step, argv, _ in plan:
            print(f"\n==> {step}" + ("" if argv is None else f"\n$ {shlex.join(argv)}"))
        return 0

    started = time.perf_counter()
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    # One CPU thread unless you say otherwise: a ~1.5M-parameter model gains nothing from more, a busy
    # CPU loses a lot to oversubscribed threads, and the numbers then do not depend on the core count.
    for key in THREAD_VARS:
        env.setdefault(key, "1")
    print(f"CPU threads per command: OMP_NUM_THREADS={env['OMP_NUM_THREADS']} (set it to change)", flush=True)
    if args.clean and (root / OUT).exists():
        shutil.rmtree(root / OUT)
    (root / LOGS).mkdir(parents=True, exist_ok=True)
    for step, argv, log_name in plan:
        if argv is None:
            print(f"\n==> {step}", flush=True)
            for name, path in write_task(root).items():
                print(f"    {name:20s} {_shown(path, root)}")
            print(f"    one CSV per series   {_shown(root / TASK / 'csv', root)}/", flush=True)
        else:
            _run(step, argv, root, env, None if args.verbose else root / LOGS / f"{log_name}.log")

    report(root)
    print("\nArtefacts:")
    for label, path in [
        ("converted GDSH sample + report", OUT / "gdsh_sample"),
        ("the task as chat JSON + CSVs", TASK),
        ("converted task + dataset_info.json", DATA),
        ("tiny base model", OUT / "model"),
        ("LoRA adapter, trainer_log.jsonl, curves", LORA),
        ("merged model", OUT / "merged"),
        ("held-out answers", PREDICTIONS),
        ("each command's output", LOGS),
    ]:
        print(f"  {label:40s} {root / path}")
    print(f"\nDone in {time.perf_counter() - started:.0f} s.")
    return 0


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "quickstart",
        help="train a tiny model on a bundled task and show it reads the series: held-out accuracy (CPU, offline, minutes)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--no-clean", dest="clean", action="store_false", help="keep runs/quickstart from a previous run")
    parser.add_argument("--verbose", action="store_true",
                        help="show every command's output here instead of in runs/quickstart/logs/")
    parser.add_argument("--dry-run", action="store_true",
                        help="print where it would work, the bundled recipes and sample it found, and the commands; run nothing")
    parser.set_defaults(func=run)
