"""Pieces of the Predict page: choosing a run, evaluating it, where it errs, trying images."""

from __future__ import annotations

import functools

import numpy as np
import streamlit as st

from dcnn_core.data import images
from dcnn_core.results import evaluation, plots
from dcnn_core.results.analysis import RunAnalysis, TrainedModel
from dcnn_core.training.progress import Status
from ui import resources, state
from ui.text import plain

IMPORTED_RUNS = "predict_imported"  # run id → ImportedRun: .keras models this session imported
PENDING_RUN = "predict_pending_run"  # a run id to select on the next run (set after an import)
SEEN_SOURCES = "predict_seen_sources"  # captions of the images "Look inside" offered last time
EXPLAINED_LABEL = "predict_explained_label"  # the "predicted class (…)" text the class picker showed last time
GALLERY_SIZE = 12
DRAFT_SIDE = 512  # a big JPEG is decoded at 1/2–1/8 scale, never below this (the page shows it at 512 px)

Run = TrainedModel  # a training run of this user, or a .keras model this session imported


def init_predict_state() -> None:
    """Create this page's session keys, once."""
    st.session_state.setdefault(IMPORTED_RUNS, {})
    st.session_state.setdefault(PENDING_RUN, None)
    st.session_state.setdefault(SEEN_SOURCES, [])
    st.session_state.setdefault(EXPLAINED_LABEL, None)


def usable_trained() -> list[TrainedModel]:
    """Ended runs with a model worth predicting with (never one still training)."""
    found = (resources.trained(run.run_id) for run in resources.session_runs() if run.ended and run.status != Status.DIVERGED)
    return [trained for trained in found if trained is not None]


def classes_known(run: TrainedModel) -> str:
    """Which classes the model can answer: anything else it is shown still gets one of them."""
    names = [plain(name) for name in run.dataset.class_names]
    shown = ", ".join(names[:12]) + (f" and {len(names) - 12} more" if len(names) > 12 else "")
    return f"This model knows {len(names)} classes: {shown}. Anything else you show it still gets one of these names."


def nothing_to_predict_with() -> str:
    """What to say when no run can predict yet: that one is training, and when it opens here; or how to get one."""
    from ui.frame import format_seconds

    training = next((run for run in resources.session_runs() if run.active), None)
    progress = resources.progress(training.run_id) if training is not None else None
    if progress is None:
        return "Train a model first (Train page). A run you stopped counts too: its weights so far are kept."
    if progress.status == Status.QUEUED:
        where = f"waiting for its first turn (place {progress.queue_position or '?'} in line)"
    else:
        where = f"at epoch {min(progress.epoch + 1, progress.epochs)} of {progress.epochs}"
    when = f", in about {format_seconds(progress.eta_s)}" if progress.eta_s is not None else ""
    return (f"Your run {plain(training.name)} on {plain(training.dataset_title)} is training, {where}. It opens here when it ends"
            f"{when}; or press Stop on the Train page to use its weights so far.")  # fmt: skip


def usable_runs() -> list[Run]:
    """Ended training runs, then the models this session imported."""
    return [*usable_trained(), *st.session_state[IMPORTED_RUNS].values()]


def analysis(run: TrainedModel) -> RunAnalysis:
    """This run's heavy results (evaluation, projections, exports), computed once per version and shared by every tab."""
    return resources.analyses().of(run)


def run_label(run: TrainedModel, number: int) -> str:
    if run.training_history() is None:
        return f"Imported · {run.display_name} on {run.dataset.title}"
    return f"Run {number} · {run.display_name} on {run.dataset.title} ({run.status})"


def pick_run(runs: list[Run]) -> Run:
    """The run to look at: the one picked before, else the one just imported or trained."""
    by_id = {run.job_id: run for run in runs}
    ids = list(by_id)
    pending = st.session_state[PENDING_RUN]
    if pending in by_id:
        st.session_state["predict_run"] = pending
        st.session_state[PENDING_RUN] = None
    selected = st.session_state[state.SELECTED_JOB]
    index = ids.index(selected) if selected in ids else len(ids) - 1
    all_ids = st.session_state[state.JOB_IDS]
    label = lambda run_id: run_label(by_id[run_id], all_ids.index(run_id) + 1 if run_id in all_ids else 0)
    chosen = st.selectbox("Trained run", ids, index=index, key="predict_run", format_func=label)
    return by_id[chosen]


def test_evaluation(run: TrainedModel) -> evaluation.Evaluation:
    """The run's evaluation on the test split, computed once per version of its model."""
    result = analysis(run)
    if not result.has("evaluation"):
        with st.spinner("Evaluating on the test images…"):
            return result.evaluation()
    return result.evaluation()


def show_prediction(run: Run, prepared: images.PreparedImage, key: str) -> None:
    """The top-k probabilities first (right under the upload box, on the first screen), then the input pipeline step by step."""
    probabilities = evaluation.predict_probabilities(run.model, prepared.model_input[None])[0]
    top = evaluation.top_k(probabilities, run.dataset.class_names, k=min(5, run.dataset.num_classes))
    st.markdown(f"Prediction: **{plain(top[0][0])}** ({top[0][1]:.1%})")
    st.plotly_chart(plots.top_k_bar(top), key=f"predict_topk_{key}")
    steps = st.columns(len(prepared.steps) + 1)
    steps[0].image(display_pixels(prepared.original), caption="Your image", width="stretch")
    for column, (caption, pixels) in zip(steps[1:], prepared.steps, strict=True):
        column.image(display_pixels(pixels), caption=caption, width="stretch")


