"""Output files written as a set: all of them appear, or none changes.

Design choices:
- Each output is staged unseen, as a hidden temp file in the target folder named with the writer's
  pid (``.NAME.jsonl.tsconvert-PID-XXXX.tmp``). Ctrl-C and SIGTERM remove them on the way out; after
  a SIGKILL the next run in that folder removes those whose writer is gone, and no reader ever
  takes them for outputs. (O_TMPFILE would leave nothing even after SIGKILL, but linking it into
  place needs /proc, which sandboxes often refuse; one path that always works is kept.)
- Every staged file is written and fsync'ed before any becomes visible, so a full disk or a
  read-only folder fails with nothing changed.
- dataset_info.json is read, modified and replaced under an exclusive lock (flock on a hidden lock
  file next to it, removed on release), so concurrent runs writing one dataset_info.json keep each
  other's entries. The data files are put in place under the same lock, dataset_info.json last: a
  reader never finds an entry whose file is missing.
- An output that is also an input (same path, or the same file through a link) is refused before
  anything is read: see :func:`converters.paths.refuse_overwriting_inputs`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import tempfile
from pathlib import Path
from typing import IO, Any

from .errors import InputError, OutputError
from .safeio import read_small_file

MAX_DATASET_INFO_BYTES = 64 << 20  # far above any real dataset_info.json; a link to /dev/zero stops here

_TEMP_TAG = "tsconvert"
_STALE = re.compile(rf"^\..+\.{_TEMP_TAG}-(\d+)-[^/]*\.tmp$")


def _default_mode(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _output_error(path: Path, exc: OSError) -> OutputError:
    what = exc.strerror or str(exc)
    fix = {errno.ENOSPC: "Free disk space", errno.EDQUOT: "Free disk space (quota)", errno.EROFS: "Write to another folder (-o)",
           errno.EACCES: "Write to a folder you may write to (-o)", errno.EPERM: "Write to a folder you may write to (-o)",
           errno.EFBIG: "Raise the file size limit or write less"}.get(exc.errno, "Check the output folder")
    return OutputError(f"cannot write {path}: {what}. {fix}; nothing was changed in {path.parent}")


class StagedFile:
    """One output being written where no reader looks for it yet."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.tmp: str | None = None
        self.fd = -1
        self.fh: IO[bytes] | None = None
        try:
            self.fd, self.tmp = tempfile.mkstemp(prefix=f".{self.path.name}.{_TEMP_TAG}-{os.getpid()}-", suffix=".tmp",
                                                 dir=self.path.parent)
            os.fchmod(self.fd, _default_mode(self.path))  # mkstemp creates 0600; use what open() would (or the old mode)
        except OSError as exc:
            self.discard()
            raise _output_error(self.path, exc) from None
        self.fh = os.fdopen(self.fd, "wb", closefd=False)

    def write(self, data: bytes) -> None:
        try:
            self.fh.write(data)  # type: ignore[union-attr]
        except OSError as exc:
            raise _output_error(self.path, exc) from None

    def finish(self) -> None:
        """Flush and fsync: after this the bytes are on disk (a full disk fails here, not later)."""
        try:
            self.fh.flush()  # type: ignore[union-attr]
            os.fsync(self.fd)
        except OSError as exc:
            raise _output_error(self.path, exc) from None

    def commit(self) -> None:
        os.replace(self.tmp, self.path)  # type: ignore[arg-type]
        self.tmp = None

    def discard(self) -> None:
        """Close, and remove the temp file unless it was committed."""
        try:
            if self.fh is not None:
                try:
                    self.fh.close()
                except OSError:
                    pass
                self.fh = None
            if self.fd >= 0:
                os.close(self.fd)
                self.fd = -1
        finally:
            if self.tmp is not None:
                try:
                    os.unlink(self.tmp)
                except FileNotFoundError:
                    pass
                self.tmp = None


