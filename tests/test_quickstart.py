"""`tsplugin quickstart`: the files it needs ship in the wheel and are found outside a clone (default
tier); end to end it prints held-out accuracy with the series clearly above the accuracy with the
series shuffled, and writes the training curves (slow)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from converters.cli import main as tsconvert
from tsplugin.cli import main as tsplugin_main
from tsplugin.quickstart.bundled import BUNDLED
from tsplugin.quickstart import (DATA, HELD_OUT, HELD_OUT_SEED, LENGTH, LORA, OUT, PREDICTIONS, RECIPES, SHUFFLE_SEED, SPLITS,
                                 TASK, write_task)
from tsplugin.quickstart.ramps import ANSWERS, QUESTION, derangement, make_records


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", **extra)
    return env


def _repo_files(repo_path: str) -> set[str]:
    """Files git tracks under `repo_path`, relative to it (what a build from a clean checkout sees)."""
    out = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", repo_path], capture_output=True, check=True, text=True)
    return {str(Path(p).relative_to(repo_path)) for p in out.stdout.split("\0") if p}


def build_wheel(directory: Path) -> Path:
    """`pip wheel` of the clone, offline (the build backend comes from this environment)."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(ROOT), "-w", str(directory)],
                   check=True, env=_env(PIP_NO_INDEX="1"))
    (wheel,) = directory.glob("tsfactory-*.whl")
    return wheel


def fresh_venv_with(wheel: Path, venv: Path) -> Path:
    """A new venv holding `wheel` as `pip install` puts it there (console scripts, the .pth start-up hook);
    its dependencies (torch, LLaMA-Factory, ...) are this environment's site-packages, added as plain paths
    after the venv's own, so the clone this environment may have installed in editable mode stays out of
    reach. LLaMA-Factory's console script is written from its entry point, as pip would have. Returns bin/."""
    import importlib.metadata
    import site

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
                   check=True, env=_env())
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # "_" sorts before "tsfactory_llamafactory.pth": the dependencies are on sys.path before the plugin's hook runs
    (Path(purelib) / "_dependencies_of_this_test.pth").write_text("\n".join(site.getsitepackages()) + "\n", encoding="utf-8")
    (entry,) = [e for e in importlib.metadata.entry_points(group="console_scripts") if e.name == "llamafactory-cli"]
    module, attr = entry.value.split(":")
    script = venv / "bin" / "llamafactory-cli"
    script.write_text(f"#!{python}\nimport sys\nfrom {module} import {attr}\nsys.exit({attr}())\n", encoding="utf-8")
    script.chmod(0o755)
    return venv / "bin"


