"""The room's leaderboard: publish a finished run (Train or Leaderboard page), browse, load and withdraw (Leaderboard page).

A leaderboard file that cannot be used (``LeaderboardUnavailable``) shows as one sentence where the board would be;
the rest of each page works as usual, and a run that could not be published stays as it was.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

import streamlit as st

from dcnn_core.data import datasets
from dcnn_core.data.datasets import DatasetChoice
from dcnn_core.design import plan
from dcnn_core.room import leaderboard
from dcnn_core.room.leaderboard import Entry, Leaderboard, LeaderboardUnavailable
from dcnn_core.training import runs
from dcnn_core.training.config import TrainConfig
from dcnn_core.training.engine import RunInfo
from ui import model_form, resources, state
from ui.frame import format_seconds
from ui.text import plain

DISPLAY_NAME = "leaderboard_display_name"  # the name this user last published under
MESSAGE = "leaderboard_message"  # (kind, text) left by a callback for the next run to show
PUBLISH_NAME = "leaderboard_publish_name"  # the display name typed on the Leaderboard page
REFRESH_S = 5.0  # an open Leaderboard page reads the board again this often (one query): a clear or a publish shows by itself
SORTS = {"test_accuracy": "Best test accuracy first", "training_s": "Fastest training first", "created_at": "Newest first"}
PUBLISHABLE = ("finished", "stopped")  # run states whose test accuracy means something
TRAIN_PAGE_BATCH_SIZES = (8, 16, 32, 64, 128, 256)  # what the Train page's widgets can show
TRAIN_PAGE_STEP_FACTORS = (0.1, 0.2, 0.3, 0.5, 0.7)


@st.cache_resource(show_spinner=False)
def _board(path: str) -> Leaderboard:
    return Leaderboard(path)


def board() -> Leaderboard:
    """The server's leaderboard, in the runs folder (one SQLite file shared by every session)."""
    return _board(str(runs.default_runs_dir() / leaderboard.FILE_NAME))


def _owner() -> str:
    return st.session_state[state.OWNER]


def unavailable(error: LeaderboardUnavailable) -> None:
    """The one sentence shown instead of what the leaderboard would have drawn (the server log has the details)."""
    st.warning(str(error), icon=":material/cloud_off:")


def _show_message() -> None:
    message = st.session_state.pop(MESSAGE, None)
    if message:
        kind, text = message
        (st.success if kind == "success" else st.error)(text, icon=":material/check_circle:" if kind == "success" else ":material/block:")


# --- publishing, on the Train page -------------------------------------------------------------


def _publishable(job: RunInfo) -> str | None:
    """Why this run cannot be published, or None when it can."""
    if job.status not in PUBLISHABLE or job.test_accuracy is None:
        return "A finished run with a test accuracy can be published."
    if job.dataset_ref.get("key") not in datasets.REGISTRY:
        return "Runs on your own images stay private: only runs on the built-in sets can be published."
    return None


def _parameters(job: RunInfo) -> int | None:
    """The design's parameter count on the data it was trained on (None if that data cannot be loaded now)."""
    try:
        dataset = resources.load_dataset(DatasetChoice.from_dict(job.dataset_ref))
    except Exception:  # e.g. a download that fails now: publish without the count
        return None
    analysis = plan.analyse(job.spec, dataset.input_shape, dataset.num_classes)
    return analysis.total_parameters if analysis.ok else None


def _publish(run_id: str, name_key: str) -> None:
    """The Publish button (Train page or Leaderboard page); the name is in ``st.session_state[name_key]``."""
    name = st.session_state.get(name_key, "")
    job = resources.engine().run(run_id)
    if job is None or job.owner != _owner():
        st.session_state[MESSAGE] = ("error", "This run is no longer here.")
        return
    try:
        entry = board().publish(
            owner=_owner(), run_id=job.run_id, display_name=name, dataset_ref=_public_reference(job.dataset_ref),
            dataset_title=job.dataset_title, spec=job.spec, parameters=_parameters(job),
            config=job.config, test_accuracy=job.test_accuracy, training_s=job.elapsed_s,
        )  # fmt: skip
    except (ValueError, LeaderboardUnavailable) as error:  # the run itself is untouched: it can be published later
        st.session_state[MESSAGE] = ("error", plain(str(error)))
        return
    st.session_state[DISPLAY_NAME] = entry.display_name
    st.session_state[MESSAGE] = ("success", f"Published as **{plain(entry.display_name)}**: the room sees it on the Leaderboard page.")


