"""Plot builders: arrays in, ``plotly.graph_objects.Figure`` out. Only pages draw them."""

from __future__ import annotations

import base64
import html
import io
import math

import numpy as np
import plotly.graph_objects as go
from PIL import Image
from plotly.subplots import make_subplots

TRAIN_COLOUR, VALIDATION_COLOUR = "#1f77b4", "#ff7f0e"


def plain_text(text: str) -> str:
    """Text shown as typed: Plotly reads <b>, <a href>… in labels as markup, but shows entities literally."""
    return html.escape(str(text), quote=False)


def _png_uri(pixels: np.ndarray) -> str:
    """A data URI of a uint8 image, (H, W) or (H, W, 1|3)."""
    pixels = np.asarray(pixels)
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def image_grid(images: np.ndarray, titles: list[str], columns: int = 6, tile_px: int = 110) -> go.Figure:
    """A grid of images with a title above each (the article's 2×6 sample grid)."""
    count = len(images)
    columns = max(1, min(columns, count)) if count else 1
    rows = max(1, math.ceil(count / columns))
    titles = [plain_text(title) for title in titles]
    fig = make_subplots(rows=rows, cols=columns, subplot_titles=titles, horizontal_spacing=0.02, vertical_spacing=0.4 / rows)
    for index, pixels in enumerate(images):
        row, col = divmod(index, columns)
        fig.add_trace(go.Image(source=_png_uri(pixels), hoverinfo="skip"), row=row + 1, col=col + 1)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_annotations(font_size=12)
    fig.update_layout(height=rows * tile_px + 40, margin=dict(l=5, r=5, t=30, b=5))
    return fig


def class_counts_bar(counts: np.ndarray, class_names: tuple[str, ...], title: str = "Images per class") -> go.Figure:
    names = [plain_text(name) for name in class_names]
    fig = go.Figure(go.Bar(x=names, y=counts.tolist(), marker_color=TRAIN_COLOUR, text=counts.tolist()))
    fig.update_layout(title=title, xaxis_title="class", yaxis_title="images", height=320, margin=dict(t=40, b=10))
    return fig


def pixel_histogram(images: np.ndarray, sample: int = 2000) -> go.Figure:
    """Distribution of pixel intensities (per channel for colour images)."""
    subset = images[:sample]
    fig = go.Figure()
    names = ["gray"] if subset.shape[-1] == 1 else ["red", "green", "blue"]
    for channel, name in enumerate(names):
        counts = np.bincount(subset[..., channel].ravel(), minlength=256)
        fig.add_trace(go.Bar(x=np.arange(256), y=counts, name=name, marker_color=None if name == "gray" else name, opacity=0.7))
    fig.update_layout(
        title="Pixel intensities", barmode="overlay", bargap=0, xaxis_title="value (0–255)",
        yaxis_title="pixels", yaxis_type="log", height=320, margin=dict(t=40, b=10),
    )  # fmt: skip
    return fig


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


def confusion_heatmap(confusion: np.ndarray, class_names: tuple[str, ...]) -> go.Figure:
    """Rows are the true class, columns the predicted class; the diagonal is correct."""
    names = [plain_text(name) for name in class_names]
    fig = go.Figure(
        go.Heatmap(
            z=confusion, x=names, y=names, colorscale="Blues", text=confusion, texttemplate="%{text}",
            hovertemplate="true %{y}, predicted %{x}: %{z}<extra></extra>", showscale=False,
        )
    )  # fmt: skip
    fig.update_layout(
        title="Confusion matrix", xaxis_title="predicted", yaxis_title="true", yaxis_autorange="reversed",
        height=max(360, 36 * len(names) + 120), margin=dict(t=40, b=10),
    )  # fmt: skip
    return fig


def top_k_bar(top: list[tuple[str, float]]) -> go.Figure:
    names = [plain_text(name) for name, _ in top][::-1]
    values = [value for _, value in top][::-1]
    fig = go.Figure(
        go.Bar(x=values, y=names, orientation="h", marker_color=TRAIN_COLOUR, text=[f"{v:.1%}" for v in values], textposition="auto")
    )
    fig.update_layout(
        title="Top predictions", xaxis=dict(range=[0, 1], tickformat=".0%"), height=60 + 36 * len(top), margin=dict(t=40, b=10)
    )
    return fig


def mean_images_grid(means: np.ndarray, class_names: tuple[str, ...], columns: int = 10) -> go.Figure:
    return image_grid(np.rint(means).astype(np.uint8), list(class_names), columns=min(columns, len(class_names)), tile_px=90)


