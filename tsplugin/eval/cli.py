"""`tsplugin eval KIND FILE`: score a model's answers; one scorer module per kind of task.

Kinds register by module name (so `tsplugin --help` imports no scorer): `register_eval("anomaly",
"tsplugin.eval.anomaly")`. A scorer module exposes `add_arguments(parser)` (its own options; the
predictions file is already there as `args.predictions`) and `run(args) -> int` (the exit code).
"""

from __future__ import annotations

import argparse
import importlib
from types import ModuleType

from tsplugin.registry import Registry

# kind -> module implementing add_arguments(parser) and run(args); order is the order in --help.
EVALS: Registry[str] = Registry("eval kind")


def register_eval(kind: str, module: str) -> None:
    """Register the scorer module for `tsplugin eval KIND` (refuses duplicates)."""
    EVALS.register(kind, module)


def get_eval(kind: str) -> ModuleType:
    """The scorer module for `kind`; an unknown kind lists the valid ones."""
    return importlib.import_module(EVALS.get(kind))


register_eval("anomaly", "tsplugin.eval.anomaly")
register_eval("forecast", "tsplugin.eval.forecast")
register_eval("alignment", "tsplugin.eval.alignment")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("eval", help="score predictions (e.g. generated_predictions.jsonl) against labels",
                              description=__doc__.split("\n\n")[0])
    kinds = p.add_subparsers(dest="eval_kind", metavar="KIND")
    kinds.required = True
    for kind in EVALS:
        module = get_eval(kind)
        sub = kinds.add_parser(kind, help=module.__doc__.splitlines()[0], description=module.__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.add_argument("predictions", help="JSONL of predictions and labels (LLaMA-Factory's generated_predictions.jsonl)")
        module.add_arguments(sub)
        sub.set_defaults(func=module.run)