def _public_reference(reference: dict) -> dict:
    """A data-set reference as the room may see it: the set and its options, nothing of this server's."""
    return {key: reference[key] for key in ("key", "options", "title") if key in reference}


def draw_publish(job: RunInfo | None) -> None:
    """Below a finished run of this user: a display name and a Publish button."""
    if job is None or job.owner != _owner() or _publishable(job) is not None:
        return
    with st.container(border=True, key="train_publish_box"):
        st.markdown("**Share this run with the room** — the design, its training settings and its test accuracy; no weights, no images.")
        try:
            published = board().published_run(_owner(), job.run_id)
        except LeaderboardUnavailable as error:
            st.session_state.pop(MESSAGE, None)  # a failed publish says the same sentence: once is enough
            unavailable(error)
            return
        if "train_publish_name" not in st.session_state:
            st.session_state["train_publish_name"] = published.display_name if published else st.session_state.get(DISPLAY_NAME, "")
        left, right = st.columns([3, 1], vertical_alignment="bottom")
        left.text_input("Display name", key="train_publish_name", max_chars=leaderboard.MAX_NAME_LENGTH,
                        help="Shown to everyone on the Leaderboard page, exactly as typed.")  # fmt: skip
        right.button("Rename" if published else "Publish", key="train_publish", on_click=_publish, args=(job.run_id, "train_publish_name"),
                     icon=":material/leaderboard:", use_container_width=True)  # fmt: skip
        _show_message()
        if published:
            st.caption(f"On the leaderboard as {plain(published.display_name)}.")


# --- the Leaderboard page ----------------------------------------------------------------------


def _settings_line(config: TrainConfig) -> str:
    return f"{config.optimizer}, lr {config.learning_rate:g}, batch {config.batch_size}, {config.epochs} epochs"


def _table(entries: list[Entry]) -> dict:
    mine = _owner()
    return {
        "Name": [entry.display_name + (" (you)" if entry.published_by(mine) else "") for entry in entries],
        "Test accuracy": [entry.test_accuracy for entry in entries],
        "Design": [entry.design_name + (" · dense baseline" if entry.dense_baseline else "") for entry in entries],
        "Summary": [entry.summary for entry in entries],
        "Training": [_settings_line(entry.config) for entry in entries],
        "Training time": [format_seconds(entry.training_s) for entry in entries],
    }


def _fit_train_page(config: TrainConfig) -> TrainConfig:
    """The settings within what the Train page's widgets can show (a headless run may go beyond)."""
    return replace(
        config,
        epochs=min(config.epochs, 50),
        batch_size=min(TRAIN_PAGE_BATCH_SIZES, key=lambda size: abs(size - config.batch_size)),
        validation_split=round(min(config.validation_split, 0.5) / 0.05) * 0.05,
        step_every=min(config.step_every, 20),
        step_factor=min(TRAIN_PAGE_STEP_FACTORS, key=lambda factor: abs(factor - config.step_factor)),
        patience=min(config.patience, 10),
    )


def load_entry(entry_id: int) -> None:
    """The Load button: the design into the Model page, the settings into the Train page, and its data set."""
    try:
        entry = board().load(entry_id)
    except LeaderboardUnavailable as error:
        st.session_state[MESSAGE] = ("error", str(error))
        return
    if entry is None:
        st.session_state[MESSAGE] = ("error", "That entry was withdrawn meanwhile.")
        return
    model_form.load_spec_into_widgets(entry.spec)
    st.session_state[state.TRAIN_CONFIG] = _fit_train_page(entry.config)
    loaded = f"Loaded **{plain(entry.design_name)}** by {plain(entry.display_name)} and its training settings"
    if entry.dataset_ref["key"] in datasets.REGISTRY:
        state.use_dataset(DatasetChoice.from_dict(entry.dataset_ref))
        loaded += f", on {plain(entry.dataset_title)}"
    st.session_state[MESSAGE] = ("success", loaded + ". Change it on the Model page, then train it on the Train page.")


def withdraw_entry(entry_id: int) -> None:
    try:
        withdrawn = board().withdraw(entry_id, _owner())
    except LeaderboardUnavailable as error:
        st.session_state[MESSAGE] = ("error", str(error))
        return
    if withdrawn:
        st.session_state[MESSAGE] = ("success", "Your entry was withdrawn.")
    else:
        st.session_state[MESSAGE] = ("error", "Only its author can withdraw an entry.")


