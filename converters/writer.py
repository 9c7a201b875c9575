"""Atomic file output: write to a temp file in the target directory, fsync, then os.replace.
A crash leaves the previous file (or none) in place, never a half-written one, and no temp file."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any

from .errors import InputError


class AtomicFile:
    """``with AtomicFile(path) as fh:`` writes bytes; the file appears only if the block succeeds."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fh: IO[bytes] | None = None
        self._tmp: str | None = None

    def __enter__(self) -> IO[bytes]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        # mkstemp creates 0600; give the file the mode a plain open() would (or the old file's).
        try:
            mode = self.path.stat().st_mode & 0o777
        except FileNotFoundError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(fd, mode)
        self._fh = os.fdopen(fd, "wb")
        return self._fh

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self._fh.flush()  # type: ignore[union-attr]
                os.fsync(self._fh.fileno())  # type: ignore[union-attr]
            self._fh.close()  # type: ignore[union-attr]
            if exc_type is None:
                os.replace(self._tmp, self.path)  # type: ignore[arg-type]
                self._tmp = None
        finally:
            if self._tmp is not None and os.path.exists(self._tmp):
                os.unlink(self._tmp)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically."""
    with AtomicFile(path) as fh:
        fh.write(data)


def update_dataset_info(path: Path, name: str, entry: dict[str, Any]) -> None:
    """Add or replace entry ``name`` in dataset_info.json, keeping the other entries and their order."""
    info: dict[str, Any] = {}
    if path.exists():
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise InputError(
                f"{path}: line {exc.lineno} column {exc.colno}: invalid JSON: {exc.msg}. Fix it or move it away; it was not changed"
            ) from None
        if not isinstance(info, dict):
            raise InputError(f"{path}: expected a JSON object of dataset entries. Fix it or move it away; it was not changed")
    info[name] = entry
    text = json.dumps(info, ensure_ascii=False, indent=2) + "\n"
    write_bytes_atomic(path, text.encode("utf-8"))
