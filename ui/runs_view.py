"""Compare runs: a sortable table of settings and results, overlaid curves, delete."""

from __future__ import annotations

import streamlit as st

from dcnn_core import plots
from dcnn_core.training import TrainingJob
from ui import resources, state
from ui.frame import format_seconds


def run_label(job: TrainingJob, number: int) -> str:
    return f"{number} · {job.spec.name} · {job.dataset.title}"


def run_rows(jobs: list[TrainingJob]) -> dict[str, list]:
    """One row per run: what was trained, on what, how, and how well."""
    columns = ["Run", "Model", "Data", "Status", "Epochs", "Best val. accuracy", "Test accuracy", "Parameters",
               "Optimizer", "Learning rate", "Batch", "Augmented", "Strategy", "Time (s)"]  # fmt: skip
    rows: dict[str, list] = {name: [] for name in columns}
    for number, job in enumerate(jobs, start=1):
        progress = job.snapshot()
        config = job.config
        parameters = job.model.count_params() if job.model is not None else None
        values = [number, job.spec.name, job.dataset.title, progress.status, progress.epoch, progress.best_val_accuracy,
                  progress.test_accuracy, parameters, config.optimizer, config.learning_rate, config.batch_size,
                  config.augmentation.active, job.strategy, round(progress.elapsed_s, 1)]  # fmt: skip
        for name, value in zip(columns, values, strict=True):
            rows[name].append(value)
    return rows


def _select(job_id: str) -> None:
    state.select_job(job_id)


def draw_runs(jobs: list[TrainingJob]) -> None:
    st.subheader("Your runs")
    st.caption("Saved on the server: a reload or a new tab with this page's address finds them again. Click a column to sort.")
    fraction = st.column_config.NumberColumn(format="%.3f")
    columns = {"Best val. accuracy": fraction, "Test accuracy": fraction, "Learning rate": st.column_config.NumberColumn(format="%g")}
    st.dataframe(run_rows(jobs), hide_index=True, key="train_runs", column_config=columns)
    labels = {job.job_id: run_label(job, number) for number, job in enumerate(jobs, start=1)}
    show, delete = st.columns([3, 1], vertical_alignment="bottom")
    chosen = show.selectbox("Run", list(labels), format_func=labels.get, key="train_run_pick",
                            index=len(labels) - 1)  # fmt: skip
    show.button("Show this run above", key="train_show_run", on_click=_select, args=(chosen,))
    job = resources.job_registry().get(chosen)
    if delete.button("Delete this run", key="train_delete_run", icon=":material/delete:", disabled=job is None or not job.ended):
        if job is not None and resources.delete_run(job):
            st.toast(f"Deleted run '{labels[chosen]}'.")
            st.rerun()
    trained = [job.job_id for job in jobs if job.snapshot().epoch > 0]
    compare = st.multiselect("Compare runs", trained, default=trained[-2:], format_func=labels.get, key="train_compare",
                             help="Runs with at least one finished epoch.")  # fmt: skip
    histories = {labels[job.job_id]: job.snapshot().history for job in jobs if job.job_id in compare}
    if histories:
        left, right = st.columns(2)
        left.markdown("Validation accuracy")
        left.plotly_chart(plots.compare_runs(histories, "val_accuracy"), key="train_compare_accuracy")
        right.markdown("Validation loss")
        right.plotly_chart(plots.compare_runs(histories, "val_loss"), key="train_compare_loss")
    st.caption(f"Total training time of these runs: {format_seconds(sum(job.snapshot().elapsed_s for job in jobs))}.")
