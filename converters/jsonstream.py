"""Stream records out of a JSON array or a JSONL file, each with its original text.

Design choices:
- The stdlib parser decodes every record (``raw_decode`` over a sliding text window), so a file
  reads exactly as it always did (NaN/Infinity literals, integers of any size within Python's digit
  limit), and each record keeps its exact source text: rejected records are written back
  byte-faithful (``compact_text``).
- A record in a JSON array may be up to --max-record-bytes characters: an unterminated string is never
  taken as an error before that, and each retry first reads at least as much again as is buffered
  (geometric growth, so retries cost a constant factor); a longer one stops the run in one line.
- JSON Lines are split as bytes (``tsplugin.jsonl.iter_lines``: the same line numbers as validate and
  training) and each line decoded on its own: a line that is not UTF-8, not JSON, cut short or over
  --max-record-bytes is that record's rejection, named by line; an over-long line is never held.
- The input is opened once, with ``safeio.open_named_input`` (regular file, or a pipe spooled to a
  temporary file; never a FIFO or device), and named as what it is when it is not text (gzip, zip, UTF-16).
- ijson (yajl2_c) was measured (bench/json_reader_bench.py) and not used: it refuses the NaN/Infinity
  literals the stdlib accepts (files that converted before would stop converting) and gives no
  source text per record, which byte-faithful rejects need.
- A broken array structure stops the run (InputError with line and column). A problem that only one
  record's content causes (nesting deeper than the parser allows, an integer over Python's digit
  limit) comes back in ``RawRecord.error`` so that record is rejected and the run goes on.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Iterator

from tsplugin.jsonl import DEFAULT_MAX_RECORD_BYTES, HEAD_BYTES, iter_lines, not_text, parse_line, too_large

from .errors import InputError
from .safeio import open_named_input

_CHUNK = 1 << 20
_WS = b" \t\r\n"
_TEXT_WS = re.compile(r'("[^"\\]*(?:\\.[^"\\]*)*")|[ \t\r\n]+', re.S)


@dataclass
class RawRecord:
    """One top-level record: its source text and the parsed value, or why it cannot be parsed."""

    text: str
    value: Any = None
    error: tuple[str, str] | None = None  # (reason code, message) when only this record is unreadable


def iter_records(path: Path, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Iterator[Any]:
    """Yield each top-level record of ``path`` (JSON array or JSONL) as a Python value, in order."""
    for rec in iter_raw_records(path, max_record_bytes):
        if rec.error is not None:
            raise InputError(f"{path.name}: {rec.error[1]}")
        yield rec.value


def iter_raw_records(path: Path, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Iterator[RawRecord]:
    """Yield a :class:`RawRecord` per top-level record of ``path``, in order. The file is opened once
    with :func:`converters.safeio.open_named_input` (regular file or pipe, never a device or FIFO)."""
    with open_named_input(path) as fh:
        block = fh.read(_CHUNK)
        problem = not_text(block[:HEAD_BYTES], Path(path.name))
        if problem is not None:  # gzip, zip, UTF-16, binary: named as what it is
            raise InputError(problem)
        if block.startswith(b"\xef\xbb\xbf"):
            block = block[3:]
        first = block.lstrip(_WS)[:1]
        while not first and block:  # a whitespace-only block: look further
            block = fh.read(_CHUNK)
            first = block.lstrip(_WS)[:1]
        if first == b"":
            raise InputError(f"{path.name}: file is empty. Expected a JSON array or JSON Lines.")
        fh.seek(0)
        if first == b"[" and not _lines_of_arrays(fh, path, max_record_bytes):
            text_fh = io.TextIOWrapper(fh, encoding="utf-8-sig")
            try:
                yield from _iter_array(text_fh, path.name, max_record_bytes)
            except UnicodeDecodeError as exc:
                raise InputError(
                    f"{path.name}: invalid UTF-8 near byte {exc.start} of a read block. Re-save the file as UTF-8."
                ) from None
            finally:
                text_fh.detach()
        else:
            yield from _iter_jsonl(fh, path.name, max_record_bytes)


def _lines_of_arrays(fh: IO[bytes], path: Path, max_record_bytes: int) -> bool:
    """A .jsonl/.ndjson file whose first line is a whole JSON value and which has more lines is JSON
    Lines even though it starts with '[' (its records are then arrays, rejected one by one). Holds at
    most one line within the record cap; leaves ``fh`` at the start."""
    try:
        if path.suffix.lower() not in (".jsonl", ".ndjson"):
            return False
        lines = (data for _, data, _ in iter_lines(fh, max_record_bytes) if data is None or data.strip(_WS))
        first = next(lines, b"")
        if first is None:
            return True  # a first line over the record cap: JSON Lines, that record rejected unread
        if not first:
            return False
        try:
            json.loads(first.decode("utf-8-sig"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return False
        except (RecursionError, ValueError):
            pass  # a whole value that only the record's own limits refuse
        return next(lines, None) is not None
    finally:
        fh.seek(0)


def compact_text(text: str) -> str:
    """The record's source text without the whitespace between tokens (one JSONL line): every
    string, number and literal (NaN, a 100-digit integer, an escape) stays exactly as written."""
    return _TEXT_WS.sub(lambda m: m.group(1) or "", text)


def _iter_jsonl(fh: IO[bytes], name: str, max_record_bytes: int) -> Iterator[RawRecord]:
    """Bytes split into lines (CR, LF and CRLF each end one), each decoded on its own: a line that is not
    UTF-8, not JSON, cut short or over ``max_record_bytes`` is that record's rejection, with its line number."""
    for lineno, data, size in iter_lines(fh, max_record_bytes):
        if data is not None and lineno == 1 and data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        if data is None:
            code, msg = too_large(size, max_record_bytes)
            yield RawRecord("null", None, (code, f"line {lineno}: {msg}"))
            continue
        if not data.strip(_WS):
            continue
        text = data.decode("utf-8", "surrogateescape").strip(_TEXT_WS_CHARS)
        value, error = parse_line(text)
        if error is not None:
            if lineno == 1 and text == "{":
                raise InputError(f"{name}: line 1 is a lone '{{': a single JSON object is not supported. Give a JSON array "
                                 "of records or JSON Lines (one complete record per line)")
            code, msg = error
            source = _as_json_string(text) if code == "not_utf8" or not _is_json_syntax(text) else text
            code = code if code == "not_utf8" else "unparseable_record"  # convert's one code for JSON it cannot read
            yield RawRecord(source, None, (code, f"line {lineno}: {msg}"))
            continue
        yield RawRecord(text, value, None)


