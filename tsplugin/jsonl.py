"""Read a dataset file record by record as LLaMA-Factory's JSON loader sees it, naming each bad line.

Used by `tsconvert validate` (every line) and by training when `datasets` fails to load a time-series
dataset (to name the record instead of a pyarrow error). Standard library only.

- UTF-16/UTF-32 files (a byte-order mark or NUL bytes at the start) are refused as a whole: nothing in
  them is UTF-8 JSON, and the fix is one `iconv` call. So are gzip/zip/... files and other binary data,
  named as what they are (`not_text`).
- A line that is not UTF-8 (Latin-1, cp1252, a cut multi-byte character) is one bad record, with the
  byte and its column. A UTF-8 byte-order mark is skipped, as LLaMA-Factory's loader does.
- JSON that Python cannot read (syntax, nesting deeper than its recursion limit, integers of more
  than 4300 digits) is one bad record too: never a traceback.
- Records are numbered from 0 over non-blank lines (LLaMA-Factory's record index); lines from 1.
  Lines end at \\n, \\r\\n or a lone \\r, like the loader's reader.
- Bytes are split into lines first and each line is decoded on its own (`iter_lines`), so a bad byte
  never moves the line count. A line longer than ``max_record_bytes`` is one bad record
  (`record_too_large`) and is never held: it is skipped in chunks, memory stays bounded by the cap.
"""

from __future__ import annotations

import codecs
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Iterator

# Longest first: a UTF-32-LE mark starts with the UTF-16-LE one.
_WIDE_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32LE"),
    (codecs.BOM_UTF32_BE, "UTF-32BE"),
    (codecs.BOM_UTF16_LE, "UTF-16LE"),
    (codecs.BOM_UTF16_BE, "UTF-16BE"),
)
_UNDECODED = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8 (surrogateescape)
_EOL = re.compile(rb"\r\n|\r|\n")
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]")
HEAD_BYTES = 4096  # what `not_text` looks at
_CHUNK = 1 << 16
DEFAULT_MAX_RECORD_BYTES = 64 << 20  # one line/record; `tsconvert --max-record-bytes` (a test checks the CLI agrees)


class FileEncodingError(ValueError):
    """The whole file is not UTF-8 text: UTF-16/32, compressed, an archive or binary data (`not_text`)."""


@dataclass
class Line:
    """One non-blank line: the parsed `record`, or a `code` + `message` (the problem and the fix)."""

    index: int
    lineno: int
    record: Any = None
    code: str | None = None
    message: str | None = None

    @property
    def ok(self) -> bool:
        return self.code is None


