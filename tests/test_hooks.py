"""The plugin reaches every LLaMA-Factory process, and changes nothing for other data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, free_port, lf_args, write_dataset
from converters.writer import update_dataset_info


def _python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, cwd="/", timeout=300, env={**os.environ, **env},
    )


def test_fresh_interpreter_gets_every_hook_from_the_pth_file():
    result = _python(
        """
        import llamafactory.train.tuner
        import llamafactory.chat.hf_engine
        import llamafactory.chat.vllm_engine  # infer_backend: vllm (imports without vLLM installed)
        import llamafactory.api.app
        import llamafactory.webui.interface  # webchat / webui (LlamaBoard)
        import llamafactory.launcher  # llamafactory-cli COMMAND: the one-line handler
        from llamafactory.data.template import TEMPLATES
        from tsplugin.llamafactory import hooks
        assert {"chatts", "chatts8b", "chatts8b_nothink"} <= set(TEMPLATES), sorted(TEMPLATES)
        missing = set(hooks.HOOKS) - hooks.applied()
        assert not missing, missing
        print("ok")
        """
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]


def test_processes_that_never_import_llamafactory_do_not_load_the_plugin():
    result = _python("import sys, json; print(json.dumps(sorted(m for m in sys.modules if m.startswith(('tsplugin', 'torch', 'llamafactory')))))")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == ["tsplugin", "tsplugin._bootstrap"]


def _importtime(python: str) -> dict[str, str]:
    """Module -> its `-X importtime` line, for `python -X importtime -c pass` (a fresh start-up)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    result = subprocess.run([python, "-X", "importtime", "-c", "pass"], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("import time:")]
    assert len(lines) == len(result.stderr.splitlines()), result.stderr[-2000:]  # nothing else on stderr (no hook error)
    return {line.rsplit("|", 1)[1].strip(): line for line in lines}


def test_pth_hook_imports_only_itself_at_start_up(tmp_path):
    """The .pth runs in every interpreter of the environment: it may add the tsplugin package and the
    bootstrap module, nothing else (no importlib.abc: importlib.resources, pathlib, tempfile, typing
    cost ~19 ms). Measured in a bare venv of the same interpreter, before and after adding a copy of
    the hook .pth (the shared venv is not touched)."""
    venv = tmp_path / "venv"
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    bare = _importtime(python)
    (Path(site) / "_tsfactory_tree.pth").write_text(f"{ROOT}\n")  # what the editable install writes
    (Path(site) / "tsfactory_llamafactory.pth").write_bytes((ROOT / "tsplugin" / "_pth" / "tsfactory_llamafactory.pth").read_bytes())
    hooked = _importtime(python)
    assert sorted(set(hooked) - set(bare)) == ["tsplugin", "tsplugin._bootstrap"], [hooked[m] for m in set(hooked) - set(bare)]
    finders = subprocess.run([python, "-c", "import sys; print([type(f).__name__ for f in sys.meta_path])"],
                             capture_output=True, text=True, check=True).stdout
    assert "_LlamaFactoryFinder" in finders, finders  # the hook did install itself


def test_bootstrap_watches_exactly_the_hooked_modules():
    from tsplugin import _bootstrap
    from tsplugin.llamafactory import hooks

    assert _bootstrap.WATCHED == set(hooks.HOOKS) | set(hooks.TRANSFORMERS_HOOKS) | set(hooks.TORCH_HOOKS) | set(hooks.VLLM_HOOKS) | {hooks._MM_PLUGIN_MODULE}


def test_unsupported_llamafactory_version_warns_and_hooks_nothing(monkeypatch):
    from tsplugin.llamafactory import hooks

    monkeypatch.setattr(hooks.metadata, "version", lambda name: "0.9.9")
    monkeypatch.setattr(hooks, "_applied", set())
    called = []
    monkeypatch.setitem(hooks.HOOKS, "llamafactory.data.parser", lambda module: called.append(module))
    with pytest.warns(UserWarning, match=r"tsfactory supports llamafactory>=0.9.5,<0.9.6, found 0.9.9"):
        hooks.on_import("llamafactory.data.parser", object())
    assert called == []


def test_upstream_shape_change_fails_loudly():
    from types import ModuleType

    from tsplugin.llamafactory import hooks

    fake = ModuleType("llamafactory.data.converter")
    with pytest.raises(ImportError, match=r"llamafactory.data.converter has no get_dataset_converter, align_dataset"):
        hooks.hook_converter(fake)


