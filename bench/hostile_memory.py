"""Peak RSS of tsconvert on the inputs issue 18 found unbounded, each next to a baseline run of the same command.

Usage: python bench/hostile_memory.py [--rows 10000000] [--line-gib 2] [--tree PATH]

1. A CSV of --rows rows (timestamp,value) converted with --workers 1: all numbers (the fast path,
   the baseline), then the same file with one cell "Bad Input" (the text-cell path). Ratio text/numeric.
2. A JSONL whose second line is --line-gib GiB with no newline (a sparse file: no disk used), between
   two valid records: `validate` and `convert` (default --max-record-bytes), against the same file
   without that line. Ratio over-long/baseline.
Peak RSS is the child's ru_maxrss (os.wait4). --tree runs another checkout (e.g. the previous commit's
worktree) to compare before/after. About 3 minutes on a busy 2-core CPU with the defaults. Not a test.

Measured on the shared 2-core box (peak RSS MiB; before = main at 6b91e24, after = branch hostile-convert):
  10M-row CSV numeric / one text cell:   before 986 / 2571 (2.61x)    after 987 / 1104 (1.12x)
  validate, baseline / + an over-long line: before 30 / 544 (0.25 GiB line)   after 30 / 95 (2 GiB line)
  convert,  baseline / + an over-long line: before 76 / 616 (0.25 GiB, exit 2) after 77 / 141 (2 GiB, exit 0)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORD = {"messages": [{"role": "user", "content": "<image> anything odd?"}, {"role": "assistant", "content": "no"}],
          "images": ["/img/s.png"]}
CHATTS = {"input": "<ts><ts/> anything odd?", "output": "no", "timeseries": [[1.0, 2.0, 3.0]]}


def peak_rss(tree: Path, args: list[str], cwd: Path) -> tuple[float, float, int]:
    """(peak RSS MiB, wall s, exit code) of `tsconvert ARGS` run from ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "converters.cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 1024, time.perf_counter() - t0, proc.returncode


def write_csv(path: Path, rows: int, text_cell: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("timestamp,value\n")
        block = []
        for i in range(rows):
            block.append(f"{i},Bad Input\n" if text_cell and i == rows // 2 else f"{i},{(i % 1000) * 0.5}\n")
            if len(block) == 100_000:
                fh.write("".join(block))
                block = []
        fh.write("".join(block))


def write_jsonl(path: Path, record: dict, gap: int) -> None:
    """Two records with ``gap`` bytes (NUL, sparse) on one line between them."""
    line = json.dumps(record).encode() + b"\n"
    with open(path, "wb") as fh:
        fh.write(line)
        if gap:
            fh.truncate(fh.tell() + gap)
            fh.seek(0, 2)
            fh.write(b"\n")
        fh.write(line)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--line-gib", type=float, default=2.0)
    ap.add_argument("--tree", type=Path, default=ROOT, help="checkout whose converters/ to run (default: this one)")
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "in.json").write_text(json.dumps([RECORD]), encoding="utf-8")
        convert = ["in.json", "--csv-dir", "csv", "-o", "out", "--name", "s", "--workers", "1", "-q", "--min-length", "1"]
        csv_runs = {}
        for label, text in (("numeric", False), ("one text cell", True)):
            write_csv(work / "csv" / "s.csv", args.rows, text)
            csv_runs[label] = peak_rss(args.tree, convert, work)
            results.append((f"convert, {args.rows:,}-row CSV, {label}", *csv_runs[label]))
        (work / "csv" / "s.csv").unlink()
        write_csv(work / "csv" / "s.csv", 40, False)
        gap = int(args.line_gib * (1 << 30))
        line_runs = {}
        for label, gap_bytes in (("baseline (2 records)", 0), (f"+ a {args.line_gib:g} GiB line", gap)):
            write_jsonl(work / "v.jsonl", CHATTS, gap_bytes)
            write_jsonl(work / "c.jsonl", RECORD, gap_bytes)
            line_runs[("validate", label)] = peak_rss(args.tree, ["validate", "v.jsonl", "-q"], work)
            line_runs[("convert", label)] = peak_rss(args.tree, ["c.jsonl", *convert[1:5], "--name", "c", *convert[7:]], work)
            for cmd in ("validate", "convert"):
                results.append((f"{cmd}, {label}", *line_runs[(cmd, label)]))
    print(f"{'case':<46} {'peak RSS MiB':>12} {'wall s':>8} {'exit':>5}")
    for name, rss, wall, code in results:
        print(f"{name:<46} {rss:>12.0f} {wall:>8.1f} {code:>5}")
    print("\nsummary")
    text, num = csv_runs["one text cell"][0], csv_runs["numeric"][0]
    print(f"  text-cell CSV / numeric CSV peak RSS: {text / num:.2f}x ({text:.0f} / {num:.0f} MiB)")
    for cmd in ("validate", "convert"):
        big = line_runs[(cmd, f"+ a {args.line_gib:g} GiB line")][0]
        small = line_runs[(cmd, "baseline (2 records)")][0]
        print(f"  {cmd}: {args.line_gib:g} GiB line / baseline peak RSS: {big / small:.2f}x ({big:.0f} / {small:.0f} MiB)")


if __name__ == "__main__":
    main()
