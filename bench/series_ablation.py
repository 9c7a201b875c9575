"""Series ablation: a tiny model learns an answer that only the series carry, and loses it when
the series are shuffled. Evidence that series reach the decoder aligned with their placeholders.

Usage: python bench/series_ablation.py [--records 960] [--eval 400] [--steps 60] [--minutes 12]
                                       [--threads 1] [--seed 0] [--no-controls | --controls NAMES]
                                       [--keep DIR] [--json PATH]

Design choices:
- Task (`tsplugin.quickstart.ramps`, shared with `tsplugin quickstart`): each record holds two series of the
  same length, "A: <ts><ts/> / B: <ts><ts/>";
  one rises and the other falls (same |slope|, noise, random level and amplitude).
  Question: "Which rises, the first or the second?"; answer "first" / "second".
- The text cannot leak the answer: the model is built with the `tsfactory-v0` encoding profile, so
  the plugin prepends `[Value Offset: -mean|Value Scaling: s]` (s = max|x - mean| / 3) to each series
  (the current ChatTS prefix also writes left=/right=, first and last value, which would tell a rising
  series from a falling one), and a rising and a falling ramp with the same level,
  amplitude and noise law have the same distribution of mean and max|x - mean| (mirror symmetry),
  so the prefixes carry no label information. Checked, not assumed: a model trained on the prefix
  text alone (series removed) must score chance.
- Training: stock LLaMA-Factory in-process (`run_exp`), template `chatts8b_nothink`, full
  fine-tuning of a tiny qwen3ts model (patch 8), fixed step count. LLaMA-Factory's default
  `freeze_vision_tower: true` keeps the ts_encoder at its random (Xavier) init: the decoder learns
  from random-projection patch features, so whatever it answers came through the series path.
- Scoring: teacher-forced; the model's next-token logits after the prompt for the first token of
  "first" vs "second" (they differ). Accuracy with a Wilson 95% interval on held-out records.
- Conditions (held-out records, one trained model unless stated):
    aligned            the records as they are (should be well above chance);
    shuffled           each record gets another record's series pair (label kept): chance;
    swapped            a record's two series in reverse order: accuracy ~ 1 - aligned;
    prefix_kept        the text keeps the record's own prefixes, the encoder gets another
                       record's series: chance (the model reads the patches, not the prefix);
    trained_shuffled   a model trained on records whose series were shuffled: chance;
    text_only          a model trained and scored on prefix text with the series removed: chance.
Seeded and deterministic for a fixed --steps; --minutes caps the wall time of each training run
(a run stopped by the cap is reported as such, and its step count then depends on the machine).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from lf_output import lf_output_to, offline

from tsplugin.quickstart.ramps import ANSWERS, derangement, make_records, shuffled

offline()

# Prefix without first/last values: the label (rising or falling) must not be readable from the text.
PROFILE = "tsfactory-v0"
TEMPLATE = "chatts8b_nothink"
CONTROLS = ("trained_shuffled", "text_only")


# ----------------------------------------------------------------------------- data
# The task (records, derangement, shuffle) lives in the package: `tsplugin quickstart` trains on it too.


def prefix_text(record: dict) -> dict:
    """The record as text only: each placeholder replaced by the prefix the plugin would write."""
    from tsplugin.processing import sp_encode

    prefixes = iter(sp_encode(s, PROFILE)[1] for s in record["timeseries"])
    text = record["input"]
    while "<ts><ts/>" in text:
        text = text.replace("<ts><ts/>", next(prefixes), 1)
    return {"input": text, "output": record["output"]}


def write_dataset(directory: Path, name: str, records: Sequence[dict]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / f"{name}.jsonl", "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    info_path = directory / "dataset_info.json"
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    columns = {"prompt": "input", "response": "output"}
    if "timeseries" in records[0]:
        columns["timeseries"] = "timeseries"
    info[name] = {"file_name": f"{name}.jsonl", "columns": columns}
    info_path.write_text(json.dumps(info, indent=2))


# ----------------------------------------------------------------------------- training


@dataclass
class TrainResult:
    output_dir: Path
    seconds: float
    steps: int
    capped: bool
    final_loss: float


def _time_cap_callback(seconds: float) -> Any:
    from transformers import TrainerCallback

    class TimeCap(TrainerCallback):
        """Stops training once `seconds` of wall time have passed (reported as capped)."""

        def __init__(self) -> None:
            self.start = time.perf_counter()
            self.capped = False

        def on_step_end(self, args, state, control, **kwargs):
            if time.perf_counter() - self.start > seconds:
                self.capped = True
                control.should_training_stop = True
            return control

    return TimeCap()


def train(model_dir: Path, data_dir: Path, dataset: str, output_dir: Path, steps: int, cap_s: float, seed: int,
          batch_size: int = 16, learning_rate: float = 1e-3) -> TrainResult:
    """Full fine-tuning through stock LLaMA-Factory (in-process `llamafactory-cli train`)."""
    from llamafactory.train.tuner import run_exp

    args = dict(
        model_name_or_path=str(model_dir), stage="sft", do_train=True, finetuning_type="full",
        dataset=dataset, dataset_dir=str(data_dir), template=TEMPLATE, cutoff_len=512,
        overwrite_cache=True, output_dir=str(output_dir), overwrite_output_dir=True,
        logging_steps=10, save_strategy="no", report_to="none", per_device_train_batch_size=batch_size,
        learning_rate=learning_rate, lr_scheduler_type="cosine", warmup_ratio=0.05, max_steps=steps,
        weight_decay=0.0, bf16=False, seed=seed, data_seed=seed, disable_tqdm=True,
    )
    cap = _time_cap_callback(cap_s)
    start = time.perf_counter()
    run_exp(args, callbacks=[cap])
    seconds = time.perf_counter() - start
    state = json.loads((output_dir / "trainer_state.json").read_text()) if (output_dir / "trainer_state.json").exists() else {}
    log = [json.loads(line) for line in (output_dir / "trainer_log.jsonl").read_text().splitlines()]
    losses = [e["loss"] for e in log if "loss" in e]
    done = state.get("global_step") or max((e.get("current_steps", 0) for e in log), default=0)
    return TrainResult(output_dir, seconds, int(done), cap.capped and int(done) < steps, losses[-1] if losses else float("nan"))


# ----------------------------------------------------------------------------- scoring


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score 95% interval of a binomial proportion k/n."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


class Scorer:
    """Teacher-forced choice between the answers' first tokens after the prompt."""

    def __init__(self, model_dir: Path) -> None:
        from tsplugin.chat import TimeSeriesChat

        self.chat = TimeSeriesChat.from_pretrained(model_dir, template=TEMPLATE, dtype="float32")
        firsts = []
        for answer in ANSWERS:
            messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": answer}]
            _, answer_ids = self.chat.template.encode_oneturn(self.chat.tokenizer, messages)
            firsts.append(answer_ids[0])
        if firsts[0] == firsts[1]:
            raise ValueError(f"answers {ANSWERS} start with the same token; pick answers that differ in their first token")
        self.answer_ids = firsts

    def choose(self, question: str, series: list, encoder_series: list | None = None) -> int:
        """Index of the answer the model prefers; `encoder_series` replaces what the encoder sees."""
        import torch

        inputs = self.chat.encode(question, series)
        if encoder_series is not None:
            inputs["timeseries"] = self.chat.encode(question, encoder_series)["timeseries"]
        with torch.no_grad():
            logits = self.chat.model(**inputs).logits[0, -1]
        return int(logits[self.answer_ids[1]] > logits[self.answer_ids[0]])

    def choices(self, records: Sequence[dict], encoder_from: Sequence[dict] | None = None) -> list[str]:
        """The preferred answer for each record (the encoder sees `encoder_from[i]`'s series if given)."""
        out = []
        for i, r in enumerate(records):
            enc = encoder_from[i]["timeseries"] if encoder_from is not None else None
            out.append(ANSWERS[self.choose(r["input"], r.get("timeseries", []), enc)])
        return out