def display_pixels(pixels: np.ndarray) -> np.ndarray:
    """Small images scaled up with square pixels, so an 8×8 input is visible."""
    pixels = np.asarray(pixels)
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    scale = max(1, 160 // max(pixels.shape[:2]))
    return np.kron(pixels, np.ones((scale, scale) + (1,) * (pixels.ndim - 2), dtype=np.uint8)) if scale > 1 else pixels


def predict_upload(run: Run, data: bytes, name: str, key: str) -> images.PreparedImage | None:
    """Check, prepare and predict an uploaded photo; returns the model's input, or None if refused."""
    try:
        image = images.open_image(data, name, resources.settings().max_upload_megapixels, draft_side=DRAFT_SIDE)
        prepared = images.prepare_image(image, run.dataset.input_shape, run.dataset.light_on_dark)
    except images.ImageRejected as error:
        st.error(plain(str(error)), icon=":material/block:")
        return None
    show_prediction(run, prepared, key)
    return prepared


def draw_test_metrics(run: Run) -> None:
    """Accuracy, loss, confusion matrix and the per-class report on the test split."""
    data = run.dataset
    result = test_evaluation(run)
    a, b, c = st.columns(3)
    a.metric("Test accuracy", f"{result.accuracy:.4f}")
    b.metric("Test loss", f"{result.loss:.4f}")
    c.metric("Test images", f"{len(data.y_test):,}")
    left, right = st.columns([3, 2])
    left.plotly_chart(
        plots.clickable_confusion_heatmap(result.confusion, data.class_names), key="predict_confusion",
        on_select=functools.partial(_pick_cell, data.num_classes), selection_mode="points",
    )  # fmt: skip
    left.caption("Click a cell to see its images below.")
    with right:
        st.markdown("**Per class** (scikit-learn)")
        names = list(data.class_names)
        st.dataframe(
            {
                "class": names,
                "precision": [result.report[n]["precision"] for n in names],
                "recall": [result.report[n]["recall"] for n in names],
                "F1": [result.report[n]["f1-score"] for n in names],
                "images": [int(result.report[n]["support"]) for n in names],
            },
            hide_index=True, key="predict_report",
            column_config={k: st.column_config.NumberColumn(format="%.3f") for k in ("precision", "recall", "F1")},
        )  # fmt: skip


def _pick_cell(classes: int) -> None:
    """The heatmap's click callback: show the clicked cell's images (sets the two class pickers)."""
    points = (st.session_state.get("predict_confusion") or {}).get("selection", {}).get("points", [])
    index = points[0].get("point_index") if points else None
    if isinstance(index, int) and 0 <= index < classes * classes:
        st.session_state["predict_cell_true"], st.session_state["predict_cell_predicted"] = divmod(index, classes)


def _worst_cell(confusion: np.ndarray) -> tuple[int, int]:
    """The off-diagonal cell with the most images (the diagonal's first cell when there is none)."""
    off = np.array(confusion, copy=True)
    np.fill_diagonal(off, -1)
    true_class, predicted_class = np.unravel_index(int(off.argmax()), off.shape)
    return (int(true_class), int(predicted_class)) if off.max() > 0 else (0, 0)


def _gallery(run: Run, indices: np.ndarray, result: evaluation.Evaluation, key: str) -> None:
    names, data = run.dataset.class_names, run.dataset
    shown = indices[:GALLERY_SIZE]
    titles = [
        f"#{i} {names[data.y_test[i]]}→{names[result.predicted[i]]} {result.probabilities[i, result.predicted[i]]:.0%}" for i in shown
    ]
    st.plotly_chart(plots.image_grid(data.x_test[shown], titles, columns=6, tile_px=120), key=key)


def draw_error_analysis(run: Run) -> None:
    """One confusion-matrix cell's images, and the most confident mistakes overall."""
    data, result = run.dataset, test_evaluation(run)
    names = list(range(data.num_classes))
    worst = _worst_cell(result.confusion)
    a, b = st.columns(2)
    true_class = a.selectbox("True class", names, index=worst[0], format_func=lambda c: data.class_names[c], key="predict_cell_true")
    predicted_class = b.selectbox(
        "Predicted as", names, index=worst[1], format_func=lambda c: data.class_names[c], key="predict_cell_predicted"
    )
    cell = evaluation.confusion_cell(result, data.y_test, true_class, predicted_class)
    what = "correct" if true_class == predicted_class else "mistakes"
    true_name, predicted_name = plain(data.class_names[true_class]), plain(data.class_names[predicted_class])
    st.caption(
        f"{len(cell):,} test images of **{true_name}** predicted as **{predicted_name}** "
        f"({what}), the most confident first{f'; the first {GALLERY_SIZE} shown' if len(cell) > GALLERY_SIZE else ''}."
    )
    if len(cell):
        _gallery(run, cell, result, key="predict_cell_gallery")
    st.markdown("**The most confident mistakes** — the model was sure, and wrong")
    errors = evaluation.most_confident_errors(result, data.y_test, GALLERY_SIZE)
    if len(errors):
        _gallery(run, errors, result, key="predict_error_gallery")
    else:
        st.success("No test image is misclassified.", icon=":material/check:")


def draw_test_image(run: Run) -> images.PreparedImage:
    """Predict one image of the test split, chosen by number; returns it as the model's input."""
    data = run.dataset
    index = int(st.number_input("Test image number", 0, len(data.y_test) - 1, 0, key="predict_test_index"))
    pixels = data.x_test[index]
    st.caption(f"True class: **{plain(data.class_names[int(data.y_test[index])])}**")
    shown = pixels[..., 0] if pixels.shape[-1] == 1 else pixels
    prepared = images.PreparedImage(shown, [], pixels, False)
    show_prediction(run, prepared, key="test")
    return prepared
