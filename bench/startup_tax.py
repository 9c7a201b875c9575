"""Start-up tax: what the project's `.pth` hook adds to every Python process of the environment.

    python bench/startup_tax.py                 # best of 200 `python -c pass`, with and without the hook
    python bench/startup_tax.py --runs 50 --root /path/to/older/checkout   # another tree's hook

Two throw-away venvs from the same base interpreter (`python -m venv --without-pip` in a temp dir), so
both sides run the same `site` and differ only by the project:
- bare: nothing installed;
- hooked: the project as an editable install sees it: a `.pth` putting the tree on sys.path (what the
  editable install writes) and a copy of `tsplugin/_pth/tsfactory_llamafactory.pth` (the hook).
Each side runs `python -c pass` `--runs` times, the two sides alternating so that both see the same
machine load; the best (minimum) wall time of each side is the start-up cost, the median is printed too.
`-X importtime` then lists the modules the hook side imports that the bare side does not, with their
self times (the hook's own cost, without process spawn noise). Not a test; no timed assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOOK_PTH = Path("tsplugin/_pth/tsfactory_llamafactory.pth")
IMPORTTIME = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)$")


def make_venv(where: Path, root: Path | None) -> Path:
    """A bare venv at `where`; with `root`, the tree on its sys.path plus the tree's hook .pth. Its python."""
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", str(where)], check=True)
    python = where / "bin" / "python"
    if root is not None:
        site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   check=True, capture_output=True, text=True).stdout.strip())
        (site / "_tsfactory_tree.pth").write_text(f"{root}\n")
        (site / HOOK_PTH.name).write_bytes((root / HOOK_PTH).read_bytes())
    return python


def clean_env() -> dict[str, str]:
    """The environment without variables that change what an interpreter imports at start-up."""
    drop = ("PYTHONPATH", "PYTHONSTARTUP", "PYTHONHOME", "PYTHONUSERBASE", "PYTHONNOUSERSITE", "PYTHONPROFILEIMPORTTIME")
    return {k: v for k, v in os.environ.items() if k not in drop}


def time_pass(python: Path, env: dict[str, str]) -> float:
    """Wall seconds of one `python -c pass` (spawn, start-up, exit)."""
    t0 = time.perf_counter()
    subprocess.run([str(python), "-c", "pass"], env=env, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def imported(python: Path, env: dict[str, str]) -> dict[str, int]:
    """Module -> self import time in microseconds, from `python -X importtime -c pass`."""
    err = subprocess.run([str(python), "-X", "importtime", "-c", "pass"], env=env, check=True, capture_output=True, text=True).stderr
    return {m.group(4): int(m.group(1)) for m in map(IMPORTTIME.match, err.splitlines()) if m}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=200, help="`python -c pass` runs per side (default 200)")
    p.add_argument("--root", type=Path, default=ROOT, help="the project tree whose hook is measured (default: this checkout)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error(f"--runs {args.runs}: must be at least 1")
    root = args.root.resolve()
    if not (root / HOOK_PTH).is_file():
        p.error(f"--root {root}: no {HOOK_PTH} there; pass a checkout of this project")
    env = clean_env()
    with tempfile.TemporaryDirectory(prefix="startup_tax_") as tmp:
        sides = {"bare": make_venv(Path(tmp) / "bare", None), "hooked": make_venv(Path(tmp) / "hooked", root)}
        for python in sides.values():  # warm-up: byte-compile, fill the page cache
            time_pass(python, env)
            imported(python, env)
        times: dict[str, list[float]] = {name: [] for name in sides}
        for _ in range(args.runs):
            for name, python in sides.items():
                times[name].append(time_pass(python, env))
        bare_mods, hooked_mods = imported(sides["bare"], env), imported(sides["hooked"], env)
    extra = {m: us for m, us in hooked_mods.items() if m not in bare_mods}
    best = {name: min(t) * 1e3 for name, t in times.items()}
    median = {name: statistics.median(t) * 1e3 for name, t in times.items()}
    result = {"runs": args.runs, "root": str(root), "python": sys.version.split()[0], "best_ms": best, "median_ms": median,
              "delta_best_ms": best["hooked"] - best["bare"], "delta_median_ms": median["hooked"] - median["bare"],
              "hook_imports_us": extra}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"`python -c pass`, Python {result['python']}, best of {args.runs} per side (alternating), hook from {root}")
    print("| side | best ms | median ms |\n|---|---|---|")
    for name in sides:
        print(f"| {name} | {best[name]:.2f} | {median[name]:.2f} |")
    print(f"RESULT start-up tax of the hook: {result['delta_best_ms']:+.2f} ms best-to-best "
          f"({result['delta_median_ms']:+.2f} ms median-to-median)")
    print("modules only the hooked side imports (-X importtime self us): "
          + (", ".join(f"{m} {us}" for m, us in extra.items()) or "none"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
