"""Benchmark: tsconvert vs a naive one-off script on a generated GDSH-like data set.

Usage: python bench/convert_bench.py [--records 2000] [--points 5000] [--workers N] [--keep DIR]

Each side runs in its own fresh subprocess; wall time covers the whole command (interpreter
start and imports included). CPU seconds and peak memory come from polling /proc every 0.1 s for
the command and all its descendants (tsconvert's workers included): CPU can miss up to 0.1 s per
process, and the RSS sum counts pages shared between processes more than once (an upper bound).
The main process's exact ru_maxrss (os.wait4) is printed too. Not a test.
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


class TreeSampler:
    """Polls /proc every ``interval`` s for a process and all its descendants: CPU seconds per pid
    (last value seen, so up to one interval per process can be missed) and the largest summed RSS.
    Needed because tsconvert's workers are children of a forkserver that the parent never reaps,
    so wait4's rusage would not include their CPU."""

    def __init__(self, root: int, interval: float = 0.1) -> None:
        self.root, self.interval = root, interval
        self.cpu: dict[int, float] = {}
        self.peak_rss = 0
        self.tick = os.sysconf("SC_CLK_TCK")
        self.page = os.sysconf("SC_PAGE_SIZE")

    def sample(self) -> None:
        parent, stats = {}, {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            pid = int(entry)
            parent[pid] = int(fields[1])
            stats[pid] = (int(fields[11]) + int(fields[12])) / self.tick, int(fields[21]) * self.page
        tree, frontier = {self.root}, [self.root]
        children: dict[int, list[int]] = {}
        for pid, ppid in parent.items():
            children.setdefault(ppid, []).append(pid)
        while frontier:
            for child in children.get(frontier.pop(), []):
                if child not in tree:
                    tree.add(child)
                    frontier.append(child)
        rss = 0
        for pid in tree:
            if pid in stats:
                self.cpu[pid] = max(self.cpu.get(pid, 0.0), stats[pid][0])
                rss += stats[pid][1]
        self.peak_rss = max(self.peak_rss, rss)


def run(cmd: list[str]) -> dict[str, float]:
    """Wall s; sampled CPU s and summed RSS MiB of the whole tree; exact ru_maxrss MiB of the command's
    own process (and of the descendants it reaped itself)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    sampler = TreeSampler(proc.pid)
    while True:
        sampler.sample()
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        time.sleep(sampler.interval)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"bench: command failed: {' '.join(cmd)}")
    return {"wall": wall, "cpu": sum(sampler.cpu.values()), "tree_rss": sampler.peak_rss / 2**20,
            "maxrss": usage.ru_maxrss / 1024}


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
    naive_r = run(naive)
    tool_r = run(tool)
    n_tool = sum(1 for _ in open(root / "out" / "bench.jsonl", encoding="utf-8"))
    n_naive = sum(1 for _ in open(root / "naive.jsonl", encoding="utf-8"))
    if n_tool != args.records or n_naive != args.records:
        sys.exit(f"bench: expected {args.records} lines, got tsconvert {n_tool}, naive {n_naive}")
    for label, r in (("naive (pandas.read_csv + json.dumps, 1 process)", naive_r), ("tsconvert (main + worker processes)", tool_r)):
        print(f"{label:49s} wall {r['wall']:6.2f} s {mb / r['wall']:6.1f} MB/s | CPU {r['cpu']:6.2f} s | "
              f"peak RSS: tree {r['tree_rss']:5.0f} MiB (sampled sum), main process {r['maxrss']:5.0f} MiB")
    print(f"speed-up: wall {naive_r['wall'] / tool_r['wall']:.2f}x, CPU {naive_r['cpu'] / tool_r['cpu']:.2f}x")
    print(f"load average before/after: {load0} / {os.getloadavg()[0]:.2f} (other work on this machine inflates wall times)")
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
