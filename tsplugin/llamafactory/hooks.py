"""Every place tsplugin hooks into LLaMA-Factory, in one table, version-checked.

`tsplugin._bootstrap` calls `on_import(name, module)` right after each watched LLaMA-Factory module
executes (in every process, torchrun workers included). Each hook names the upstream symbol it
extends. Nothing here changes behaviour for datasets without a `timeseries` column or templates
without the `timeseries` plugin: image, video and audio data go through untouched.

Two hooks are on transformers itself (`TRANSFORMERS_HOOKS`), so that released ChatTS checkpoints load
with tsplugin's classes in any process of the environment, LLaMA-Factory or not (users' scripts,
lm-eval, TRL): every config.json transformers reads is normalised by `tsplugin.layouts` (model_type
from the released class name, encoding profile pinned, the checkpoint's `auto_map` dropped), and
`AutoProcessor` gives `tsplugin.models.processing_chatts.ChatTSProcessor` for time-series checkpoints.

Supported: llamafactory >=0.9.5,<0.9.6 and transformers >=4.49,<=5.6. Another version gets one warning
and no hooks (so stock LLaMA-Factory keeps working); `tests/test_hooks.py` fails loudly when upstream
changes shape.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import warnings
from importlib import metadata
from types import ModuleType
from typing import Any, Callable

SUPPORTED = ((0, 9, 5), (0, 9, 6))  # [min, max)
SUPPORTED_TEXT = "llamafactory>=0.9.5,<0.9.6"
TRANSFORMERS_SUPPORTED = ((4, 49, 0), (5, 6, 1))  # [min, max)
TRANSFORMERS_SUPPORTED_TEXT = "transformers>=4.49.0,<=5.6.0"

logger = logging.getLogger("tsplugin")

# model_type -> LLaMA-Factory composite-model keys (freezing, LoRA targeting, quantisation skip).
COMPOSITE = {
    "chatts": dict(projector_keys=["ts_encoder.mlp"], vision_model_keys=["ts_encoder"], language_model_keys=["model", "lm_head"]),
    "qwen3ts": dict(projector_keys=["ts_encoder.mlp"], vision_model_keys=["ts_encoder"], language_model_keys=["model", "lm_head"]),
    # qwen_ts: the whole Qwen causal LM lives under `language_model` (see tsplugin.models.qwen_ts).
    "qwen_ts": dict(projector_keys=["ts_projector"], vision_model_keys=["ts_encoder"], language_model_keys=["language_model"]),
}
ENCODER_MODULES = ["ts_encoder", "ts_projector"]

_applied: set[str] = set()


def _version_ok() -> bool:
    try:
        raw = metadata.version("llamafactory")
    except metadata.PackageNotFoundError:
        return False
    parts = tuple(int(p) for p in raw.split(".")[:3] if p.isdigit())
    ok = SUPPORTED[0] <= parts < SUPPORTED[1]
    if not ok and "version" not in _applied:
        _applied.add("version")
        warnings.warn(
            f"tsfactory supports {SUPPORTED_TEXT}, found {raw}: time-series templates and the "
            "`timeseries` column are NOT available in this environment. Install a supported version.",
            stacklevel=2,
        )
    return ok


def _transformers_version_ok() -> bool:
    try:
        raw = metadata.version("transformers")
    except metadata.PackageNotFoundError:
        return False
    parts = tuple(int(p) for p in raw.split(".")[:3] if p.isdigit())
    ok = TRANSFORMERS_SUPPORTED[0] <= parts < TRANSFORMERS_SUPPORTED[1]
    if not ok and "transformers-version" not in _applied:
        _applied.add("transformers-version")
        warnings.warn(
            f"tsfactory supports {TRANSFORMERS_SUPPORTED_TEXT}, found {raw}: released ChatTS checkpoints are NOT "
            "loaded with tsfactory's classes in this environment. Install a supported version.",
            stacklevel=2,
        )
    return ok


def _require(module: ModuleType, *names: str) -> None:
    missing = [n for n in names if not hasattr(module, n)]
    if missing:
        raise ImportError(
            f"tsfactory: {module.__name__} has no {', '.join(missing)}; LLaMA-Factory changed shape. "
            f"Install {SUPPORTED_TEXT} or upgrade tsfactory."
        )


def _wrap(module: ModuleType, name: str, make: Callable[[Callable], Callable]) -> None:
    original = getattr(module, name)
    if getattr(original, "__tsplugin__", False):
        return
    wrapped = functools.wraps(original)(make(original))
    wrapped.__tsplugin__ = True
    setattr(module, name, wrapped)


def _hub_kwargs(model_args: Any) -> dict[str, Any]:
    """The Hub lookup arguments LLaMA-Factory passes to from_pretrained (`_get_init_kwargs`)."""
    return {"cache_dir": model_args.cache_dir, "revision": model_args.model_revision, "token": model_args.hf_hub_token}


def checkpoint_config(model_args: Any) -> tuple[dict[str, Any] | None, str | None]:
    """(normalised config.json, local directory) of a time-series checkpoint, local dir or Hub ID; (None, None) otherwise."""
    from tsplugin.layouts import checkpoint_dir, read_config

    path = model_args.model_name_or_path
    config = read_config(path, **_hub_kwargs(model_args))
    if config is None:
        return None, None
    return config, checkpoint_dir(path, **_hub_kwargs(model_args))


def is_ts_model_type(model_type: str | None) -> bool:
    return model_type in COMPOSITE


def check_tokenizer_ids(config: dict[str, Any], where: str, tokenizer: Any) -> None:
    """Fail before training when config.json's `<ts>`/`<ts/>` ids are not the tokenizer's."""
    from tsplugin.profiles import check_ts_token_ids

    if "ts_token_start_index" not in config and "ts_token_end_index" not in config:
        return
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<ts>", "<ts/>")}
    ids = {t: (i if i != tokenizer.unk_token_id else None) for t, i in ids.items()}
    check_ts_token_ids(config, ids, os.path.join(where, "config.json"), f"the tokenizer in {where}")


def apply_profile(model: Any, model_args: Any) -> None:
    """The model encodes with the same profile as the processor: resolved from the checkpoint directory
    (its files, not only config.json) and the recipe's `timeseries_profile`; saved with the model."""
    from tsplugin.profiles import CONFIG_KEY, resolve_profile

    override = getattr(model_args, "timeseries_profile", None)
    config, path = checkpoint_config(model_args)  # local dir or Hub ID (the normalised config.json)
    base = model.get_base_model() if callable(getattr(model, "get_base_model", None)) else model
    if config is None or "ts" not in config:
        if not override:
            return
        config = {"ts": {}}
    profile, _ = resolve_profile(config, path, override)
    if callable(getattr(base, "use_profile", None)):
        base.use_profile(profile)  # ChatTS architectures: the encoder's last-patch padding too
    else:
        setattr(base.config, CONFIG_KEY, profile.name)


