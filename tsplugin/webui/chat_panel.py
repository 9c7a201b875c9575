"""The series panel of LLaMA-Factory's chat box (`llamafactory-cli webchat`, LlamaBoard's Chat tab).

Added by the `create_chat_box` hook right after LLaMA-Factory builds its chat box; the upstream
layout, events and state stay as they are. The conversation gets a plot column beside it; under the
query box the user uploads CSV files (value and time columns as `tsconvert --value-col/--time-col`).
An upload puts the series into the chat state as a `timeseries` entry (`tsplugin.webui.conversation`)
and `<ts><ts/>` placeholders into the query; `stream` (the `WebChatModel.stream` hook) hands them to
the engine with the message. Bad files and placeholder mistakes are shown as messages, not tracebacks.
The panel shows only when the loaded model's template takes series.
"""

from __future__ import annotations

import html
from typing import Any, Callable, Iterator

import gradio as gr

from tsplugin.webui import conversation
from tsplugin.webui.labels import apply_locales
from tsplugin.webui.plots import series_figure
from tsplugin.webui.series_input import DEFAULT_TIME_COL, DEFAULT_VALUE_COLS, SeriesInputError, insert_placeholders, read_uploads


def takes_series(chat_model: Any) -> bool:
    """True when a model is loaded whose template uses the `timeseries` plugin."""
    from tsplugin.llamafactory.mm_plugin import TimeSeriesPlugin  # lazy: LLaMA-Factory's data package (this module loads inside a hook)

    engine = getattr(chat_model, "engine", None)
    template = getattr(engine, "template", None)
    return isinstance(getattr(template, "mm_plugin", None), TimeSeriesPlugin)


def page_text(text: str) -> str:
    """`text` shown as written in a chat bubble, a status line or a toast: gradio renders those as
    Markdown/HTML, where `<ts><ts/>` would be an (invisible) tag that cuts the rest of the message."""
    return html.escape(text, quote=False)


def conversation_plot(messages: list[dict[str, Any]]) -> Any:
    return series_figure(conversation.series_of(messages), title="Series in this conversation")


def on_upload(files: list[str] | None, value_cols: str, time_col: str, query: str, messages: list[dict[str, Any]]):
    """Read the uploaded CSVs into the pending entry; placeholders into the query; errors shown."""
    try:
        series = read_uploads(files or [], value_cols, time_col)
    except SeriesInputError as err:
        gr.Warning(page_text(str(err)))
        messages = conversation.with_pending(messages, [])
        return query, messages, conversation_plot(messages), f"**Not used:** {page_text(str(err))}"
    messages = conversation.with_pending(messages, series)
    status = f"{len(series)} series ready: one `<ts><ts/>` each in your message, in this order." if series else ""
    return insert_placeholders(query, len(series)), messages, conversation_plot(messages), status


def add_series_panel(engine: Any, chatbot: Any, messages: Any, elems: dict[str, Any]) -> dict[str, Any]:
    """Build the panel into LLaMA-Factory's chat box; returns the new components (for the manager)."""
    chat_box = elems["chat_box"]
    ready = takes_series(engine.chatter)
    with chat_box:
        with gr.Row(equal_height=False) as conversation_row:
            with gr.Column(scale=3) as chat_column:
                pass
            with gr.Column(scale=2, visible=ready) as series_plot_box:
                series_plot = gr.Plot(label="Series in this conversation", show_label=False, format="png", elem_id="tsplugin-series-plot")
        with gr.Row(visible=ready) as series_box:
            series_files = gr.File(
                label="Time series: one CSV per series (placeholders <ts><ts/> are added to your message)",
                file_count="multiple",
                file_types=[".csv"],
                type="filepath",
                scale=3,
                elem_id="tsplugin-series-files",
            )
            with gr.Column(scale=1):
                value_cols = gr.Textbox(
                    value=DEFAULT_VALUE_COLS,
                    label="Value column(s)",
                    info="as tsconvert --value-col; comma-separated for several series per file",
                )
                time_col = gr.Textbox(value=DEFAULT_TIME_COL, label="Time column", info="rows sorted by it; empty: file order")
        series_status = gr.Markdown(elem_id="tsplugin-series-status")
    _place_beside(chat_box, chatbot, chat_column, conversation_row)
    if ready and "mm_box" in elems:
        elems["mm_box"].visible = False  # images/videos/audios: not for a time-series template

    query, submit_btn, clear_btn = elems["query"], elems["submit_btn"], elems["clear_btn"]
    upload_io = dict(
        inputs=[series_files, value_cols, time_col, query, messages],
        outputs=[query, messages, series_plot, series_status],
        queue=False,
    )
    series_files.upload(on_upload, **upload_io)
    series_files.clear(on_upload, **upload_io)
    series_files.delete(on_upload, **upload_io)
    value_cols.submit(on_upload, **upload_io)
    time_col.submit(on_upload, **upload_io)
    # Sent series stay in the conversation (and its plot); the upload box empties for the next turn.
    submit_btn.click(lambda: (None, ""), outputs=[series_files, series_status], queue=False)
    clear_btn.click(lambda: (None, None, ""), outputs=[series_files, series_plot, series_status], queue=False)
    return dict(
        series_plot_box=series_plot_box,
        series_plot=series_plot,
        series_box=series_box,
        series_files=series_files,
        value_cols=value_cols,
        time_col=time_col,
        series_status=series_status,
    )