@dataclass
class Score:
    """Accuracy against the record's own answer; `donor` counts agreement with the answer of the
    record whose series the model actually saw (shuffled conditions), `first` the "first" answers."""

    correct: int
    n: int
    first: int
    donor: int | None = None

    @property
    def accuracy(self) -> float:
        return self.correct / self.n


def score_choices(choices: Sequence[str], records: Sequence[dict], donors: Sequence[dict] | None = None) -> Score:
    return Score(
        correct=sum(c == r["output"] for c, r in zip(choices, records)),
        n=len(records),
        first=sum(c == ANSWERS[0] for c in choices),
        donor=None if donors is None else sum(c == d["output"] for c, d in zip(choices, donors)),
    )


# ----------------------------------------------------------------------------- main


def run(records: int, eval_records: int, steps: int, minutes: float, seed: int, length: int, work: Path,
        controls: Sequence[str] = CONTROLS, log=print) -> dict[str, Any]:
    """Train and score every condition; returns {condition: (correct, n)} plus timings.

    `controls` names the extra training runs to do: "trained_shuffled", "text_only" (both by default).
    """
    import torch

    import tsplugin._bootstrap  # noqa: F401  (hooks, also without the .pth)
    from tsplugin.build.init_model import build_model

    torch.manual_seed(seed)
    total_start = time.perf_counter()
    unknown = set(controls) - set(CONTROLS)
    if unknown:
        raise ValueError(f"unknown controls {sorted(unknown)}; choose from {list(CONTROLS)}")
    n_runs = 1 + len(controls)
    cap_s = minutes * 60.0 / n_runs
    model = build_model(work / "base", arch="qwen3ts", preset="tiny", seed=seed, profile=PROFILE)
    train_recs = make_records(records, length, seed)
    held_out = make_records(eval_records, length, seed + 1000)
    data = work / "data"
    write_dataset(data, "aligned", train_recs)
    results: dict[str, Any] = {"timings": {}}

    def score(name: str, scorer: Scorer, recs, encoder_from=None, donors=None):
        results[name] = sc = score_choices(scorer.choices(recs, encoder_from), recs, donors)
        donor = "" if sc.donor is None else f", agrees with the series' own record {sc.donor}/{sc.n}"
        log(f"  {name:<17} {sc.correct}/{sc.n} = {sc.accuracy:.3f} ('first' {sc.first}/{sc.n}{donor})")

    tr = train(model, data, "aligned", work / "aligned", steps, cap_s, seed)
    results["timings"]["aligned"] = tr
    log(f"trained aligned: {tr.steps} steps in {tr.seconds:.1f} s (final loss {tr.final_loss:.3f}{', CAPPED' if tr.capped else ''})")
    scorer = Scorer(tr.output_dir)
    score("aligned", scorer, held_out)
    perm = derangement(len(held_out), seed + 7)
    donors = [held_out[j] for j in perm]
    other = [dict(r, timeseries=d["timeseries"]) for r, d in zip(held_out, donors)]
    score("shuffled", scorer, other, donors=donors)
    swapped = [dict(r, timeseries=r["timeseries"][::-1]) for r in held_out]
    score("swapped", scorer, swapped)
    score("prefix_kept", scorer, held_out, encoder_from=other, donors=donors)

    if "trained_shuffled" in controls:
        write_dataset(data, "shuffled", shuffled(train_recs, seed + 3))
        tr = train(model, data, "shuffled", work / "trained_shuffled", steps, cap_s, seed)
        results["timings"]["trained_shuffled"] = tr
        log(f"trained on shuffled series: {tr.steps} steps in {tr.seconds:.1f} s (final loss {tr.final_loss:.3f})")
        score("trained_shuffled", Scorer(tr.output_dir), held_out)

    if "text_only" in controls:
        write_dataset(data, "text_only", [prefix_text(r) for r in train_recs])
        tr = train(model, data, "text_only", work / "text_only", steps, cap_s, seed)
        results["timings"]["text_only"] = tr
        log(f"trained on prefix text only: {tr.steps} steps in {tr.seconds:.1f} s (final loss {tr.final_loss:.3f})")
        score("text_only", Scorer(tr.output_dir), [prefix_text(r) for r in held_out])

    results["total_seconds"] = time.perf_counter() - total_start
    return results


