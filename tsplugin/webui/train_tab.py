"""LlamaBoard's Train tab for time-series data: labelled templates and datasets, series drawn in the preview.

- Template dropdown (top bar): the time-series templates registered by the plugin are labelled
  `chatts (time series)`; the value stays the template name, so recipes and saved configs are unchanged.
  For a local model directory whose `config.json` is a time-series model, the template is set to
  the one it was trained with (`tsplugin.chat.default_template`) when it was still `default`.
- Dataset dropdown: dataset_info.json entries with a `timeseries` column are labelled the same way.
- Preview: the JSON shows each series as a short summary, and a plot beside it draws every series of
  the page's records (upstream showed thousands of numbers).
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable

from tsplugin.chat import default_template
from tsplugin.checkpoints.layouts import TS_MODEL_TYPES, local_model_type
from tsplugin.webui.plots import records_figure

LABEL = "{name} (time series)"


def timeseries_column(dataset_dir: str, dataset: str) -> str | None:
    """The `timeseries` column of `dataset` in `dataset_dir`/dataset_info.json (None: not a time-series entry)."""
    try:
        with open(os.path.join(dataset_dir, "dataset_info.json"), encoding="utf-8") as f:
            entry = json.load(f).get(dataset) or {}
    except (OSError, ValueError, AttributeError):
        return None
    return (entry.get("columns") or {}).get("timeseries")


def ts_template_names() -> set[str]:
    """Registered LLaMA-Factory templates that take series (the `timeseries` plugin)."""
    from llamafactory.data.template import TEMPLATES

    from tsplugin.llamafactory.mm_plugin import TimeSeriesPlugin  # lazy: LLaMA-Factory's data package (this module loads inside a hook)

    return {name for name, template in TEMPLATES.items() if isinstance(template.mm_plugin, TimeSeriesPlugin)}


def labelled(names: list[str], is_ts: Callable[[str], bool]) -> list[tuple[str, str]]:
    """Dropdown choices (label, value): time-series names labelled, every value unchanged."""
    return [(LABEL.format(name=name) if is_ts(name) else name, name) for name in names]


def choice_values(choices: list[Any]) -> list[str]:
    return [c[1] if isinstance(c, (tuple, list)) else c for c in choices]


def template_for_path(model_path: str) -> str | None:
    """The template a local time-series model directory was trained with (None when not one)."""
    if not model_path or local_model_type(model_path) not in TS_MODEL_TYPES:
        return None
    from transformers import AutoConfig

    import tsplugin.models  # noqa: F401  (Auto registration)  # lazy: torch, only for a local time-series model

    try:
        return default_template(AutoConfig.from_pretrained(model_path))
    except (OSError, ValueError):
        return None


def summarise_series(samples: list[dict[str, Any]], column: str) -> list[dict[str, Any]]:
    """Preview records with each series replaced by `<series N: L points, plotted>`."""
    out = []
    for record in samples:
        series = record.get(column) if isinstance(record, dict) else None
        if isinstance(series, list):
            record = dict(record)
            record[column] = [
                f"<ts> #{i}: {len(s) if isinstance(s, list) else '?'} points (plotted)" for i, s in enumerate(series, start=1)
            ]
        out.append(record)
    return out


def page_series(samples: list[dict[str, Any]], column: str, first_index: int) -> list[tuple[str, list[list[float]]]]:
    """(record label, its series) for the records of one preview page."""
    out = []
    for offset, record in enumerate(samples):
        series = record.get(column) if isinstance(record, dict) else None
        if isinstance(series, list) and series:
            out.append((f"record {first_index + offset}", [s for s in series if isinstance(s, list)]))
    return out


# --- wrappers of upstream functions (installed by tsplugin.llamafactory.hooks) -------------------


def make_list_datasets(original: Callable) -> Callable:
    """`control.list_datasets`: the same datasets, time-series entries labelled."""

    def list_datasets(dataset_dir: str | None = None, *args: Any, **kwargs: Any) -> Any:
        import gradio as gr
        from llamafactory.webui.common import DEFAULT_DATA_DIR

        dropdown = original(dataset_dir, *args, **kwargs)
        directory = dataset_dir if dataset_dir is not None else DEFAULT_DATA_DIR
        names = choice_values(dropdown.choices or [])
        return gr.Dropdown(choices=labelled(names, lambda name: timeseries_column(directory, name) is not None))

    return list_datasets


def make_create_top(original: Callable) -> Callable:
    """`components.top.create_top`: time-series templates labelled; a local time-series model sets its template."""

    def create_top() -> dict[str, Any]:
        elems = original()
        template = elems["template"]
        ts_names = ts_template_names()
        template.choices = labelled(choice_values(template.choices), ts_names.__contains__)

        def fill_template(model_path: str, current: str) -> str:
            suggested = template_for_path(model_path) if current == "default" else None
            return suggested or current

        elems["model_path"].change(fill_template, [elems["model_path"], template], [template], queue=False)
        return elems

    return create_top


def make_get_preview(original: Callable) -> Callable:
    """`components.data.get_preview`: series summarised in the JSON (they are plotted beside it)."""

    def get_preview(dataset_dir: str, dataset: list, page_index: int) -> Any:
        count, samples, box = original(dataset_dir, dataset, page_index)
        column = timeseries_column(dataset_dir, dataset[0]) if dataset else None
        return count, (summarise_series(samples, column) if column else samples), box

    return get_preview


def make_create_preview_box(original: Callable, read_page: Callable) -> Callable:
    """`components.data.create_preview_box`: a plot of the page's series next to the JSON.

    `read_page` is upstream's own `get_preview` (the records as stored)."""

    def create_preview_box(dataset_dir: Any, dataset: Any) -> dict[str, Any]:
        import gradio as gr
        from llamafactory.webui.components.data import PAGE_SIZE

        elems = original(dataset_dir, dataset)
        samples = elems["preview_samples"]
        with samples.parent:  # the row that holds the JSON
            preview_plot = gr.Plot(label="Series of these records", show_label=False, format="png", visible=False, elem_id="tsplugin-preview-plot")

        def draw(directory: str, names: list, page_index: int) -> Any:
            column = timeseries_column(directory, names[0]) if names else None
            if not column:
                return gr.Plot(value=None, visible=False)
            _, records, _ = read_page(directory, names, page_index)
            figure = records_figure(page_series(records, column, PAGE_SIZE * int(page_index)), title=f"Series of {names[0]}")
            return gr.Plot(value=figure, visible=figure is not None)

        samples.change(draw, [dataset_dir, dataset, elems["page_index"]], [preview_plot], queue=False)
        return {**elems, "preview_plot": preview_plot}

    return create_preview_box