# --- hooks, one per upstream module ------------------------------------------------------------


def hook_finetuning_args(module: ModuleType) -> None:
    """`FinetuningArguments`: add `timeseries_learning_rate` (a YAML key LLaMA-Factory accepts)."""
    _require(module, "FinetuningArguments")
    from tsplugin.llamafactory.options import extend_finetuning_arguments

    module.FinetuningArguments = extend_finetuning_arguments(module.FinetuningArguments)


def hook_model_args(module: ModuleType) -> None:
    """`ModelArguments`: add `timeseries_profile` (the encoding-profile override)."""
    _require(module, "ModelArguments")
    from tsplugin.llamafactory.options import extend_model_arguments

    module.ModelArguments = extend_model_arguments(module.ModelArguments)


def hook_data_args(module: ModuleType) -> None:
    """`DataArguments`: add `timeseries_cutoff_mode` (ChatTS-Training's cutoff selection on request)."""
    _require(module, "DataArguments")
    from tsplugin.llamafactory.options import extend_data_arguments

    module.DataArguments = extend_data_arguments(module.DataArguments)


def hook_parser(module: ModuleType) -> None:
    """`DatasetAttr.join`: read a `timeseries` entry from dataset_info.json `columns`."""
    _require(module, "DatasetAttr")
    attr_cls = module.DatasetAttr
    if getattr(attr_cls.join, "__tsplugin__", False):
        return
    original = attr_cls.join
    attr_cls.timeseries = None

    def join(self, attr: dict[str, Any]) -> None:
        original(self, attr)
        self.timeseries = (attr.get("columns") or {}).get("timeseries")

    join.__tsplugin__ = True
    attr_cls.join = join