def summary(results: dict[str, Any], args: argparse.Namespace) -> str:
    expect = {
        "aligned": "well above 0.5",
        "shuffled": "~0.5",
        "swapped": "~1 - aligned",
        "prefix_kept": "~0.5",
        "trained_shuffled": "~0.5",
        "text_only": "~0.5",
    }
    lines = [
        "=== series ablation summary ===",
        f"task: 2 series x {args.length} points, 'which series is rising'; qwen3ts tiny, full FT (ts_encoder frozen, random init), "
        f"template {TEMPLATE}; train {args.records} records, {args.steps} steps, batch 16; held-out N={args.eval}; seed {args.seed}",
        f"{'condition':<17} {'acc':>6}  {'95% CI (Wilson)':<16} {'expected':<15} answers 'first'  agrees with series' own record",
    ]
    for name, exp in expect.items():
        if name not in results:
            continue
        sc = results[name]
        lo, hi = wilson(sc.correct, sc.n)
        donor = "" if sc.donor is None else f"{sc.donor / sc.n:.3f}"
        lines.append(f"{name:<17} {sc.accuracy:6.3f}  [{lo:.3f}, {hi:.3f}]   {exp:<15} {sc.first / sc.n:.3f}            {donor}")
    for name, tr in results["timings"].items():
        lines.append(f"train time {name:<17} {tr.seconds:6.1f} s, {tr.steps} steps{' (CAPPED by --minutes)' if tr.capped else ''}, final loss {tr.final_loss:.3f}")
    lines.append(f"total wall time {results['total_seconds']:.1f} s")
    return "\n".join(lines)


