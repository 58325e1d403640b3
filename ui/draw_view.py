"""Predict page, Draw tab: paint a digit-like image and see what the model says.

With the optional ``streamlit-drawable-canvas`` package installed, a free-hand
canvas is offered. Without it (the default: it is not a requirement) a pixel
grid drawn by Plotly is painted by box- or lasso-selecting cells, or clicking one.
"""

from __future__ import annotations

import io

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from PIL import Image, ImageFilter

from dcnn_core.data import images
from ui import predict_view
from ui.predict_view import Run

DRAW_INK = "predict_draw_ink"  # (grid, grid) bool array: the cells painted so far
GRID_KEY = "predict_draw_grid"  # the Plotly grid widget
MAX_GRID = 16


def _canvas_module():
    try:
        from streamlit_drawable_canvas import st_canvas
    except ImportError:
        return None
    return st_canvas


def grid_side(run: Run) -> int:
    return min(MAX_GRID, run.dataset.input_shape[0])


def _ink(side: int) -> np.ndarray:
    ink = st.session_state.get(DRAW_INK)
    if ink is None or ink.shape != (side, side):
        ink = np.zeros((side, side), bool)
        st.session_state[DRAW_INK] = ink
    return ink


def _paint(side: int) -> None:
    """The grid's selection callback: paint (or erase) the selected cells."""
    event = st.session_state.get(GRID_KEY) or {}
    cells = event.get("selection", {}).get("point_indices", [])
    ink = _ink(side)
    erase = st.session_state.get("predict_draw_brush") == "Eraser"
    for cell in cells:
        if 0 <= cell < side * side:
            ink[divmod(int(cell), side)] = not erase


def _clear() -> None:
    st.session_state.pop(DRAW_INK, None)


def _grid_figure(ink: np.ndarray) -> go.Figure:
    side = ink.shape[0]
    rows, cols = np.divmod(np.arange(side * side), side)
    colours = np.where(ink.ravel(), "#ffffff", "#202020")
    fig = go.Figure(
        go.Scatter(x=cols, y=rows, mode="markers", marker=dict(symbol="square", size=300 // side, color=colours,
                   line=dict(width=1, color="#555555")), hoverinfo="none",
                   selected=dict(marker=dict(opacity=1)), unselected=dict(marker=dict(opacity=1)))
    )  # fmt: skip
    fig.update_xaxes(visible=False, range=[-0.6, side - 0.4], fixedrange=True)
    fig.update_yaxes(visible=False, range=[side - 0.4, -0.6], fixedrange=True, scaleanchor="x")
    fig.update_layout(width=340, height=340, margin=dict(l=5, r=5, t=5, b=5), dragmode="lasso", plot_bgcolor="#202020")
    return fig


def drawing_image(ink: np.ndarray, light_on_dark: bool, scale: int = 8) -> Image.Image:
    """Painted cells as a grayscale picture with soft, pen-like edges: light ink on dark, or dark on light."""
    pixels = (ink.astype(np.uint8) * 255) if light_on_dark else (255 - ink.astype(np.uint8) * 255)
    side = ink.shape[0] * scale
    # Blocky cells resized straight to the model's size ring (Lanczos); blurred strokes look like the training images.
    return Image.fromarray(pixels).resize((side, side), Image.Resampling.NEAREST).filter(ImageFilter.GaussianBlur(scale / 2))


def draw_tab(run: Run) -> images.PreparedImage | None:
    """The Draw tab; returns the drawing as the model's input once something is drawn."""
    if run.dataset.channels != 1:
        st.info("Drawing suits grayscale, digit-like data sets (digits, Shapes, MNIST). Try Upload or Webcam here.", icon=":material/info:")
        return None
    canvas = _canvas_module()
    if canvas is not None:
        return _free_hand(run, canvas)
    side = grid_side(run)
    ink = _ink(side)
    left, right = st.columns([2, 3])
    with left:
        st.plotly_chart(_grid_figure(ink), key=GRID_KEY, on_select=lambda: _paint(side), selection_mode=("points", "box", "lasso"),
                        width="content", config={"displayModeBar": False})  # fmt: skip
        a, b = st.columns(2)
        a.radio("Brush", ["Ink", "Eraser"], horizontal=True, key="predict_draw_brush", label_visibility="collapsed")
        b.button("Clear", key="predict_draw_clear", on_click=_clear, icon=":material/ink_eraser:")
        st.caption(f"Lasso or box-select cells to paint them ({side}×{side} grid); click one cell to paint it.")
    if not ink.any():
        right.info("Paint a shape or a digit on the grid.", icon=":material/draw:")
        return None
    prepared = images.prepare_image(drawing_image(ink, run.dataset.light_on_dark), run.dataset.input_shape, run.dataset.light_on_dark)
    with right:
        predict_view.show_prediction(run, prepared, key="draw")
    return prepared


def _free_hand(run: Run, st_canvas) -> images.PreparedImage | None:
    light = run.dataset.light_on_dark
    result = st_canvas(
        stroke_width=18, stroke_color="#ffffff" if light else "#000000", background_color="#000000" if light else "#ffffff",
        height=280, width=280, drawing_mode="freedraw", key="predict_canvas",
    )  # fmt: skip
    pixels = None if result is None else result.image_data
    if pixels is None or np.asarray(pixels)[..., :3].std() == 0:
        st.info("Draw something on the canvas.", icon=":material/draw:")
        return None
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(pixels, np.uint8)).convert("RGB").save(buffer, format="PNG")
    return predict_view.predict_upload(run, buffer.getvalue(), "drawing", key="draw")
