"""Figures that look inside a trained network, for the Predict page's "Look inside".

A heatmap (Grad-CAM or saliency) over the input image, one layer's feature maps, the first
layer's filters, and test images projected to 2-D, one colour per class. Arrays in,
``plotly.graph_objects.Figure`` out, like ``plots``; user text (class names, titles) is
shown as typed through ``plots.plain_text``.
"""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dcnn_core.results.plots import plain_text, png_uri


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
    source = png_uri(_as_rgb(image))
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
