"""Every registry in tsplugin and tsconvert behaves the same (tsplugin.registry): an unknown name raises
UnknownNameError (a KeyError and a ValueError) whose message lists every valid name, and a second
registration under a taken name raises DuplicateNameError (a ValueError), through the registry and
through each module's own get_x / register_x functions."""

from __future__ import annotations

import ast
import importlib
import pickle
from pathlib import Path

import pytest

from tsplugin.registry import DuplicateNameError, Registry, UnknownNameError

ROOT = Path(__file__).resolve().parents[1]

# (module, attribute) of every registry; the completeness test below fails when one is missing here.
REGISTRIES = [
    ("tsplugin.architectures", "ARCHITECTURES"),
    ("tsplugin.cli", "COMMANDS"),
    ("tsplugin.eval.cli", "EVALS"),
    ("tsplugin.synth.qa", "KINDS"),
    ("tsplugin.planner.estimate", "GPUS"),
    ("tsplugin.planner.shapes", "PRESETS"),
    ("tsplugin.processing.profiles", "PROFILES"),
    ("tsplugin.processing.positions", "POSITION_RULES"),
    ("tsplugin.models.encoders", "ENCODERS"),
    ("tsplugin.models.projectors", "PROJECTORS"),
    ("tsplugin.llamafactory.templates", "TEMPLATES"),
    ("converters.records", "INPUT_FORMATS"),
    ("converters.cleaning", "MISSING_POLICIES"),
    ("converters.cleaning", "UNSORTED_POLICIES"),
    ("converters.cleaning", "DUPLICATE_POLICIES"),
    ("converters.downsample", "DOWNSAMPLERS"),
    ("converters.numbers", "NUMBER_FORMATS"),
    ("converters.formats", "OUTPUT_FORMATS"),
    ("converters.forecast", "FEATURE_MODES"),
    ("converters.filetypes", "SINKS"),
]

# (module, lookup function) taking one name.
GETTERS = [
    ("tsplugin.architectures", "get_spec"),
    ("tsplugin.models", "get_architecture"),
    ("tsplugin.eval.cli", "get_eval"),
    ("tsplugin.planner.estimate", "get_gpu_memory"),
    ("tsplugin.planner.shapes", "get_preset"),
    ("tsplugin.processing.profiles", "get_profile"),
    ("tsplugin.processing.positions", "get_position_rule"),
    ("tsplugin.models.encoders", "get_encoder"),
    ("tsplugin.models.projectors", "get_projector"),
    ("converters.records", "get_input_format"),
    ("converters.cleaning", "get_missing_policy"),
    ("converters.downsample", "get_downsampler"),
    ("converters.numbers", "get_number_format"),
    ("converters.formats", "get_output_format"),
]


def _registry(module: str, attr: str) -> Registry:
    registry = getattr(importlib.import_module(module), attr)
    assert isinstance(registry, Registry), f"{module}.{attr} is a {type(registry).__name__}, not a tsplugin.registry.Registry"
    return registry


@pytest.mark.parametrize("module,attr", REGISTRIES, ids=[f"{m}.{a}" for m, a in REGISTRIES])
def test_unknown_name_lists_valid_names_and_duplicates_are_refused(module, attr):
    registry = _registry(module, attr)
    assert registry.names(), f"{module}.{attr} is empty"
    with pytest.raises(UnknownNameError) as err:
        registry.get("no-such-name")
    assert isinstance(err.value, KeyError) and isinstance(err.value, ValueError)
    message = str(err.value)
    assert message.startswith(f"unknown {registry.kind} 'no-such-name'; valid: " + ", ".join(registry.names()))
    with pytest.raises(UnknownNameError):
        registry["no-such-name"]
    with pytest.raises(UnknownNameError, match=r"^cfg\.json: unknown .* \[\]; valid: "):
        registry.get([], where="cfg.json")  # an unhashable value from a config file is an unknown name too
    name = registry.names()[0]
    with pytest.raises(DuplicateNameError, match=f"{registry.kind} '{name}' is already registered") as dup:
        registry.register(name, registry[name])
    assert registry.get(name) is registry[name]
    for error in (err.value, dup.value):  # errors cross process boundaries (tsconvert's workers) intact
        assert str(pickle.loads(pickle.dumps(error))) == str(error)


@pytest.mark.parametrize("module,func", GETTERS, ids=[f"{m}.{f}" for m, f in GETTERS])
def test_every_lookup_function_raises_the_same_error(module, func):
    with pytest.raises(UnknownNameError) as err:
        getattr(importlib.import_module(module), func)("no-such-name")
    assert err.value.valid and all(name in str(err.value) for name in err.value.valid)


