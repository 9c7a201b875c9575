"""`tsplugin monitor`: table, warnings, exit codes and curves from LLaMA-Factory's own log files."""

from __future__ import annotations

import json
import math

from conftest import lf_args, run_lf
from tsplugin.cli import main
from tsplugin.monitor import Row, Thresholds, analyze, monitor, read_rows


def _write_run(out, losses, grad_norms=None, total=None, finished=True):
    """trainer_log.jsonl as LLaMA-Factory's LogCallback writes it, trainer_state.json as transformers does."""
    out.mkdir(parents=True, exist_ok=True)
    total = total or len(losses)
    with open(out / "trainer_log.jsonl", "w") as f:
        for step, loss in enumerate(losses, start=1):
            f.write(json.dumps({
                "current_steps": step, "total_steps": total, "loss": loss, "lr": 1e-3 * (1 - step / total),
                "epoch": step / total, "percentage": round(step / total * 100, 2), "elapsed_time": f"0:00:{step:02d}",
                "remaining_time": f"0:00:{total - step:02d}",
            }) + "\n")
    if grad_norms is not None:
        history = [{"step": s, "loss": l, "grad_norm": g, "learning_rate": 1e-3, "epoch": s / total}
                   for s, (l, g) in enumerate(zip(losses, grad_norms), start=1)]
        (out / "checkpoint-2").mkdir(exist_ok=True)
        (out / "checkpoint-2" / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    if finished:
        (out / "all_results.json").write_text("{}")
    return out


def _monitor(capsys, *argv):
    code = main(["monitor", *map(str, argv)])
    return code, capsys.readouterr()


def test_healthy_run_exits_0_with_a_table_and_curves(tmp_path, capsys):
    out = _write_run(tmp_path / "run", [2.0, 1.8, 1.6, 1.5, 1.4], grad_norms=[1.0, 0.9, 0.8, 0.8, 0.7])
    code, cap = _monitor(capsys, out)
    lines = cap.out.splitlines()
    assert code == 0
    assert lines[0].split() == ["step", "%", "epoch", "loss", "grad_norm", "lr", "elapsed", "ETA"]
    assert lines[1].split() == ["1/5", "20.0", "0.20", "2.0000", "1", "8.000e-04", "0:00:01", "0:00:04"]
    assert lines[-1] == "healthy: step 5/5, last loss 1.4000, 0 warning(s)"
    assert lines[-2] == f"curves: {out / 'training_curves.png'}"
    assert (out / "training_curves.png").stat().st_size > 10_000


def test_nan_loss_is_divergence_exit_2(tmp_path, capsys):
    out = _write_run(tmp_path / "run", [2.0, 1.9, float("nan"), 1.8])
    code, cap = _monitor(capsys, out, "--no-plot")
    assert code == 2
    assert "WARNING step 3: loss is nan" in cap.out.splitlines()
    assert cap.out.splitlines()[-1] == "DIVERGED: step 4/4, last loss 1.8000, 1 warning(s); non-finite loss at step 3"
    assert not (out / "training_curves.png").exists()


def test_sustained_grad_norm_above_10_is_divergence_single_one_a_warning(tmp_path, capsys):
    out = _write_run(tmp_path / "run", [2.0] * 6, grad_norms=[1, 12, 1, 11, 13, 15])
    code, cap = _monitor(capsys, out, "--no-plot")
    assert code == 2
    lines = cap.out.splitlines()
    assert [l for l in lines if l.startswith("WARNING")] == [
        "WARNING step 2: grad_norm 12 > 10", "WARNING step 4: grad_norm 11 > 10",
        "WARNING step 5: grad_norm 13 > 10", "WARNING step 6: grad_norm 15 > 10",
    ]
    assert lines[-1] == (
        "DIVERGED: step 6/6, last loss 2.0000, 4 warning(s); grad_norm > 10 for 3 consecutive logged steps (steps 4-6)"
    )
    code, cap = _monitor(capsys, out, "--no-plot", "--patience", "4")
    assert code == 0 and cap.out.splitlines()[-1] == "healthy: step 6/6, last loss 2.0000, 4 warning(s)"


def test_loss_spike_warns_and_a_sustained_one_diverges():
    rows = [Row(i + 1, loss=l) for i, l in enumerate([2.0, 1.9, 1.8, 9.0, 1.7, 1.6, 8.0, 8.5, 9.5])]
    health = analyze(rows, Thresholds(patience=3))
    assert health.warnings == [
        "step 4: loss spike 9 > 3 x running median 1.9",
        "step 7: loss spike 8 > 3 x running median 1.8",
        "step 8: loss spike 8.5 > 3 x running median 1.8",
        "step 9: loss spike 9.5 > 3 x running median 1.8",
    ]
    assert health.divergence == ["loss spike for 3 consecutive logged steps (steps 7-9)"]


def test_resumed_run_relogging_steps_is_merged_by_step(tmp_path):
    out = _write_run(tmp_path / "run", [2.0, 1.9, 1.8], total=4, finished=False)
    with open(out / "trainer_log.jsonl", "a") as f:  # killed after step 3, resumed from checkpoint-2
        for step, loss in [(3, 1.75), (4, 1.7)]:
            f.write(json.dumps({"current_steps": step, "total_steps": 4, "loss": loss, "percentage": step * 25.0}) + "\n")
    rows = read_rows(out)
    assert [(r.step, r.loss) for r in rows] == [(1, 2.0), (2, 1.9), (3, 1.75), (4, 1.7)]


def test_usage_errors_exit_1(tmp_path, capsys):
    code, cap = _monitor(capsys, tmp_path / "nope")
    assert code == 1 and "no such directory" in cap.err
    (tmp_path / "empty").mkdir()
    code, cap = _monitor(capsys, tmp_path / "empty")
    assert code == 1 and "no trainer_log.jsonl or trainer_state.json with training steps" in cap.err


class FakeTime:
    """A clock that moves only when the monitor sleeps; `on_sleep(n)` runs after the n-th sleep (the
    training run writing its logs between two polls)."""

    def __init__(self, on_sleep=None):
        self.now, self.sleeps, self.on_sleep = 0.0, [], on_sleep

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.on_sleep is not None:
            self.on_sleep(len(self.sleeps))


def test_follow_waits_for_the_run_to_finish(tmp_path, capsys):
    out = _write_run(tmp_path / "run", [2.0, 1.9], total=4, finished=False)

    def training(n):  # step 3 lands after the first poll, steps 4 and all_results.json after the third
        if n == 1:
            _write_run(out, [2.0, 1.9, 1.8], total=4, finished=False)
        if n == 3:
            _write_run(out, [2.0, 1.9, 1.8, 1.7])

    fake = FakeTime(training)
    code = monitor(out, follow=True, interval=0.2, timeout=30, clock=fake.clock, sleep=fake.sleep)
    lines = capsys.readouterr().out.splitlines()
    assert code == 0 and lines[-1] == "healthy: step 4/4, last loss 1.7000, 0 warning(s)"
    assert fake.sleeps == [0.2, 0.2, 0.2]  # four polls, the last one finds the run finished
    assert [line.split()[0] for line in lines[1:-1]] == ["1/4", "2/4", "3/4", "4/4"]  # each step shown once, in order


def test_follow_timeout_on_a_stalled_run(tmp_path, capsys):
    out = _write_run(tmp_path / "run", [2.0], total=4, finished=False)
    fake = FakeTime()
    code = monitor(out, follow=True, interval=1.0, timeout=3.0, clock=fake.clock, sleep=fake.sleep)
    assert code == 0 and "stopped following after --timeout 3 s; the run has not finished" in capsys.readouterr().out
    assert fake.sleeps == [1.0, 1.0, 1.0]  # polls at 0, 1, 2 and 3 s; at 3 s the timeout has passed


def test_real_tiny_run(tiny_qwen3ts, tmp_path, capsys):
    out = tmp_path / "out"
    run_lf(**lf_args(tiny_qwen3ts, out, max_steps=3))
    code, cap = _monitor(capsys, out)
    lines = cap.out.splitlines()
    assert code == 0, cap.out
    rows = read_rows(out)
    assert [r.step for r in rows] == [1, 2, 3] and all(math.isfinite(r.grad_norm) for r in rows)
    assert lines[-1] == f"healthy: step 3/3, last loss {rows[-1].loss:.4f}, 0 warning(s)"
    assert (out / "training_curves.png").is_file()


def test_malformed_entries_are_skipped_with_a_line_each_and_the_rest_is_read(tmp_path, capsys):
    out = _write_run(tmp_path / "run", [2.0, 1.8, 1.6, 1.5], grad_norms=[1.0, 0.9, 0.8, 0.7])
    log = out / "trainer_log.jsonl"
    good = log.read_bytes().splitlines()
    junk = [
        b'{"current_steps": "abc", "total_steps": 4, "loss": 1.0}',  # non-numeric step
        b'{"current_steps": Infinity, "total_steps": 4, "loss": 1.0}',
        b"[1, 2, 3]",  # a list where an object belongs
        b'{"current_steps": 9, "tot',  # truncated, not the last line
        b'{"current_steps": 3, "total_steps": 4, "loss": 1.6, "note": "caf\xe9"}',  # not UTF-8: still read
    ]
    log.write_bytes(b"\n".join(good[:2] + junk + good[3:]) + b'\n{"current_steps": 5, "tot')  # last line half written
    state = out / "checkpoint-2" / "trainer_state.json"
    history = json.loads(state.read_text())["log_history"]
    state.write_text(json.dumps({"log_history": [[1]] + history + [{"step": None, "loss": 1.0}]}))
    code, cap = _monitor(capsys, out, "--no-plot")
    assert code == 0 and "Traceback" not in cap.err
    assert cap.out.splitlines()[-1] == "healthy: step 4/4, last loss 1.5000, 0 warning(s)"
    assert [line.split()[0] for line in cap.out.splitlines()[1:5]] == ["1/4", "2/4", "3/4", "4/4"]
    assert cap.err.splitlines() == [
        f"tsplugin monitor: {state}: log_history[0] is a list, not an object; skipped",
        f"tsplugin monitor: {state}: log_history[5]: step None is not a step number; skipped",
        f"tsplugin monitor: {log}: line 3: current_steps 'abc' is not a step number; skipped",
        f"tsplugin monitor: {log}: line 4: current_steps inf is not a step number; skipped",
        f"tsplugin monitor: {log}: line 5 is a list, not an object; skipped",
        f"tsplugin monitor: {log}: line 6 is not JSON; skipped",
    ]


def test_a_state_file_of_the_wrong_shape_is_named_and_nothing_else_breaks(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "trainer_state.json").write_text("[1, 2]")
    code, cap = _monitor(capsys, out, "--no-plot")
    assert code == 1
    assert cap.err.splitlines()[0] == f"tsplugin monitor: {out / 'trainer_state.json'}: no log_history list (got list); its grad norms are not shown"
