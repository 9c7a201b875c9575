"""Stream records out of a JSON array or a JSONL file, each with its original text.

Design choices:
- The stdlib parser decodes every record, so a file reads exactly as it always did (NaN/Infinity
  literals, integers of any size within Python's digit limit). This module only finds where each
  element of the top-level array starts and ends: one C regex pass over the bytes that skips strings
  whole and counts brackets on a stack. A record may be any size (nothing is decided from a partial
  buffer), and each record keeps its exact source text, so rejected records are written back
  byte-faithful (``compact_text``).
- ijson (yajl) was measured and not used: it refuses the NaN/Infinity literals the stdlib accepts
  (files that converted before would stop converting) and gives no source text per record.
- A broken file structure stops the run (InputError with line and column). A problem that only one
  record's content causes (nesting deeper than the parser allows, an integer over Python's digit
  limit) comes back in ``RawRecord.error`` so that record is rejected and the run goes on.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Iterator

from .errors import InputError

_CHUNK = 1 << 20
_WS = b" \t\r\n"
# A complete string, an unfinished string running to the end of the buffer, or one structural byte.
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:(?P<close>")|\\?\Z)|[\[\]{},]', re.S)
_CLOSER = {ord("]"): ord("["), ord("}"): ord("{")}
_TEXT_WS = re.compile(r'("[^"\\]*(?:\\.[^"\\]*)*")|[ \t\r\n]+', re.S)


@dataclass
class RawRecord:
    """One top-level record: its source text and the parsed value, or why it cannot be parsed."""

    text: str
    value: Any = None
    error: tuple[str, str] | None = None  # (reason code, message) when only this record is unreadable


def iter_records(path: Path) -> Iterator[Any]:
    """Yield each top-level record of ``path`` (JSON array or JSONL) as a Python value, in order."""
    for rec in iter_raw_records(path):
        if rec.error is not None:
            raise InputError(f"{path.name}: {rec.error[1]}")
        yield rec.value


def iter_raw_records(path: Path) -> Iterator[RawRecord]:
    """Yield a :class:`RawRecord` per top-level record of ``path``, in order."""
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise InputError(f"{path}: cannot open input: {exc.strerror}. Check the path.") from None
    with fh:
        block = fh.read(_CHUNK)
        if block.startswith(b"\xef\xbb\xbf"):
            block = block[3:]
        first = block.lstrip(_WS)[:1]
        while not first and block:  # a whitespace-only block: look further
            block = fh.read(_CHUNK)
            first = block.lstrip(_WS)[:1]
        if first == b"":
            raise InputError(f"{path.name}: file is empty. Expected a JSON array or JSON Lines.")
        fh.seek(0)
        if first == b"[":
            yield from _iter_array(_Scanner(fh, path.name))
        else:
            yield from _iter_jsonl(path, path.name)


def compact_text(text: str) -> str:
    """The record's source text without the whitespace between tokens (one JSONL line): every
    string, number and literal (NaN, a 100-digit integer, an escape) stays exactly as written."""
    return _TEXT_WS.sub(lambda m: m.group(1) or "", text)


def _parse(text: str) -> tuple[Any, tuple[str, str] | None]:
    """json.loads one record; JSONDecodeError propagates (the file is broken), other failures are the record's."""
    try:
        return json.loads(text), None
    except json.JSONDecodeError:
        raise
    except RecursionError:
        return None, ("unparseable_record", "nested deeper than the JSON parser allows. Flatten the record")
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        return None, ("unparseable_record", f"cannot be parsed: {str(exc).splitlines()[0]}. Fix the record (quote huge numbers as strings)")


def _iter_jsonl(path: Path, name: str) -> Iterator[RawRecord]:
    # Text mode with universal newlines, as before: CR, LF and CRLF all end a line.
    with open(path, encoding="utf-8-sig") as fh:
        lineno = 0
        try:
            for lineno, line in enumerate(fh, start=1):
                text = line.strip()
                if not text:
                    continue
                try:
                    value, error = _parse(text)
                except json.JSONDecodeError as exc:
                    hint = ""
                    if lineno == 1 and text == "{":
                        hint = " (a single JSON object is not supported: give a JSON array of records or JSON Lines)"
                    raise InputError(
                        f"{name}: line {lineno} column {exc.colno}: invalid JSON: {exc.msg}{hint}. "
                        "Fix that line (JSON Lines needs one complete record per line)."
                    ) from None
                if error is not None:
                    error = (error[0], f"line {lineno}: {error[1]}")
                yield RawRecord(text, value, error)
        except UnicodeDecodeError:
            raise InputError(f"{name}: line {lineno + 1}: not UTF-8 text. Re-save the file as UTF-8.") from None


