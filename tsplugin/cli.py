"""`tsplugin` command: one sub-command per module, collected through a small registry.

Each module that offers a sub-command exposes ``add_parser(subparsers)`` which adds its parser and
sets ``func`` (a callable taking the parsed namespace and returning an exit code). Modules are listed
by dotted name so that `tsplugin --help` does not import torch.

One top-level handler for every sub-command (`main`): a known error (`KNOWN_ERRORS`: bad input, a file
that cannot be used, an output that would overwrite an input) prints one line on stderr,
`tsplugin COMMAND: error: MESSAGE`, and exits 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

import tsplugin._bootstrap  # noqa: F401  (the LLaMA-Factory/transformers hooks, also where the .pth does not run)
from tsplugin.registry import Registry

# name -> module implementing add_parser(); order is the order shown in --help.
COMMANDS: Registry[str] = Registry("tsplugin sub-command")


def register_command(name: str, module: str) -> None:
    """Register a sub-command implemented by `module` (refuses duplicates)."""
    COMMANDS.register(name, module)


register_command("quickstart", "tsplugin.quickstart")
register_command("init-model", "tsplugin.build.init_model")
register_command("chat", "tsplugin.chat")
register_command("plan", "tsplugin.planner.cli")
register_command("inspect", "tsplugin.checkpoints.inspect")
register_command("build-model", "tsplugin.build.build_model")
register_command("build-forecaster", "tsplugin.build.build_forecaster")
register_command("forecast", "tsplugin.forecast")
register_command("monitor", "tsplugin.monitor")
register_command("eval", "tsplugin.eval.cli")
register_command("synth", "tsplugin.synth.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tsplugin",
        description="Time-series LLM tools for LLaMA-Factory (models, inference, planning).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in dict.fromkeys(COMMANDS.values()):
        importlib.import_module(module).add_parser(sub)
    return parser


EXIT_USAGE = 2


def known_errors() -> tuple[type[BaseException], ...]:
    """The errors that are the user's input, not a bug: tsplugin's own (all ValueError subclasses, as is
    json's JSONDecodeError and a file that is not UTF-8), a file that cannot be opened or read
    (OSError: missing, a directory, permissions), and tsconvert's InputError / OutputError (raised by
    the CSV reader and the output-path check the commands share with tsconvert)."""
    # lazy: converters are needed only once a command has failed (tsplugin --help imports nothing more)
    from converters.errors import InputError, OutputError

    return (ValueError, OSError, InputError, OutputError)


def one_line(err: BaseException) -> str:
    """The error's message on one line (a multi-line message keeps its lines, joined)."""
    text = " ".join(str(err).split("\n")).strip() or type(err).__name__
    return text


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"tsplugin {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if not isinstance(err, known_errors()):
            raise
        print(f"tsplugin {args.command}: error: {one_line(err)}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