def hook_converter(module: ModuleType) -> None:
    """`get_dataset_converter` / `align_dataset`: series into `_audios`, then check every record."""
    _require(module, "get_dataset_converter", "align_dataset")
    from tsplugin.llamafactory.data import TimeSeriesConverter, check_aligned

    def make_get(original):
        def get_dataset_converter(name, dataset_attr, data_args):
            converter = original(name, dataset_attr, data_args)
            column = getattr(dataset_attr, "timeseries", None)
            if column is None:
                return converter
            if dataset_attr.audios:
                raise ValueError(
                    f"{dataset_attr}: dataset_info.json maps both `audios` and `timeseries`; a "
                    "time-series dataset carries no audio. Remove one of the two columns."
                )
            return TimeSeriesConverter(converter, column)

        return get_dataset_converter

    def make_align(original):
        def align_dataset(dataset, dataset_attr, data_args, training_args):
            aligned = original(dataset, dataset_attr, data_args, training_args)
            column = getattr(dataset_attr, "timeseries", None)
            if column is not None:
                check_aligned(aligned, str(dataset_attr), column)
            return aligned

        return align_dataset

    _wrap(module, "get_dataset_converter", make_get)
    _wrap(module, "align_dataset", make_align)


def hook_mm_plugin(module: ModuleType) -> None:
    """`register_mm_plugin("timeseries", TimeSeriesPlugin)`."""
    _require(module, "register_mm_plugin", "PLUGINS", "BasePlugin")
    if "timeseries" not in module.PLUGINS:
        from tsplugin.llamafactory.mm_plugin import TimeSeriesPlugin

        module.register_mm_plugin("timeseries", TimeSeriesPlugin)


def hook_template(module: ModuleType) -> None:
    """`register_template(...)` for chatts, chatts8b, chatts8b_think, chatts8b_nothink, qwen_ts, qwen3_ts."""
    _require(module, "register_template", "TEMPLATES", "ReasoningTemplate")
    from llamafactory.data import mm_plugin

    from tsplugin.llamafactory.templates import register_all

    hook_mm_plugin(mm_plugin)
    register_all(module, mm_plugin)


def hook_data_loader(module: ModuleType) -> None:
    """`_get_dataset_processor`: drop records whose series `cutoff_len` cut (or ChatTS-Training's selection);
    `_get_merged_dataset`: tag each record with its dataset's name; `_get_preprocessed_dataset`: log per
    dataset how many records were kept and dropped, and why."""
    _require(module, "_get_dataset_processor", "_get_merged_dataset", "_get_preprocessed_dataset", "merge_dataset", "get_dataset_list")

    def make_merged(original):
        def _get_merged_dataset(dataset_names, model_args, data_args, training_args, stage, return_dict=False):
            from tsplugin.llamafactory.data import tag_sources

            if dataset_names is None or data_args.streaming:
                return original(dataset_names, model_args, data_args, training_args, stage, return_dict=return_dict)
            attrs = module.get_dataset_list(dataset_names, data_args.dataset_dir)
            if not any(getattr(attr, "timeseries", None) for attr in attrs):
                return original(dataset_names, model_args, data_args, training_args, stage, return_dict=return_dict)
            datasets = tag_sources(original(dataset_names, model_args, data_args, training_args, stage, return_dict=True))
            if return_dict:
                return datasets
            return module.merge_dataset(list(datasets.values()), data_args, seed=training_args.seed)

        return _get_merged_dataset

    def make_preprocessed(original):
        def _get_preprocessed_dataset(dataset, data_args, training_args, *args, **kwargs):
            from llamafactory.extras import logging as lf_logging

            from tsplugin.llamafactory.data import report_and_filter

            result = original(dataset, data_args, training_args, *args, **kwargs)
            log = lf_logging.get_logger("llamafactory.tsplugin").info_rank0
            label = "eval dataset" if kwargs.get("is_eval", args[4] if len(args) > 4 else False) else "dataset"
            return report_and_filter(dataset, result, data_args.cutoff_len, log, label)

        return _get_preprocessed_dataset

    _wrap(module, "_get_merged_dataset", make_merged)
    _wrap(module, "_get_preprocessed_dataset", make_preprocessed)

    def make(original):
        def _get_dataset_processor(data_args, stage, template, tokenizer, processor, *args, **kwargs):
            from tsplugin.llamafactory.data import TimeSeriesDatasetProcessor
            from tsplugin.llamafactory.mm_plugin import TimeSeriesPlugin

            inner = original(data_args, stage, template, tokenizer, processor, *args, **kwargs)
            if isinstance(template.mm_plugin, TimeSeriesPlugin):
                return TimeSeriesDatasetProcessor(inner, template.mm_plugin)
            return inner

        return _get_dataset_processor

    _wrap(module, "_get_dataset_processor", make)


