"""Line plots of series for the web UI: the chat's uploads and the train tab's dataset preview.

Figures are built with `matplotlib.figure.Figure` (no pyplot state, safe in gradio's worker threads)
and handed to `gr.Plot`. One small panel per series, titled with its number as the placeholders
count them (`<ts> #1` is the series of the first `<ts><ts/>`), where it came from and its length.
"""

from __future__ import annotations

from typing import Any, Sequence

PANEL_HEIGHT = 1.6  # inches per series
WIDTH = 6.4


def series_figure(series: Sequence[tuple[str, Sequence[float]]], title: str | None = None) -> Any:
    """Chat uploads, numbered as their placeholders: one panel per (name, values); None when empty."""
    return _figure([(f"<ts> #{number}: {name}", values) for number, (name, values) in enumerate(series, start=1)], title)


def records_figure(records: Sequence[tuple[str, Sequence[Sequence[float]]]], title: str | None = None) -> Any:
    """Dataset records: (record label, its series in placeholder order) -> one panel per series."""
    return _figure(
        [(f"{label}: <ts> #{number}", values) for label, series in records for number, values in enumerate(series, start=1)],
        title,
    )


def _figure(series: Sequence[tuple[str, Sequence[float]]], title: str | None = None) -> Any:
    if not series:
        return None
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH, 0.6 + PANEL_HEIGHT * len(series)), layout="constrained")
    axes = fig.subplots(len(series), 1, squeeze=False)[:, 0]
    for ax, (label, values) in zip(axes, series):
        ax.plot(range(len(values)), values, linewidth=0.9, color="tab:blue")
        ax.set_title(f"{label} ({len(values)} points)", fontsize=9, loc="left")
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig

