"""Runner for tables of hostile command lines: one `Row` per case, `run_row` checks what every command
owes a careless or hostile user, whatever the case:

- the exit code the row names, and no hang (a timeout);
- exactly `stderr_lines` lines on stderr (one for an error), matching `stderr` (a regex), no traceback;
- every file that existed before is unchanged (type and SHA-256; FIFOs and links are not followed);
- nothing new appears outside the folders the row names in `writes` (relative to the case folder);
- peak RSS of the command below `max_rss_mb` (the child's VmHWM, read back after it exits; an
  address-space guard `RLIMIT_DATA` of twice that stops a runaway before it hurts the machine);
- `check(case)`, when given, for what only that row knows (a reject's line number, a report field).

A row's `setup(case)` builds the inputs inside `case` (a fresh folder per row, also the working
directory). `argv` may name `{case}` (that folder) and `{pipe}` (a /dev/fd path: the read end of a pipe
fed with `pipe_data`, like bash's `<(...)`). `stdin` is fed to standard input (None: /dev/null).

Programs: `tsconvert` (converters.cli) and `tsplugin` (tsplugin.cli) run from this checkout (PYTHONPATH),
in a child Python, so tsplugin rows can join the same table.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
PROGRAMS = {"tsconvert": "converters.cli", "tsplugin": "tsplugin.cli"}

# The child: guard memory, run the program's main(), write its own peak RSS (KiB) for the parent.
_CHILD = r"""
import atexit, importlib, os, resource, sys
limit = int(os.environ["HOSTILE_DATA_LIMIT"])
resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
def _rss():
    # VmHWM: this program's own high-water mark. ru_maxrss is not: Linux carries the parent's peak across
    # fork + exec, so a child of a pytest process that has loaded torch would report pytest's RSS.
    try:
        with open("/proc/self/status") as fh:
            kib = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with open(os.environ["HOSTILE_RSS_FILE"], "w") as fh:
        fh.write(str(kib))
atexit.register(_rss)
module, prog = sys.argv[1], sys.argv[2]
sys.argv = [prog, *sys.argv[3:]]
sys.exit(importlib.import_module(module).main())
"""


@dataclass(frozen=True)
class Row:
    """One hostile case: how to build it, the command, and what must come out."""

    id: str
    setup: Callable[[Path], None]
    argv: tuple[str, ...]
    exit: int = 2
    stderr: str = ""                        # regex searched in the stderr text ("" = anything)
    stderr_lines: int = 1                   # non-empty stderr lines expected (1 for an error, 0 for a quiet success)
    program: str = "tsconvert"
    writes: tuple[str, ...] = ()            # folders (relative to the case) where new files may appear
    stdin: bytes | None = None
    pipe_data: bytes | None = None
    max_rss_mb: int = 700
    timeout: float = 120.0
    check: Callable[[Path], None] | None = None
    env: dict[str, str] = field(default_factory=dict)


def snapshot(top: Path) -> dict[str, tuple[str, str]]:
    """{relative path: (kind, content hash)} of everything under ``top``, links and FIFOs not followed."""
    out: dict[str, tuple[str, str]] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(top))
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISREG(st.st_mode):
                h = hashlib.sha256()
                with open(p, "rb") as fh:
                    for block in iter(lambda: fh.read(1 << 20), b""):
                        h.update(block)
                out[rel] = ("file", h.hexdigest())
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", "")
            else:
                out[rel] = ("special", oct(stat.S_IFMT(st.st_mode)))
    return out


def run_row(row: Row, tmp_path: Path) -> subprocess.CompletedProcess:
    """Build the case, run the command and assert every property in the module docstring."""
    case = tmp_path / "case"
    case.mkdir()
    row.setup(case)
    before = snapshot(tmp_path)
    rss_file = tmp_path / "rss.kib"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HOSTILE_RSS_FILE": str(rss_file),
           "HOSTILE_DATA_LIMIT": str(2 * row.max_rss_mb << 20), **row.env}
    pass_fds: tuple[int, ...] = ()
    argv = [a.replace("{case}", str(case)) for a in row.argv]
    feeder = None
    if row.pipe_data is not None:
        r, w = os.pipe()
        pass_fds = (r,)
        argv = [a.replace("{pipe}", f"/dev/fd/{r}") for a in argv]
        feeder = threading.Thread(target=_feed, args=(w, row.pipe_data), daemon=True)
    cmd = [sys.executable, "-c", _CHILD, PROGRAMS[row.program], row.program, *argv]
    proc = subprocess.Popen(cmd, cwd=case, env=env, stdin=subprocess.PIPE if row.stdin is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=pass_fds)
    if pass_fds:
        os.close(pass_fds[0])
        feeder.start()  # type: ignore[union-attr]
    try:
        out, err = proc.communicate(row.stdin, timeout=row.timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError(f"{row.id}: no answer within {row.timeout} s (a hang): {' '.join(row.argv)}") from None
    result = subprocess.CompletedProcess(cmd, proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))
    where = f"{row.id}: {row.program} {' '.join(row.argv)}\nstdout: {result.stdout[-2000:]}\nstderr: {result.stderr[-2000:]}"
    assert "Traceback" not in result.stderr, where
    assert result.returncode == row.exit, where
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == row.stderr_lines, where
    assert re.search(row.stderr, result.stderr), f"stderr does not match {row.stderr!r}\n{where}"
    after = snapshot(tmp_path)
    changed = sorted(p for p, v in before.items() if after.get(p) != v)
    assert not changed, f"{row.id}: inputs changed or removed: {changed}\n{where}"
    allowed = tuple(str(Path("case") / w) for w in row.writes) + ("rss.kib",)
    new = sorted(p for p in set(after) - set(before) if not any(p == a or p.startswith(a + os.sep) for a in allowed))
    assert not new, f"{row.id}: written outside {list(row.writes)}: {new}\n{where}"
    rss_mb = int(rss_file.read_text()) / 1024
    assert rss_mb < row.max_rss_mb, f"{row.id}: peak RSS {rss_mb:.0f} MiB, limit {row.max_rss_mb} MiB\n{where}"
    if row.check is not None:
        row.check(case)
    return result


def _feed(fd: int, data: bytes) -> None:
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
    except BrokenPipeError:  # the command refused the input without reading it all
        pass