def hook_model_loader(module: ModuleType) -> None:
    """`load_tokenizer`: attach the time-series processor; `_get_init_kwargs`: local classes only;
    `load_model`: memory options (`timeseries_chunked_loss`, `quantize_lm_head`, tsplugin.llamafactory.memory_options)."""
    _require(module, "load_tokenizer", "_get_init_kwargs", "patch_processor", "load_model")
    import tsplugin.models  # noqa: F401  (Auto* registration of the model classes)
    from tsplugin.layouts import forget_shipped_processor
    from tsplugin.processing import TimeSeriesProcessor

    def make_init_kwargs(original):
        def _get_init_kwargs(model_args):
            kwargs = original(model_args)
            if kwargs.get("trust_remote_code") and checkpoint_config(model_args)[0] is not None:
                # ChatTS checkpoints ship remote code; tsplugin's native classes replace it (Hub IDs too).
                kwargs["trust_remote_code"] = False
            return kwargs

        return _get_init_kwargs

    def make_load_tokenizer(original):
        def load_tokenizer(model_args):
            result = original(model_args)
            if not isinstance(result.get("processor"), TimeSeriesProcessor):
                config, model_dir = checkpoint_config(model_args)
                if config is not None:
                    where = model_dir or model_args.model_name_or_path
                    processor = TimeSeriesProcessor.from_config(
                        config, model_dir=model_dir, profile=getattr(model_args, "timeseries_profile", None)
                    )
                    check_tokenizer_ids(config, where, result["tokenizer"])
                    forget_shipped_processor(result["tokenizer"])
                    logger.info("tsplugin: encoding profile %s (%s)", processor.profile.name, processor.profile_reason)
                    module.patch_processor(processor, result["tokenizer"], model_args)
                    result["processor"] = processor
            return result

        return load_tokenizer

    def make_load_model(original):
        def load_model(tokenizer, model_args, finetuning_args, *args, **kwargs):
            from tsplugin.llamafactory.memory_options import apply_after_load, loading

            with loading(finetuning_args, model_args):  # the quantisation hook reads quantize_lm_head from here
                model = original(tokenizer, model_args, finetuning_args, *args, **kwargs)
            is_trainable = kwargs.get("is_trainable", args[0] if args else False)
            if is_ts_model_type(getattr(getattr(model, "config", None), "model_type", None)):
                apply_after_load(model, finetuning_args, is_trainable)
                apply_profile(model, model_args)
            return model

        return load_model

    _wrap(module, "_get_init_kwargs", make_init_kwargs)
    _wrap(module, "load_tokenizer", make_load_tokenizer)
    _wrap(module, "load_model", make_load_model)


