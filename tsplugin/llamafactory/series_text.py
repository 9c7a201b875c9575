"""The series of a chunk of JSON Lines records parsed apart from the rest of each record, by simdjson.

Why: pyarrow's JSON reader converts number text at ~160 MB/s per core (its own reading of a record is ~480 MB/s when
the series field is skipped), and the series are ~90% of a ChatTS-style file: at 100k records (1.6 GB) the load
was 7 s of the 34 s `get_dataset` took (bench/data_scale.py). simdjson reads the same text at ~750 MB/s on one
thread, into float64 buffers without a Python object per number.

`split_series(piece, column)` gives, for the records of `piece`, the text pyarrow should read (each record's
top-level `column` value replaced by `null`) and the series as a `list<list<float64>>` Arrow array, or None when it
cannot promise the table pyarrow's reader would have made of the whole text (the caller then reads it so):

- only the top-level key is taken: a key is found as a string token outside every other string, in the record's
  outermost object (depth 1); the caller checks that pyarrow then sees null in that column on every row, so a
  record whose series were not cut out (a key written with escapes, a value we did not take) is read by pyarrow;
- the value must be one JSON list of lists of numbers (each record's value is parsed as a document of its own, and
  the chunk's `[` are counted, since simdjson's buffer of a list flattens lists inside it); a null value stays in
  the text (pyarrow reads it as a null row), anything else (a string, a bool, a null among the numbers, a flat
  list, deeper lists) is pyarrow's;
- numbers are correctly rounded by both readers, so the values are the same bits; the one difference is the integer
  text `-0`, which simdjson reads as the integer 0 (+0.0) and pyarrow as -0.0: a chunk holding it is pyarrow's;
- a number simdjson refuses (beyond float64, a bigint) sends the chunk to pyarrow, which refuses it too.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

_NEGATIVE_ZERO = re.compile(rb"-0(?![0-9.eE])")  # the integer -0 (see the module docstring)
_BLANK = b" \t\r\n"


def _value_start(line: bytes, key: bytes) -> int:
    """Where the value of the top-level `key` (a JSON string token without escapes) starts in the record `line`, -1
    when it has none. A found `key` is the key when the text before it, its escapes taken out (`\\\\` pairs, then
    `\\"`), holds an even number of quotes (so `key` opens a string) and, without its strings, has one more `{`/`[`
    than `}`/`]` (depth 1: the record's own object) and ends in `{` or `,`; and `:` follows."""
    at = line.find(key)
    while at >= 0:
        before = line[:at]
        if b"\\" in before:
            before = before.replace(b"\\\\", b"").replace(b'\\"', b"")
        parts = before.split(b'"')
        if len(parts) % 2:  # an even number of quotes: `key` opens a string
            outside = b"".join(parts[0::2])
            depth = outside.count(b"{") + outside.count(b"[") - outside.count(b"}") - outside.count(b"]")
            colon = _skip_blanks(line, at + len(key))
            if depth == 1 and outside.rstrip(_BLANK)[-1:] in (b"{", b",") and line[colon : colon + 1] == b":":
                return _skip_blanks(line, colon + 1)
        at = line.find(key, at + 1)
    return -1


def _skip_blanks(line: bytes, at: int) -> int:
    while at < len(line) and line[at] in _BLANK:
        at += 1
    return at


def _float_lists(parser: Any, span: memoryview) -> list[np.ndarray]:
    """The lists of numbers of the JSON text `span` (a list of lists), each as float64; simdjson's error otherwise.
    A function of its own: the parser is reused only once nothing refers to its last document."""
    return [np.frombuffer(values.as_buffer(of_type="d"), dtype=np.float64) for values in parser.parse(span)]


def _float_lists_or_none(parser: Any, span: memoryview) -> tuple[list[np.ndarray] | None, Any]:
    """(`_float_lists`, or None when `span` is not one list of lists of numbers; the parser to use next: a new one
    after an error, which simdjson may call unrecoverable for the parser)."""
    try:
        return _float_lists(parser, span), parser
    except (ValueError, TypeError, AttributeError, RuntimeError):
        return None, type(parser)()


def split_series(piece: Any, column: str) -> tuple[bytes, Any, int] | None:
    """(the text of `piece` with every record's top-level `column` value replaced by null, those values as a
    list<list<float64>> array with a null for a record without one, the number of records), or None (see above)."""
    try:
        import simdjson
    except ImportError:  # an install without it: pyarrow reads everything, as before
        return None
    import pyarrow as pa

    if any(c in column for c in '"\\') or not column.isprintable():
        return None  # a key written with escapes: pyarrow reads the chunk
    key = b'"' + column.encode() + b'"'
    text = bytes(piece)
    parser = simdjson.Parser()
    out: list[bytes] = []
    spans: list[memoryview] = []
    present: list[bool] = []
    counts: list[int] = []  # lists of numbers per record (0 for a record without series)
    values: list[np.ndarray] = []
    for line in text.split(b"\n"):
        if not line.strip(_BLANK):
            out.append(line)
            continue
        start = _value_start(line, key)
        if start < 0 or line.startswith(b"null", start):
            present.append(False)
            counts.append(0)
            out.append(line)
            continue
        if line[start : start + 1] != b"[":
            return None
        # The value ends at a `]]` such that the text from `start` to it is one JSON value (simdjson parses it alone:
        # a JSON value ends where it ends). The last `]]` of the line is that end when the series is the record's last
        # field (tsconvert's order), found without reading the series; otherwise the first one after `start`.
        end = line.rfind(b"]]", start)
        if end < 0:
            return None
        one = None
        if line[end + 2 :].strip(_BLANK) in (b"}", b""):
            one, parser = _float_lists_or_none(parser, memoryview(line)[start : end + 2])
        if one is None:
            first = line.find(b"]]", start)
            if first != end:
                end = first
                one, parser = _float_lists_or_none(parser, memoryview(line)[start : end + 2])
        if one is None:
            return None
        values.extend(one)
        counts.append(len(one))
        spans.append(memoryview(line)[start : end + 2])
        present.append(True)
        out.append(line[:start] + b"null" + line[end + 2 :])
    if not present:
        return None
    rest = b"\n".join(out)
    if text.count(b"[") != rest.count(b"[") + len(spans) + len(values):
        return None  # a list inside a list of numbers (simdjson's buffer flattens it; pyarrow refuses it)
    inner_lengths = [len(one) for one in values]
    flat = np.concatenate(values) if values else np.zeros(0, dtype=np.float64)
    if not flat.all() and any(_NEGATIVE_ZERO.search(span) for span in spans):  # a zero: was it written `-0`?
        return None
    inner_offsets = np.zeros(len(inner_lengths) + 1, dtype=np.int32)
    np.cumsum(inner_lengths, out=inner_offsets[1:])
    outer_offsets = np.zeros(len(present) + 1, dtype=np.int32)
    np.cumsum(counts, out=outer_offsets[1:])
    inner = pa.ListArray.from_arrays(pa.array(inner_offsets), pa.array(flat))
    mask = None if all(present) else pa.array(~np.asarray(present))
    series_array = pa.ListArray.from_arrays(pa.array(outer_offsets), inner, mask=mask)
    return rest, series_array, len(present)