_DIAGRAM_COLOURS = {
    "InputLayer": "#9e9e9e",
    "Resizing": "#bdbdbd",
    "Concatenate": "#bdbdbd",  # grey repeated to RGB for a pretrained backbone
    "Backbone": "#d62728",
    "Conv2D": "#1f77b4",
    "SeparableConv2D": "#17becf",
    "MaxPooling2D": "#ff7f0e",
    "AveragePooling2D": "#ff7f0e",
    "Add": "#9467bd",
    "Flatten": "#8c564b",
    "GlobalAveragePooling2D": "#8c564b",
    "GlobalMaxPooling2D": "#8c564b",
    "Dense": "#2ca02c",
}


def architecture_diagram(layers) -> go.Figure:
    """Blocks left to right, their height showing the feature map's side and width its channels.

    Args:
        layers: ``plan.LayerInfo`` items (only shape-changing layers are drawn).
    """
    shown = [layer for layer in layers if layer.class_name in _DIAGRAM_COLOURS]
    fig = go.Figure()
    if not shown:
        return fig
    largest_side = max((layer.output_shape[0] for layer in shown if len(layer.output_shape) == 3), default=1)
    x = 0.0
    for layer in shown:
        shape = layer.output_shape
        if len(shape) == 3:
            height = 0.2 + 0.8 * shape[0] / largest_side
            width = 0.25 + 0.25 * math.log2(max(1, shape[2]))
            label = f"{shape[0]}×{shape[1]}×{shape[2]}"
        else:
            height = 0.2 + 0.8 * min(1.0, math.log10(max(10, shape[0])) / 4)
            width = 0.3
            label = f"{shape[0]}"
        colour = _DIAGRAM_COLOURS[layer.class_name]
        fig.add_shape(type="rect", x0=x, x1=x + width, y0=-height / 2, y1=height / 2, fillcolor=colour, opacity=0.75, line_width=0)
        fig.add_trace(
            go.Scatter(
                x=[x + width / 2], y=[0], mode="markers", marker=dict(size=1, color=colour), showlegend=False,
                hovertemplate=(
                    f"<b>{layer.name}</b><br>{layer.class_name}<br>output {label}<br>{layer.parameters:,} parameters<extra></extra>"
                ),
            )
        )  # fmt: skip
        fig.add_annotation(x=x + width / 2, y=height / 2 + 0.05, text=label, showarrow=False, font_size=10, yanchor="bottom", textangle=-45)
        fig.add_annotation(x=x + width / 2, y=-height / 2 - 0.05, text=layer.class_name.replace("2D", ""), showarrow=False,
                           font_size=9, yanchor="top", textangle=-45)  # fmt: skip
        x += width + 0.25
    fig.update_xaxes(visible=False, range=[-0.3, x])
    fig.update_yaxes(visible=False, range=[-1.3, 1.3])
    fig.update_layout(height=340, margin=dict(l=5, r=5, t=10, b=5), plot_bgcolor="white")
    return fig


def comparison_bars(names: list[str], values: list[float], title: str, value_format: str = ",") -> go.Figure:
    """One bar per design, e.g. the article's baseline next to the current CNN."""
    fig = go.Figure(go.Bar(x=names, y=values, marker_color=[TRAIN_COLOUR, VALIDATION_COLOUR][: len(names)] * 2,
                           text=[f"{v:{value_format}}" for v in values]))  # fmt: skip
    fig.update_layout(title=title, height=260, margin=dict(t=40, b=10))
    return fig


# --- looking inside a network ------------------------------------------------------------------


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """A uint8 (H, W, 3) copy of a gray or colour image."""
    pixels = np.asarray(image)
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    if pixels.ndim == 2:
        pixels = np.stack([pixels] * 3, axis=-1)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def heatmap_overlay(image: np.ndarray, heatmap: np.ndarray, title: str = "", opacity: float = 0.5) -> go.Figure:
    """The image, and beside it the same image under a heatmap (e.g. Grad-CAM) in [0, 1]."""
    heatmap = np.asarray(heatmap, np.float32)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Input", plain_text(title) or "Heatmap"), horizontal_spacing=0.04)
    source = _png_uri(_as_rgb(image))
    fig.add_trace(go.Image(source=source, hoverinfo="skip"), row=1, col=1)
    fig.add_trace(go.Image(source=source, hoverinfo="skip"), row=1, col=2)
    fig.add_trace(
        go.Heatmap(z=heatmap, zmin=0, zmax=1, colorscale="Jet", opacity=opacity, showscale=True,
                   colorbar=dict(thickness=10, len=0.9), hovertemplate="row %{y}, column %{x}: %{z:.2f}<extra></extra>"),
        row=1, col=2,
    )  # fmt: skip
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, autorange="reversed", scaleanchor="x")
    fig.update_yaxes(scaleanchor="x2", row=1, col=2)
    fig.update_layout(height=300, margin=dict(l=5, r=5, t=30, b=5))
    return fig


