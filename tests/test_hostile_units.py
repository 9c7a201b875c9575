"""The pieces behind the hostile-input table, over their whole input space (hypothesis, derandomized):
the bounded byte-line splitter, dataset names, --csv-pattern, the columnar number reader (same values
as the per-cell rules), the pipe spool and dataset_info.json caps."""

from __future__ import annotations

import io
import math
import os
import re
import threading
import tracemalloc
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from converters import cli, numcols
from converters.csvread import NULL_TEXT, _decode
from converters.errors import InputError, RejectError
from converters.numbers import DETECTION_ORDER, NUMBER_FORMATS, _cell
from converters.paths import (
    MAX_NAME_BYTES,
    PATTERN_FIELDS,
    check_dataset_name,
    check_pattern,
    refuse_overwriting_inputs,
)
from converters.safeio import open_named_input, read_small_file
from tsplugin import jsonl
from tsplugin.jsonl import DEFAULT_MAX_RECORD_BYTES, iter_lines

SETTINGS = settings(max_examples=300, deadline=None, derandomize=True)


# --- iter_lines: exact line numbers, bounded buffer --------------------------------------------------

def _reference_lines(data: bytes, cap: int) -> list[tuple[int, bytes | None, int]]:
    parts = re.split(rb"\r\n|\r|\n", data)
    if parts and parts[-1] == b"":
        parts.pop()
    return [(i + 1, p if len(p) <= cap else None, len(p)) for i, p in enumerate(parts)]


class _Reads(io.RawIOBase):
    """A file that hands out at most ``chunk`` bytes per read and records the largest request."""

    def __init__(self, data: bytes, chunk: int) -> None:
        self.data, self.pos, self.chunk = data, 0, chunk

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        out = self.data[self.pos:self.pos + min(n, self.chunk)]
        self.pos += len(out)
        return out


@SETTINGS
@given(st.binary(max_size=60).map(lambda b: bytes(b"ab\r\n"[x % 4] for x in b)), st.integers(0, 10), st.integers(1, 7))
def test_iter_lines_matches_a_plain_split_whatever_the_chunking(data, cap, chunk):
    old = jsonl._CHUNK
    jsonl._CHUNK = chunk
    try:
        assert list(iter_lines(_Reads(data, chunk), cap)) == _reference_lines(data, cap)
    finally:
        jsonl._CHUNK = old


def test_an_over_long_line_is_never_held():
    """A 64 MiB line under a 1 KiB cap: memory traced while splitting stays within a few chunks."""
    class Endless(io.RawIOBase):
        def __init__(self) -> None:
            self.left = 64 << 20

        def readable(self) -> bool:
            return True

        def read(self, n: int = -1) -> bytes:
            k = min(n, self.left)
            self.left -= k
            return b"x" * k

    tracemalloc.start()
    try:
        assert list(iter_lines(Endless(), 1024)) == [(1, None, 64 << 20)]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * jsonl._CHUNK, peak


# --- dataset names and patterns --------------------------------------------------------------------

@SETTINGS
@given(st.text(min_size=0, max_size=80) | st.sampled_from(["..", ".", "/abs", "a/b", "a\\b", "C:x", " x", "x\x00y", "ok.name"]))
def test_a_name_is_accepted_only_when_its_outputs_stay_in_the_folder(name):
    try:
        check_dataset_name(name)
    except InputError as err:
        assert "\n" not in str(err) and str(err).startswith("--name ")
        return
    out = Path("/out")
    for suffix in (".jsonl", ".rejects.jsonl", "_train.jsonl", ".scaling.json"):
        target = out / f"{name}{suffix}"
        assert target.parent == out and os.path.normpath(target) == str(target)
    assert "\x00" not in name and name.strip() and len(name.encode("utf-8", "surrogatepass")) <= MAX_NAME_BYTES