def hook_visual(module: ModuleType) -> None:
    """`_register_composite_model`: encoder = vision tower, so LLaMA-Factory's freeze/LoRA options apply;
    `patch_target_modules`: the `lora_timeseries_encoder` option."""
    _require(module, "_register_composite_model", "COMPOSITE_MODELS", "patch_target_modules")
    from tsplugin.llamafactory.options import make_patch_target_modules

    for model_type, keys in COMPOSITE.items():
        if model_type not in module.COMPOSITE_MODELS:
            module._register_composite_model(model_type=model_type, **keys)
    _wrap(
        module,
        "patch_target_modules",
        lambda original: make_patch_target_modules(original, lambda m: is_ts_model_type(getattr(m.config, "model_type", None))),
    )


def hook_quantization(module: ModuleType) -> None:
    """`configure_quantization`: never quantise the time-series encoder (lm_head: see `quantize_lm_head`)."""
    _require(module, "configure_quantization")

    def make(original):
        def configure_quantization(config, tokenizer, model_args, is_trainable, init_kwargs, *args, **kwargs):
            result = original(config, tokenizer, model_args, is_trainable, init_kwargs, *args, **kwargs)
            qconfig = init_kwargs.get("quantization_config")
            if qconfig is not None and is_ts_model_type(getattr(config, "model_type", None)):
                from tsplugin.llamafactory.memory_options import skip_modules  # + lm_head unless quantize_lm_head

                qconfig.llm_int8_skip_modules = skip_modules(
                    config, model_args, getattr(qconfig, "llm_int8_skip_modules", None), ENCODER_MODULES
                )
            return result

        return configure_quantization

    _wrap(module, "configure_quantization", make)


def hook_trainer_utils(module: ModuleType) -> None:
    """`create_custom_optimizer`: a separate learning rate for the encoder when it trains."""
    _require(module, "create_custom_optimizer")
    from tsplugin.llamafactory.options import make_create_custom_optimizer

    _wrap(module, "create_custom_optimizer", make_create_custom_optimizer)


def hook_tuner(module: ModuleType) -> None:
    """`run_pt` / `run_sft` / `run_rm` / `run_dpo` / `run_kto` as `_training_function` calls them: append
    `tsplugin.stability.NanGuardCallback` when the recipe sets `timeseries_nan_guard: true`."""
    stages = ("run_pt", "run_sft", "run_rm", "run_dpo", "run_kto")
    _require(module, "_training_function", *stages)

    def make(original):
        def run_stage(model_args, data_args, training_args, finetuning_args, *rest, **kwargs):
            from tsplugin.stability import callback_from_args

            guard = callback_from_args(finetuning_args)
            callbacks = kwargs.get("callbacks", rest[-1] if rest else None)
            if guard is not None and isinstance(callbacks, list):
                callbacks.append(guard)
            return original(model_args, data_args, training_args, finetuning_args, *rest, **kwargs)

        return run_stage

    for stage in stages:
        _wrap(module, stage, make)


def hook_configuration_utils(module: ModuleType) -> None:
    """transformers `PretrainedConfig.get_config_dict`: time-series configs come out normalised
    (`tsplugin.layouts.normalise_config`) and tsplugin's classes get registered with the Auto classes."""
    base = getattr(module, "PreTrainedConfig", None) or getattr(module, "PretrainedConfig", None)
    if base is None or not hasattr(base, "get_config_dict"):
        raise ImportError(
            f"tsfactory: {module.__name__} has no PretrainedConfig.get_config_dict; transformers changed shape. "
            f"Install {TRANSFORMERS_SUPPORTED_TEXT} or upgrade tsfactory."
        )
    original = base.__dict__["get_config_dict"].__func__
    if getattr(original, "__tsplugin__", False):
        return

    @functools.wraps(original)
    def get_config_dict(cls, pretrained_model_name_or_path, **kwargs):
        config, unused = original(cls, pretrained_model_name_or_path, **kwargs)
        from tsplugin.layouts import checkpoint_dir, is_ts_config, normalise_config

        if not isinstance(config, dict) or not is_ts_config(config):
            return config, unused
        import tsplugin.models  # noqa: F401  (registers tsplugin's classes with the Auto classes)

        where = str(pretrained_model_name_or_path)
        # the snapshot just read (its commit hash: no second Hub lookup online)
        model_dir = checkpoint_dir(where, **{**kwargs, "_commit_hash": config.get("_commit_hash", kwargs.get("_commit_hash"))})
        return normalise_config(config, model_dir, where), unused

    get_config_dict.__tsplugin__ = True
    base.get_config_dict = classmethod(get_config_dict)


