"""Shared by the benches: no network, and LLaMA-Factory's chatter in a log file, only our own lines printed."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path


def offline() -> None:
    """Hub, datasets and trackers offline (the benches build everything locally); user settings win."""
    for key, value in {
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "WANDB_DISABLED": "true",
    }.items():
        os.environ.setdefault(key, value)


@contextlib.contextmanager
def lf_output_to(path: Path | None):
    """Send everything written to fd 1/2 (LLaMA-Factory's examples, logs, progress bars) to `path`;
    yields a print function that still reaches the terminal. `path=None` leaves output alone."""
    if path is None:
        yield print
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(1), "w", buffering=1)
    with open(path, "a", encoding="utf-8") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield lambda *a, **k: print(*a, **k, file=terminal)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            terminal.close()