def test_over_long_names_are_refused():
    check_dataset_name("x" * MAX_NAME_BYTES)
    with pytest.raises(InputError, match="over 200"):
        check_dataset_name("é" * (MAX_NAME_BYTES // 2 + 1))


_pattern_piece = st.one_of(st.text(alphabet="ab.-_/", max_size=4), st.sampled_from([f"{{{f}}}" for f in PATTERN_FIELDS]),
                           st.sampled_from(["{stem:d}", "{stem:>20000000}", "{stem!r}", "{nope}", "{", "}", "{stem.x}", "{0}", "{}"]))


@SETTINGS
@given(st.lists(_pattern_piece, max_size=5).map("".join), st.text(max_size=20))
def test_a_pattern_either_is_refused_up_front_or_formats_any_image(pattern, stem):
    try:
        check_pattern(pattern)
    except InputError as err:
        assert "\n" not in str(err) and len(str(err)) < 1000
        return
    fields = {f: stem for f in PATTERN_FIELDS}
    text = pattern.format(**fields)  # never raises for a pattern that passed
    assert len(text) <= len(pattern) + len(fields) * len(stem) * len(pattern)


def test_outputs_that_are_inputs_through_links_are_refused(tmp_path):
    src = tmp_path / "d.jsonl"
    src.write_text("{}\n")
    (tmp_path / "lnk").symlink_to(src)
    os.link(src, tmp_path / "hard")
    (tmp_path / "sub").symlink_to(tmp_path)
    for out in (src, tmp_path / "lnk", tmp_path / "hard", tmp_path / "sub" / "d.jsonl"):
        with pytest.raises(InputError, match="is the input"):
            refuse_overwriting_inputs([out], [src])
    refuse_overwriting_inputs([tmp_path / "other.json"], [src])


# --- the columnar number reader gives the per-cell rules' values -----------------------------------

_num_cell = st.one_of(
    st.none(),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.integers(-10**7, 10**7).map(str),
    st.sampled_from(NULL_TEXT + ["Bad Input", "1,234.5", "1,5", "1.234,5", "1.234", "1e999", "-inf", "Nan", " 7 ", "1_0",
                                 "+.5", "١٢", "9" * 250, "1e5", "2.5e-3"]),
)


@SETTINGS
@given(st.lists(st.lists(_num_cell, min_size=1, max_size=12), min_size=1, max_size=2).filter(lambda c: len({len(x) for x in c}) == 1))
def test_columnar_reader_equals_the_per_cell_rules(columns):
    cols = {f"c{i}": pa.chunked_array([pa.array(c, pa.string())]) for i, c in enumerate(columns)}
    classified = numcols.columns(cols, NULL_TEXT)
    for fmt in DETECTION_ORDER:
        try:
            numcols.choose(classified, fmt, "x.csv")
        except RejectError:
            continue
        parse = NUMBER_FORMATS.get(fmt)
        for c, cells in zip(classified, columns):
            want_missing: dict[str, int] = {}
            want = [_cell(s, parse, want_missing, set(NULL_TEXT)) for s in cells]
            got_missing: dict[str, int] = {}
            got = numcols.values(c, fmt, got_missing).tolist()
            assert [("nan" if math.isnan(v) else v) for v in got] == [("nan" if math.isnan(v) else v) for v in want], (fmt, cells)
            assert got_missing == want_missing, (fmt, cells)


def test_numcols_slices_the_rest(monkeypatch):
    """Cells pyarrow does not convert are visited a slice at a time, never as one Python list."""
    monkeypatch.setattr(numcols, "SLICE", 3)
    cells = ["1,234.5"] * 10 + [None, "2,000"]
    c = numcols.columns({"v": pa.chunked_array([pa.array(cells)])}, NULL_TEXT)
    assert numcols.choose(c, "auto", "x.csv") == "thousands-comma"
    assert numcols.values(c[0], "thousands-comma", {})[:2].tolist() == [1234.5, 1234.5]


# --- encodings -------------------------------------------------------------------------------------

def test_latin1_is_not_taken_for_gbk_but_chinese_gbk_is_read():
    with pytest.raises(RejectError, match="--encoding cp1252"):
        _decode("timestamp,temp °C\n".encode("latin-1"), "t.csv")
    assert _decode("时间戳,数值\n".encode("gbk"), "t.csv") == ("时间戳,数值\n", "gbk")
    assert _decode("temp °C".encode("latin-1"), "t.csv", "cp1252") == ("temp °C", "cp1252")


# --- reads: pipes spooled within a cap, dataset_info.json capped ------------------------------------

def _pipe(data: bytes) -> Path:
    r, w = os.pipe()

    def feed() -> None:
        with os.fdopen(w, "wb") as fh:
            try:
                fh.write(data)
            except BrokenPipeError:
                pass

    threading.Thread(target=feed, daemon=True).start()
    return Path(f"/dev/fd/{r}")


def test_a_pipe_is_spooled_and_read_from_its_start():
    path = _pipe(b'{"a": 1}\n' * 1000)
    with open_named_input(path) as fh:
        assert fh.seekable() and fh.read() == b'{"a": 1}\n' * 1000
    os.close(int(path.name))


def test_a_pipe_over_the_cap_is_refused_in_one_line():
    path = _pipe(b"x" * 100_000)
    with pytest.raises(InputError, match="more than 1000 bytes") as err:
        with open_named_input(path, max_pipe_bytes=1000):
            pass
    assert "\n" not in str(err.value)
    os.close(int(path.name))


def test_dataset_info_is_read_within_its_cap(tmp_path):
    info = tmp_path / "dataset_info.json"
    assert read_small_file(info, 100) is None
    info.write_bytes(b"{}" + b" " * 200)
    with pytest.raises(InputError, match="larger than 100 bytes"):
        read_small_file(info, 100)
    assert read_small_file(info, 1000) == b"{}" + b" " * 200


def test_cli_defaults_agree_with_the_library():
    assert cli.DEFAULT_MAX_RECORD_MB << 20 == DEFAULT_MAX_RECORD_BYTES
    for sub in ("convert", "validate"):
        args = cli.build_parser().parse_args([sub, "x", *(["--csv-dir", "d"] if sub == "convert" else [])])
        assert args.max_record_bytes == DEFAULT_MAX_RECORD_BYTES


def test_a_registered_format_without_a_columnar_rule_is_read_cell_by_cell(monkeypatch):
    """An extension format (registered beyond the built-in three) goes through its own parser for every cell."""
    monkeypatch.setitem(NUMBER_FORMATS._items, "halves", lambda s: float(s) / 2 if s.replace(".", "", 1).isdigit() else None)
    cells = ["4", "3.0", "x", None, "NaN"]
    c = numcols.columns({"v": pa.chunked_array([pa.array(cells)])}, NULL_TEXT)
    assert numcols.choose(c, "halves", "x.csv") == "halves"
    missing: dict[str, int] = {}
    got = numcols.values(c[0], "halves", missing).tolist()
    assert got[:2] == [2.0, 1.5] and all(math.isnan(v) for v in got[2:])
    assert missing == {"non_numeric": 1, "empty_or_nan": 2}
    with pytest.raises(RejectError, match="'1,5' is a number but not in --number-format halves"):
        numcols.choose(numcols.columns({"v": pa.chunked_array([pa.array(["1", "1,5"])])}, NULL_TEXT), "halves", "x.csv")
