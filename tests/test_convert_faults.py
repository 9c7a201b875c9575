"""tsconvert against hostile input and faults: outputs that are inputs, partial writes, full disks,
kills, concurrent dataset_info.json writers, exit codes. Each test checks what a user sees: exit
code, message, the files in the output folder (and that nothing else is there)."""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from converters import cli, writer
from conftest import gdsh_record, read_jsonl, tsconvert, write_csv, write_json

A = "/data/img/a.PV.jpg"
REPO = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def _listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _small_set(tmp_path: Path, n: int = 3, jsonl: bool = True) -> tuple[Path, Path]:
    csv_dir = tmp_path / "csv"
    for i in range(n):
        write_csv(csv_dir / f"s{i}.csv", n=40, start=float(i))
    recs = [gdsh_record(f"/img/s{i}.png") for i in range(n)]
    src = write_json(tmp_path / ("in.jsonl" if jsonl else "in.json"), recs, jsonl=jsonl)
    return src, csv_dir


# --- outputs never overwrite an input -------------------------------------------------------------

@pytest.mark.parametrize("case", ["jsonl_in_out_dir", "dataset_info_named_input", "hard_link_to_input", "rejects_name"])
def test_output_that_is_the_input_is_refused_before_reading(tmp_path, capsys, case):
    src, csv_dir = _small_set(tmp_path, jsonl=True)
    out = tmp_path
    args: list[str] = []
    if case == "dataset_info_named_input":
        src = src.rename(tmp_path / "dataset_info.json")
    elif case == "hard_link_to_input":
        out = tmp_path / "o"
        out.mkdir()
        os.link(src, out / "ds.report.json")
        args = ["--name", "ds"]
    elif case == "rejects_name":
        src = src.rename(tmp_path / "x.rejects.jsonl")
        args = ["--name", "x"]
    before = src.read_bytes()
    listing = _listing(out)
    assert tsconvert([str(src), "--csv-dir", str(csv_dir), "-o", str(out), "-q", *args]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "is the input" in err and str(src) in err and "nothing was read or written" in err
    assert src.read_bytes() == before
    assert _listing(out) == listing  # nothing written, no temp files


def test_forecast_output_that_is_the_input_is_refused(tmp_path, capsys):
    src = tmp_path / "d.scaling.json"  # a CSV under an unlucky name: --name d would write d.scaling.json
    rows = [f"2024-01-01 {i // 60:02d}:{i % 60:02d}:00,{i}" for i in range(200)]
    write_csv(src, header="date,OT", rows=rows)
    before = src.read_bytes()
    code = cli.main(["forecast", str(src), "--seq-len", "8", "--pred-len", "2", "-o", str(tmp_path), "--name", "d", "-q"])
    assert code == cli.EXIT_USAGE
    assert "is the input" in capsys.readouterr().err
    assert src.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["d.scaling.json"]


# --- writes are atomic and complete as a set ------------------------------------------------------

def test_failure_on_the_last_file_rolls_back_the_whole_set(tmp_path, monkeypatch, capsys):
    src, csv_dir = _small_set(tmp_path, jsonl=False)
    out = tmp_path / "out"
    args = [str(src), "--csv-dir", str(csv_dir), "-o", str(out), "--name", "ds", "-q"]
    assert tsconvert(args) == 0
    before = _listing(out)
    write_csv(csv_dir / "s0.csv", n=40, start=100.0)  # the next run would change ds.jsonl
    real_replace = os.replace

    def fail_on_info(src_path, dst):
        if str(dst).endswith("dataset_info.json"):
            raise OSError(errno.EIO, "Input/output error (simulated)")
        return real_replace(src_path, dst)

    monkeypatch.setattr(writer.os, "replace", fail_on_info)
    assert tsconvert(args) == cli.EXIT_OUTPUT
    assert "Input/output error (simulated)" in capsys.readouterr().err
    assert _listing(out) == before  # ds.jsonl, rejects and report rolled back; no temp or backup left
    assert sorted(p.name for p in out.iterdir()) == sorted(before)


def test_fresh_dir_never_ends_with_jsonl_but_no_report(tmp_path, monkeypatch, capsys):
    src, csv_dir = _small_set(tmp_path)
    out = tmp_path / "fresh"
    real_fsync = os.fsync
    calls = {"n": 0}

    def full_disk(fd):
        calls["n"] += 1
        if calls["n"] == 3:  # ds.jsonl and rejects are on disk, the report hits a full disk
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(writer.os, "fsync", full_disk)
    assert tsconvert([str(src), "--csv-dir", str(csv_dir), "-o", str(out), "--name", "ds", "-q"]) == cli.EXIT_OUTPUT
    err = capsys.readouterr().err
    assert "No space left on device. Free disk space; nothing was changed in" in err and "Traceback" not in err
    assert list(out.iterdir()) == []


def test_file_size_limit_is_an_io_error_with_nothing_written(tmp_path):
    """A real write failure (RLIMIT_FSIZE, EFBIG) in a real process: exit 3, no traceback, empty folder."""
    src, csv_dir = _small_set(tmp_path, n=40)
    out = tmp_path / "out"

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    proc = subprocess.run([sys.executable, "-m", "converters.cli", str(src), "--csv-dir", str(csv_dir), "-o", str(out),
                           "--name", "ds", "-q", "--workers", "1"], capture_output=True, text=True, env=_env(),
                          preexec_fn=limit, timeout=120)
    assert proc.returncode == cli.EXIT_OUTPUT, proc.stderr
    assert "File too large" in proc.stderr and "Traceback" not in proc.stderr
    assert list(out.iterdir()) == []


def test_unwritable_output_dir_is_an_io_error(tmp_path, monkeypatch, capsys):
    src, csv_dir = _small_set(tmp_path)
    out = tmp_path / "ro"
    out.mkdir()
    if os.geteuid() == 0:  # root writes anywhere: make the folder refuse the way a read-only mount does
        def read_only(*a, **k):
            raise OSError(errno.EROFS, "Read-only file system")
        monkeypatch.setattr(writer.tempfile, "mkstemp", read_only)
    else:
        out.chmod(0o555)
    try:
        assert tsconvert([str(src), "--csv-dir", str(csv_dir), "-o", str(out), "-q"]) == cli.EXIT_OUTPUT
    finally:
        out.chmod(0o755)
    err = capsys.readouterr().err
    assert err.startswith(f"tsconvert: error: cannot write {out / 'in.jsonl'}: ") and "Traceback" not in err
    assert list(out.iterdir()) == []


def test_help_lists_the_exit_codes():
    text = cli.build_parser().format_help()
    sub = cli.build_parser()._subparsers._group_actions[0].choices["convert"].format_help()  # argparse has no public accessor
    for code, _ in cli.EXIT_CODES:
        assert f"\n  {code:<4} " in text and f"\n  {code:<4} " in sub
    assert len({code for code, _ in cli.EXIT_CODES}) == len(cli.EXIT_CODES)


# --- kills ----------------------------------------------------------------------------------------

def _slow_set(tmp_path: Path, n: int = 800) -> tuple[Path, Path]:
    """Enough work (800 records x 3000-point CSVs, ~3 s of writing) that a kill lands mid-conversion even when
    the test process is starved for a while on a loaded machine (160 records finished first once)."""
    csv_dir = tmp_path / "csv"
    rows = [f"2025-06-01 {i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d},{(i * 7919) % 1000 / 10}" for i in range(3000)]
    write_csv(csv_dir / "s0.csv", rows=rows)
    data = (csv_dir / "s0.csv").read_bytes()
    for i in range(1, 40):
        (csv_dir / f"s{i}.csv").write_bytes(data)
    recs = [gdsh_record(f"/img/s{i % 40}.png") for i in range(n)]
    return write_json(tmp_path / "in.json", recs), csv_dir


def _start(src: Path, csv_dir: Path, out: Path, workers: int = 2) -> subprocess.Popen:
    # stderr to a file, not a pipe: a pipe would also be held open by surviving workers.
    err = open(out.parent / f"stderr{workers}.txt", "w")
    return subprocess.Popen([sys.executable, "-m", "converters.cli", str(src), "--csv-dir", str(csv_dir), "-o", str(out),
                             "--name", "ds", "-q", "--workers", str(workers)], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=err, preexec_fn=_default_sigint)


def _default_sigint() -> None:
    """Ctrl-C acts as in a terminal even when the test run itself ignores SIGINT (a shell's background
    job, `nohup`): an ignored SIGINT is inherited, and Python then never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _stderr(out: Path, workers: int) -> str:
    return (out.parent / f"stderr{workers}.txt").read_text()


def _wait_for_temp(out: Path, proc: subprocess.Popen) -> None:
    for _ in range(600):  # up to a minute on a loaded machine; returns as soon as writing started
        if out.exists() and any(p.name.startswith(".ds.jsonl.") for p in out.iterdir()):
            return
        assert proc.poll() is None, (proc.returncode, _stderr(out, 2) if (out.parent / "stderr2.txt").exists() else "")
        time.sleep(0.1)
    raise AssertionError("the conversion never started writing")


def test_sigkill_leaves_nothing_a_rerun_trips_over_and_workers_die(tmp_path):
    psutil = pytest.importorskip("psutil")
    src, csv_dir = _slow_set(tmp_path)
    clean = tmp_path / "clean"
    assert tsconvert([str(src), "--csv-dir", str(csv_dir), "-o", str(clean), "--name", "ds", "-q"]) == 0
    out = tmp_path / "out"
    proc = _start(src, csv_dir, out)
    _wait_for_temp(out, proc)
    workers = []
    for _ in range(600):  # the pool's processes (forkserver and workers) are up once a task ran
        workers = psutil.Process(proc.pid).children(recursive=True)
        if len(workers) >= 3:
            break
        time.sleep(0.1)
    assert len(workers) >= 2, workers
    proc.kill()
    proc.wait(timeout=60)
    gone, alive = psutil.wait_procs(workers, timeout=10)
    assert alive == [], f"workers outlived the killed command: {alive}"
    assert tsconvert([str(src), "--csv-dir", str(csv_dir), "-o", str(out), "--name", "ds", "-q"]) == 0
    assert _listing(out) == _listing(clean)  # same bytes as an undisturbed run
    assert sorted(p.name for p in out.iterdir()) == sorted(_listing(clean))  # the stale temp files are gone


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, cli.EXIT_TERMINATED), (signal.SIGINT, cli.EXIT_INTERRUPTED)])
def test_sigterm_and_ctrl_c_change_nothing(tmp_path, sig, code):
    src, csv_dir = _slow_set(tmp_path)
    out = tmp_path / "out"
    proc = _start(src, csv_dir, out, workers=1)
    _wait_for_temp(out, proc)
    proc.send_signal(sig)
    proc.wait(timeout=120)
    err = _stderr(out, 1)
    assert proc.returncode == code, err
    assert "no output was changed" in err and "Traceback" not in err
    assert list(out.iterdir()) == []


# --- concurrent dataset_info.json writers ---------------------------------------------------------

WRITER = """
import sys
from pathlib import Path
from converters.writer import update_dataset_info
info, tag = Path(sys.argv[1]), sys.argv[2]
for i in range(25):
    update_dataset_info(info, f"{tag}_{i}", {"file_name": f"{tag}_{i}.jsonl"})
"""


def test_concurrent_writers_keep_every_entry(tmp_path):
    info = tmp_path / "dataset_info.json"
    info.write_text(json.dumps({"keep": {"file_name": "k.jsonl"}}))
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(info), f"w{k}"], env=_env()) for k in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0] * 4
    got = json.loads(info.read_text())
    assert set(got) == {"keep"} | {f"w{k}_{i}" for k in range(4) for i in range(25)}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset_info.json"]  # lock file removed


@pytest.mark.slow  # four CLI processes; test_concurrent_writers_keep_every_entry covers the lock in the default tier
def test_concurrent_conversions_into_one_folder_keep_every_entry(tmp_path):
    src, csv_dir = _small_set(tmp_path)
    out = tmp_path / "out"
    procs = [subprocess.Popen([sys.executable, "-m", "converters.cli", str(src), "--csv-dir", str(csv_dir), "-o", str(out),
                               "--name", f"n{k}", "-q", "--workers", "1"], env=_env()) for k in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0] * 4
    info = json.loads((out / "dataset_info.json").read_text())
    assert sorted(info) == [f"n{k}" for k in range(4)]
    assert all(len(read_jsonl(out / f"n{k}.jsonl")) == 3 for k in range(4))
