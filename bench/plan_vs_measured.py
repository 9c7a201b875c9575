"""Check `tsplugin plan` against what can be measured on CPU, on small real models of both archs.

Measured: parameter/gradient/optimizer-state bytes after one real LoRA step (torch AdamW and
bitsandbytes 8-bit AdamW), and activation bytes saved inside the decoder layers (saved-tensor
hooks, fp32). Predicted: tsplugin.planner for the same config. Prints each pair and the ratio.

    .venv/bin/python bench/plan_vs_measured.py [--preset small] [--seq 128]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

# the measurement harness is shared with tests/test_plan.py (it checks the planner against the same numbers)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="small", help="tsplugin init-model preset (tiny, small, medium, large)")
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--rank", type=int, default=16)
    args = parser.parse_args()

    from tsplugin.build.init_model import build_model
    from plan_measure import lora_model, measure_layer_activations, measure_training_state
    from tsplugin.planner.estimate import layer_activation_bytes, optimizer_state_bytes
    from tsplugin.planner.shapes import load_shape, lora_params, lora_tensor_sizes, parameter_counts

    print(f"{'arch':8s} {'quantity':34s} {'measured':>14s} {'planner':>14s} {'planner/measured':>17s}")
    for arch in ("chatts", "qwen3ts"):
        with tempfile.TemporaryDirectory() as tmp:
            directory = build_model(tmp, arch=arch, preset=args.preset, seed=0)
            shape = load_shape(str(directory))
            counts = parameter_counts(shape)
            rows = []
            model = lora_model(directory, rank=args.rank)
            rows.append(("parameters (frozen)", sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n), sum(counts.values())))
            rows.append(("LoRA parameters (PEFT count)", model.get_nb_trainable_parameters()[0], lora_params(shape, "all", args.rank)))
            act = measure_layer_activations(model, seq=args.seq)
            rows.append(("activation bytes / position / layer", act, layer_activation_bytes(shape, 4, args.rank, 7, gqa_native=True)))
            for optim in ("adamw_torch", "adamw_bnb_8bit"):
                state = measure_training_state(lora_model(directory, rank=args.rank), optim)
                rows.append((f"gradient bytes ({optim})", state["gradients"], 4 * lora_params(shape, "all", args.rank)))
                rows.append((f"optimizer state bytes ({optim})", state["optimizer_state"],
                             optimizer_state_bytes(optim, lora_tensor_sizes(shape, "all", args.rank))))
            for name, measured, predicted in rows:
                print(f"{arch:8s} {name:34s} {measured:14,.0f} {predicted:14,.0f} {predicted / measured:17.4f}")


if __name__ == "__main__":
    main()
