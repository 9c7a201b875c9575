"""Benchmark: `tsplugin synth` records/s, and its memory against N (streamed) next to a naive build-then-dump.

Usage: python bench/synth_bench.py [--records 2000] [--factor 5] [--length 512] [--series 1-3]

Runs `tsplugin synth` for N and factor x N records, each in a fresh subprocess (wall includes interpreter
start and imports), and reports records/s and the process's peak RSS (ru_maxrss from os.wait4). The
baseline, in the same run: the same generator with every record kept in a list and written at the end
(what a one-off script does), whose peak grows with N. Flat memory means synth's peak ratio stays ~1.0.
Not a test.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

NAIVE = r"""
import sys
from tsplugin.synth.attributes import AttributeMix
from tsplugin.synth.cli import SynthOptions, parse_range, records
out, n, length, spr = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
opts = SynthOptions(out_dir=None, name="x", records=n, seed=0, series_per_record=parse_range(spr, "series"),
                    mix=AttributeMix(min_length=length, max_length=length))
kept = list(records(opts))  # every line and every series in memory, then one write
with open(out, "wb") as fh:
    fh.write(b"".join(line for line, _ in kept))
"""


def run(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one command."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(argv)}")
    return wall, usage.ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=2000, help="N (default 2000)")
    parser.add_argument("--factor", type=int, default=5, help="the second run writes factor x N records (default 5)")
    parser.add_argument("--length", type=int, default=512, help="points per series (default 512)")
    parser.add_argument("--series", default="1-3", help="series per record (default 1-3)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (args.records, args.factor * args.records):
            synth = [sys.executable, "-m", "tsplugin.cli", "synth", "-o", f"{tmp}/s{n}", "--name", "bench", "--records", str(n),
                     "--seed", "0", "--min-length", str(args.length), "--max-length", str(args.length),
                     "--series-per-record", args.series, "-q"]
            wall, rss = run(synth)
            size = (Path(tmp) / f"s{n}" / "bench.jsonl").stat().st_size / 2**20
            n_wall, n_rss = run([sys.executable, "-c", NAIVE, f"{tmp}/naive{n}.jsonl", str(n), str(args.length), args.series])
            rows.append((n, wall, rss, size, n_wall, n_rss))
            print(f"N={n:7d}: synth {n / wall:8.0f} records/s ({wall:6.1f} s, peak RSS {rss:7.1f} MiB, {size:7.1f} MiB written);"
                  f" naive build-then-dump peak RSS {n_rss:7.1f} MiB ({n_wall:6.1f} s)", flush=True)
    (n0, _, r0, _, _, nr0), (n1, w1, r1, _, _, nr1) = rows
    print("\n==> summary")
    print(f"  synth records/s at N={n1}: {n1 / w1:.0f} (length {args.length}, series per record {args.series}, one thread)")
    print(f"  peak RSS ratio N={n1} / N={n0}: synth {r1 / r0:.2f}x (streamed), naive {nr1 / nr0:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