def _is_json_syntax(text: str) -> bool:
    """Whether a line the parser refused is still JSON text (refused for a limit: nesting depth, digits);
    then the rejects file keeps it as written, else as a string."""
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    except (RecursionError, ValueError):
        return True
    return True


def _as_json_string(text: str) -> str:
    """A line that is not a JSON value, kept in the rejects file as a JSON string (bytes that are not
    UTF-8 written as \\xNN escapes inside it)."""
    return json.dumps(text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace"), ensure_ascii=False)


class _Buffer:
    """Text window over the file that remembers how many lines/chars were discarded before it."""

    def __init__(self, fh: IO[str], name: str) -> None:
        self.fh, self.name = fh, name
        self.text = ""
        self.pos = 0
        self.eof = False
        self.line_base = 1  # line number of text[0]
        self.col_base = 0   # chars on that line before text[0]

    def fill(self) -> bool:
        """Read more: at least as much as is still unconsumed, so retries over a growing record
        cost a constant factor in total (geometric growth), whatever the record's size."""
        if self.eof:
            return False
        chunk = self.fh.read(max(_CHUNK, len(self.text) - self.pos))
        if not chunk:
            self.eof = True
            return False
        self.text += chunk
        return True

    def compact(self, force: bool = False) -> None:
        """Drop consumed text, keeping line/column bookkeeping."""
        if self.pos < _CHUNK and not force:
            return
        dropped = self.text[: self.pos]
        newlines = dropped.count("\n")
        if newlines:
            self.line_base += newlines
            self.col_base = len(dropped) - dropped.rfind("\n") - 1
        else:
            self.col_base += len(dropped)
        self.text = self.text[self.pos:]
        self.pos = 0

    def where(self, pos: int) -> str:
        before = self.text[:pos]
        nl = before.count("\n")
        col = len(before) - before.rfind("\n") if nl else self.col_base + len(before) + 1
        return f"line {self.line_base + nl} column {col}"

    def fail(self, pos: int, what: str) -> InputError:
        return InputError(f"{self.name}: {self.where(pos)}: {what}")

    def skip_ws(self) -> str:
        """Advance past whitespace and return the next char ('' at end of file)."""
        while True:
            while self.pos < len(self.text) and self.text[self.pos] in _TEXT_WS_CHARS:
                self.pos += 1
            if self.pos < len(self.text):
                return self.text[self.pos]
            if not self.fill():
                return ""


_TEXT_WS_CHARS = " \t\r\n"
# Near the end of the buffer a decode error may only mean "read more"; further back it is final.
_TAIL = 64


def _final(exc: json.JSONDecodeError, buf: _Buffer) -> bool:
    if buf.eof:
        return True
    if exc.msg.startswith("Unterminated string"):
        return False  # the string may go on in the next block, however long it is
    return exc.pos < len(buf.text) - _TAIL


def _iter_array(fh: IO[str], name: str, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Iterator[RawRecord]:
    decoder = json.JSONDecoder()
    buf = _Buffer(fh, name)
    buf.fill()
    buf.skip_ws()
    buf.pos += 1  # the '['
    if buf.skip_ws() == "]":
        buf.pos += 1
        _expect_end(buf)
        return
    while True:
        buf.compact()
        if buf.skip_ws() == "":
            raise buf.fail(buf.pos, "file ends inside the JSON array. The file is truncated: re-export it.")
        start = buf.pos
        record = _decode_next(decoder, buf, start, max_record_bytes)
        if record is None:
            continue  # a number at the very end of the buffer may continue in the next block: read again
        yield record
        nxt = buf.skip_ws()
        if nxt == ",":
            buf.pos += 1
            continue
        if nxt == "]":
            buf.pos += 1
            _expect_end(buf)
            return
        if nxt == "":
            raise buf.fail(buf.pos, "file ends inside the JSON array (missing ']'). The file is truncated: re-export it.")
        raise buf.fail(buf.pos, f"invalid JSON: expected ',' or ']' after a record, found {nxt!r}. Fix the file at that position.")


def _decode_next(decoder: json.JSONDecoder, buf: _Buffer, start: int, max_record_bytes: int) -> RawRecord | None:
    """The array element at `start` (buf.pos left after it), a rejection for one the parser cannot take or one over
    `max_record_bytes` (skipped unread: memory stays bounded by the cap), or None when it must be read again."""
    while True:
        try:
            value, end = decoder.raw_decode(buf.text, start)
            break
        except json.JSONDecodeError as exc:
            if not _final(exc, buf) and len(buf.text) - start > max_record_bytes:
                line = buf.where(start).split(" column")[0]
                return _too_large(line, _skip_unread(buf, start), max_record_bytes)
            if _final(exc, buf) or not buf.fill():
                raise buf.fail(exc.pos, f"invalid JSON: {exc.msg}. Fix the file at that position.") from None
        except (RecursionError, ValueError) as exc:  # deeper than the parser goes, or an integer over the digit limit
            end = _skip_value(buf, start)
            line = buf.where(start).split(" column")[0]
            _, error = _parse_error(exc)
            buf.pos = end
            return RawRecord(buf.text[start:end], None, ("unparseable_record", f"{line}: {error[1]}"))
    if end == len(buf.text) and not buf.eof and buf.fill():
        return None
    buf.pos = end
    if end - start > max_record_bytes:  # read whole with its neighbours: the same rule whatever the block boundaries
        return _too_large(buf.where(start).split(" column")[0], end - start, max_record_bytes)
    return RawRecord(buf.text[start:end], value, None)


def _too_large(line: str, size: int, max_record_bytes: int) -> RawRecord:
    return RawRecord("null", None, ("record_too_large", (
        f"{line}: a record of {size} characters, above --max-record-bytes {max_record_bytes}; it was skipped. "
        "Split the record or raise --max-record-bytes")))


_STRUCTURE = re.compile(r'["\[\]{}]')
_IN_STRING = re.compile(r'["\\]')
_SCALAR_END = re.compile(r"[\s,\]]")


def _skip_unread(buf: _Buffer, start: int) -> int:
    """Move buf.pos past the value at `start` without keeping it (the text read so far is dropped block by block,
    line numbers kept); returns the value's length in characters."""
    return _scan_value(buf, start, keep=False)


def _skip_value(buf: _Buffer, start: int) -> int:
    """End of the value at `start` (for the records the parser itself cannot finish), its text kept in buf.text
    for the reject line; buf.pos is left at `start`."""
    _scan_value(buf, start, keep=True)
    end, buf.pos = buf.pos, start
    return end


def _scan_value(buf: _Buffer, start: int, keep: bool) -> int:
    """Leave buf.pos just after the JSON value at `start`, found by counting brackets outside strings; returns its
    length in characters. Each regex jump crosses a run of plain text, so a record of numbers costs a few Python
    steps per block. `keep` False drops the text read so far block by block (memory bounded whatever the size)."""
    depth, in_string, escaped = 0, False, False
    scalar = buf.text[start] not in '["{'
    pos, size, origin = start, 0, start
    while True:
        text = buf.text
        while pos < len(text):
            if escaped:
                pos, escaped = pos + 1, False
                continue
            if scalar:
                m = _SCALAR_END.search(text, pos)
                if m is None:
                    pos = len(text)
                    break
                return _after_skip(buf, m.start(), size + m.start() - origin)
            m = (_IN_STRING if in_string else _STRUCTURE).search(text, pos)
            if m is None:
                pos = len(text)
                break
            char, pos = m.group(), m.end()
            if in_string:
                if char == "\\":
                    escaped = True
                else:
                    in_string = False
                    if depth == 0:
                        return _after_skip(buf, pos, size + pos - origin)
            elif char == '"':
                in_string = True
            elif char in "[{":
                depth += 1
            else:
                depth -= 1
                if depth == 0:
                    return _after_skip(buf, pos, size + pos - origin)
        if not keep:
            size += pos - origin
            buf.pos = pos
            buf.compact(force=True)
            pos = origin = buf.pos
        if not buf.fill():
            if scalar:
                return _after_skip(buf, pos, size + pos - origin)
            raise buf.fail(len(buf.text), "file ends inside a record. The file is truncated: re-export it.")


def _after_skip(buf: _Buffer, end: int, size: int) -> int:
    buf.pos = end
    return size


def _parse_error(exc: BaseException) -> tuple[None, tuple[str, str]]:
    if isinstance(exc, RecursionError):
        return None, ("unparseable_record", "nested deeper than the JSON parser allows. Flatten the record")
    return None, ("unparseable_record", f"cannot be parsed: {str(exc).splitlines()[0]}. Fix the record (quote huge numbers as strings)")


def _expect_end(buf: _Buffer) -> None:
    if buf.skip_ws() != "":
        raise buf.fail(buf.pos, "extra data after the JSON array. Remove it.")
