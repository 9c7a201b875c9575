"""The tsconvert commands against a table of hostile inputs (issue 18's kinds 1-6, 8, 9), each run as a
subprocess and checked by tests/_hostile.py: exit code, one line on stderr, no traceback, inputs
unchanged, nothing written outside the named folders, bounded RSS, no hang. Add rows to TABLE (or a
table of your own run with `run_row`); each row builds its inputs from `base`."""

from __future__ import annotations

import gzip
import json
import os
import random
import zipfile
from pathlib import Path
from typing import Callable

import pytest
from _hostile import Row, run_row
from conftest import gdsh_record, read_jsonl, write_csv

CONVERT = ("in.jsonl", "--csv-dir", "csv", "-o", "out", "--name", "ds", "--workers", "1", "-q")
CHATTS = {"input": "<ts><ts/> what happens?", "output": "a spike", "timeseries": [[1.0, 2.0, 3.0]]}


def base(case: Path) -> None:
    """Every row's inputs: in.jsonl (two GDSH records + CSVs), chatts.jsonl (valid ChatTS), ett.csv."""
    write_csv(case / "csv" / "a.PV.csv")
    write_csv(case / "csv" / "b.PV.csv")
    (case / "in.jsonl").write_text("".join(json.dumps(gdsh_record(f"/img/{s}.PV.jpg")) + "\n" for s in "ab"), encoding="utf-8")
    (case / "chatts.jsonl").write_text((json.dumps(CHATTS) + "\n") * 3, encoding="utf-8")
    rows = [f"2025-01-01 {i // 60:02d}:{i % 60:02d}:00,{i % 7},{i * 0.5}" for i in range(200)]
    (case / "ett.csv").write_text("date,HUFL,OT\n" + "\n".join(rows) + "\n", encoding="utf-8")


def with_(*steps: Callable[[Path], None]) -> Callable[[Path], None]:
    def setup(case: Path) -> None:
        base(case)
        for step in steps:
            step(case)
    return setup


def link(name: str, target: str) -> Callable[[Path], None]:
    def step(case: Path) -> None:
        (case / name).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, case / name)
    return step


def hardlink(name: str, target: str) -> Callable[[Path], None]:
    return lambda case: os.link(case / target, case / name)


def fifo(name: str) -> Callable[[Path], None]:
    def step(case: Path) -> None:
        (case / name).parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(case / name)
    return step


def write(name: str, data: bytes) -> Callable[[Path], None]:
    def step(case: Path) -> None:
        (case / name).parent.mkdir(parents=True, exist_ok=True)
        (case / name).write_bytes(data)
    return step


def huge_line(name: str, first: dict, size: int = 256 << 20) -> Callable[[Path], None]:
    """One valid record, then ``size`` bytes with no newline (a sparse file: no disk used)."""
    def step(case: Path) -> None:
        with open(case / name, "wb") as fh:
            fh.write(json.dumps(first).encode() + b"\n")
            fh.truncate(fh.tell() + size)
    return step