def hook_processing_auto(module: ModuleType) -> None:
    """transformers `AutoProcessor.from_pretrained`: a time-series checkpoint gets `ChatTSProcessor`
    (never the processor class or code it ships, which stock transformers would run or refuse)."""
    _require_transformers(module, "AutoProcessor")
    auto = module.AutoProcessor
    original = auto.__dict__["from_pretrained"].__func__
    if getattr(original, "__tsplugin__", False):
        return

    @functools.wraps(original)
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        from tsplugin.layouts import read_config

        if read_config(pretrained_model_name_or_path, **kwargs) is None:
            return original(cls, pretrained_model_name_or_path, *args, **kwargs)
        from tsplugin.models.processing_chatts import ChatTSProcessor

        return ChatTSProcessor.from_pretrained(pretrained_model_name_or_path, *args, **kwargs)

    from_pretrained.__tsplugin__ = True
    auto.from_pretrained = classmethod(from_pretrained)


def _require_transformers(module: ModuleType, *names: str) -> None:
    missing = [n for n in names if not hasattr(module, n)]
    if missing:
        raise ImportError(
            f"tsfactory: {module.__name__} has no {', '.join(missing)}; transformers changed shape. "
            f"Install {TRANSFORMERS_SUPPORTED_TEXT} or upgrade tsfactory."
        )


# transformers modules (any process of the environment), version-checked separately from LLaMA-Factory's.
TRANSFORMERS_HOOKS: dict[str, Callable[[ModuleType], None]] = {
    "transformers.configuration_utils": hook_configuration_utils,
    "transformers.models.auto.processing_auto": hook_processing_auto,
}

HOOKS: dict[str, Callable[[ModuleType], None]] = {
    "llamafactory.hparams.finetuning_args": hook_finetuning_args,
    "llamafactory.hparams.model_args": hook_model_args,
    "llamafactory.hparams.data_args": hook_data_args,
    "llamafactory.data.parser": hook_parser,
    "llamafactory.data.converter": hook_converter,
    "llamafactory.data.mm_plugin": hook_mm_plugin,
    "llamafactory.data.template": hook_template,
    "llamafactory.data.loader": hook_data_loader,
    "llamafactory.model.loader": hook_model_loader,
    "llamafactory.model.model_utils.visual": hook_visual,
    "llamafactory.model.model_utils.quantization": hook_quantization,
    "llamafactory.train.trainer_utils": hook_trainer_utils,
    "llamafactory.train.tuner": hook_tuner,
}


def on_import(name: str, module: ModuleType) -> None:
    """Apply the hook for `name` once per process (called by `tsplugin._bootstrap`)."""
    if name in _applied:
        return
    if name in TRANSFORMERS_HOOKS:
        if not _transformers_version_ok():
            return
        try:
            TRANSFORMERS_HOOKS[name](module)
        except Exception as err:  # never break `import transformers` for the whole environment
            warnings.warn(f"tsfactory: released ChatTS checkpoints will not load with tsfactory's classes: {err}", stacklevel=2)
            return
        _applied.add(name)
        return
    hook = HOOKS.get(name)
    if hook is None or not _version_ok():
        return
    hook(module)
    _applied.add(name)


def applied() -> set[str]:
    """Names of the upstream modules hooked in this process (for `tsplugin doctor` and tests)."""
    return {name for name in _applied if name in HOOKS or name in TRANSFORMERS_HOOKS}


def install_now() -> None:
    """Hook upstream modules already imported (for a process started without the .pth)."""
    for name in (*TRANSFORMERS_HOOKS, *HOOKS):
        if name in sys.modules:
            on_import(name, sys.modules[name])
