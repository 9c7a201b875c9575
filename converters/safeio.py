"""Read a CSV without ever leaving --csv-dir, without blocking, within a size limit.

Design choices:
- Open first, check the descriptor after. Every path component is opened relative to the directory
  opened before it, with O_NOFOLLOW: a component swapped for a symlink after any earlier check is
  refused by the kernel, never followed. Symlinks inside --csv-dir are resolved here, lexically, one
  component at a time (no kernel path walk), and must stay inside; a link leaving it is refused.
- O_NONBLOCK: a FIFO opens at once and is then refused by fstat (not a regular file), as are
  character/block devices, sockets and directories: nothing but a regular file is ever read.
- Hard links: a file with st_nlink > 1 may be a second name of a file outside --csv-dir and that
  cannot be told apart, so it is refused unless the user allows hard links (--allow-hard-links).
- Size: fstat's size above the limit refuses; the read stops at limit + 1 bytes (a growing file).
- Messages name the CSV relative to --csv-dir and never quote a byte of a refused file.
- The same rules hold for the files a user names (a command's input, dataset_info.json in -o):
  `open_named_input` streams them (a pipe is spooled to a temp file first), `read_small_file` caps them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

from tsplugin.userfiles import kind_of, read_at_most

from .errors import InputError, RejectError

DEFAULT_MAX_CSV_BYTES = 256 << 20
_MAX_LINKS = 40  # the kernel's own limit on symlinks in one path walk
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW | _CLOEXEC
_FILE_FLAGS = os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | _CLOEXEC


@dataclass(frozen=True)
class ReadLimits:
    """What a CSV must satisfy to be read."""

    max_bytes: int = DEFAULT_MAX_CSV_BYTES
    allow_hard_links: bool = False


def _missing(shown: str) -> RejectError:
    return RejectError("missing_csv", f"{shown} not found in --csv-dir. Put the CSV there or pass --csv-pattern matching your file names")


def _outside(shown: str, target: str) -> RejectError:
    return RejectError(
        "path_outside_csv_dir",
        f"{shown} is a link to {target}, outside --csv-dir. Copy the file into --csv-dir instead of linking",
    )


def open_confined(root: Path, rel_parts: list[str], shown: str) -> int:
    """A read-only descriptor of ``root/rel_parts`` that provably lies inside ``root`` (a resolved
    directory). Raises RejectError (missing_csv, path_outside_csv_dir, unreadable_csv)."""
    root_s = str(root)
    fds = [os.open(root_s, _DIR_FLAGS & ~_NOFOLLOW)]  # the user's --csv-dir itself may be a link
    todo = deque(rel_parts)
    links = 0
    try:
        while todo:
            part = todo.popleft()
            if part in ("", "."):
                continue
            if part == "..":
                if len(fds) == 1:
                    raise _outside(shown, os.path.realpath(os.path.join(root_s, *rel_parts)))
                os.close(fds.pop())
                continue
            last = not any(p not in ("", ".") for p in todo)
            try:
                fd = os.open(part, _FILE_FLAGS if last else _DIR_FLAGS, dir_fd=fds[-1])
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK) and _is_link(part, fds[-1]):
                    links += 1
                    if links > _MAX_LINKS:
                        raise RejectError("unreadable_csv", f"{shown}: too many levels of symbolic links. Replace the links with the file") from None
                    target = os.readlink(part, dir_fd=fds[-1])
                    if os.path.isabs(target):
                        inside = os.path.relpath(os.path.normpath(target), root_s)
                        if inside == ".." or inside.startswith(".." + os.sep) or os.path.isabs(inside):
                            raise _outside(shown, os.path.realpath(os.path.join(root_s, *rel_parts))) from None
                        while len(fds) > 1:
                            os.close(fds.pop())
                        target = inside
                    todo.extendleft(reversed(target.split(os.sep)))
                    continue
                if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                    raise _missing(shown) from None
                raise RejectError("unreadable_csv", f"{shown}: cannot open: {exc.strerror}") from None
            if last:
                return fd
            fds.append(fd)
        raise _missing(shown)  # the path named a directory
    finally:
        for fd in fds:
            os.close(fd)


def _is_link(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode)
    except OSError:
        return False


def read_descriptor(fd: int, shown: str, limits: ReadLimits) -> bytes:
    """Check the opened file on its descriptor (regular, one link, size) and read it; closes ``fd``."""
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise RejectError(
                "not_a_regular_file",
                f"{shown} is a {kind_of(st.st_mode)}, not a regular file, and was not read. Put the CSV's contents in a plain file",
            )
        if st.st_nlink > 1 and not limits.allow_hard_links:
            raise RejectError(
                "hard_linked_csv",
                f"{shown} has {st.st_nlink} hard links; one may be a file outside --csv-dir, so it was not read. "
                "Copy the file (cp, not ln), or pass --allow-hard-links if you trust every link",
            )
        if st.st_size > limits.max_bytes:
            raise RejectError("csv_too_large", f"{shown} is {st.st_size} bytes, above --max-csv-bytes {limits.max_bytes}. "
                              "Raise --max-csv-bytes or split the series")
        data = read_at_most(fd, limits.max_bytes)
        if data is None:
            raise RejectError("csv_too_large", f"{shown} grew above --max-csv-bytes {limits.max_bytes} while being read. "
                              "Raise --max-csv-bytes or stop writing to the file")
        return data
    except OSError as exc:
        raise RejectError("unreadable_csv", f"{shown}: cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)


def read_confined(root: Path, rel_parts: list[str], shown: str, limits: ReadLimits) -> bytes:
    """The bytes of the regular file ``root/rel_parts``, read without leaving ``root``."""
    return read_descriptor(open_confined(root, rel_parts, shown), shown, limits)


def read_named_file(path: Path, shown: str, limits: ReadLimits) -> bytes:
    """A file the user named on the command line (symlinks to it are the user's choice and are
    followed): still only a regular file, never blocking, within the size limit."""
    try:
        fd = os.open(path, _FILE_FLAGS & ~_NOFOLLOW)
    except FileNotFoundError:
        raise RejectError("missing_csv", f"{shown}: no such file. Check the path") from None
    except OSError as exc:
        raise RejectError("unreadable_csv", f"{shown}: cannot open: {exc.strerror}") from None
    return read_descriptor(fd, shown, ReadLimits(limits.max_bytes, allow_hard_links=True))


DEFAULT_MAX_PIPE_BYTES = 4 << 30  # input read from a pipe is spooled to a temp file up to this size
_COPY = 1 << 20


@contextlib.contextmanager
def open_named_input(path: Path, max_pipe_bytes: int = DEFAULT_MAX_PIPE_BYTES) -> Iterator[BinaryIO]:
    """The file a user named as a command's input, opened for streaming (binary, seekable, at its start).

    A regular file is opened without blocking and checked on its descriptor; a pipe (``/dev/stdin``,
    ``<(...)``) is copied to a temporary file first, up to ``max_pipe_bytes``; a named FIFO, a device,
    a socket or a directory is refused without reading a byte. Every refusal is one InputError line
    naming the path and the fix."""
    shown = str(path)
    try:
        fd = os.open(path, _FILE_FLAGS & ~_NOFOLLOW)
    except FileNotFoundError:
        raise InputError(f"{shown}: no such file. Check the path") from None
    except OSError as exc:
        raise InputError(f"{shown}: cannot open: {exc.strerror}. Check the path and its permissions") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISFIFO(mode) and _is_anonymous_pipe(fd, shown):
            fh = _spool(fd, shown, max_pipe_bytes)
        elif stat.S_ISREG(mode):
            fh = os.fdopen(fd, "rb")
        else:
            hint = "; to read a pipe pass /dev/stdin (cat FILE | tsconvert ... /dev/stdin)" if stat.S_ISFIFO(mode) else ""
            raise InputError(f"{shown} is a {kind_of(mode)}, not a regular file, and was not read. Pass a plain file{hint}")
    except BaseException:
        os.close(fd)
        raise
    with fh:
        yield fh


def _is_anonymous_pipe(fd: int, shown: str) -> bool:
    """A pipe with no name (a shell's `|` or `<(...)`), as opposed to a FIFO in the file system."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}").startswith("pipe:")
    except OSError:  # no /proc: trust the names only a pipe has
        return shown.startswith(("/dev/stdin", "/dev/fd/", "/proc/"))


def _spool(fd: int, shown: str, max_bytes: int) -> BinaryIO:
    """Copy a pipe into an unnamed temporary file (removed on close) and return it at its start; closes ``fd``."""
    os.set_blocking(fd, True)  # a pipe's writer may be slow: wait for it, as `cat` would
    tmp = tempfile.TemporaryFile()
    try:
        total = 0
        while True:
            try:
                chunk = os.read(fd, _COPY)
            except OSError as exc:
                raise InputError(f"{shown}: cannot read the pipe: {exc.strerror}") from None
            if not chunk:
                break
            total += len(chunk)
            if total > max_bytes:
                raise InputError(f"{shown}: the pipe holds more than {max_bytes} bytes. Save it to a file and pass the file")
            tmp.write(chunk)
        tmp.seek(0)
        os.close(fd)
        return tmp  # type: ignore[return-value]
    except BaseException:
        tmp.close()
        raise


def read_small_file(path: Path, max_bytes: int) -> bytes | None:
    """The bytes of a small file a command reads and rewrites (dataset_info.json), None when it does not
    exist: a regular file only, never blocking, at most ``max_bytes``; else one InputError line."""
    if not os.path.lexists(path):
        return None
    keep = "; it was not changed. Replace it with a plain JSON file or pick another -o folder"
    try:
        fd = os.open(path, _FILE_FLAGS & ~_NOFOLLOW)
    except OSError as exc:
        raise InputError(f"{path}: cannot open: {exc.strerror}{keep}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{path} is a {kind_of(st.st_mode)}, not a regular file, and was not read{keep}")
        data = read_at_most(fd, max_bytes)
        if data is not None:
            return data
        raise InputError(f"{path} is larger than {max_bytes} bytes, more than any dataset_info.json needs, and was not read{keep}")
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}{keep}") from None
    finally:
        os.close(fd)