def test_engine_shape_change_fails_loudly():
    from types import ModuleType

    from tsplugin.llamafactory import hooks

    fake = ModuleType("llamafactory.chat.hf_engine")

    class HuggingfaceEngine:  # _process_args no longer a staticmethod
        def __init__(self): ...
        async def chat(self): ...
        async def stream_chat(self): ...
        def _process_args(self): ...

    fake.HuggingfaceEngine = HuggingfaceEngine
    with pytest.raises(ImportError, match=r"HuggingfaceEngine changed shape"):
        hooks.hook_hf_engine(fake)


def test_datasets_without_timeseries_use_the_stock_pipeline(tmp_path):
    from llamafactory.data.converter import AlpacaDatasetConverter, get_dataset_converter
    from llamafactory.data.parser import get_dataset_list
    from llamafactory.hparams import DataArguments

    data = write_dataset(tmp_path, "text", [{"instruction": "hi", "output": "hello"}], columns={"prompt": "instruction", "response": "output"})
    update_dataset_info(data / "dataset_info.json", "images", {"file_name": "text.jsonl", "columns": {"prompt": "instruction", "images": "images"}})
    for attr in get_dataset_list(["text", "images"], str(data)):
        assert attr.timeseries is None
        converter = get_dataset_converter("alpaca", attr, DataArguments(dataset_dir=str(data)))
        assert type(converter) is AlpacaDatasetConverter


def test_text_template_processing_is_unchanged_by_the_plugin(tiny_qwen3ts, tmp_path):
    """A non-time-series template gets LLaMA-Factory's own dataset processor, not the wrapper."""
    from llamafactory.data import get_template_and_fix_tokenizer
    from llamafactory.data.loader import _get_dataset_processor
    from llamafactory.data.processor import SupervisedDatasetProcessor
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    model_args, data_args, training_args, _, _ = get_train_args(lf_args(tiny_qwen3ts, tmp_path / "o", template="qwen3_nothink"))
    module = load_tokenizer(model_args)
    template = get_template_and_fix_tokenizer(module["tokenizer"], data_args)
    processor = _get_dataset_processor(data_args, "sft", template, module["tokenizer"], module["processor"])
    assert type(processor) is SupervisedDatasetProcessor


@pytest.mark.slow  # LLaMA-Factory imported twice in fresh processes: ~4 min on a busy 2-core machine
@pytest.mark.timeout(1200)
def test_torchrun_relaunch_registers_the_plugin_in_the_worker(tiny_qwen3ts, tmp_path):
    """`FORCE_TORCHRUN=1 llamafactory-cli train`: LLaMA-Factory re-launches itself under torchrun.

    Slow tier; the default tier still checks the start-up hook in a fresh interpreter (above, and
    test_serve_api's `llamafactory-cli api`); test_deepspeed's runs go through the same relaunch with 2 workers."""
    out = tmp_path / "out"
    args = lf_args(tiny_qwen3ts, out, max_steps=1, per_device_train_batch_size=1, ddp_backend="gloo")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(args))
    cli = os.path.join(os.path.dirname(sys.executable), "llamafactory-cli")
    path = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")  # torchrun, as in an activated venv
    env = {**os.environ, "PATH": path, "FORCE_TORCHRUN": "1", "NPROC_PER_NODE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run([cli, "train", str(recipe)], capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert "torchrun" in log or "Initializing" in log
    assert (out / "adapter_model.safetensors").is_file()


def test_a_data_error_raised_in_a_dataloader_worker_prints_its_own_message():
    """torch re-raises a worker's exception with the worker's traceback in the message; llamafactory-cli (and a
    torchrun worker) print the error's own line from it."""
    from torch._utils import ExceptionWrapper

    from tsplugin.llamafactory.data import TimeSeriesDataError
    from tsplugin.llamafactory.hooks import user_message

    message = "f.jsonl: record 3 (line 4): series 0: value 1 is nan, not a finite number."
    try:
        raise TimeSeriesDataError(message)
    except TimeSeriesDataError:
        wrapped = ExceptionWrapper(where="in DataLoader worker process 0")
    with pytest.raises(TimeSeriesDataError) as err:
        wrapped.reraise()
    assert "Original Traceback" in str(err.value) and user_message(err.value) == message
    assert user_message(TimeSeriesDataError(message)) == message