def _tile_grid(count: int, columns: int, titles: list[str], tile_px: int, spacing: float = 0.02):
    columns = max(1, min(columns, count))
    rows = max(1, math.ceil(count / columns))
    fig = make_subplots(rows=rows, cols=columns, subplot_titles=titles, horizontal_spacing=spacing, vertical_spacing=0.3 / rows)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, autorange="reversed")
    fig.update_annotations(font_size=10)
    fig.update_layout(height=rows * tile_px + 40, margin=dict(l=5, r=5, t=30, b=5))
    return fig, columns


def feature_map_grid(maps: np.ndarray, max_channels: int = 16, columns: int = 8) -> go.Figure:
    """The first ``max_channels`` channels of one layer's output (H, W, C), each as a gray tile."""
    maps = np.asarray(maps, np.float32)
    shown = min(max_channels, maps.shape[-1])
    fig, columns = _tile_grid(shown, columns, [f"channel {c}" for c in range(shown)], tile_px=100)
    for channel in range(shown):
        row, col = divmod(channel, columns)
        fig.add_trace(
            go.Heatmap(z=maps[..., channel], colorscale="Gray", showscale=False,
                       hovertemplate=f"channel {channel}<br>row %{{y}}, column %{{x}}: %{{z:.3f}}<extra></extra>"),
            row=row + 1, col=col + 1,
        )  # fmt: skip
    return fig


def filters_grid(filters: np.ndarray, max_filters: int = 32, columns: int = 8) -> go.Figure:
    """First-layer kernels (k, k, in, out) scaled to 0..1: colour tiles for 3 inputs, else gray (mean over inputs)."""
    filters = np.asarray(filters, np.float32)
    shown = min(max_filters, filters.shape[-1])
    fig, columns = _tile_grid(shown, columns, [f"filter {f}" for f in range(shown)], tile_px=80)
    for index in range(shown):
        row, col = divmod(index, columns)
        kernel = filters[..., index]
        if kernel.shape[-1] == 3:
            trace = go.Image(z=np.rint(kernel * 255).astype(np.uint8), hoverinfo="skip")
        else:
            trace = go.Heatmap(z=kernel.mean(axis=-1), zmin=0, zmax=1, colorscale="Gray", showscale=False,
                               hovertemplate=f"filter {index}: %{{z:.2f}}<extra></extra>")  # fmt: skip
        fig.add_trace(trace, row=row + 1, col=col + 1)
    return fig


def projection_scatter(points: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...], indices: np.ndarray | None = None,
                       title: str = "") -> go.Figure:  # fmt: skip
    """2-D points, one colour per class; hovering shows the class and the test image's number."""
    points = np.asarray(points)
    labels = np.asarray(labels)
    indices = np.arange(len(points)) if indices is None else np.asarray(indices)
    fig = go.Figure()
    for label, name in enumerate(class_names):
        members = np.flatnonzero(labels == label)
        if not len(members):
            continue
        shown = plain_text(name)
        fig.add_trace(
            go.Scatter(x=points[members, 0], y=points[members, 1], mode="markers", name=shown, customdata=indices[members],
                       marker=dict(size=6, opacity=0.75),
                       hovertemplate=f"{shown}<br>test image #%{{customdata}}<extra></extra>"),
        )  # fmt: skip
    fig.update_xaxes(showticklabels=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, zeroline=False)
    fig.update_layout(
        title=plain_text(title), height=460, margin=dict(t=40, b=10), uirevision="projection", legend=dict(itemsizing="constant")
    )
    return fig


def clickable_confusion_heatmap(confusion: np.ndarray, class_names: tuple[str, ...]) -> go.Figure:
    """``confusion_heatmap`` with an invisible marker on every cell, so a click selects the cell.

    Plotly heatmaps send no selection events; the markers do. Marker ``i`` is row ``i // K``, column ``i % K``.
    """
    fig = confusion_heatmap(confusion, class_names)
    names = [plain_text(name) for name in class_names]
    classes = len(names)
    rows, cols = np.divmod(np.arange(classes * classes), classes)
    fig.update_traces(hoverinfo="skip", hovertemplate=None, selector=dict(type="heatmap"))
    fig.add_trace(
        go.Scatter(
            x=[names[c] for c in cols], y=[names[r] for r in rows], customdata=np.asarray(confusion).ravel(), mode="markers",
            marker=dict(symbol="square", size=max(12, 240 // max(1, classes)), color="rgba(0,0,0,0)"), showlegend=False,
            selected=dict(marker=dict(opacity=1)), unselected=dict(marker=dict(opacity=1)),
            hovertemplate="true %{y}, predicted %{x}: %{customdata}<br>click to see these images<extra></extra>",
        )
    )  # fmt: skip
    return fig
