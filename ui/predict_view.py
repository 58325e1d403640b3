"""Pieces of the Predict page: choosing a run, evaluating it, trying images."""

from __future__ import annotations

import numpy as np
import streamlit as st

from dcnn_core import evaluation, images, plots
from dcnn_core.training import DIVERGED, TrainingJob
from ui import resources, state


def usable_jobs() -> list[TrainingJob]:
    """Ended runs with a model worth predicting with (never one still training)."""
    return [job for job in resources.session_jobs() if job.ended and job.model is not None and job.status != DIVERGED]


def run_label(job: TrainingJob, number: int) -> str:
    return f"Run {number} · {job.spec.name} on {job.dataset.title} ({job.status})"


def pick_job(jobs: list[TrainingJob]) -> TrainingJob:
    selected = st.session_state[state.SELECTED_JOB]
    ids = [job.job_id for job in jobs]
    index = ids.index(selected) if selected in ids else len(ids) - 1
    all_ids = st.session_state[state.JOB_IDS]
    chosen = st.selectbox(
        "Trained run", ids, index=index, key="predict_run",
        format_func=lambda job_id: run_label(resources.job_registry().get(job_id), all_ids.index(job_id) + 1),
    )  # fmt: skip
    return resources.job_registry().get(chosen)


def test_evaluation(job: TrainingJob) -> evaluation.Evaluation:
    """Evaluate once per run and keep the result in this session."""
    cache = st.session_state[state.EVALUATIONS]
    if job.job_id not in cache:
        with st.spinner("Evaluating on the test images…"):
            data = job.dataset
            cache[job.job_id] = evaluation.evaluate(job.model, data.x_test, data.y_test, data.class_names)
    return cache[job.job_id]


def show_prediction(job: TrainingJob, prepared: images.PreparedImage, key: str) -> None:
    """The input pipeline, step by step, and the top-k probabilities."""
    steps = st.columns(len(prepared.steps) + 1)
    steps[0].image(_display(prepared.original), caption="Your image", use_container_width=True)
    for column, (caption, pixels) in zip(steps[1:], prepared.steps, strict=True):
        column.image(_display(pixels), caption=caption, use_container_width=True)
    probabilities = evaluation.predict_probabilities(job.model, prepared.model_input[None])[0]
    top = evaluation.top_k(probabilities, job.dataset.class_names, k=min(5, job.dataset.num_classes))
    st.markdown(f"Prediction: **{top[0][0]}** ({top[0][1]:.1%})")
    st.plotly_chart(plots.top_k_bar(top), key=f"predict_topk_{key}")


def _display(pixels: np.ndarray) -> np.ndarray:
    """Small images scaled up with square pixels, so an 8×8 input is visible."""
    pixels = np.asarray(pixels)
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    scale = max(1, 160 // max(pixels.shape[:2]))
    return np.kron(pixels, np.ones((scale, scale) + (1,) * (pixels.ndim - 2), dtype=np.uint8)) if scale > 1 else pixels


def predict_upload(job: TrainingJob, data: bytes, name: str, key: str) -> None:
    try:
        image = images.open_image(data, name, resources.settings().max_upload_megapixels)
        prepared = images.prepare_image(image, job.dataset.input_shape, job.dataset.light_on_dark)
    except images.ImageRejected as error:
        st.error(str(error), icon=":material/block:")
        return
    show_prediction(job, prepared, key)


def draw_test_metrics(job: TrainingJob) -> None:
    """Accuracy, loss, confusion matrix and the per-class report on the test split."""
    data = job.dataset
    result = test_evaluation(job)
    a, b, c = st.columns(3)
    a.metric("Test accuracy", f"{result.accuracy:.4f}")
    b.metric("Test loss", f"{result.loss:.4f}")
    c.metric("Test images", f"{len(data.y_test):,}")
    left, right = st.columns([3, 2])
    left.plotly_chart(plots.confusion_heatmap(result.confusion, data.class_names), key="predict_confusion")
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


def draw_test_image(job: TrainingJob) -> None:
    """Predict one image of the test split, chosen by number."""
    data = job.dataset
    index = int(st.number_input("Test image number", 0, len(data.y_test) - 1, 0, key="predict_test_index"))
    pixels = data.x_test[index]
    st.caption(f"True class: **{data.class_names[int(data.y_test[index])]}**")
    shown = pixels[..., 0] if pixels.shape[-1] == 1 else pixels
    show_prediction(job, images.PreparedImage(shown, [], pixels, False), key="test")
