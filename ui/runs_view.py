"""Compare runs: a sortable table of settings and results, overlaid curves, delete."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from dcnn_core.naming import counted
from dcnn_core.results import training_plots
from dcnn_core.training import runs
from dcnn_core.training.engine import RunInfo
from ui import resources, state
from ui.frame import format_seconds
from ui.text import plain, plain_text

COMPARE_OFFERED = "train_compare_offered"  # the runs the comparison offered when last drawn
PICK_OFFERED = "train_pick_offered"  # the runs the run picker offered when last drawn


def run_label(run: RunInfo, number: int) -> str:
    return f"{number} · {run.name} · {run.dataset_title}"


def run_rows(found: list[RunInfo]) -> dict[str, list]:
    """One row per run: what was trained, on what, how, and how well."""
    columns = ["Run", "Model", "Data", "Status", "Epochs", "Best val. accuracy", "Test accuracy", "Parameters",
               "Optimizer", "Learning rate", "Batch", "Augmented", "Strategy", "Time (s)"]  # fmt: skip
    rows: dict[str, list] = {name: [] for name in columns}
    for number, run in enumerate(found, start=1):
        config = run.config
        values = [number, run.name, run.dataset_title, run.status, run.epoch, run.best_val_accuracy,
                  run.test_accuracy, run.parameters, config.optimizer, config.learning_rate, config.batch_size,
                  config.augmentation.active, run.strategy, round(run.elapsed_s, 1)]  # fmt: skip
        for name, value in zip(columns, values, strict=True):
            rows[name].append(value)
    return rows


def _join_new_runs(trained: list[str]) -> None:
    """A run that has trained since the comparison was last drawn joins it (the dense baseline beside the CNN, unasked)."""
    offered = st.session_state.get(COMPARE_OFFERED) or []
    chosen = st.session_state.get("train_compare")
    if chosen is None:  # first drawn (or the page was left): the two latest
        st.session_state["train_compare"] = trained[-2:]
    else:
        new = [run_id for run_id in trained if run_id not in offered]
        st.session_state["train_compare"] = [run_id for run_id in chosen if run_id in trained] + new
    st.session_state[COMPARE_OFFERED] = list(trained)


def _pick_newest_when_new(run_ids: list[str]) -> None:
    """The run picker shows the newest run when first drawn and whenever a new run appears; the person's own pick otherwise."""
    offered = st.session_state.get(PICK_OFFERED) or []
    if st.session_state.get("train_run_pick") not in run_ids or any(run_id not in offered for run_id in run_ids):
        st.session_state["train_run_pick"] = run_ids[-1]
    st.session_state[PICK_OFFERED] = list(run_ids)


def _select(job_id: str) -> None:
    state.select_job(job_id)


def draw_runs(found: list[RunInfo]) -> None:
    st.subheader("Your runs")
    st.caption("Saved on the server: a reload or a new tab with this page's address finds them again. Click a column to sort.")
    fraction = st.column_config.NumberColumn(format="%.3f")
    columns = {"Best val. accuracy": fraction, "Test accuracy": fraction, "Learning rate": st.column_config.NumberColumn(format="%g")}
    st.dataframe(run_rows(found), hide_index=True, key="train_runs", column_config=columns)
    labels = {run.run_id: run_label(run, number) for number, run in enumerate(found, start=1)}
    show, delete = st.columns([3, 1], vertical_alignment="bottom")
    _pick_newest_when_new(list(labels))
    chosen = show.selectbox("Run", list(labels), format_func=labels.get, key="train_run_pick")
    show.button("Show this run above", key="train_show_run", on_click=_select, args=(chosen,))
    with st.expander("Share this run, read-only"):
        st.caption("Anyone with this link sees its curves and summary, nothing else: they cannot stop, continue or delete it.")
        st.code(share_link(chosen), language=None)
    picked = next((run for run in found if run.run_id == chosen), None)
    if delete.button("Delete this run", key="train_delete_run", icon=":material/delete:", disabled=picked is None or not picked.ended):
        if picked is not None and resources.delete_run(picked.run_id):
            st.toast(f"Deleted run '{plain(labels[chosen])}'.")
            st.rerun()
    trained = [run.run_id for run in found if run.epoch > 0]
    _join_new_runs(trained)
    compare = st.multiselect("Compare runs", trained, format_func=labels.get, key="train_compare",
                             help="Runs with at least one finished epoch. A run joins when it has trained.")  # fmt: skip
    histories = {plain_text(labels[run.run_id]): run.history for run in found if run.run_id in compare}
    if histories:
        left, right = st.columns(2)
        left.markdown("Validation accuracy")
        left.plotly_chart(training_plots.compare_runs(histories, "val_accuracy"), key="train_compare_accuracy")
        right.markdown("Validation loss")
        right.plotly_chart(training_plots.compare_runs(histories, "val_loss"), key="train_compare_loss")
    st.caption(f"Total training time of these runs: {format_seconds(sum(run.elapsed_s for run in found))}.")


def share_link(run_id: str) -> str:
    """The address of one run's read-only view (this page's address with ``?view=<run id>``, no owner token)."""
    page = (st.context.url or "").rstrip("/") or "/train"
    return f"{page}?{state.VIEW_PARAM}={run_id}"


@dataclass(frozen=True)
class SharedRun:
    """What a read-only link shows of a run: its outcome and curves, no model and nothing to act on."""

    model: str
    data: str
    status: str
    message: str
    history: dict[str, list[float]]
    test_accuracy: float | None
    elapsed_s: float
    active: bool


def find_shared_run(run_id: str) -> SharedRun | None:
    """The run with this id, from memory (possibly still training) or from disk; None if there is none."""
    if not runs.is_run_id(run_id):
        return None
    run = resources.engine().run(run_id)
    if run is not None:
        return SharedRun(run.name, run.dataset_title, run.status, run.message, run.history, run.test_accuracy, run.elapsed_s,
                         run.active)  # fmt: skip
    store = resources.run_store()
    try:
        record = store.load(store.root / run_id)
    except Exception:  # missing, deleted, or not a readable run
        return None
    title = str(record.dataset_ref.get("title", record.dataset_ref.get("key", "")))
    return SharedRun(record.spec.name, title, record.status, record.message, record.history, record.test_accuracy,
                     record.elapsed_s, False)  # fmt: skip


def draw_shared_run(run_id: str) -> None:
    """The read-only page a share link opens: a title, the outcome and the curves; no buttons."""
    st.title("A shared run")
    run = find_shared_run(run_id)
    if run is None:
        st.warning("No run was found at this link: it may have been deleted, or the link was cut short. Ask for the link again.")
        return
    st.fragment(run_every=2.0 if run.active else None)(_draw_shared)(run_id)


def _draw_shared(run_id: str) -> None:
    run = find_shared_run(run_id)
    if run is None:
        st.warning("This run was deleted.")
        return
    st.markdown(f"**{plain(run.model)}** on **{plain(run.data)}** · {plain(run.status)}")
    st.caption("Read-only: you see this run's curves and summary; nothing here can change it.")
    summary = [counted(len(run.history.get("loss", [])), "epoch"), f"{format_seconds(run.elapsed_s)} of training"]
    if run.test_accuracy is not None:
        summary.append(f"test accuracy {run.test_accuracy:.4f}")
    st.caption(" · ".join(summary))
    if run.message:
        st.info(plain(run.message))
    if run.history.get("loss"):
        st.plotly_chart(training_plots.training_curves(run.history, [], [], []), key="train_shared_curves")
    if run.history.get("learning_rate"):
        st.plotly_chart(training_plots.rate_and_speed(run.history), key="train_shared_rate_speed")
