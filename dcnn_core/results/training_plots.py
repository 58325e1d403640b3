"""Figures of a training run: its curves, its learning rate and speed, and runs side by side.

Arrays in, ``plotly.graph_objects.Figure`` out, like ``plots``; only pages draw them. The
live figures are redrawn every second while a job trains, so they are built cheaply: numpy
arrays rather than lists (sent packed), and the two-plot layout written directly rather
than with ``make_subplots``. Also the schedule's preview before training.
"""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go

from dcnn_core.results.plots import TRAIN_COLOUR, VALIDATION_COLOUR


def smooth(values, weight: float = 0.9) -> np.ndarray:
    """Exponential moving average, as TensorBoard smooths noisy per-batch curves (non-finite values pass through)."""
    smoothed, last = np.empty(len(values)), None
    for index, value in enumerate(values):
        if not math.isfinite(value):
            smoothed[index] = value
            continue
        last = value if last is None else weight * last + (1 - weight) * value
        smoothed[index] = last
    return smoothed


def _side_by_side(titles: tuple[str, str], height: int, uirevision: str, x_title: str = "epoch") -> dict:
    """Layout of two plots side by side, written directly (``make_subplots`` costs ~10 ms a call; these are redrawn every second)."""
    axes = {}
    for number, domain in ((1, [0.0, 0.45]), (2, [0.55, 1.0])):
        suffix = "" if number == 1 else str(number)
        axes[f"xaxis{suffix}"] = dict(domain=domain, anchor=f"y{suffix}", title=dict(text=x_title), rangemode="tozero")
        axes[f"yaxis{suffix}"] = dict(anchor=f"x{suffix}", rangemode="tozero")
    annotations = [dict(text=title, x=sum(domain) / 2, y=1.0, xref="paper", yref="paper", xanchor="center", yanchor="bottom",
                        showarrow=False, font=dict(size=16))
                   for title, domain in zip(titles, ([0.0, 0.45], [0.55, 1.0]), strict=True)]  # fmt: skip
    return dict(axes, annotations=annotations, height=height, margin=dict(t=40, b=10), uirevision=uirevision)


def training_curves(
    history: dict[str, list[float]],
    batch_steps: list[float],
    batch_loss: list[float],
    batch_accuracy: list[float],
    fine_tune_from: int | None = None,
) -> go.Figure:
    """Loss and accuracy: per batch (raw and smoothed) and per epoch, training and validation; a line where fine-tuning began."""
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    # numpy arrays: Plotly validates and sends them as packed binary, several times cheaper than lists (redrawn every second)
    batch_steps, batch_loss, batch_accuracy = (np.asarray(values, np.float64) for values in (batch_steps, batch_loss, batch_accuracy))
    traces = []
    for col, (metric, batch_values) in enumerate((("loss", batch_loss), ("accuracy", batch_accuracy)), start=1):
        axes = dict(xaxis="x" if col == 1 else "x2", yaxis="y" if col == 1 else "y2", showlegend=col == 1)
        traces += [
            go.Scatter(x=batch_steps, y=batch_values, name="training, per batch", mode="lines", line=dict(color=TRAIN_COLOUR, width=1),
                       opacity=0.2, legendgroup="batch", **axes),
            go.Scatter(x=batch_steps, y=smooth(batch_values), name="training, smoothed", mode="lines",
                       line=dict(color=TRAIN_COLOUR, width=2), legendgroup="smooth", **axes),
            go.Scatter(x=epochs, y=np.asarray(history.get(metric, []), np.float64), name="training, end of epoch", mode="markers",
                       marker=dict(color=TRAIN_COLOUR, size=7, symbol="circle-open"), legendgroup="train", **axes),
        ]  # fmt: skip
        validation = history.get(f"val_{metric}", [])
        if any(math.isfinite(v) for v in validation):
            traces.append(go.Scatter(x=epochs, y=np.asarray(validation, np.float64), name="validation", mode="lines+markers",
                                     line=dict(color=VALIDATION_COLOUR), legendgroup="val", **axes))  # fmt: skip
    layout = _side_by_side(("Loss", "Accuracy"), 360, "training-curves")
    if fine_tune_from is not None:
        line = dict(type="line", x0=fine_tune_from, x1=fine_tune_from, y0=0, y1=1, line=dict(dash="dash", color="grey"))
        layout["shapes"] = [dict(line, xref="x", yref="y domain"), dict(line, xref="x2", yref="y2 domain")]
        layout["annotations"] = [*layout["annotations"], dict(text="fine-tuning →", x=fine_tune_from, y=1, xref="x", yref="y domain",
                                                              xanchor="left", yanchor="top", showarrow=False)]  # fmt: skip
    return go.Figure(data=traces, layout=dict(layout, legend=dict(orientation="h", y=-0.22)))


def rate_and_speed(history: dict[str, list[float]]) -> go.Figure:
    """Learning rate and throughput (images per second) per epoch."""
    epochs = np.arange(1, len(history.get("learning_rate", [])) + 1)
    layout = _side_by_side(("Learning rate", "Images per second"), 260, "rate-and-speed")
    layout["yaxis"] = dict(layout["yaxis"], type="log", rangemode=None)
    traces = [
        go.Scatter(x=epochs, y=np.asarray(history.get("learning_rate", []), np.float64), mode="lines+markers", showlegend=False),
        go.Bar(x=epochs, y=np.asarray(history.get("images_per_s", []), np.float64), showlegend=False, marker_color=TRAIN_COLOUR,
               xaxis="x2", yaxis="y2"),
    ]  # fmt: skip
    return go.Figure(data=traces, layout=layout)


def schedule_plot(rates: list[float], note: str = "") -> go.Figure:
    fig = go.Figure(go.Scatter(x=list(range(1, len(rates) + 1)), y=rates, mode="lines+markers", line_shape="hv"))
    fig.update_layout(title="Learning rate per epoch" + (f" — {note}" if note else ""), xaxis_title="epoch", yaxis_type="log",
                      height=240, margin=dict(t=40, b=10))  # fmt: skip
    return fig


def compare_runs(histories: dict[str, dict[str, list[float]]], metric: str = "val_accuracy") -> go.Figure:
    """One line per run for ``metric`` (per epoch)."""
    fig = go.Figure()
    for label, history in histories.items():
        values = history.get(metric, [])
        fig.add_trace(go.Scatter(x=list(range(1, len(values) + 1)), y=values, mode="lines+markers", name=label))
    fig.update_layout(xaxis_title="epoch", yaxis_title=metric.replace("_", " "), height=340, margin=dict(t=20, b=10),
                      uirevision=f"compare-{metric}", legend=dict(orientation="h", y=-0.25))  # fmt: skip
    return fig
