"""Open a file a user named (a config.json, a scaling file, a dataset, a safetensors header) safely.

Used by `tsplugin inspect`, `tsplugin forecast`, `tsplugin chat` and training's data hook. Standard library only.

Design choices:
- Non-blocking open, then fstat on the descriptor: a FIFO opens at once and is refused (it would hang
  the reader), as are devices (`/dev/zero` would read until memory runs out), sockets and directories.
  Only a regular file is ever read. Symlinks the user made are followed (naming the file is their choice).
- Every read is capped: the size is checked before reading, and the read stops one byte past the cap
  (a file that grows while being read).
- Errors are `UserFileError` (a ValueError) with one line naming the file, what it is, and the fix;
  the `tsplugin` command prints it and exits 2 (tsplugin.cli).
- JSON is parsed with the same rules as `tsplugin.jsonl.parse_line` (nesting and 4300-digit limits are
  a bad file, never a traceback); a number beyond float64 (10**400) is refused by name, since every
  reader here turns numbers into floats.
"""

from __future__ import annotations

import json
import math
import os
import stat
from typing import Any

_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
MiB = 1 << 20
DEFAULT_MAX_JSON_BYTES = 64 * MiB  # a config.json or scaling file is kilobytes; a safetensors header megabytes


class UserFileError(ValueError):
    """A file the user named cannot be used; the message names it and the fix."""


def kind_of(mode: int) -> str:
    """What a non-regular file is, in words."""
    for test, name in ((stat.S_ISFIFO, "FIFO (named pipe)"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket"), (stat.S_ISDIR, "directory")):
        if test(mode):
            return name
    return "special file"


def open_regular(path: str | os.PathLike, what: str = "file") -> int:
    """A read-only descriptor of the regular file `path` (never blocks); UserFileError otherwise."""
    shown = os.fspath(path)
    try:
        fd = os.open(shown, _FLAGS)
    except FileNotFoundError:
        raise UserFileError(f"{shown}: no such {what}. Check the path") from None
    except IsADirectoryError:
        raise UserFileError(f"{shown} is a directory, not a {what}. Name the file itself") from None
    except OSError as exc:
        raise UserFileError(f"{shown}: cannot open the {what}: {exc.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise UserFileError(
            f"{shown} is a {kind_of(st.st_mode)}, not a regular file, and was not read. Put the {what}'s contents in a plain file"
        )
    os.set_blocking(fd, True)
    return fd


def check_regular(path: str | os.PathLike, what: str = "file") -> int:
    """Raise UserFileError unless `path` is a regular file; returns its size in bytes (nothing is read)."""
    fd = open_regular(path, what)
    try:
        return os.fstat(fd).st_size
    finally:
        os.close(fd)


def read_at_most(fd: int, max_bytes: int) -> bytes | None:
    """The rest of `fd`, read in chunks of at most 1 MiB, or None as soon as it holds more than `max_bytes`
    (never more than `max_bytes` + 1 bytes held). OSError passes through; `fd` stays open."""
    chunks, total = [], 0
    while True:
        chunk = os.read(fd, min(MiB, max_bytes + 1 - total))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
        if total > max_bytes:
            return None


def read_capped(fd: int, shown: str, max_bytes: int, what: str = "file", fix: str = "") -> bytes:
    """At most `max_bytes` from `fd` (closed afterwards); UserFileError when the file holds more."""
    too_big = f"{shown}: the {what} is larger than {max_bytes} bytes, more than any {what} needs{fix}"
    try:
        if os.fstat(fd).st_size > max_bytes:
            raise UserFileError(too_big)
        data = read_at_most(fd, max_bytes)
        if data is None:
            raise UserFileError(too_big)
        return data
    except OSError as exc:
        raise UserFileError(f"{shown}: cannot read the {what}: {exc.strerror}") from None
    finally:
        os.close(fd)


def read_file(path: str | os.PathLike, what: str = "file", max_bytes: int = DEFAULT_MAX_JSON_BYTES) -> bytes:
    """The bytes of the regular file `path`, at most `max_bytes` of them."""
    return read_capped(open_regular(path, what), os.fspath(path), max_bytes, what)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise OverflowError(text)
    return value


def _checked_int(text: str) -> int:
    value = int(text)
    try:
        float(value)
    except OverflowError:
        raise OverflowError(f"an integer of {len(text.lstrip('-'))} digits") from None
    return value


def parse_json(data: bytes, shown: str, what: str = "JSON file") -> Any:
    """`data` parsed as UTF-8 JSON; UserFileError naming `shown` for anything a JSON reader here cannot use."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserFileError(f"{shown}: byte {exc.start} is not UTF-8; the {what} must be UTF-8 JSON. Re-save it as UTF-8") from None
    try:
        return json.loads(text, parse_float=_finite_float, parse_int=_checked_int,
                          parse_constant=lambda name: _finite_float(name))
    except json.JSONDecodeError as exc:
        raise UserFileError(f"{shown}: not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg}). Fix the {what}") from None
    except RecursionError:
        raise UserFileError(f"{shown}: nested deeper than JSON readers allow (about 1000 levels); no {what} needs that. Fix the {what}") from None
    except OverflowError as exc:
        raise UserFileError(f"{shown}: holds a number beyond float64 ({exc}); no {what} needs that. Fix the {what}") from None
    except ValueError as exc:  # "Exceeds the limit (4300 digits) for integer string conversion", NaN/Infinity
        raise UserFileError(f"{shown}: holds a number that cannot be read ({str(exc)[:120]}). Fix the {what}") from None


def load_json(path: str | os.PathLike, what: str = "JSON file", max_bytes: int = DEFAULT_MAX_JSON_BYTES,
              expect: type | tuple[type, ...] = dict) -> Any:
    """The JSON value of the regular file `path`, which must be an instance of `expect` (a JSON object by default)."""
    value = parse_json(read_file(path, what, max_bytes), os.fspath(path), what)
    if not isinstance(value, expect):
        shown = {dict: "an object {...}", list: "an array [...]"}
        wanted = " or ".join(shown.get(t, t.__name__) for t in (expect if isinstance(expect, tuple) else (expect,)))
        got = "null" if value is None else {dict: "an object", list: "an array", str: "a string", bool: "true/false"}.get(type(value), "a number")
        raise UserFileError(f"{os.fspath(path)}: the {what} holds {got}, not {wanted}. Fix the {what}")
    return value


__all__ = [
    "DEFAULT_MAX_JSON_BYTES", "UserFileError", "check_regular", "kind_of", "load_json", "open_regular", "parse_json",
    "read_capped", "read_file",
]
