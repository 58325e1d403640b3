"""Data: choose an image set — built in, generated, or your own — and explore it."""

import streamlit as st

from dcnn_core.data import datasets
from dcnn_core.data.datasets import CUSTOM_KEY, DatasetChoice
from ui import custom_data_view, data_view, resources, state

state.ensure_started_from_app()

st.title("Data")

choices = [*datasets.REGISTRY, CUSTOM_KEY]
choice = state.dataset_choice()


def _label(key: str) -> str:
    if key == CUSTOM_KEY:
        return "Your images — a zip of class folders, uploads or the webcam"
    option = datasets.REGISTRY[key]
    return option.title + (" — downloads once" if option.needs_download else " — offline")


# After a failed download the selector must show the stand-in — unless the user has picked another set since.
failed = st.session_state.pop("data_failed_choice", None)
if st.session_state.get("data_dataset") not in choices or st.session_state.get("data_dataset") == failed:
    st.session_state["data_dataset"] = choice.key
picked = st.selectbox("Data set", choices, format_func=_label, key="data_dataset")

if picked == CUSTOM_KEY:
    custom_data_view.draw_custom_data_section()
    if state.dataset_choice().is_custom:
        st.divider()
        data_view.explore(resources.current_dataset())
    else:
        st.info("Import a set above; it is then used on every page like a built-in one.")
else:
    st.caption(datasets.REGISTRY[picked].description)
    options = {}
    if picked == "shapes":
        now = {**state.FALLBACK_DATASET.options, **(choice.options if choice.key == "shapes" else {})}
        most = max(2000, now["count_per_class"])  # the server's stand-in set may be larger than the slider's usual range
        with st.expander("Shapes options", expanded=False):
            left, middle, right = st.columns(3)
            options = {
                "image_size": left.select_slider(
                    "Image size (pixels)", [16, 28, 32, 48, 64], value=now["image_size"], key="data_shapes_size"
                ),
                "count_per_class": middle.slider("Images per class", 100, most, now["count_per_class"], step=100, key="data_shapes_count"),
                "colour": right.toggle("Colour", value=now["colour"], key="data_shapes_colour"),
                "seed": right.number_input("Seed", 0, 9999, now["seed"], key="data_shapes_seed"),
                "clutter": middle.toggle(
                    "Clutter",
                    value=now.get("clutter", False),
                    key="data_shapes_clutter",
                    help="The harder set: distractor strokes behind each shape, and more sizes.",
                ),  # fmt: skip
            }
    wanted = DatasetChoice(picked, options)
    if (wanted.key, wanted.options) != (choice.key, choice.options):
        state.use_dataset(wanted)
    with st.spinner("Loading images…"):
        resolved = resources.resolve_dataset(state.dataset_choice())
    if resolved.notice:  # the download failed: Shapes stands in, and the selector shows it
        state.use_dataset(resolved.choice, resolved.notice)
        st.session_state["data_failed_choice"] = picked
        st.rerun()
    notice = st.session_state[state.DATASET_NOTICE]
    if notice:
        st.warning(notice, icon=":material/wifi_off:")
    data_view.explore(resolved.dataset)