def _entry_label(entry: Entry, rank: int) -> str:
    return f"{rank}. {entry.display_name} — {entry.design_name} — {entry.test_accuracy:.2%}"


def _dataset_section(title: str, entries: list[Entry]) -> None:
    key = hashlib.sha256(title.encode()).hexdigest()[:10]
    st.subheader(plain(title))
    baseline = [entry.test_accuracy for entry in entries if entry.dense_baseline]
    best = max(entry.test_accuracy for entry in entries)
    if baseline:
        st.caption(f"Dense baseline: {max(baseline):.2%} · best: {best:.2%} — the room's own numbers.")
    # The table's hover toolbar (search, download, full screen) is drawn 2.75rem above it: this space and the two gaps
    # around it make exactly that room, so it covers nothing (it lay over the data set's title, or the caption above).
    st.space("small")
    st.dataframe(
        _table(entries), hide_index=True, use_container_width=True,
        column_config={"Test accuracy": st.column_config.NumberColumn(format="percent")},
    )  # fmt: skip
    by_id = {entry.entry_id: entry for entry in entries}
    ranks = {entry.entry_id: rank for rank, entry in enumerate(sorted(entries, key=lambda e: -e.test_accuracy), start=1)}
    left, middle, right = st.columns([5, 3, 2], vertical_alignment="bottom")  # wide enough for "Load this design" at 1366 px
    picked = left.selectbox("Entry", list(by_id), format_func=lambda i: _entry_label(by_id[i], ranks[i]), key=f"leaderboard_pick_{key}")
    # Plain buttons, then a rerun of the whole app: the sidebar shows the loaded design, and the message shows above.
    if middle.button("Load this design", key=f"leaderboard_load_{key}", icon=":material/download:", use_container_width=True):
        load_entry(picked)
        st.rerun()
    if picked is not None and by_id[picked].published_by(_owner()):
        if right.button("Withdraw", key=f"leaderboard_withdraw_{key}", icon=":material/delete:", use_container_width=True):
            withdraw_entry(picked)
            st.rerun()


def _draw_publish_own() -> None:
    """One click publishes a finished run of this user's (the latest first), without picking it on the Train page first."""
    finished = [run for run in reversed(resources.session_runs()) if _publishable(run) is None]
    if not finished:
        return
    try:
        published = board().published_runs(_owner())
    except LeaderboardUnavailable:
        return  # the board below says so, once
    waiting = {run.run_id: run for run in finished if run.run_id not in published}
    if not waiting:
        return
    if PUBLISH_NAME not in st.session_state:  # the name used last, in this session or before a reload
        st.session_state[PUBLISH_NAME] = st.session_state.get(DISPLAY_NAME) or next(reversed(published.values()), "")
    labels = {run_id: f"{run.name} · {run.dataset_title} · test accuracy {run.test_accuracy:.2%}" for run_id, run in waiting.items()}
    with st.container(border=True, key="leaderboard_publish_box"):
        st.markdown("**Publish one of your runs** — its design, training settings and test accuracy; no weights, no images.")
        left, middle, right = st.columns([5, 3, 2], vertical_alignment="bottom")
        run_id = left.selectbox("Your finished run", list(labels), format_func=labels.get, key="leaderboard_publish_run")
        middle.text_input("Display name", key=PUBLISH_NAME, max_chars=leaderboard.MAX_NAME_LENGTH, placeholder="How the room sees you",
                          help="Shown to everyone on this page, exactly as typed.")  # fmt: skip
        right.button("Publish", key="leaderboard_publish", on_click=_publish, args=(run_id, PUBLISH_NAME),
                     icon=":material/leaderboard:", use_container_width=True, type="primary")  # fmt: skip


@st.fragment(run_every=REFRESH_S)
def _draw_board() -> None:
    """The tables, read again every few seconds: what the room publishes, withdraws or the instructor clears shows by itself."""
    sort_by = st.segmented_control("Order", list(SORTS), format_func=SORTS.get, default="test_accuracy", key="leaderboard_sort")
    try:
        grouped = board().best_by_dataset(sort_by=sort_by or "test_accuracy")
    except LeaderboardUnavailable as error:
        unavailable(error)
        return
    if not grouped:
        st.info("No runs published yet. Finish a training on the Train page, then publish it here or below it on the Train page.")
        return
    for title, entries in grouped.items():
        _dataset_section(title, entries)


def draw_leaderboard() -> None:
    """Publish one of your runs; the best runs per data set, sortable, with the dense baseline marked and a Load button."""
    _show_message()
    _draw_publish_own()
    _draw_board()
