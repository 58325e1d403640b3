"""The Data page's exploration of one data set: card, samples, balance, pixels, mean images."""

from __future__ import annotations

import streamlit as st

from dcnn_core.data import datasets
from dcnn_core.data.datasets import Dataset
from dcnn_core.results import plots
from ui.text import plain


def _card(dataset: Dataset) -> None:
    with st.container(border=True):
        st.markdown(f"**{plain(dataset.title)}**")
        for name, value in dataset.card().items():
            st.text(f"{name}: {value}")  # plain text: class names may come from a user's folders


def _samples(dataset: Dataset) -> None:
    st.subheader("Samples")
    controls = st.columns([1, 1, 2, 1], vertical_alignment="bottom")
    rows = controls[0].slider("Rows", 1, 6, 2, key="data_grid_rows")
    columns = controls[1].slider("Columns", 2, 10, 6, key="data_grid_columns")
    class_options = [None, *range(dataset.num_classes)]
    if st.session_state.get("data_grid_class") not in class_options:
        st.session_state["data_grid_class"] = None  # the data set changed under the filter
    class_filter = controls[2].selectbox(
        "Class", class_options, format_func=lambda c: "All classes" if c is None else dataset.class_names[c], key="data_grid_class"
    )
    if controls[3].button("Shuffle", key="data_grid_shuffle", use_container_width=True, icon=":material/shuffle:"):
        st.session_state["data_grid_seed"] = st.session_state.get("data_grid_seed", 0) + 1
    indices = datasets.sample_indices(dataset.y_train, rows * columns, class_filter, st.session_state.get("data_grid_seed", 0))
    titles = [dataset.class_names[label] for label in dataset.y_train[indices]]
    st.plotly_chart(plots.image_grid(dataset.x_train[indices], titles, columns), key="data_sample_grid", config={"displayModeBar": False})


def explore(dataset: Dataset) -> None:
    """Everything the Data page shows about ``dataset``."""
    _card(dataset)
    _samples(dataset)
    left, right = st.columns(2)
    with left:
        counts = datasets.class_counts(dataset.y_train, dataset.num_classes)
        st.plotly_chart(plots.class_counts_bar(counts, dataset.class_names, "Training images per class"), key="data_class_counts")
    with right:
        st.plotly_chart(plots.pixel_histogram(dataset.x_train), key="data_pixel_histogram")
    st.subheader("Mean image of each class")
    st.caption("The average of every training image of a class: what a dense layer 'sees' as typical.")
    means = datasets.mean_images(dataset)
    st.plotly_chart(plots.mean_images_grid(means, dataset.class_names), key="data_mean_images", config={"displayModeBar": False})
