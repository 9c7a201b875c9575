"""Training that does not blow up: a transformers `TrainerCallback` that guards every update.

Enabled by the YAML key `timeseries_nan_guard: true` (a `FinetuningArguments` field added by
`tsplugin.llamafactory.options`; the `llamafactory.train.tuner` hook appends the callback for the
pt/sft/rm/dpo/kto stages), or by passing `NanGuardCallback()` to `run_exp(args, callbacks)`.

Design choices:
- The loss of each micro-batch is read by a forward hook on the model (the callback API never sees
  it), together with that batch's `input_ids`, so a bad step can name its rows.
- Just before `optimizer.step()` (`on_pre_optimizer_step`) the gradients are checked. A step whose
  loss or gradients are non-finite is skipped by dropping every gradient (`p.grad = None`): torch
  optimizers then leave the parameter *and* its moments untouched (zeroed gradients would still let
  Adam's momentum and weight decay move it). The LR scheduler still advances, as the step counter does.
- fp16 with a loss scaler: the scaler already skips overflowing steps and lowers its scale; the guard
  leaves the gradients to it, logs the skip, and counts it as bad only when the loss itself was
  non-finite (overflow of a finite loss is the scaler's normal calibration).
- DeepSpeed steps inside `backward`, so the guard cannot skip there; it still detects, names the
  batch and stops.
- Rows are named by their index in the tokenised train set (looked up by a hash of their token ids,
  only when a bad step happens), their place in the epoch and the first 80 characters of the prompt.
- After `nan_guard_max_bad_steps` consecutive bad steps training stops and `TrainingDiverged` is
  raised at the end of `trainer.train()`, so `llamafactory-cli train` exits non-zero.
- Grad-norm spikes (`grad_norm > grad_spike_factor x` running median of the logged norms) are warned
  about; they are not skipped (clipping already bounds them).
"""

from __future__ import annotations

import hashlib
import logging
import math
import statistics
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import TrainerCallback

logger = logging.getLogger("tsplugin")

IGNORE_INDEX = -100
PROMPT_CHARS = 80


class TrainingDiverged(RuntimeError):
    """Raised at the end of `trainer.train()` when the guard stopped a run."""


@dataclass
class _MicroBatch:
    loss_finite: bool
    loss: float
    input_ids: torch.Tensor | None
    attention_mask: torch.Tensor | None
    labels: torch.Tensor | None
    epoch_batch: int


@dataclass
class GuardReport:
    """What the guard saw in one run (also kept on the callback for tests and scripts)."""

    bad_steps: list[int] = field(default_factory=list)
    skipped_steps: list[int] = field(default_factory=list)
    scaler_skips: list[int] = field(default_factory=list)
    spikes: list[tuple[int, float, float]] = field(default_factory=list)
    stopped_message: str | None = None


def _row_key(ids: list[int]) -> str:
    return hashlib.sha1(str(ids).encode()).hexdigest()


