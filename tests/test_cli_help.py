"""Every command a user can type has help: each sub-command and each option or positional of `tsplugin`
and `tsconvert` (their real argparse trees), and an option with a default says what it is. Every module
with a `__main__` guard runs with `python -m`."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest

from conftest import ROOT
from converters.cli import build_parser as tsconvert_parser
from tsplugin.cli import build_parser as tsplugin_parser

PARSERS = {"tsplugin": tsplugin_parser, "tsconvert": tsconvert_parser}
NO_DEFAULT = (None, True, False, [], argparse.SUPPRESS)


def walk(parser: argparse.ArgumentParser, path: str):
    """(command path, parser, action) for every action of `parser` and of its sub-commands, recursively."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helped = {choice.dest for choice in action._choices_actions}
            for name, sub in action.choices.items():
                yield f"{path} {name}", parser, ("sub-command", name in helped)
                yield from walk(sub, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction):
            yield path, parser, action


def shown_help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The action's help as `--help` prints it (%(default)s and friends expanded)."""
    return parser._get_formatter()._expand_help(action)


@pytest.mark.parametrize("command", PARSERS)
def test_every_option_and_sub_command_has_help_that_names_its_default(command):
    missing, silent_default = [], []
    entries = list(walk(PARSERS[command](), command))
    assert len(entries) > 20, entries  # the walk reached the sub-commands
    for path, parser, action in entries:
        if isinstance(action, tuple):  # a sub-command: listed with a line of help in its parent's --help
            if not action[1]:
                missing.append(f"{path} (sub-command)")
            continue
        name = "/".join(action.option_strings) or action.dest
        if not action.help or action.help == argparse.SUPPRESS or not action.help.strip():
            missing.append(f"{path} {name}")
            continue
        default = action.default
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)) or default in NO_DEFAULT:
            continue
        text = shown_help(parser, action)
        spelled = {str(default), format(default, "g") if isinstance(default, float) else str(default)}
        if "default" not in text and not any(s in text for s in spelled):
            silent_default.append(f"{path} {name} (default {default!r}): {text}")
    assert not missing, f"no help: {missing}"
    assert not silent_default, f"help does not say the default: {silent_default}"


def test_build_forecaster_help_names_the_defaults_the_config_fills_in():
    """build-forecaster spells FORECAST_DEFAULTS in its help without importing it (keeps `tsplugin --help` light)."""
    from tsplugin.build.build_forecaster import INT_FLAG_HELP
    from tsplugin.models.timellm import FORECAST_DEFAULTS

    for flag, text in INT_FLAG_HELP.items():
        assert f"(default {FORECAST_DEFAULTS[flag]}" in text, (flag, text, FORECAST_DEFAULTS[flag])
    options = {a.dest: a.help for a in tsplugin_parser()._subparsers._group_actions[0].choices["build-forecaster"]._actions}
    assert f"(default {FORECAST_DEFAULTS['dropout']})" in options["dropout"]
    assert f"(default {FORECAST_DEFAULTS['description']!r})" in options["description"]


# Every module with a `__main__` guard, and the command it is the same as.
MAIN_MODULES = {
    "tsplugin.cli": "tsplugin",
    "tsplugin.chat": "tsplugin chat",
    "tsplugin.eval.forecast": "tsplugin eval forecast",
    "converters.cli": "tsconvert",
}


def test_the_list_of_main_modules_is_complete():
    guarded = sorted(
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for package in ("tsplugin", "converters") for path in (ROOT / package).rglob("*.py")
        if 'if __name__ == "__main__"' in path.read_text(encoding="utf-8")
    )
    assert guarded == sorted(MAIN_MODULES)


@pytest.mark.parametrize("module", MAIN_MODULES)
def test_python_dash_m_prints_the_commands_help(module):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: {MAIN_MODULES[module]} "), result.stdout[:200]
