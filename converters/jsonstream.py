"""Stream records out of a JSON array or a JSONL file without holding the whole file.

A JSON array is decoded one element at a time with ``json.JSONDecoder.raw_decode`` over a sliding
text buffer; JSONL is read line by line. Malformed input raises :class:`InputError` with the
line and column of the problem, never a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, TextIO

from .errors import InputError

_CHUNK = 1 << 20
# A decode error this far before the end of the buffer cannot be fixed by reading more text.
_FINAL_ERROR_MARGIN = 8 << 20
_WS = " \t\r\n"


def iter_records(path: Path) -> Iterator[Any]:
    """Yield each top-level record of ``path`` (JSON array or JSONL), in order."""
    try:
        fh = open(path, encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"{path}: cannot open input: {exc.strerror}. Check the path.") from None
    with fh:
        try:
            first = _peek_non_ws(fh)
        except UnicodeDecodeError:
            raise InputError(f"{path.name}: not UTF-8 text. Re-save the file as UTF-8.") from None
        if first == "":
            raise InputError(f"{path.name}: file is empty. Expected a JSON array or JSON Lines.")
        try:
            if first == "[":
                yield from _iter_array(fh, path.name)
            else:
                yield from _iter_jsonl(fh, path.name)
        except UnicodeDecodeError as exc:
            raise InputError(
                f"{path.name}: invalid UTF-8 near byte {exc.start} of a read block. Re-save the file as UTF-8."
            ) from None


def _peek_non_ws(fh: TextIO) -> str:
    while True:
        ch = fh.read(1)
        if ch == "" or ch not in _WS:
            fh.seek(0)  # utf-8-sig drops the BOM again after seeking back to the start
            return ch


def _iter_jsonl(fh: TextIO, name: str) -> Iterator[Any]:
    for lineno, line in enumerate(fh, start=1):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError as exc:
            hint = ""
            if lineno == 1 and line.strip() == "{":
                hint = " (a single JSON object is not supported: give a JSON array of records or JSON Lines)"
            raise InputError(
                f"{name}: line {lineno} column {exc.colno}: invalid JSON: {exc.msg}{hint}. "
                "Fix that line (JSON Lines needs one complete record per line)."
            ) from None


class _Buffer:
    """Text window over the file that remembers how many lines/chars were discarded before it."""

    def __init__(self, fh: TextIO) -> None:
        self.fh = fh
        self.text = ""
        self.pos = 0
        self.eof = False
        self.line_base = 1  # line number of text[0]
        self.col_base = 0   # chars on that line before text[0]

    def fill(self) -> bool:
        if self.eof:
            return False
        chunk = self.fh.read(_CHUNK)
        if not chunk:
            self.eof = True
            return False
        self.text += chunk
        return True

    def compact(self) -> None:
        """Drop consumed text, keeping line/column bookkeeping."""
        if self.pos < _CHUNK:
            return
        dropped = self.text[: self.pos]
        newlines = dropped.count("\n")
        if newlines:
            self.line_base += newlines
            self.col_base = len(dropped) - dropped.rfind("\n") - 1
        else:
            self.col_base += len(dropped)
        self.text = self.text[self.pos :]
        self.pos = 0

    def where(self, pos: int) -> str:
        before = self.text[:pos]
        nl = before.count("\n")
        if nl:
            col = len(before) - before.rfind("\n")
        else:
            col = self.col_base + len(before) + 1
        return f"line {self.line_base + nl} column {col}"

    def skip_ws(self) -> str:
        """Advance past whitespace and return the next char ('' at end of file)."""
        while True:
            while self.pos < len(self.text) and self.text[self.pos] in _WS:
                self.pos += 1
            if self.pos < len(self.text):
                return self.text[self.pos]
            if not self.fill():
                return ""


def _iter_array(fh: TextIO, name: str) -> Iterator[Any]:
    decoder = json.JSONDecoder()
    buf = _Buffer(fh)
    buf.fill()
    buf.skip_ws()
    buf.pos += 1  # the '['
    if buf.skip_ws() == "]":
        buf.pos += 1
        _expect_end(buf, name)
        return
    while True:
        buf.compact()
        if buf.skip_ws() == "":
            raise InputError(f"{name}: {buf.where(buf.pos)}: file ends inside the JSON array. The file is truncated: re-export it.")
        while True:
            try:
                value, end = decoder.raw_decode(buf.text, buf.pos)
                break
            except json.JSONDecodeError as exc:
                final = buf.eof or len(buf.text) - exc.pos > _FINAL_ERROR_MARGIN
                if final or not buf.fill():
                    raise InputError(
                        f"{name}: {buf.where(exc.pos)}: invalid JSON: {exc.msg}. Fix the file at that position."
                    ) from None
        # A number at the very end of the buffer may continue in the next chunk.
        if end == len(buf.text) and not buf.eof and buf.fill():
            continue
        buf.pos = end
        yield value
        nxt = buf.skip_ws()
        if nxt == ",":
            buf.pos += 1
            continue
        if nxt == "]":
            buf.pos += 1
            _expect_end(buf, name)
            return
        if nxt == "":
            raise InputError(f"{name}: {buf.where(buf.pos)}: file ends inside the JSON array (missing ']'). The file is truncated: re-export it.")
        raise InputError(
            f"{name}: {buf.where(buf.pos)}: invalid JSON: expected ',' or ']' after a record, found {nxt!r}. Fix the file at that position."
        )


def _expect_end(buf: _Buffer, name: str) -> None:
    nxt = buf.skip_ws()
    if nxt != "":
        raise InputError(f"{name}: {buf.where(buf.pos)}: extra data after the JSON array. Remove it.")