def visibility_updates(engine: Any) -> tuple[Any, Any, Any]:
    """After a model (un)loads in LlamaBoard: the panel for a time-series template only (and no image box)."""
    ready = takes_series(engine.chatter)
    return gr.Column(visible=ready), gr.Row(visible=ready), (gr.Column(visible=False) if ready else gr.update())


def make_create_chat_box(original: Callable) -> Callable:
    """`components.chatbot.create_chat_box`: upstream's chat box plus the series panel."""

    def create_chat_box(engine: Any, visible: bool = False):
        chatbot, messages, elems = original(engine, visible)
        elems.update(add_series_panel(engine, chatbot, messages, elems))
        try:
            top = {"lang": engine.manager.get_elem_by_id("top.lang")}  # webchat adds it first, LlamaBoard with its top bar
        except KeyError:
            top = {}
        apply_locales({**top, **elems})  # labels before the page renders (gradio 5.50 misses the first language change)
        return chatbot, messages, elems

    return create_chat_box


def make_create_infer_tab(original: Callable) -> Callable:
    """`components.infer.create_infer_tab`: show or hide the series panel whenever a model (un)loads."""

    def create_infer_tab(engine: Any) -> dict[str, Any]:
        elems = original(engine)
        elems["info_box"].change(
            lambda: visibility_updates(engine),
            outputs=[elems["series_plot_box"], elems["series_box"], elems["mm_box"]],
            queue=False,
        )
        return elems

    return create_infer_tab


def _place_beside(chat_box: Any, chatbot: Any, chat_column: Any, conversation_row: Any) -> None:
    """Move the chatbot into the row's first column and the row to where the chatbot was."""
    index = chat_box.children.index(chatbot)
    chat_box.children.remove(chatbot)
    chat_column.add(chatbot)
    chat_box.children.remove(conversation_row)
    chat_box.children.insert(index, conversation_row)


def make_stream(original: Callable[..., Iterator]) -> Callable[..., Iterator]:
    """`WebChatModel.stream` that sends the conversation's series with it (upstream stream otherwise)."""

    def stream(self, chatbot, messages, *args, **kwargs):
        if not any(conversation.is_series_entry(m) for m in messages or []):
            yield from original(self, chatbot, messages, *args, **kwargs)
            return
        try:
            clean, series = conversation.split(messages)
        except ValueError as err:
            yield from _refuse(chatbot, messages, str(err))
            return
        try:
            for shown, output in original(_WithSeries(self, series), chatbot, clean, *args, **kwargs):
                yield shown, conversation.merge_answer(messages, clean, output)
        except ValueError as err:  # the engine's checks (placeholders, cutoff, series values)
            yield from _refuse(chatbot, messages, str(err))

    return stream


def _refuse(chatbot: list, messages: list, reason: str) -> Iterator:
    """Show why a message cannot be answered; it leaves the state, its uploads wait for a corrected one."""
    gr.Warning(page_text(reason))
    state = list(messages)
    if state and not conversation.is_series_entry(state[-1]):
        state.pop()
    shown = [m for m in chatbot if m.get("role") != "assistant" or m.get("content")]  # upstream's empty answer bubble
    yield shown + [{"role": "assistant", "content": f"Not sent: {page_text(reason)}"}], state


class _WithSeries:
    """The WebChatModel as upstream `stream` sees it, with every `stream_chat` carrying the series."""

    def __init__(self, chat_model: Any, series: list[list[float]]) -> None:
        self._chat_model = chat_model
        self._series = series

    def __getattr__(self, name: str) -> Any:
        return getattr(self._chat_model, name)

    def stream_chat(self, messages, system=None, tools=None, images=None, videos=None, audios=None, **kwargs):
        if images or videos or audios:
            raise ValueError("Series cannot be sent together with an image, video or audio: clear those inputs.")
        return self._chat_model.stream_chat(messages, system, tools, None, None, self._series, **kwargs)