def as_json(results: dict[str, Any]) -> dict[str, Any]:
    """The results of `run` as plain JSON: scores (with their Wilson interval) and training runs."""
    scores = {name: {"correct": sc.correct, "n": sc.n, "first": sc.first, "donor": sc.donor, "wilson": wilson(sc.correct, sc.n)}
              for name, sc in results.items() if isinstance(sc, Score)}
    training = {name: {"seconds": tr.seconds, "steps": tr.steps, "capped": tr.capped, "final_loss": tr.final_loss}
                for name, tr in results["timings"].items()}
    return {"scores": scores, "training": training, "total_seconds": results["total_seconds"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=960, help="training records (default 960 = 60 steps x 16)")
    parser.add_argument("--eval", type=int, default=400, help="held-out records scored per condition (default 400)")
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps per training run (default 60)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: on a shared CPU more threads are slower, and results stay reproducible)")
    parser.add_argument("--minutes", type=float, default=12.0,
                        help="wall-time cap for all training runs together, a safety net (default 12)")
    parser.add_argument("--length", type=int, default=64, help="points per series (default 64 = 8 patches)")
    parser.add_argument("--seed", type=int, default=0)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--no-controls", action="store_true", help="skip the trained_shuffled and text_only runs")
    group.add_argument("--controls", default=",".join(CONTROLS),
                       help=f"comma list of the extra training runs to do, of {', '.join(CONTROLS)} (default: both)")
    parser.add_argument("--keep", type=Path, default=None, help="keep models and data in this directory")
    parser.add_argument("--verbose", action="store_true", help="show LLaMA-Factory's output (default: WORK/lf.log)")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write the scores and training times as JSON to this path (what tests/test_series_ablation.py reads)")
    args = parser.parse_args(argv)
    controls = () if args.no_controls else tuple(name for name in args.controls.split(",") if name)
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="series_ablation_") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        with lf_output_to(None if args.verbose else work / "lf.log") as say:
            results = run(args.records, args.eval, args.steps, args.minutes, args.seed, args.length, work,
                          controls=controls, log=lambda *a: say(*a, flush=True))
    print(summary(results, args))
    if args.json is not None:
        args.json.write_text(json.dumps(as_json(results), indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