class NanGuardCallback(TrainerCallback):
    """Skip updates with non-finite loss/gradients, name the batch, stop after N in a row, flag spikes."""

    def __init__(self, max_bad_steps: int = 3, grad_spike_factor: float = 10.0, spike_window: int = 50) -> None:
        if max_bad_steps < 1:
            raise ValueError(f"nan_guard_max_bad_steps must be >= 1, got {max_bad_steps}.")
        if grad_spike_factor <= 1:
            raise ValueError(f"grad_spike_factor must be > 1, got {grad_spike_factor}.")
        self.max_bad_steps = max_bad_steps
        self.grad_spike_factor = grad_spike_factor
        self.report = GuardReport()
        self._norms: deque[float] = deque(maxlen=spike_window)
        self._pending: list[_MicroBatch] = []
        self._consecutive = 0
        self._epoch_batches = 0
        self._hook = None
        self._tokenizer = None
        self._dataset = None
        self._row_index: dict[str, int] | None = None
        self._batch_size = 1
        self._deepspeed = False

    # --- capture the loss of each micro-batch ------------------------------------------------

    def _forward_hook(self, module, args, kwargs, output) -> None:
        if not module.training:
            return
        loss = output.get("loss") if isinstance(output, dict) else getattr(output, "loss", None)
        if loss is None and isinstance(output, (tuple, list)) and output and torch.is_tensor(output[0]):
            loss = output[0] if output[0].dim() == 0 else None
        if loss is None:
            return
        value = float(loss.detach().float().sum())
        self._pending.append(
            _MicroBatch(
                loss_finite=math.isfinite(value),
                loss=value,
                input_ids=kwargs.get("input_ids"),
                attention_mask=kwargs.get("attention_mask"),
                labels=kwargs.get("labels"),
                epoch_batch=self._epoch_batches,
            )
        )
        self._epoch_batches += 1

    def on_train_begin(self, args, state, control, model=None, train_dataloader=None, processing_class=None, **kwargs):
        self._tokenizer = processing_class if hasattr(processing_class, "decode") else getattr(processing_class, "tokenizer", None)
        self._dataset = getattr(train_dataloader, "dataset", None)
        self._batch_size = args.per_device_train_batch_size
        self._deepspeed = bool(getattr(args, "deepspeed", None))
        if model is not None and self._hook is None:
            self._hook = model.register_forward_hook(self._forward_hook, with_kwargs=True)

    def on_epoch_begin(self, args, state, control, **kwargs):
        self._epoch_batches = 0

    # --- check and skip before the optimizer step -----------------------------------------------

    def on_pre_optimizer_step(self, args, state, control, model=None, optimizer=None, **kwargs):
        step = state.global_step + 1  # the step this update would become
        loss_bad = any(not mb.loss_finite for mb in self._pending)
        params = [p for group in getattr(optimizer, "param_groups", []) for p in group["params"] if p.grad is not None]
        grads_bad = bool(params) and not bool(
            torch.isfinite(torch.stack([torch.linalg.vector_norm(p.grad.detach().float()) for p in params])).all()
        )
        scaler = getattr(optimizer, "scaler", None)
        if scaler is not None and not loss_bad:
            return  # fp16: an overflow of a finite loss is the scaler's to skip (seen in on_optimizer_step)
        if not (loss_bad or grads_bad):
            self._consecutive = 0
            return
        self._consecutive += 1
        self.report.bad_steps.append(step)
        what = "loss" if loss_bad else "gradients"
        losses = ", ".join(f"{mb.loss:.4g}" for mb in self._pending)
        if scaler is None and not self._deepspeed:
            for p in params:
                p.grad = None
            self.report.skipped_steps.append(step)
            action = "update skipped"
        elif scaler is not None:
            action = "update skipped by the fp16 loss scaler"
            self.report.skipped_steps.append(step)
        else:
            action = "DeepSpeed applies its own overflow handling; update NOT skipped by the guard"
        logger.warning(
            "tsplugin nan guard: step %d: non-finite %s (micro-batch losses: %s); %s (%d bad in a row, "
            "stop at %d). Batch:\n%s",
            step, what, losses, action, self._consecutive, self.max_bad_steps, self._describe_batch(),
        )
        if self._consecutive >= self.max_bad_steps:
            self.report.stopped_message = (
                f"tsplugin nan guard: {self._consecutive} consecutive steps with non-finite loss or gradients "
                f"(steps {self.report.bad_steps[-self._consecutive]}-{step}); training stopped. Check the "
                "records named in the warnings above, lower learning_rate or raise warmup, or set "
                "nan_guard_max_bad_steps higher to tolerate more."
            )
            logger.error(self.report.stopped_message)
            control.should_training_stop = True
            control.should_epoch_stop = True

    def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        scaler = getattr(optimizer, "scaler", None)
        if scaler is not None and getattr(optimizer, "step_was_skipped", False):
            step = state.global_step + 1
            if step not in self.report.bad_steps:
                self.report.scaler_skips.append(step)
                logger.info("tsplugin nan guard: step %d: fp16 loss scaler skipped an overflow (scale now %s).", step, scaler.get_scale())
        if scaler is not None and not any(not mb.loss_finite for mb in self._pending):
            self._consecutive = 0
        self._pending = []

    def on_step_end(self, args, state, control, **kwargs):
        self._pending = []
        if self.report.stopped_message:
            control.should_training_stop = True

    # --- grad-norm spikes, from what the trainer logs ------------------------------------------------

    def on_log(self, args, state, control, logs=None, **kwargs):
        norm = (logs or {}).get("grad_norm")
        if norm is None:
            return
        norm = float(norm)
        if not math.isfinite(norm):
            return
        if len(self._norms) >= 5:
            median = statistics.median(self._norms)
            if median > 0 and norm > self.grad_spike_factor * median:
                self.report.spikes.append((state.global_step, norm, median))
                logger.warning(
                    "tsplugin nan guard: step %d: grad-norm spike %.4g > %g x running median %.4g.",
                    state.global_step, norm, self.grad_spike_factor, median,
                )
        self._norms.append(norm)

    def on_train_end(self, args, state, control, **kwargs):
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if self.report.stopped_message:
            raise TrainingDiverged(self.report.stopped_message)

    # --- naming the rows of a bad batch --------------------------------------------------------------

    def _lookup_rows(self) -> dict[str, int]:
        if self._row_index is None:
            self._row_index = {}
            dataset = self._dataset
            if dataset is not None and hasattr(dataset, "column_names") and "input_ids" in dataset.column_names:
                for index, ids in enumerate(dataset["input_ids"]):
                    self._row_index.setdefault(_row_key(list(ids)), index)
        return self._row_index

    def _describe_batch(self) -> str:
        lines = []
        for mb in self._pending:
            if mb.input_ids is None:
                lines.append(f"  epoch batch {mb.epoch_batch}: (no input_ids)")
                continue
            ids = mb.input_ids.detach().cpu()
            mask = mb.attention_mask.detach().cpu() if mb.attention_mask is not None and mb.attention_mask.dim() == 2 else None
            labels = mb.labels.detach().cpu() if mb.labels is not None else None
            for r in range(ids.shape[0]):
                keep = mask[r].bool() if mask is not None else torch.ones_like(ids[r], dtype=torch.bool)
                row = ids[r][keep].tolist()
                index = self._lookup_rows().get(_row_key(row))
                where = f"train row {index}" if index is not None else "train row ?"
                prompt_ids = ids[r][keep & (labels[r] == IGNORE_INDEX)].tolist() if labels is not None else row
                text = self._decode(prompt_ids)
                lines.append(
                    f"  {where} (epoch position {mb.epoch_batch * self._batch_size + r}, loss {mb.loss:.4g}): {text!r}"
                )
        return "\n".join(lines) or "  (no batch captured)"

    def _decode(self, ids: list[int]) -> str:
        if self._tokenizer is None:
            return f"<{len(ids)} tokens>"
        text = self._tokenizer.decode(ids, skip_special_tokens=True)
        return " ".join(text.split())[:PROMPT_CHARS]


def callback_from_args(finetuning_args: Any) -> NanGuardCallback | None:
    """The callback the YAML keys ask for, or None when `timeseries_nan_guard` is off."""
    if not getattr(finetuning_args, "timeseries_nan_guard", False):
        return None
    return NanGuardCallback(
        max_bad_steps=finetuning_args.nan_guard_max_bad_steps,
        grad_spike_factor=finetuning_args.grad_spike_factor,
    )
