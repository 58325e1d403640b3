"""Start, stop and draw training jobs on the Train page."""

from __future__ import annotations

import math

import streamlit as st

from dcnn_core import plots
from dcnn_core.training import ACTIVE_STATES, DIVERGED, FAILED, FINISHED, STOPPED, Progress, TrainConfig, TrainingJob
from ui import resources, state
from ui.frame import format_seconds

LEARNING_RATES = [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0]


def config_controls() -> TrainConfig:
    """Training settings widgets; returns the config they describe."""
    current = state.train_config()
    a, b, c = st.columns(3)
    optimizer = a.selectbox(
        "Optimizer",
        ["adam", "sgd", "rmsprop", "adamw"],
        index=["adam", "sgd", "rmsprop", "adamw"].index(current.optimizer),
        key="train_optimizer",
    )
    rate_choices = sorted({*LEARNING_RATES, current.learning_rate})
    learning_rate = a.select_slider(
        "Learning rate", rate_choices, value=current.learning_rate, format_func=lambda v: f"{v:g}", key="train_learning_rate"
    )
    batch_size = b.select_slider("Batch size", [8, 16, 32, 64, 128, 256], value=current.batch_size, key="train_batch_size")
    epochs = b.slider("Epochs", 1, 50, current.epochs, key="train_epochs")
    validation = c.slider(
        "Validation split",
        0.0,
        0.5,
        current.validation_split,
        step=0.05,
        key="train_validation_split",
        help="Share of the training images held out to check for over-fitting each epoch.",
    )
    seed = c.number_input("Seed", 0, 99_999, current.seed, key="train_seed")
    config = TrainConfig(optimizer, float(learning_rate), int(batch_size), int(epochs), float(validation), int(seed))
    st.session_state[state.TRAIN_CONFIG] = config
    return config


def start_job(config: TrainConfig) -> None:
    """Create and submit a job for the session's model and data (a button callback)."""
    from dcnn_core.runtime import import_keras

    import_keras()  # on the script thread first: two threads importing at once can break imports
    dataset = resources.current_dataset()
    settings = resources.settings()
    job = TrainingJob(
        state.model_spec_state(), dataset, config, owner=st.session_state[state.OWNER], max_parameters=settings.max_parameters
    )
    resources.job_registry().submit(job)
    st.session_state[state.JOB_IDS].append(job.job_id)
    st.session_state[state.SELECTED_JOB] = job.job_id


def progress_text(progress: Progress) -> str:
    if progress.status == "queued":
        return f"Waiting for a free training slot — place {progress.queue_position or '?'} in the queue."
    epoch = min(progress.epoch + 1, progress.epochs)
    batches = progress.batches_per_epoch or "?"
    parts = [f"Epoch {epoch}/{progress.epochs}", f"batch {progress.batch}/{batches}", f"{format_seconds(progress.elapsed_s)} elapsed"]
    if progress.eta_s is not None:
        parts.append(f"about {format_seconds(progress.eta_s)} left")
    return " · ".join(parts)


def show_outcome(progress: Progress) -> None:
    if progress.status == FINISHED:
        st.success(progress.message, icon=":material/check_circle:")
    elif progress.status == STOPPED:
        st.info(progress.message, icon=":material/stop_circle:")
    elif progress.status == DIVERGED:
        st.error(progress.message, icon=":material/error:")
    elif progress.status == FAILED:
        st.error(f"Training failed: {progress.message}", icon=":material/block:")
        if progress.details:
            with st.expander("Details"):
                st.code(progress.details, language=None)


def draw_job(job: TrainingJob, was_active: bool) -> None:
    """Status, progress, Stop and the live curves of one job (run inside a fragment)."""
    progress = job.snapshot()
    if was_active and not progress.active:
        st.rerun()  # the job just ended: redraw the whole page (buttons, runs table, sidebar)
    with st.container(key="train_status"):
        if progress.active:
            left, right = st.columns([5, 1], vertical_alignment="center")
            left.progress(progress.fraction_done, text=progress_text(progress))
            right.button("Stop", key="train_stop", on_click=job.request_stop, type="primary", use_container_width=True)
            st.caption(progress.message)
        else:
            show_outcome(progress)
    if progress.history["loss"] or progress.batch_loss:
        figure = plots.training_curves(progress.history, progress.batch_steps, progress.batch_loss, progress.batch_accuracy)
        st.plotly_chart(figure, key="train_curves")


def run_rows(jobs: list[TrainingJob]) -> dict[str, list]:
    """One row per run: what was trained, on what, and how well."""
    rows: dict[str, list] = {"Run": [], "Model": [], "Data": [], "Status": [], "Epochs": [], "Best val. accuracy": [], "Time": []}
    for number, job in enumerate(jobs, start=1):
        progress = job.snapshot()
        accuracies = [v for v in progress.history["val_accuracy"] if math.isfinite(v)]
        rows["Run"].append(number)
        rows["Model"].append(job.spec.name)
        rows["Data"].append(job.dataset.title)
        rows["Status"].append(progress.status)
        rows["Epochs"].append(progress.epoch)
        rows["Best val. accuracy"].append(max(accuracies) if accuracies else None)
        rows["Time"].append(format_seconds(progress.elapsed_s))
    return rows


def any_active(jobs: list[TrainingJob]) -> bool:
    return any(job.status in ACTIVE_STATES for job in jobs)
