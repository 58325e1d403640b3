"""Data: choose an image set and explore it."""

import streamlit as st

from dcnn_core import datasets, plots
from ui import resources, state

state.ensure_started_from_app()

st.title("Data")

keys = list(datasets.REGISTRY)
choice = state.dataset_choice()


def _label(key: str) -> str:
    option = datasets.REGISTRY[key]
    return option.title + (" — downloads once" if option.needs_download else " — offline")


if st.session_state.get("data_dataset") not in keys or st.session_state.pop("data_sync_choice", False):
    st.session_state["data_dataset"] = choice["key"]
picked = st.selectbox("Data set", keys, format_func=_label, key="data_dataset")
st.caption(datasets.REGISTRY[picked].description)

options = {}
if picked == "shapes":
    with st.expander("Shapes options", expanded=False):
        left, middle, right = st.columns(3)
        options = {
            "image_size": left.select_slider("Image size (pixels)", [16, 28, 32, 48, 64], value=28, key="data_shapes_size"),
            "count_per_class": middle.slider("Images per class", 100, 2000, 600, step=100, key="data_shapes_count"),
            "colour": right.toggle("Colour", value=False, key="data_shapes_colour"),
            "seed": right.number_input("Seed", 0, 9999, 0, key="data_shapes_seed"),
        }
new_choice = {"key": picked, "options": options}
if new_choice != choice:
    st.session_state[state.DATASET_CHOICE] = new_choice
    st.session_state[state.DATASET_NOTICE] = None

with st.spinner("Loading images…"):
    dataset = resources.current_dataset()
if state.dataset_choice()["key"] != picked:  # the download failed and Shapes stands in
    st.session_state["data_sync_choice"] = True
    st.rerun()
notice = st.session_state[state.DATASET_NOTICE]
if notice:
    st.warning(notice, icon=":material/wifi_off:")

with st.container(border=True):
    st.markdown(f"**{dataset.title}**")
    st.markdown("\n".join(f"- **{name}:** {value}" for name, value in dataset.card().items()))

st.subheader("Samples")
controls = st.columns([1, 1, 2, 1], vertical_alignment="bottom")
rows = controls[0].slider("Rows", 1, 6, 2, key="data_grid_rows")
columns = controls[1].slider("Columns", 2, 10, 6, key="data_grid_columns")
class_options = [None, *range(dataset.num_classes)]
class_filter = controls[2].selectbox(
    "Class", class_options, format_func=lambda c: "All classes" if c is None else dataset.class_names[c], key="data_grid_class"
)
if controls[3].button("Shuffle", key="data_grid_shuffle", use_container_width=True):
    st.session_state["data_grid_seed"] = st.session_state.get("data_grid_seed", 0) + 1
indices = datasets.sample_indices(dataset.y_train, rows * columns, class_filter, st.session_state.get("data_grid_seed", 0))
titles = [dataset.class_names[label] for label in dataset.y_train[indices]]
st.plotly_chart(plots.image_grid(dataset.x_train[indices], titles, columns), key="data_sample_grid", config={"displayModeBar": False})

left, right = st.columns(2)
with left:
    counts = datasets.class_counts(dataset.y_train, dataset.num_classes)
    st.plotly_chart(plots.class_counts_bar(counts, dataset.class_names, "Training images per class"), key="data_class_counts")
with right:
    st.plotly_chart(plots.pixel_histogram(dataset.x_train), key="data_pixel_histogram")

st.subheader("Mean image of each class")
st.caption("The average of every training image of a class: what a dense layer 'sees' as typical.")
st.plotly_chart(
    plots.mean_images_grid(datasets.mean_images(dataset), dataset.class_names), key="data_mean_images", config={"displayModeBar": False}
)