def _duplicate_registrations():
    from converters.cleaning import register_missing_policy
    from converters.downsample import register_downsampler
    from converters.formats import get_output_format, register_output_format
    from converters.records import get_input_format, register_input_format
    from tsplugin.architectures import get_spec, register_architecture
    from tsplugin.cli import COMMANDS, register_command
    from tsplugin.eval.cli import EVALS, register_eval
    from tsplugin.llamafactory.templates import register_ts_template
    from tsplugin.models.encoders import get_encoder, register_encoder
    from tsplugin.models.projectors import PROJECTORS, register_projector
    from tsplugin.planner.estimate import register_gpu
    from tsplugin.planner.shapes import PRESETS, register_preset
    from tsplugin.processing.positions import POSITION_RULES, register_position_rule
    from tsplugin.processing.profiles import PROFILES, register_profile
    from tsplugin.synth.qa import KINDS, register_kind

    return {
        "tsplugin.architectures.register_architecture": lambda: register_architecture(get_spec("qwen_ts")),
        "tsplugin.cli.register_command": lambda: register_command("chat", COMMANDS["chat"]),
        "tsplugin.eval.cli.register_eval": lambda: register_eval("anomaly", EVALS["anomaly"]),
        "tsplugin.synth.qa.register_kind": lambda: register_kind("trend", KINDS["trend"]),
        "tsplugin.llamafactory.templates.register_ts_template": lambda: register_ts_template("chatts", ""),
        "tsplugin.models.encoders.register_encoder": lambda: register_encoder("patchtst", get_encoder("patchtst")),
        "tsplugin.models.projectors.register_projector": lambda: register_projector("linear", PROJECTORS["linear"]),
        "tsplugin.planner.estimate.register_gpu": lambda: register_gpu("3090", 24.0, "dup"),
        "tsplugin.planner.shapes.register_preset": lambda: register_preset(PRESETS["chatts-8b"]),
        "tsplugin.processing.profiles.register_profile": lambda: register_profile(PROFILES["chatts-8b"]),
        "tsplugin.processing.positions.register_position_rule": lambda: register_position_rule(POSITION_RULES["patchtst"]),
        "converters.records.register_input_format": lambda: register_input_format("sharegpt", *get_input_format("sharegpt")),
        "converters.cleaning.register_missing_policy": lambda: register_missing_policy("drop", lambda v, b, s: (v, ~b)),
        "converters.downsample.register_downsampler": lambda: register_downsampler("lttb", lambda v, n: v),
        "converters.formats.register_output_format": lambda: register_output_format("chatts", get_output_format("chatts")),
    }


# Module-level register_* functions that fill no name registry of their own.
NOT_REGISTRIES = {
    "tsplugin.models.register_auto_classes",  # transformers' Auto classes, from ARCHITECTURES
    "tsplugin.llamafactory.templates.register_all",  # LLaMA-Factory's own template registry, from TEMPLATES
    "tsplugin.vllm.registration.register",  # vLLM's ModelRegistry (the vllm.general_plugins entry point), from VLLM_MODELS
}


@pytest.mark.parametrize("func", sorted(_duplicate_registrations()))
def test_every_register_function_refuses_duplicates(func):
    with pytest.raises(DuplicateNameError, match="is already registered"):
        _duplicate_registrations()[func]()


def test_every_registry_in_the_project_is_covered():
    """Each module-level `X = Registry(...)` in tsplugin/ and converters/ is in REGISTRIES, and each
    module-level `register_*` function is tested above (a hand-written dict registry shows up here)."""
    found, registers = set(), set()
    for package in ("tsplugin", "converters"):
        for path in (ROOT / package).rglob("*.py"):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            for node in ast.parse(path.read_text(encoding="utf-8")).body:
                if isinstance(node, ast.FunctionDef) and node.name.startswith("register"):
                    registers.add(f"{module}.{node.name}")
                value = getattr(node, "value", None)
                target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
                if isinstance(value, ast.Call) and getattr(value.func, "id", None) == "Registry" and isinstance(target, ast.Name):
                    found.add((module, target.id))
    assert found == set(REGISTRIES)
    assert registers - NOT_REGISTRIES == set(_duplicate_registrations()), "use tsplugin.registry.Registry and list it here"


def test_unknown_init_model_arch_is_the_same_error():
    from tsplugin.build.init_model import ts_block

    with pytest.raises(UnknownNameError, match=r"^unknown --arch 'qwen_ts'; valid: chatts, qwen3ts$"):
        ts_block("qwen_ts", 32)
