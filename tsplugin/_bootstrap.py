"""Start-up hook run by ``tsfactory_llamafactory.pth`` in every interpreter of the environment.

LLaMA-Factory has no plugin entry points, and it re-launches itself under torchrun for multi-GPU and
DeepSpeed runs, so registration done in one process would be lost. A ``.pth`` file is executed by
``site`` at every interpreter start; this module puts a finder on ``sys.meta_path`` that waits for
the LLaMA-Factory modules we extend (and two transformers modules: released ChatTS checkpoints then
load with tsplugin's classes in any script) and, right after each one executes, calls
``tsplugin.llamafactory.hooks.on_import``. Processes that never import ``llamafactory`` or
``transformers`` pay only for this stdlib-only module. It must never raise: a broken start-up hook would break every Python
program of the environment.
"""

from __future__ import annotations

# lazy imports: stdlib only at interpreter start-up; the hooks load when a watched module is imported.
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

# Modules whose import triggers a hook; kept in sync with tsplugin.llamafactory.hooks.HOOKS,
# TRANSFORMERS_HOOKS, VLLM_HOOKS (and the plugin module, see on_import).
WATCHED = frozenset(
    {
        "llamafactory.hparams.finetuning_args",
        "llamafactory.hparams.model_args",
        "llamafactory.hparams.data_args",
        "llamafactory.data.parser",
        "llamafactory.data.converter",
        "llamafactory.data.mm_plugin",
        "llamafactory.data.template",
        "llamafactory.data.loader",
        "llamafactory.model.loader",
        "llamafactory.model.model_utils.visual",
        "llamafactory.model.model_utils.quantization",
        "llamafactory.train.trainer_utils",
        "llamafactory.train.tuner",
        "llamafactory.chat.hf_engine",
        "llamafactory.api.protocol",
        "llamafactory.api.chat",
        "llamafactory.chat.chat_model",
        "llamafactory.webui.chatter",
        "llamafactory.webui.control",
        "llamafactory.webui.components.chatbot",
        "llamafactory.webui.components.infer",
        "llamafactory.webui.components.top",
        "llamafactory.webui.components.data",
        # transformers itself: released ChatTS checkpoints load with tsplugin's classes in any process.
        "transformers.configuration_utils",
        "transformers.models.auto.processing_auto",
        # vLLM (`vllm serve`): series parts in chat completions (hooks.VLLM_HOOKS).
        "vllm.entrypoints.chat_utils",
        # The plugin itself: imported before LLaMA-Factory, it makes the plugin and template hooks run
        # while it is half-initialised; they wait for it and run when it is done (hooks.finish_pending).
        "tsplugin.llamafactory.mm_plugin",
    }
)


class _PostImportLoader(importlib.abc.Loader):
    """Delegates to the real loader, then runs the tsplugin hook for the module."""

    def __init__(self, wrapped: importlib.abc.Loader) -> None:
        self._wrapped = wrapped

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._wrapped.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._wrapped.exec_module(module)
        from tsplugin.llamafactory.hooks import on_import

        on_import(module.__name__, module)

    def __getattr__(self, name: str):  # get_source, get_code, ... for tracebacks and tools
        return getattr(self._wrapped, name)


class _LlamaFactoryFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname not in WATCHED:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _PostImportLoader(spec.loader)
                return spec
        return None


def install() -> None:
    """Install the finder once; hook modules already imported (e.g. plugin imported late)."""
    if not any(isinstance(f, _LlamaFactoryFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _LlamaFactoryFinder())
    already = [name for name in WATCHED if name in sys.modules]
    if already:
        from tsplugin.llamafactory.hooks import on_import

        for name in sorted(already):
            on_import(name, sys.modules[name])


try:
    install()
except Exception as err:  # never break interpreter start-up
    sys.stderr.write(f"tsfactory: LLaMA-Factory plugin not installed in this process: {err!r}\n")
