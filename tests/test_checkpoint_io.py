"""Weight files the commands take are read tensors-only; refused or mislabelled files get a clear error
that never passes on PyTorch's advice to retry with weights_only=False."""

from __future__ import annotations

import shutil

import pytest
import torch

from conftest import make_qwen_base
from tsplugin.cli import main


class Payload:
    """Unpickling this would create a file: the proof that no code from a checkpoint ever runs."""

    marker = None

    def __reduce__(self):
        return (open, (str(Payload.marker), "w"))


@pytest.fixture()
def marker(tmp_path):
    Payload.marker = tmp_path / "pwned"
    yield Payload.marker
    assert not Payload.marker.exists(), "a checkpoint's pickle ran code"


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return make_qwen_base(tmp_path_factory.mktemp("base") / "qwen3", "qwen3")


def _run(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err and "weights_only=False" not in err and "add_safe_globals" not in err
    return code, err.strip().splitlines()[-1]


# the global PyTorch names (io.open or builtins.open) depends on its version
REFUSED = "refused to load: the file holds Python objects besides tensors (it references "


def test_encoder_state_dict_with_code_is_refused(base, tmp_path, capsys, marker):
    ckpt = tmp_path / "enc.pt"
    torch.save({"mlp.0.weight": torch.zeros(2), "extra": Payload()}, ckpt)
    code, err = _run(capsys, "build-model", "--llm", base, "--encoder", "chatts_mlp", "--encoder-ckpt", ckpt, "-o", tmp_path / "o")
    assert code == 2 and err.startswith(f"tsplugin build-model: {ckpt}: {REFUSED}")
    assert "open), and unpickling them could run code" in err and "save the tensors alone" in err
    assert not (tmp_path / "o" / "config.json").exists()


def test_patchtst_checkpoint_with_code_is_refused(base, tmp_path, capsys, marker):
    ckpt = tmp_path / "checkpoint.pth"
    torch.save({"model.backbone.W_P.weight": Payload()}, ckpt)
    code, err = _run(capsys, "build-model", "--llm", base, "--encoder", "patchtst", "--encoder-ckpt", ckpt, "-o", tmp_path / "o")
    assert code == 2 and err.startswith(f"tsplugin build-model: {ckpt}: {REFUSED}")


@pytest.mark.parametrize(
    "content, expected",
    [
        ("pickle", "not a safetensors file: it is a PyTorch zip checkpoint (torch.save) (rename it to .pt: it is then read tensors-only)"),
        ("text", "not a safetensors file: it is not a weights file."),
    ],
)
def test_a_safetensors_file_that_is_not_one_is_named(content, expected, base, tmp_path, capsys):
    ckpt = tmp_path / "enc.safetensors"
    if content == "pickle":
        torch.save({"mlp.0.weight": torch.zeros(2)}, ckpt)
    else:
        ckpt.write_text("hello")
    code, err = _run(capsys, "build-model", "--llm", base, "--encoder", "chatts_mlp", "--encoder-ckpt", ckpt, "-o", tmp_path / "o")
    assert code == 2 and err.startswith(f"tsplugin build-model: {ckpt}: {expected}")


@pytest.mark.parametrize("cut", [0, 100])
def test_empty_or_cut_checkpoints_are_named(cut, base, tmp_path, capsys):
    whole = tmp_path / "whole.pt"
    torch.save({"mlp.0.weight": torch.zeros(64)}, whole)
    ckpt = tmp_path / "enc.pt"
    ckpt.write_bytes(whole.read_bytes()[:cut])
    code, err = _run(capsys, "build-model", "--llm", base, "--encoder", "chatts_mlp", "--encoder-ckpt", ckpt, "-o", tmp_path / "o")
    assert code == 2 and err.startswith(f"tsplugin build-model: {ckpt}: cannot read it as a PyTorch checkpoint")


def test_base_and_llm_weights_with_code_are_refused(base, tmp_path, capsys, marker):
    evil = tmp_path / "evil"
    shutil.copytree(base, evil)
    state = {k: v for f in evil.glob("*.safetensors") for k, v in __import__("safetensors.torch").torch.load_file(f).items()}
    for f in evil.glob("*.safetensors*"):
        f.unlink()
    state["lm_head.weight"] = Payload()
    torch.save(state, evil / "pytorch_model.bin")
    code, err = _run(capsys, "init-model", "--base", evil, "-o", tmp_path / "o1")
    assert code == 2 and err.startswith(f"tsplugin init-model: --base: {evil / 'pytorch_model.bin'}: {REFUSED}")
    code, err = _run(capsys, "build-model", "--llm", evil, "--encoder", "chatts_mlp", "-o", tmp_path / "o2")
    assert code == 2 and err.startswith(f"tsplugin build-model: --llm: {evil / 'pytorch_model.bin'}: {REFUSED}")
