"""Reading weight files safely, with errors that say what the file is and what to do.

One reader for every checkpoint a `tsplugin` command takes (`build-model --encoder-ckpt`, PatchTST
`checkpoint.pth`, transformers PatchTST directories) and one translation of load failures for the ones
transformers reads (`--llm`, `init-model --base`):

- `.safetensors` is read with safetensors; a file with that name that is really a PyTorch pickle/zip
  (or anything else) is named as such, with the fix.
- Anything else goes through `torch.load(weights_only=True)` only: a pickle that holds Python objects
  besides tensors is refused. PyTorch's own message then advises retrying with `weights_only=False`,
  which runs whatever code the file carries; that advice is never passed on. The message says how to
  re-save the weights alone instead.
- Cut, empty or corrupt files name the file and say so.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default (zip) format
PICKLE_MAGIC = b"\x80"  # a raw pickle (protocol >= 2), torch's legacy format

RESAVE = (
    "from an environment you trust, load it and save the tensors alone: "
    "`torch.save(model.state_dict(), 'weights.pt')` or `safetensors.torch.save_file(state_dict, 'weights.safetensors')`"
)


class CheckpointError(ValueError):
    """A weight file that cannot be read safely; the message names the file and the fix."""


def _kind(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return "unreadable"
    if head.startswith(ZIP_MAGIC):
        return "a PyTorch zip checkpoint (torch.save)"
    if head.startswith(PICKLE_MAGIC):
        return "a Python pickle"
    if not head:
        return "empty"
    return "not a weights file"


def explain(err: BaseException, path: str | Path) -> CheckpointError | None:
    """The CheckpointError for a load failure of `path`, or None when `err` is not about reading weights."""
    path = Path(path)
    text = str(err)
    if isinstance(err, pickle.UnpicklingError) or "weights_only" in text or "Weights only load failed" in text:
        found = re.search(r"GLOBAL ([\w.]+)", text)
        what = f" (it references {found.group(1)})" if found else ""
        return CheckpointError(
            f"{path}: refused to load: the file holds Python objects besides tensors{what}, and unpickling them "
            f"could run code, so only tensors are read here. {RESAVE[0].upper()}{RESAVE[1:]}, then pass that file"
        )
    if type(err).__name__ == "SafetensorError" or "deserializing header" in text:
        kind = _kind(path)
        hint = " (rename it to .pt: it is then read tensors-only)" if kind.startswith(("a PyTorch", "a Python")) else ""
        return CheckpointError(f"{path}: not a safetensors file: it is {kind}{hint}. Pass the real weights file or re-save it: {RESAVE}")
    if isinstance(err, EOFError) or "central directory" in text or "PytorchStreamReader" in text:
        kind = _kind(path)
        return CheckpointError(f"{path}: cannot read it as a PyTorch checkpoint ({kind}; cut short or damaged?). Copy it again or re-save it")
    return None


def read_state_dict(path: str | Path) -> Any:
    """The object stored in a weight file, read safely (safetensors, or torch.load with weights_only=True)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # every failure is translated or re-raised
        translated = explain(err, path)
        if translated is None:
            raise
        raise translated from None


def explain_any(err: BaseException, directory: str | Path) -> CheckpointError | None:
    """`explain` for an error raised while transformers read the weights of a model `directory`
    (`--llm`, `--base`): the message names the weight file when the directory has one, else the directory."""
    directory = Path(directory)
    files = [f for ext in ("*.bin", "*.safetensors", "*.pt", "*.pth") for f in sorted(directory.glob(ext))] if directory.is_dir() else []
    return explain(err, files[0] if len(files) == 1 else directory)


__all__ = ["CheckpointError", "explain", "explain_any", "read_state_dict"]
