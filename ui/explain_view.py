"""Predict page, second half: look inside the network, learned features, export and import."""

from __future__ import annotations

import numpy as np
import streamlit as st

from dcnn_core import naming
from dcnn_core.results import explain, explain_plots, export, projection
from dcnn_core.room.rules import Refused
from ui import predict_view, resources
from ui.predict_view import Run
from ui.text import plain

PREDICTED = -1  # the class picker's "whatever the model predicts"
INSIDE_SOURCE = "predict_inside_source"  # widget: the image "Look inside" explains
EXPLAIN_CLASS = "predict_explain_class"  # widget: the class whose evidence is shown
EXPORT_SAMPLES = 16  # test images each export must reproduce


# --- look inside ---------------------------------------------------------------------------------


def draw_look_inside(run: Run, sources: dict[str, np.ndarray]) -> None:
    """Grad-CAM or saliency, feature maps and first-layer filters for one chosen image.

    Args:
        sources: caption → model input (H, W, C uint8) of each image tried on this page.
    """
    results, names = predict_view.analysis(run), run.dataset.class_names
    captions = list(sources)
    _follow_new_image(captions)
    source = st.selectbox("Image to look at", captions, key=INSIDE_SOURCE)  # its value is always set by _follow_new_image
    image = sources[source]
    predicted = int(np.argmax(results.probabilities(image)))
    has_conv = results.has_convolutions()
    a, b = st.columns(2)
    methods = ["Grad-CAM", "Saliency"] if has_conv else ["Saliency"]
    method = a.radio("Method", methods, horizontal=True, key="predict_explain_method")
    choices = [PREDICTED, *range(len(names))]
    label = lambda c: f"the predicted class ({names[predicted]})" if c == PREDICTED else names[c]
    _show_current_prediction(label(PREDICTED))
    picked = b.selectbox("Explain the evidence for", choices, format_func=label, key=EXPLAIN_CLASS)
    class_index = predicted if picked == PREDICTED else int(picked)
    heatmap = results.heatmap(image, class_index, explain.GRAD_CAM if method == "Grad-CAM" else explain.SALIENCY)
    st.plotly_chart(
        explain_plots.heatmap_overlay(image, heatmap.values, f"{method} for '{names[class_index]}'"), key="predict_explain_overlay"
    )
    st.caption(heatmap.note + (" Red marks the regions that raise this class's score most." if heatmap.method == explain.GRAD_CAM else ""))
    if not has_conv:
        st.info("This model has no convolution layers, so there are no feature maps or filters to show.", icon=":material/info:")
        return
    _draw_feature_maps(results.feature_maps(image))
    st.markdown("**First-layer filters** — the patterns the first convolution looks for")
    filters = results.get("filters", lambda: explain_plots.filters_grid(results.first_layer_filters()))
    st.plotly_chart(filters, key="predict_filters")  # the weights do not change between reruns: the 32-tile figure is built once


def _follow_new_image(captions: list[str]) -> None:
    """Point "Image to look at" at an image that was just uploaded, photographed, drawn or picked.

    The widget gets its value only from here (no ``index``), so Streamlit never sees both a default and a set value.
    """
    seen = st.session_state[predict_view.SEEN_SOURCES]
    new = [caption for caption in captions if caption not in seen]
    if new and seen:
        st.session_state[INSIDE_SOURCE] = new[-1]
    elif st.session_state.get(INSIDE_SOURCE) not in captions:
        st.session_state[INSIDE_SOURCE] = captions[-1]
    st.session_state[predict_view.SEEN_SOURCES] = captions


def _show_current_prediction(predicted_label: str) -> None:
    """Keep "the predicted class (…)" naming this image's prediction.

    The option's text changes with the image while its value does not; the browser keeps showing the
    text it was given first unless the value is set again, which sends it the new text.
    """
    if st.session_state.get(EXPLAIN_CLASS, PREDICTED) == PREDICTED and st.session_state[predict_view.EXPLAINED_LABEL] != predicted_label:
        st.session_state[EXPLAIN_CLASS] = PREDICTED
    st.session_state[predict_view.EXPLAINED_LABEL] = predicted_label


def _draw_feature_maps(maps: dict[str, np.ndarray]) -> None:
    names, most = list(maps), 8  # a pretrained backbone has dozens of convolutions: offer a handful, evenly spread
    if len(names) > most:
        names = [names[round(i * (len(names) - 1) / (most - 1))] for i in range(most)]  # always the first and the last
    layer = st.selectbox("Feature maps of layer", names, key="predict_feature_layer", format_func=lambda name: f"{name} {maps[name].shape}")
    st.plotly_chart(explain_plots.feature_map_grid(maps[layer], max_channels=16), key="predict_feature_maps")
    st.caption(f"The first 16 of {maps[layer].shape[-1]} channels: bright where the channel's pattern was found.")


# --- learned features ----------------------------------------------------------------------------


