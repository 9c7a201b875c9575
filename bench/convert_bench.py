"""Benchmark: tsconvert vs a naive one-off script on a generated GDSH-like data set.

Usage: python bench/convert_bench.py [--records 2000] [--points 5000] [--workers N] [--keep DIR]

Each side runs in its own fresh subprocess; wall time covers the whole command (interpreter
start and imports included). Peak memory is ru_maxrss from os.wait4 on that subprocess: the largest
resident set of any single process in its tree (tsconvert also starts --workers worker processes,
each bounded by the same figure; the naive side is one process). Not a test.
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

import numpy as np

NAIVE = r"""
import json, sys
import pandas as pd
from pathlib import Path
src, csv_dir, out = sys.argv[1:4]
records = json.load(open(src, encoding="utf-8"))
with open(out, "w", encoding="utf-8") as fh:
    for rec in records:
        series = []
        for img in rec["images"]:
            df = pd.read_csv(Path(csv_dir) / (Path(img).stem + ".csv"))
            series.append(df["value"].tolist())
        user, answer = rec["messages"][0]["content"], rec["messages"][1]["content"]
        fh.write(json.dumps({"input": user.replace("<image>", "<ts><ts/>"), "output": answer,
                             "timeseries": series}, ensure_ascii=False) + "\n")
"""


def generate(root: Path, records: int, points: int, seed: int = 0) -> tuple[Path, Path, int]:
    """GDSH-like set: one CSV per image (timestamp,value, 4 decimals), JSON array of records."""
    rng = np.random.default_rng(seed)
    csv_dir = root / "timeseries"
    csv_dir.mkdir(parents=True, exist_ok=True)
    recs, total = [], 0
    t0 = np.datetime64("2025-06-01T00:00:00")
    for i in range(records):
        n = int(points * rng.uniform(0.94, 1.05))
        x = 50 + 3 * np.sin(np.arange(n) / 80) + rng.normal(0, 0.4, n)
        stem = f"gdsh_second_{i:06d}_TAG-{i % 97:04d}.PV"
        ts = (t0 + np.arange(n).astype("timedelta64[s]")).astype(str)
        body = "\n".join(f"{a.replace('T', ' ')},{b:.4f}" for a, b in zip(ts, x))
        data = ("timestamp,value\n" + body + "\n").encode()
        (csv_dir / f"{stem}.csv").write_bytes(data)
        total += len(data)
        recs.append({
            "messages": [
                {"role": "user", "content": f"请分析下图中 TAG-{i % 97:04d}.PV 的运行数据：<image>\n输出 JSON"},
                {"role": "assistant", "content": json.dumps({"is_anomaly": False, "anomaly_type": "none",
                                                              "start": -1, "end": -1, "reason": "平稳"}, ensure_ascii=False)},
            ],
            "images": [f"/home/user/images/gdsh/{stem}.jpg"],
        })
    src = root / "gdsh.json"
    src.write_text(json.dumps(recs, ensure_ascii=False, indent=1), encoding="utf-8")
    return src, csv_dir, total


def run(cmd: list[str]) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, peak RSS MiB) of one subprocess tree (workers included once reaped)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"bench: command failed: {' '.join(cmd)}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=2000)
    ap.add_argument("--points", type=int, default=5000)
    ap.add_argument("--workers", type=int, default=None, help="tsconvert --workers (default: its own default)")
    ap.add_argument("--keep", type=Path, help="generate into this folder and keep it")
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory() if args.keep is None else None
    root = Path(tmp.name) if tmp else args.keep
    src, csv_dir, total = generate(root, args.records, args.points)
    mb = total / 1e6
    print(f"data: {args.records} records, ~{args.points} points each, {mb:.1f} MB of CSV")
    tool = [sys.executable, "-m", "converters.cli", "convert", str(src), "--csv-dir", str(csv_dir),
            "-o", str(root / "out"), "--name", "bench", "--quiet"]
    if args.workers:
        tool += ["--workers", str(args.workers)]
    naive = [sys.executable, "-c", NAIVE, str(src), str(csv_dir), str(root / "naive.jsonl")]
    load0 = f"{os.getloadavg()[0]:.2f}"
    t_naive, c_naive, m_naive = run(naive)
    t_tool, c_tool, m_tool = run(tool)
    n_tool = sum(1 for _ in open(root / "out" / "bench.jsonl", encoding="utf-8"))
    n_naive = sum(1 for _ in open(root / "naive.jsonl", encoding="utf-8"))
    if n_tool != args.records or n_naive != args.records:
        sys.exit(f"bench: expected {args.records} lines, got tsconvert {n_tool}, naive {n_naive}")
    print(f"load average before/after: {load0} / {os.getloadavg()[0]:.2f} (other work on the machine skews wall time)")
    print(f"naive (pandas.read_csv + json.dumps, 1 process): wall {t_naive:6.2f} s {mb / t_naive:6.1f} MB/s | "
          f"CPU {c_naive:6.2f} s | peak RSS {m_naive:5.0f} MiB")
    print(f"tsconvert (worker processes):                    wall {t_tool:6.2f} s {mb / t_tool:6.1f} MB/s | "
          f"CPU {c_tool:6.2f} s | peak RSS {m_tool:5.0f} MiB (largest single process)")
    print(f"speed-up: wall {t_naive / t_tool:.2f}x, CPU {c_naive / c_tool:.2f}x")
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