# Formats a user hands over by mistake, by their magic bytes (none can start JSON text).
_MAGIC = (
    (b"\x1f\x8b", "gzip-compressed", "gunzip -k {name}"),
    (b"PK\x03\x04", "a zip archive", "unzip {name}"),
    (b"BZh", "bzip2-compressed", "bunzip2 -k {name}"),
    (b"\xfd7zXZ\x00", "xz-compressed", "unxz -k {name}"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed", "unzstd {name}"),
    (b"PAR1", "a Parquet file", "export it as JSON Lines"),
    (b"\x89PNG", "a PNG image", "pass the JSONL file"),
)


def wide_encoding(head: bytes) -> str | None:
    """'UTF-16LE' etc. when the first bytes of a file show a UTF-16/32 file (a byte-order mark, or NUL
    bytes in the places ASCII text in that encoding has them), else None."""
    for bom, name in _WIDE_BOMS:
        if head.startswith(bom):
            return name
    head = head[:64] if len(head) < 64 else head[:64 - 64 % 4]
    if b"\x00" not in head:
        return None
    quads = [head[k::4] for k in range(4)]
    if len(head) >= 4 and all(q.count(0) == len(q) for q in quads[1:]) and quads[0].count(0) < len(quads[0]):
        return "UTF-32LE"
    if len(head) >= 4 and all(q.count(0) == len(q) for q in quads[:3]) and quads[3].count(0) < len(quads[3]):
        return "UTF-32BE"
    even, odd = head[0::2], head[1::2]
    if odd.count(0) >= len(odd) // 2 and even.count(0) == 0:
        return "UTF-16LE"
    if even.count(0) >= len(even) // 2 and odd.count(0) == 0:
        return "UTF-16BE"
    return None


def not_text(head: bytes, path: Path) -> str | None:
    """Why a file whose first HEAD_BYTES are ``head`` is not JSON text, as one line naming what it is and
    the fix (compressed, an archive, UTF-16/32, binary data: a raw control byte in the first line), or
    None when it may be UTF-8 text (a bad later line is then that record's problem only)."""
    for magic, what, fix in _MAGIC:
        if head.startswith(magic):
            return f"{path}: the file is {what}, not JSON text. Pass the JSONL itself ({fix.format(name=path.name)})"
    encoding = wide_encoding(head)
    if encoding is not None:
        return (f"{path}: the file is {encoding[:6]} text, not UTF-8 (which JSONL and LLaMA-Factory's loader read). "
                f"Convert it: iconv -f {encoding} -t UTF-8 {path.name} > {path.stem}.utf8{path.suffix}")
    first = _EOL.split(head.lstrip(b" \t\r\n"), 1)[0]
    control = _CONTROL.search(first)
    if control is not None:  # JSON text never holds a raw control byte, least of all in its first record
        return (f"{path}: the file is binary data (byte 0x{control.group()[0]:02x} at byte {head.index(control.group())}), "
                "not JSON text. Pass the JSONL file (UTF-8 text, one record per line)")
    return None


def iter_lines(raw: IO[bytes], max_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Iterator[tuple[int, bytes | None, int]]:
    """``(lineno, line bytes without its end, size)`` for every line of ``raw`` (lines from 1; \\n,
    \\r\\n or a lone \\r end one). A line over ``max_bytes`` comes back as ``None`` with its size and
    is never held whole: at most ``max_bytes + chunk`` bytes are buffered."""
    buf = bytearray()
    lineno, skipped, scan = 1, -1, 0  # skipped >= 0: inside an over-long line, counting its bytes
    while True:
        chunk = raw.read(_CHUNK)
        eof = not chunk
        buf += chunk
        start = 0
        for end, after in _line_ends(buf, scan, eof):
            size = end - start + max(skipped, 0)
            yield (lineno, None, size) if skipped >= 0 or size > max_bytes else (lineno, bytes(buf[start:end]), size)
            skipped = -1
            lineno += 1
            start = after
        del buf[:start]
        if eof:
            size = len(buf) + max(skipped, 0)
            if skipped >= 0 or size > max_bytes:
                yield lineno, None, size
            elif buf:
                yield lineno, bytes(buf), size
            return
        keep = 1 if buf.endswith(b"\r") else 0  # the possible first half of \r\n
        if skipped >= 0 or len(buf) - keep > max_bytes:
            skipped = max(skipped, 0) + len(buf) - keep
            del buf[:len(buf) - keep]
        scan = len(buf) - keep


def _line_ends(buf: bytearray, pos: int, eof: bool) -> Iterator[tuple[int, int]]:
    """(where a line end starts, where it ends) for each line end in ``buf[pos:]``. LF and CRLF text is
    split with memchr-speed finds; only text with a lone CR takes the (slower) regex."""
    n_cr = buf.count(b"\r", pos)
    if n_cr == 0 or n_cr == buf.count(b"\r\n", pos):
        i = buf.find(b"\n", pos)
        while i >= 0:
            yield (i - 1 if n_cr and i > pos and buf[i - 1] == 13 else i), i + 1
            i = buf.find(b"\n", i + 1)
        return
    for m in _EOL.finditer(buf, pos):
        if m.group() == b"\r" and m.end() == len(buf) and not eof:
            return  # a \r at the end of the chunk may be the first half of \r\n
        yield m.start(), m.end()


def too_large(size: int, max_bytes: int) -> tuple[str, str]:
    """The (code, message) of a line over the record size cap (one definition for validate, convert, training)."""
    message = (f"{size} bytes on one line, above --max-record-bytes {max_bytes}; it was skipped unread. Split the record "
               "or raise --max-record-bytes")
    return "record_too_large", message


def parse_line(text: str) -> tuple[Any, tuple[str, str] | None]:
    """(record, None) or (None, (code, message)) for one line of text."""
    bad = _UNDECODED.search(text)
    if bad is not None:
        byte = ord(bad.group()) - 0xDC00
        return None, (
            "not_utf8",
            (f"column {bad.start() + 1}: byte 0x{byte:02x} is not UTF-8 (a Latin-1/cp1252 file, or a character cut "
             "in half). Re-save the file as UTF-8, e.g. `iconv -f latin1 -t utf-8 IN > OUT`"),
        )
    try:
        return json.loads(text.rstrip("\r\n")), None
    except json.JSONDecodeError as exc:  # its msg ends with " at" / " starting at": the column says where
        msg = exc.msg.removesuffix(" at").removesuffix(" starting")
        return None, ("invalid_json", f"column {exc.colno}: {msg}. Fix the JSON or drop the line")
    except RecursionError:
        return None, ("invalid_json", "nested deeper than JSON readers allow (about 1000 levels); no record needs that. Fix or drop the line")
    except ValueError as exc:  # "Exceeds the limit (4300 digits) for integer string conversion: value has N digits"
        detail = str(exc).split(";")[0].split(": ")[-1]
        return None, ("invalid_json", f"a number too long to read ({detail}; the limit is 4300): no number type holds it. Fix or drop the line")


def read_records(path: str | Path, raw: IO[bytes] | None = None, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Iterator[Line]:
    """Each non-blank line of a JSONL file, parsed or with its problem. ``raw``: the file already
    opened (binary, at its start; the caller's safe open), else ``path`` is opened. Raises
    FileEncodingError for a UTF-16/32 file and OSError when the file cannot be read."""
    path = Path(path)
    if raw is None:
        with open(path, "rb") as fh:
            yield from read_records(path, fh, max_record_bytes)
        return
    problem = not_text(raw.read(HEAD_BYTES), path)
    if problem is not None:
        raise FileEncodingError(problem)
    raw.seek(0)
    index = -1
    for lineno, data, size in iter_lines(raw, max_record_bytes):
        if data is not None and lineno == 1 and data.startswith(codecs.BOM_UTF8):
            data = data[len(codecs.BOM_UTF8):]
        if data is not None and not data.strip():
            continue
        index += 1
        if data is None:
            yield Line(index, lineno, None, *too_large(size, max_record_bytes))
            continue
        record, problem = parse_line(data.decode("utf-8", "surrogateescape"))
        if problem is None:
            yield Line(index, lineno, record)
        else:
            yield Line(index, lineno, None, *problem)


def read_json_array(path: str | Path) -> Iterator[Line]:
    """Records of a `.json` file holding one array (or one object), as LLaMA-Factory reads it; a file
    that does not parse is one bad Line 0."""
    path = Path(path)
    data = path.read_bytes()
    problem = not_text(data[:HEAD_BYTES], path)
    if problem is not None:
        raise FileEncodingError(problem)
    record, problem = parse_line(data.decode("utf-8-sig", errors="surrogateescape"))
    if problem is not None:
        yield Line(0, 1, None, *problem)
        return
    for index, item in enumerate(record if isinstance(record, list) else [record]):
        yield Line(index, 0, item)


def leading_byte(path: str | Path) -> bytes:
    """The first byte of a file after a UTF-8 BOM and blanks, within its first 4 KiB (b"" if none): `[` starts a JSON
    array, `{` JSON Lines of objects."""
    with open(path, "rb") as f:
        return f.read(4096).lstrip(codecs.BOM_UTF8 + b" \t\r\n")[:1]


def read_any(path: str | Path) -> Iterator[Line]:
    """JSONL by line; a `.json` file whose first character is `[` as one array."""
    path = Path(path)
    if path.suffix == ".json" and leading_byte(path) == b"[":
        return read_json_array(path)
    return read_records(path)


__all__ = ["DEFAULT_MAX_RECORD_BYTES", "FileEncodingError", "Line", "iter_lines", "leading_byte", "not_text", "parse_line", "read_any", "read_json_array", "read_records", "too_large", "wide_encoding"]
