"""Read a dataset file record by record as LLaMA-Factory's JSON loader sees it, naming each bad line.

Used by `tsconvert validate` (every line) and by training when `datasets` fails to load a time-series
dataset (to name the record instead of a pyarrow error). Standard library only.

- UTF-16/UTF-32 files (a byte-order mark or NUL bytes at the start) are refused as a whole: nothing in
  them is UTF-8 JSON, and the fix is one `iconv` call.
- A line that is not UTF-8 (Latin-1, cp1252, a cut multi-byte character) is one bad record, with the
  byte and its column. A UTF-8 byte-order mark is skipped, as LLaMA-Factory's loader does.
- JSON that Python cannot read (syntax, nesting deeper than its recursion limit, integers of more
  than 4300 digits) is one bad record too: never a traceback.
- Records are numbered from 0 over non-blank lines (LLaMA-Factory's record index); lines from 1.
  Lines end at \\n, \\r\\n or a lone \\r, like the loader's reader.
"""

from __future__ import annotations

import codecs
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

# Longest first: a UTF-32-LE mark starts with the UTF-16-LE one.
_WIDE_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32LE"),
    (codecs.BOM_UTF32_BE, "UTF-32BE"),
    (codecs.BOM_UTF16_LE, "UTF-16LE"),
    (codecs.BOM_UTF16_BE, "UTF-16BE"),
)
_UNDECODED = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8 (surrogateescape)


class FileEncodingError(ValueError):
    """The whole file is in an encoding no JSON loader here reads (UTF-16/32)."""


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


def wide_encoding(head: bytes) -> str | None:
    """'UTF-16LE' etc. when the first bytes of a file show a UTF-16/32 file, else None."""
    for bom, name in _WIDE_BOMS:
        if head.startswith(bom):
            return name
    if b"\x00" in head[:64]:  # JSON text never holds a NUL byte; UTF-16 ASCII text is half NULs
        even, odd = head[0:64:2].count(0), head[1:64:2].count(0)
        return "UTF-16BE" if even > odd else "UTF-16LE"
    return None


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


def read_records(path: str | Path) -> Iterator[Line]:
    """Each non-blank line of a JSONL file, parsed or with its problem. Raises FileEncodingError for a
    UTF-16/32 file and OSError when the file cannot be read."""
    path = Path(path)
    with open(path, "rb") as raw:
        encoding = wide_encoding(raw.read(64))
        if encoding is not None:
            raise FileEncodingError(
                f"{path}: the file is {encoding[:6]} text, not UTF-8 (which JSONL and LLaMA-Factory's loader read). "
                f"Convert it: iconv -f {encoding} -t UTF-8 {path.name} > {path.stem}.utf8{path.suffix}"
            )
        raw.seek(0)
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline=None)
        index = -1
        for lineno, line in enumerate(text, start=1):
            if not line.strip():
                continue
            index += 1
            record, problem = parse_line(line)
            if problem is None:
                yield Line(index, lineno, record)
            else:
                yield Line(index, lineno, None, *problem)


def read_json_array(path: str | Path) -> Iterator[Line]:
    """Records of a `.json` file holding one array (or one object), as LLaMA-Factory reads it; a file
    that does not parse is one bad Line 0."""
    path = Path(path)
    data = path.read_bytes()
    encoding = wide_encoding(data[:64])
    if encoding is not None:
        raise FileEncodingError(f"{path}: the file is {encoding[:6]} text, not UTF-8. Convert it: iconv -f {encoding} -t UTF-8")
    record, problem = parse_line(data.decode("utf-8-sig", errors="surrogateescape"))
    if problem is not None:
        yield Line(0, 1, None, *problem)
        return
    for index, item in enumerate(record if isinstance(record, list) else [record]):
        yield Line(index, 0, item)


def read_any(path: str | Path) -> Iterator[Line]:
    """JSONL by line; a `.json` file whose first character is `[` as one array."""
    path = Path(path)
    if path.suffix == ".json":
        with open(path, "rb") as f:
            head = f.read(4096).lstrip(codecs.BOM_UTF8 + b" \t\r\n")
        if head.startswith(b"["):
            return read_json_array(path)
    return read_records(path)


__all__ = ["FileEncodingError", "Line", "parse_line", "read_any", "read_json_array", "read_records", "wide_encoding"]
