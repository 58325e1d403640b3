"""Plot builders: arrays in, ``plotly.graph_objects.Figure`` out. Only pages draw them.

Here are the shared pieces (the colours, user text shown as typed, images as data URIs) and
the figures of a data set, a design and a test set: image grids, class counts, pixel
intensities, the architecture diagram, the confusion matrix and the top predictions. A
training run's figures are in ``training_plots``, the looks inside a network in
``explain_plots``.
"""

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


def png_uri(pixels: np.ndarray) -> str:
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
        fig.add_trace(go.Image(source=png_uri(pixels), hoverinfo="skip"), row=row + 1, col=col + 1)
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