class _Scanner:
    """A byte window over the file that remembers the line and column of its first byte."""

    def __init__(self, fh: IO[bytes], name: str) -> None:
        self.fh, self.name = fh, name
        self.buf = bytearray()
        self.eof = False
        self.line = 1  # line of buf[0]
        self.col = 0   # characters before buf[0] on that line

    def more(self) -> bool:
        if self.eof:
            return False
        chunk = self.fh.read(_CHUNK)
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def drop(self, n: int) -> None:
        """Forget buf[:n] (always cut at an ASCII byte), keeping line/column bookkeeping."""
        dropped = bytes(self.buf[:n])
        nl = dropped.count(b"\n")
        if nl:
            self.line += nl
            self.col = len(dropped[dropped.rfind(b"\n") + 1:].decode("utf-8", "replace"))
        else:
            self.col += len(dropped.decode("utf-8", "replace"))
        del self.buf[:n]

    def where(self, pos: int) -> tuple[int, int]:
        """(line, 1-based column) of buf[pos]."""
        before = bytes(self.buf[:pos])
        nl = before.count(b"\n")
        if nl:
            return self.line + nl, len(before[before.rfind(b"\n") + 1:].decode("utf-8", "replace")) + 1
        return self.line, self.col + len(before.decode("utf-8", "replace")) + 1

    def fail(self, pos: int, what: str) -> InputError:
        line, col = self.where(pos)
        return InputError(f"{self.name}: line {line} column {col}: {what}")

    def decode(self, start: int, end: int) -> str:
        try:
            return bytes(self.buf[start:end]).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.fail(start + exc.start, "invalid UTF-8. Re-save the file as UTF-8.") from None

    def record(self, start: int, end: int) -> RawRecord:
        """Parse buf[start:end] (one element, whitespace around it allowed) or raise its error with position."""
        raw = bytes(self.buf[start:end])
        lead = len(raw) - len(raw.lstrip(_WS))
        start += lead
        text = self.decode(start, end).rstrip(" \t\r\n")
        if not text:
            raise self.fail(start if start < end else end, "invalid JSON: Expecting value. Fix the file at that position.")
        try:
            value, error = _parse(text)
        except json.JSONDecodeError as exc:
            line, col = self.where(start)
            if exc.lineno > 1:
                line, col = line + exc.lineno - 1, exc.colno
            else:
                col = col + exc.colno - 1
            raise InputError(f"{self.name}: line {line} column {col}: invalid JSON: {exc.msg}. Fix the file at that position.") from None
        if error is not None:
            line, _ = self.where(start)
            error = (error[0], f"line {line}: {error[1]}")
        return RawRecord(text, value, error)


def _iter_array(sc: _Scanner) -> Iterator[RawRecord]:
    while b"[" not in sc.buf and sc.more():
        pass
    if sc.buf.startswith(b"\xef\xbb\xbf"):
        del sc.buf[:3]  # not a character of the first line
    pos = sc.buf.index(b"[") + 1  # only whitespace comes before it
    seg = pos       # start of the current element's text (just after '[' or ',')
    stack: list[int] = []
    count = 0
    while True:
        m = _TOKEN.search(sc.buf, pos)
        if m is None or (m.group()[0] == 0x22 and m.group("close") is None):
            # Nothing structural left, or a string that continues in the next block.
            resume = len(sc.buf) if m is None else m.start()
            if sc.more():
                pos = resume
                continue
            if stack or bytes(sc.buf[seg:]).strip(_WS):
                sc.record(seg, len(sc.buf))  # raises the parser's own error with its position
                raise sc.fail(len(sc.buf), "file ends inside the JSON array (missing ']'). The file is truncated: re-export it.")
            raise sc.fail(len(sc.buf), "file ends inside the JSON array. The file is truncated: re-export it.")
        tok = m.group()[0]
        pos = m.end()
        if tok == 0x22:
            continue
        if tok in (0x5B, 0x7B):  # [ {
            stack.append(tok)
            continue
        if tok in _CLOSER and stack:
            if stack.pop() != _CLOSER[tok]:
                sc.record(seg, m.end())  # mismatched bracket: the parser names the position
                raise sc.fail(m.start(), "invalid JSON: mismatched bracket. Fix the file at that position.")
            continue
        if stack:  # a ',' inside a record
            continue
        # A ',' or the closing ']' of the top-level array ends one element.
        if tok == 0x7D:
            raise sc.fail(m.start(), "invalid JSON: expected ',' or ']' after a record, found '}'. Fix the file at that position.")
        if tok == 0x5D and count == 0 and not bytes(sc.buf[seg:m.start()]).strip(_WS):
            _expect_end(sc, m.end())
            return
        yield sc.record(seg, m.start())
        count += 1
        if tok == 0x5D:
            _expect_end(sc, m.end())
            return
        seg = pos
        if seg >= _CHUNK:  # forget what was consumed, in large steps (a bytearray shift is a copy)
            sc.drop(seg)
            pos = seg = 0


def _expect_end(sc: _Scanner, pos: int) -> None:
    while True:
        rest = bytes(sc.buf[pos:])
        stripped = rest.lstrip(_WS)
        if stripped:
            raise sc.fail(pos + len(rest) - len(stripped), "extra data after the JSON array. Remove it.")
        pos = len(sc.buf)
        if not sc.more():
            return