def draw_learned_features(run: Run) -> None:
    """PCA of the last hidden features (at once), t-SNE on request."""
    results = predict_view.analysis(run)
    problem = results.features_problem()
    if problem:
        st.info(problem, icon=":material/info:")
        return
    with st.spinner("Projecting the test images…"):
        pca = results.projection(projection.PCA)
    left, right = st.columns(2)
    _draw_projection(left, pca, run, "predict_pca")
    with right:
        if results.has(projection.TSNE):
            _draw_projection(right, results.projection(projection.TSNE), run, "predict_tsne_chart")
        else:
            st.caption(f"t-SNE keeps neighbours together; it takes a while, so it runs on up to {projection.TSNE_LIMIT:,} images.")
            st.button("Compute t-SNE", key="predict_tsne", icon=":material/scatter_plot:", on_click=_compute_tsne, args=(run,))


def _still_training(run: Run) -> bool:
    """A run continued (e.g. in another tab) since this page was drawn: its model is changing."""
    return not run.ended


def _compute_tsne(run: Run) -> None:
    """The t-SNE button's callback (a callback, so the click survives any rerun before the button)."""
    if _still_training(run):
        return
    predict_view.analysis(run).projection(projection.TSNE)


def _draw_projection(column, result: projection.Projection, run: Run, key: str) -> None:
    data = run.dataset
    title = f"{result.method} of the last hidden layer"
    figure = explain_plots.projection_scatter(result.points, data.y_test[result.indices], data.class_names, result.indices, title)
    column.plotly_chart(figure, key=key)
    column.caption(f"{result.note}. Each dot is one test image, coloured by its true class; hover for its number.")


# --- export and import ---------------------------------------------------------------------------


def _verified(run: Run, kind: str) -> None:
    """A Prepare button's callback: the verified export of ``kind`` ('keras' or 'tflite'), kept as bytes or an error message."""
    if _still_training(run):
        return
    samples = run.dataset.x_test[:EXPORT_SAMPLES]
    exporter = export.export_keras if kind == "keras" else export.export_tflite

    def verified() -> bytes | str:
        try:
            return exporter(run.model, samples)
        except export.ExportError as error:
            return str(error)

    predict_view.analysis(run).get(kind, verified)


def _export_button(run: Run, kind: str, label: str, file_name: str, mime: str) -> None:
    results = predict_view.analysis(run)
    if not results.has(kind):
        st.button(f"Prepare {label}", key=f"predict_export_{kind}", icon=":material/verified:", on_click=_verified, args=(run, kind),
                  help="Exports the model, loads the file back and checks it predicts the same; then offers the download.")  # fmt: skip
        return
    result = results.get(kind, lambda: None)
    if isinstance(result, str):
        st.error(result, icon=":material/error:")
        return
    st.download_button(f"Download {label}", result, file_name=file_name, mime=mime, key=f"predict_download_{kind}",
                       on_click="ignore", icon=":material/download:", type="primary")  # fmt: skip
    checked = f"{len(result) / 1e6:.2f} MB · reloaded and checked: same predictions on {EXPORT_SAMPLES} test images"
    if kind == "tflite":  # a run trained in mixed bfloat16 computes in float32 there: its probabilities differ in the 3rd digit
        checked += ", computing in float32"
    st.caption(checked + ".")


def _file_stem(run: Run) -> str:
    return naming.slug(run.display_name)


def draw_export(run: Run) -> None:
    """Download the model (.keras, .tflite — each only after its check passed) and the history."""
    stem = _file_stem(run)
    a, b, c = st.columns(3)
    with a:
        _export_button(run, "keras", ".keras", f"{stem}.keras", "application/zip")
    with b:
        _export_button(run, "tflite", ".tflite", f"{stem}.tflite", "application/octet-stream")
    with c:
        history = run.training_history()
        if history is None:
            st.caption("An imported model has no training history.")
        else:
            st.download_button("Download history (CSV)", export.history_csv(history), file_name=f"{stem}_history.csv",
                               mime="text/csv", key="predict_download_history", on_click="ignore", icon=":material/table:")  # fmt: skip


def draw_import() -> None:
    """Upload a .keras model made for the current data set and use it like a trained run."""
    dataset = resources.current_dataset()
    height, width, channels = dataset.input_shape
    st.caption(
        f"It must take {height}×{width}×{channels} images and output {dataset.num_classes} class probabilities "
        f"(the current data set, {plain(dataset.title)}). Standard Keras layers only: Lambda layers and custom code are refused."
    )
    upload = st.file_uploader("A Keras 3 model file (.keras)", type=["keras"], key="predict_import")
    if upload is None:
        return
    imported = st.session_state[predict_view.IMPORTED_RUNS]
    if any(run.file_id == upload.file_id for run in imported.values()):
        st.success(f"'{plain(upload.name)}' is imported: pick it under **Trained run** above.", icon=":material/check:")
        return
    rules = resources.engine().rules
    try:
        rules.check_imported_models(len(imported))
    except Refused as refusal:
        st.error(plain(str(refusal)), icon=":material/block:")
        return
    try:
        with st.spinner("Checking the model…"):
            model = export.import_keras_model(
                upload.getvalue(), upload.name, dataset.input_shape, dataset.num_classes, max_parameters=rules.max_parameters
            )
    except export.ImportRefused as error:
        st.error(plain(str(error)), icon=":material/block:")
        return
    run = export.imported_run(model, upload.name, dataset, file_id=upload.file_id)
    imported[run.job_id] = run
    st.session_state[predict_view.PENDING_RUN] = run.job_id
    st.rerun()