class OutputSet:
    """``open()`` the outputs, write them, ``commit(entries)``: every file and every dataset_info.json
    entry appears, or (on any error, ``abort()``) nothing in the folder changes."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _output_error(self.out_dir, exc) from None
        remove_stale_temps(self.out_dir)
        self.files: list[StagedFile] = []

    def open(self, name: str) -> StagedFile:
        staged = StagedFile(self.out_dir / name)
        self.files.append(staged)
        return staged

    def commit(self, entries: dict[str, dict[str, Any]] | None = None, info_name: str = "dataset_info.json") -> None:
        for f in self.files:
            f.finish()
        info_path = self.out_dir / info_name
        with DatasetInfoLock(info_path) if entries else contextlib.nullcontext():
            if entries:
                info = self.open(info_name)
                info.write(_merged_info(info_path, entries))
                info.finish()
            backups = [_backup(f.path) for f in self.files]
            done: list[int] = []
            try:
                for k, f in enumerate(self.files):  # dataset_info.json, opened last, goes in place last
                    f.commit()
                    done.append(k)
            except OSError as exc:
                _roll_back([self.files[k].path for k in done], [backups[k] for k in done])
                self.abort()
                raise _output_error(f.path, exc) from None
            finally:
                for b in backups:
                    if b is not None and os.path.exists(b):
                        os.unlink(b)
        _fsync_dir(self.out_dir)
        self.abort()  # closes the descriptors; nothing is left to remove

    def abort(self) -> None:
        for f in self.files:
            f.discard()
        # A Ctrl-C or SIGTERM raised between a temp file's creation and `open()` recording it leaves a
        # file no StagedFile knows: remove every temp file of this process in the folder.
        remove_stale_temps(self.out_dir, own=True)

    def __enter__(self) -> "OutputSet":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.abort()


def _backup(path: Path) -> str | None:
    """A second name for the file ``path`` holds now (a hard link: no copy), to put back on failure."""
    if not path.exists():
        return None
    name = str(path.parent / f".{path.name}.{_TEMP_TAG}-{os.getpid()}-{os.urandom(4).hex()}.bak.tmp")
    try:
        os.link(path, name)
    except OSError:
        return None  # a file system without hard links: no rollback for this file
    return name


def _roll_back(paths: list[Path], backups: list[str | None]) -> None:
    """Undo the renames already done: old files back in place, new files removed."""
    for path, backup in zip(paths, backups):
        try:
            if backup is not None:
                os.replace(backup, path)
            else:
                os.unlink(path)
        except OSError:
            pass


def _merged_info(path: Path, entries: dict[str, dict[str, Any]]) -> bytes:
    info: dict[str, Any] = {}
    data = read_small_file(path, MAX_DATASET_INFO_BYTES)  # a FIFO or a link to /dev/zero is refused, never read
    if data is not None:
        try:
            info = json.loads(data.decode("utf-8-sig"))
        except json.JSONDecodeError as exc:
            raise InputError(
                f"{path}: line {exc.lineno} column {exc.colno}: invalid JSON: {exc.msg}. Fix it or move it away; it was not changed"
            ) from None
        except (UnicodeDecodeError, RecursionError, ValueError) as exc:
            raise InputError(f"{path}: cannot read it ({type(exc).__name__}). Fix it or move it away; it was not changed") from None
        if not isinstance(info, dict):
            raise InputError(f"{path}: expected a JSON object of dataset entries. Fix it or move it away; it was not changed")
    info.update(entries)
    return (json.dumps(info, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temps(out_dir: Path, own: bool = False) -> None:
    """Remove hidden temp files that a killed tsconvert left (their writer's pid is gone); with `own`,
    this process's too (an interrupt can land between creating a temp file and recording it)."""
    try:
        names = os.listdir(out_dir)
    except OSError:
        return
    for name in names:
        m = _STALE.match(name)
        if m is None:
            continue
        pid = int(m.group(1))
        if _alive(pid) and not (own and pid == os.getpid()):
            continue
        try:
            os.unlink(out_dir / name)
        except OSError:
            pass


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class DatasetInfoLock:
    """Exclusive lock for read-modify-write of one dataset_info.json (flock on a hidden lock file,
    which the holder removes on release; a waiter that wakes on a removed file tries again)."""

    def __init__(self, info_path: Path) -> None:
        self.path = info_path.parent / f".{info_path.name}.lock"
        self.fd = -1
        self._fallback: Any = None

    def __enter__(self) -> "DatasetInfoLock":
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            from filelock import FileLock

            self._fallback = FileLock(str(self.path))
            self._fallback.acquire()
            return self
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                raise _output_error(self.path, exc) from None
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self.fd = fd
                return self
            os.close(fd)  # the previous holder removed it: lock the new one

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._fallback is not None:  # pragma: no cover - Windows
            self._fallback.release()
            return
        try:
            os.unlink(self.path)
        except OSError:
            pass
        os.close(self.fd)


class AtomicFile:
    """``with AtomicFile(path) as fh:`` writes bytes; the file appears only if the block succeeds."""

    def __init__(self, path: Path) -> None:
        self.set = OutputSet(Path(path).parent)
        self.name = Path(path).name

    def __enter__(self) -> StagedFile:
        return self.set.open(self.name)

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.set.commit()
        self.set.abort()


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically."""
    with AtomicFile(path) as fh:
        fh.write(data)


def update_dataset_info(path: Path, name: str, entry: dict[str, Any]) -> None:
    """Add or replace entry ``name`` in dataset_info.json under the lock, keeping the other entries and their order."""
    with OutputSet(path.parent) as out:
        out.commit({name: entry}, info_name=path.name)
