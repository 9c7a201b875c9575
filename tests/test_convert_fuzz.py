"""Property-based fuzzing of tsconvert (hypothesis, derandomized, bounded): random records (valid,
malformed, NaN, huge integers, lone surrogates, deep nesting), random CSVs (number formats, line
ends, headers, garbage bytes) and random faults (missing files, links out of --csv-dir, FIFOs, hard
links, a full disk). Invariants: no traceback, converted + rejected == input, a rerun gives the same
bytes, nothing from outside --csv-dir reaches any output."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from converters import cli, writer

CANARY = "424242.5"
NAMES = [f"f{i}" for i in range(5)]

_cell = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(repr),
    st.integers(-10**6, 10**6).map(str),
    st.sampled_from(["", "NaN", "inf", "Bad Input", '"1,234.5"', '"1,5"', '"1.234,5"', "1e308", "-1e308", "1_0", "\u4e2d"]),
)
_csv = st.fixed_dictionaries({
    "header": st.sampled_from(["timestamp,value", "value", "timestamp,value,value", "timestamp;value", "\ufefftimestamp,value",
                               "a,b", ""]),
    "cells": st.lists(_cell, min_size=0, max_size=40),
    "newline": st.sampled_from(["\n", "\r\n", "\r"]),
    "garbage": st.one_of(st.none(), st.binary(min_size=1, max_size=64)),
    "fault": st.sampled_from(["ok"] * 6 + ["missing", "link_out", "link_in", "fifo", "hard_link", "dir"]),
})
_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(10**40), 10**40), st.floats(),
                       st.text(alphabet=st.characters(codec="utf-8", exclude_categories=()), max_size=8))
_json_value = st.recursive(_json_leaf, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
                           max_leaves=8)


@st.composite
def _record_text(draw) -> str:
    kind = draw(st.sampled_from(["gdsh"] * 4 + ["random", "deep", "bigint", "surrogate"]))
    if kind == "random":
        return json.dumps(draw(_json_value), ensure_ascii=draw(st.booleans()))
    if kind == "deep":
        return "[" * 2000 + "]" * 2000
    if kind == "bigint":
        return '{"n": ' + "7" * 5000 + "}"
    images = draw(st.lists(st.sampled_from(NAMES), max_size=3))
    n_ph = draw(st.sampled_from([len(images)] * 3 + [len(images) + 1]))
    text = draw(st.text(max_size=10)) + "<image>" * n_ph
    if kind == "surrogate":
        text += "\ud800"
    rec = {"messages": [{"role": "user", "content": text}, {"role": "assistant", "content": draw(st.text(max_size=10))}],
           "images": [f"/img/{n}.png" for n in images]}
    if draw(st.booleans()):
        rec["score"] = draw(st.sampled_from([float("nan"), float("inf"), 1.5]))
    # a lone surrogate can only be written escaped (\ud800): raw, the file would not be UTF-8 at all
    return json.dumps(rec, ensure_ascii=kind == "surrogate" or draw(st.booleans()))


def _write_csv(csv_dir: Path, outside: Path, name: str, spec: dict) -> None:
    path = csv_dir / f"{name}.csv"
    fault = spec["fault"]
    if fault == "missing":
        return
    if fault == "link_out":
        os.symlink(outside, path)
        return
    if fault == "hard_link":
        os.link(outside, path)
        return
    if fault == "fifo":
        os.mkfifo(path)
        return
    if fault == "dir":
        path.mkdir()
        return
    nl = spec["newline"]
    rows = [f"2025-06-01 00:00:{i % 60:02d},{c}" if spec["header"].startswith(("timestamp", "\ufeff")) else c
            for i, c in enumerate(spec["cells"])]
    data = (spec["header"] + nl + nl.join(rows) + nl).encode("utf-8")
    if spec["garbage"] is not None:
        data += spec["garbage"]
    target = path if fault == "ok" else csv_dir / f"real_{name}.csv"
    target.write_bytes(data)
    if fault == "link_in":
        os.symlink(target.name, path)


def _run(src: Path, csv_dir: Path, out: Path) -> int:
    return cli.main([str(src), "--csv-dir", str(csv_dir), "-o", str(out), "--name", "ds", "-q", "--workers", "1", "--min-length", "2"])


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(records=st.lists(_record_text(), min_size=1, max_size=8), csvs=st.lists(_csv, min_size=5, max_size=5),
       array=st.booleans(), full_disk=st.booleans())
def test_converter_invariants_under_random_input_and_faults(records, csvs, array, full_disk):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        outside = root / "outside.csv"
        outside.write_text("timestamp,value\n" + "".join(f"2025-06-01 00:00:{i:02d},{CANARY}\n" for i in range(40)))
        csv_dir = root / "csv"
        csv_dir.mkdir()
        for name, spec in zip(NAMES, csvs):
            _write_csv(csv_dir, outside, name, spec)
        src = root / ("in.json" if array else "in.jsonl")
        src.write_text("[\n" + ",\n".join(records) + "\n]" if array else "\n".join(records) + "\n", encoding="utf-8")
        out = root / "out"
        if full_disk:
            def no_space(fd):
                raise OSError(errno.ENOSPC, "No space left on device")

            with mock.patch.object(writer.os, "fsync", no_space):
                assert _run(src, csv_dir, out) == cli.EXIT_OUTPUT
            assert list(out.iterdir()) == []  # nothing half-written
        assert _run(src, csv_dir, out) == 0
        first = _files(out)
        report = json.loads(first["ds.report.json"])
        assert report["input"] == len(records)
        assert report["converted"] + report["rejected"] == report["input"]
        assert first["ds.jsonl"].count(b"\n") == report["converted"]
        assert first["ds.rejects.jsonl"].count(b"\n") == report["rejected"]
        for content in first.values():
            assert CANARY.encode() not in content  # nothing read outside --csv-dir
        assert _run(src, csv_dir, out) == 0
        assert _files(out) == first  # a rerun is byte-identical