def text_records(n: int, latin1_at: int | None = None, cut_last: bool = False) -> bytes:
    """``n`` text-only GDSH records (no series needed); one Latin-1 line; or the last line cut short."""
    lines = [json.dumps(gdsh_record(text=f"record {i}"), ensure_ascii=False).encode() for i in range(n)]
    if latin1_at is not None:
        lines[latin1_at - 1] = json.dumps(gdsh_record(text="temp °C"), ensure_ascii=False).encode("latin-1")
    if cut_last:
        lines[-1] = lines[-1][: len(lines[-1]) // 2]
    return b"\n".join(lines) + (b"" if cut_last else b"\n")


def chatts_lines(n: int, latin1_at: int) -> bytes:
    lines = [json.dumps(CHATTS).encode()] * n
    lines[latin1_at - 1] = json.dumps({**CHATTS, "output": "temp °C"}, ensure_ascii=False).encode("latin-1")
    return b"\n".join(lines) + b"\n"


def rejects(case: Path, name: str = "ds") -> list[dict]:
    return read_jsonl(case / "out" / f"{name}.rejects.jsonl")


def expect_rejects(*want: tuple[int, str, str], converted: int | None = None) -> Callable[[Path], None]:
    """The rejects file holds exactly these (index, reason, words in the message) and the report agrees."""
    def check(case: Path) -> None:
        got = rejects(case)
        assert [(r["index"], r["reason"]) for r in got] == [(i, reason) for i, reason, _ in want], got
        for r, (_, _, words) in zip(got, want):
            assert words in r["message"], (words, r["message"])
        report = json.loads((case / "out" / "ds.report.json").read_text(encoding="utf-8"))
        assert report["rejected"] == len(want)
        if converted is not None:
            assert report["converted"] == converted
    return check


def _gz(case: Path) -> None:
    (case / "data.jsonl.gz").write_bytes(gzip.compress((case / "chatts.jsonl").read_bytes(), mtime=0))


def _zip(case: Path) -> None:
    with zipfile.ZipFile(case / "data.zip", "w") as z:
        z.write(case / "chatts.jsonl", "chatts.jsonl")


def _binary(case: Path) -> None:
    (case / "blob.bin").write_bytes(random.Random(0).randbytes(4096))


LATIN1_CSV = ("timestamp,value,unit\n" + "\n".join(f"2025-06-01 00:00:{i:02d},{i * 0.5},°C" for i in range(40)) + "\n").encode("latin-1")
ALPACA_AND_MESSAGES = {"instruction": "<image> look", "output": "fine", **gdsh_record("/img/a.PV.jpg")}
TWO_CONVERSATIONS = {"conversations": [{"from": "human", "value": "<image> x"}, {"from": "gpt", "value": "y"}],
                     **gdsh_record("/img/a.PV.jpg")}
FORECAST = ("forecast", "ett.csv", "--seq-len", "8", "--pred-len", "4", "-o", "out", "-q")

TABLE: list[Row] = [
    # 1. an output is never an input
    Row("validate-report-is-input", with_(), ("validate", "chatts.jsonl", "--report", "chatts.jsonl"), stderr="is the input"),
    Row("validate-report-links-to-input", with_(link("r.json", "chatts.jsonl")), ("validate", "chatts.jsonl", "--report", "r.json"),
        stderr="is the input"),
    Row("validate-report-hard-link", with_(hardlink("r.json", "chatts.jsonl")), ("validate", "chatts.jsonl", "--report", "r.json"),
        stderr="is the input"),
    Row("preview-png-links-to-input", with_(link("out/chatts.rec0.png", "../chatts.jsonl")), ("preview", "chatts.jsonl", "-o", "out"),
        stderr="is the input"),
    Row("convert-name-is-input", with_(), ("in.jsonl", "--csv-dir", "csv", "-o", ".", "--name", "in", "-q"), stderr="is the input"),
    Row("convert-report-links-to-input", with_(link("out/ds.report.json", "../in.jsonl")), CONVERT, stderr="is the input"),
    Row("forecast-scaling-links-to-input", with_(link("out/ett.scaling.json", "../ett.csv")), FORECAST, stderr="is the input"),
    # 2. --name is a file name, checked before anything is read
    *[Row(f"convert-name-{label}", with_(), (*CONVERT[:5], "--name", name, "--workers", "1", "-q"), stderr="--name")
      for label, name in (("parent", "../escape"), ("absolute", "{case}/abs"), ("empty", ""), ("separator", "a/b"),
                          ("dotdot", ".."), ("overlong", "x" * 300))],
    Row("forecast-name-parent", with_(), (*FORECAST, "--name", "../escape"), stderr="--name"),
    # 3. only regular files are read, never blocking; pipes are read
    Row("convert-dev-zero", with_(), ("/dev/zero", *CONVERT[1:]), stderr="character device"),
    Row("convert-fifo", with_(fifo("f.jsonl")), ("f.jsonl", *CONVERT[1:]), stderr="FIFO"),
    Row("validate-fifo", with_(fifo("f.jsonl")), ("validate", "f.jsonl"), stderr="FIFO"),
    Row("preview-fifo", with_(fifo("f.jsonl")), ("preview", "f.jsonl", "-o", "out"), stderr="FIFO"),
    Row("validate-directory", with_(), ("validate", "csv"), stderr="is a directory"),
    Row("forecast-stdin", with_(), ("forecast", "/dev/stdin", *FORECAST[2:]), stderr="not a regular file", stdin=b"date,OT\n"),
    Row("preview-stdin", with_(), ("preview", "/dev/stdin", "-o", "out"), exit=0, stderr_lines=0, writes=("out",),
        stdin=(json.dumps(CHATTS) + "\n").encode()),
    Row("forecast-fifo", with_(fifo("f.csv")), ("forecast", "f.csv", *FORECAST[2:]), stderr="FIFO"),
    Row("convert-dataset-info-fifo", with_(fifo("out/dataset_info.json")), CONVERT, stderr="dataset_info.json is a FIFO"),
    Row("convert-dataset-info-dev-zero", with_(link("out/dataset_info.json", "/dev/zero")), CONVERT, stderr="character device"),
    Row("convert-csv-dir-loop", with_(link("l1", "l2"), link("l2", "l1")), ("in.jsonl", "--csv-dir", "l1", *CONVERT[3:]),
        stderr="--csv-dir"),
    Row("validate-stdin", with_(), ("validate", "/dev/stdin", "-q"), exit=0, stderr_lines=0, stdin=(json.dumps(CHATTS) + "\n").encode()),
    Row("convert-process-substitution", with_(), ("{pipe}", *CONVERT[1:]), exit=0, stderr_lines=0, writes=("out",),
        pipe_data=b"".join(json.dumps(gdsh_record(f"/img/{s}.PV.jpg")).encode() + b"\n" for s in "ab"),
        check=expect_rejects(converted=2)),
    # 4. memory bounded by --max-record-bytes: an over-long line is one reject, the run goes on
    Row("validate-256MiB-line", with_(huge_line("big.jsonl", CHATTS)), ("validate", "big.jsonl", "-q", "--max-record-bytes", "1048576"),
        exit=1, stderr=r"record 1 \(line 2\): 268435456 bytes on one line, above --max-record-bytes", max_rss_mb=400),
    Row("convert-256MiB-line", with_(huge_line("in.jsonl", gdsh_record("/img/a.PV.jpg"))), (*CONVERT, "--max-record-bytes", "1048576"),
        exit=0, stderr_lines=0, writes=("out",), max_rss_mb=400,
        check=expect_rejects((1, "record_too_large", "line 2: 268435456 bytes"), converted=1)),
    Row("convert-256MiB-line-default-cap", with_(huge_line("in.jsonl", gdsh_record("/img/a.PV.jpg"))), CONVERT,
        exit=0, stderr_lines=0, writes=("out",), max_rss_mb=600, check=expect_rejects((1, "record_too_large", "line 2"))),
    Row("convert-array-record-over-cap",  # skipped unread as in JSONL: a reject naming its line, the next record converts
        with_(write("in.json", b'[\n{"messages": [], "note": "' + b'x\\"]}' * (1 << 20) + b'"},\n'
                    + json.dumps(gdsh_record("/img/a.PV.jpg")).encode() + b"]")),
        ("in.json", *CONVERT[1:], "--max-record-bytes", "1048576"), exit=0, stderr_lines=0, writes=("out",), max_rss_mb=400,
        check=expect_rejects((0, "record_too_large", "line 2: a record of 5242908 characters, above --max-record-bytes 1048576"),
                             converted=1)),
    # 5. bytes split into lines, decoded per line: one bad line is one reject with its own line number
    Row("convert-latin1-line-452", with_(write("in.jsonl", text_records(1000, latin1_at=452))), CONVERT, exit=0, stderr_lines=0,
        writes=("out",), check=expect_rejects((451, "not_utf8", "line 452: column"), converted=999)),
    Row("validate-latin1-line-452", with_(write("d.jsonl", chatts_lines(1000, latin1_at=452))), ("validate", "d.jsonl", "-q"),
        exit=1, stderr=r"record 451 \(line 452\): column \d+: byte 0xb0 is not UTF-8"),
    Row("convert-cut-last-line", with_(write("in.jsonl", text_records(5, cut_last=True))), CONVERT, exit=0, stderr_lines=0,
        writes=("out",), check=expect_rejects((4, "unparseable_record", "line 5: column"), converted=4)),
    # 6. two conversations in one record are a reject, never half converted
    Row("convert-alpaca-and-messages", with_(write("in.jsonl", json.dumps(ALPACA_AND_MESSAGES).encode() + b"\n")), CONVERT,
        exit=0, stderr_lines=0, writes=("out",), check=expect_rejects((0, "two_conversations", "'messages', 'instruction'/'output'"))),
    Row("convert-conversations-and-messages", with_(write("in.jsonl", json.dumps(TWO_CONVERSATIONS).encode() + b"\n")), CONVERT,
        exit=0, stderr_lines=0, writes=("out",), check=expect_rejects((0, "two_conversations", "'messages', 'conversations'"))),
    Row("validate-messages-and-input", with_(write("d.jsonl", json.dumps({**CHATTS, "messages": []}).encode() + b"\n")),
        ("validate", "d.jsonl", "-q"), exit=1, stderr="two conversations"),
    # 8. usage errors exit 2 at once, before any record
    Row("convert-pattern-spec-d", with_(), (*CONVERT, "--csv-pattern", "{stem:d}"), stderr="format spec"),
    Row("convert-pattern-wide-pad", with_(), (*CONVERT, "--csv-pattern", "{stem:>20000000}"), stderr="format spec"),
    Row("convert-value-col-twice", with_(), (*CONVERT, "--value-col", "value", "--value-col", "VALUE"), stderr="same column"),
    Row("forecast-seq-len-impossible", with_(), (*FORECAST, "--seq-len", "2000000000"), stderr="needs at least", timeout=30),
    # 9. encodings: only what can be confirmed; binary files named as what they are
    Row("convert-latin1-csv", with_(write("csv/a.PV.csv", LATIN1_CSV)), CONVERT, exit=0, stderr_lines=0, writes=("out",),
        check=expect_rejects((0, "unreadable_csv", "--encoding cp1252"), converted=1)),
    Row("convert-latin1-csv-encoding-given", with_(write("csv/a.PV.csv", LATIN1_CSV)), (*CONVERT, "--encoding", "cp1252"), exit=0,
        stderr_lines=0, writes=("out",), check=expect_rejects(converted=2)),
    Row("convert-unknown-encoding", with_(), (*CONVERT, "--encoding", "klingon"), stderr="unknown encoding"),
    Row("validate-gzip", with_(_gz), ("validate", "data.jsonl.gz"), stderr="gzip-compressed"),
    Row("validate-zip", with_(_zip), ("validate", "data.zip"), stderr="zip archive"),
    Row("validate-binary", with_(_binary), ("validate", "blob.bin"), stderr="binary data"),
    Row("convert-gzip", with_(_gz), ("data.jsonl.gz", *CONVERT[1:]), stderr="gzip-compressed"),
]


@pytest.mark.parametrize("row", TABLE, ids=[r.id for r in TABLE])
def test_hostile_table(row, tmp_path):
    run_row(row, tmp_path)


def test_table_ids_are_unique():
    ids = [r.id for r in TABLE]
    assert len(ids) == len(set(ids))