def test_wheel_ships_recipes_and_sample_and_quickstart_finds_them_outside_a_clone(tmp_path):
    wheel = build_wheel(tmp_path / "wheels")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name, repo_path in BUNDLED.items():
        expected = _repo_files(repo_path)
        assert expected, f"git tracks nothing under {repo_path}"
        missing = sorted(f for f in expected if f"tsplugin/_bundled/{name}/{f}" not in names)
        assert not missing, f"{wheel.name} lacks {name} files: {missing[:5]}"
    assert {f"tsplugin/_bundled/yaml_recipes/{r}" for r in RECIPES} <= names

    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(site), str(wheel)],
                   check=True, env=_env())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run([sys.executable, "-m", "tsplugin.cli", "quickstart", "--dry-run"], cwd=elsewhere,
                            env=_env(PYTHONPATH=str(site)), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    packaged = site / "tsplugin" / "_bundled"
    assert f"working in {elsewhere}; outputs in runs/quickstart/" in out
    assert f"recipes: {packaged / 'yaml_recipes'}\n" in out and f"sample:  {packaged / 'gdsh_sample'}\n" in out
    commands = [line[2:] for line in out.splitlines() if line.startswith("$ ")]
    for recipe in RECIPES:
        assert any(c.endswith(f"train {packaged / 'yaml_recipes' / recipe}") or c.endswith(f"export {packaged / 'yaml_recipes' / recipe}")
                   for c in commands), (recipe, commands)
    assert any(str(packaged / "gdsh_sample" / "gdsh.json") in c for c in commands), commands
    # the commands run this environment's tools, which may live in a venv inside the clone (.venv/bin): not data
    assert str(ROOT) not in out.replace(os.path.dirname(sys.executable), "<bin>"), \
        "resolved a path in the clone although only the wheel was importable"


def test_inside_a_clone_it_works_in_the_clone_root_with_the_clones_own_files(monkeypatch, capsys):
    """From any folder of a clone: outputs under the clone's runs/, recipes and sample from the clone (not tests/)."""
    monkeypatch.chdir(ROOT / "dataset_info")
    assert tsplugin_main(["quickstart", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"tsplugin quickstart: working in {ROOT}; outputs in runs/quickstart/"
    assert f"recipes: {ROOT / 'yaml_recipes'}\nsample:  {ROOT / 'dataset_info' / 'gdsh_sample_source'}\n" in out
    commands = [line[2:] for line in out.splitlines() if line.startswith("$ ")]
    assert any(" dataset_info/gdsh_sample_source/gdsh.json --csv-dir dataset_info/gdsh_sample_source/timeseries/gdsh " in c
               for c in commands), commands
    assert any(c.endswith(" train yaml_recipes/tiny_cpu_demo.yaml") for c in commands), commands


def test_task_files_convert_to_the_records_the_generator_made(tmp_path):
    """The task written in the users' shape (chat JSON + CSVs) converts back to the generated records;
    the shuffled held-out file keeps each question and answer and takes another record's series."""
    written = write_task(tmp_path)
    for name in ("ramps_test", "ramps_test_shuffled"):
        assert tsconvert([str(written[name]), "--csv-dir", str(tmp_path / TASK / "csv"), "-o", str(tmp_path / "data"),
                          "--name", name, "--workers", "1", "-q", "--strict"]) == 0
    read = lambda name: [json.loads(line) for line in (tmp_path / "data" / f"{name}.jsonl").read_text().splitlines()]
    aligned, shuffled = read("ramps_test"), read("ramps_test_shuffled")
    held_out = make_records(HELD_OUT, LENGTH, HELD_OUT_SEED)
    assert [r["input"] for r in aligned] == [QUESTION] * HELD_OUT
    assert [r["output"] for r in aligned] == [r["output"] for r in held_out] == [r["output"] for r in shuffled]
    assert sorted({r["output"] for r in aligned}) == sorted(ANSWERS)
    assert [r["timeseries"] for r in aligned] == [r["timeseries"] for r in held_out]  # 4 decimals both ways
    donors = derangement(HELD_OUT, SHUFFLE_SEED)
    assert [r["timeseries"] for r in shuffled] == [held_out[j]["timeseries"] for j in donors]


@pytest.mark.slow
def test_quickstart_end_to_end_from_a_wheel_prints_evidence_that_the_model_reads_the_series(tmp_path):
    """What a user gets after `pip install tsfactory-*.whl`: `tsplugin quickstart` in a folder of theirs,
    with the wheel's code, recipes and sample only (the clone is not importable), to the evidence."""
    bin_dir = fresh_venv_with(build_wheel(tmp_path / "wheels"), tmp_path / "venv")
    where = subprocess.run([str(bin_dir / "python"), "-c", "import tsplugin, llamafactory; print(tsplugin.__file__)"],
                           capture_output=True, text=True, env=_env(), cwd=tmp_path)
    assert where.returncode == 0 and where.stdout.startswith(str(tmp_path / "venv")), where.stdout + where.stderr
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = _env(PATH=os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")]))
    result = subprocess.run([str(bin_dir / "tsplugin"), "quickstart"], cwd=work, env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert out.splitlines()[0] == f"tsplugin quickstart: working in {work}; outputs in runs/quickstart/"
    assert str(ROOT) not in out, "a path in the clone, although only the wheel was installed"
    found = {key: re.search(rf"{key}:\s+([\d.]+) \((\d+)/(\d+)\)", out) for key in ("with the series", "series shuffled between records")}
    assert all(found.values()), out
    (aligned, k1, n1), (shuffled, k2, n2) = (m.groups() for m in found.values())
    aligned, shuffled = int(k1) / int(n1), int(k2) / int(n2)
    assert aligned >= 0.8, out  # the bench's config reaches 1.00 (bench/series_ablation.py)
    assert 0.3 <= shuffled <= 0.7, out  # chance; P(outside) < 1e-8 at N=200
    assert aligned - shuffled >= 0.25, out
    assert "model: '" in out and "expected: '" in out
    png = work / "runs/quickstart/lora/training_curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "healthy: step 60/60" in out, out
    assert (work / "runs/quickstart/gdsh_sample/gdsh_sample.jsonl").read_bytes() == (ROOT / "dataset_info/gdsh_sample.jsonl").read_bytes()


def test_recipes_train_and_predict_on_the_datasets_quickstart_writes():
    recipes = {name: yaml.safe_load((ROOT / "yaml_recipes" / name).read_text(encoding="utf-8")) for name in RECIPES}
    train, export, predict = (recipes[name] for name in RECIPES)
    assert train["dataset"] == SPLITS[0] and predict["eval_dataset"] == ",".join(SPLITS[1:])
    assert train["dataset_dir"] == predict["dataset_dir"] == str(DATA)
    assert train["output_dir"] == export["adapter_name_or_path"] == str(LORA)
    assert export["export_dir"] == predict["model_name_or_path"] == str(OUT / "merged")
    assert Path(predict["output_dir"]) / "generated_predictions.jsonl" == PREDICTIONS
    assert predict["do_sample"] is False and train["seed"] == predict["seed"]
