"""The instructor's room view: every training in the server, the server's load, the limits; stop and clear."""

from __future__ import annotations

import hmac
from dataclasses import fields, replace

import streamlit as st

from dcnn_core.room import leaderboard
from dcnn_core.room.rules import Refused
from dcnn_core.training.engine import RunInfo
from ui import leaderboard_view, resources
from ui.text import plain

UNLOCKED = "room_unlocked"  # True once this browser session entered the instructor key
LIMITS_MESSAGE = "room_limits_message"
ROOM_FIELDS = {  # the limits an instructor may change for the session, within the server's maxima
    "images_per_epoch": "Training images per epoch",
    "max_epochs": "Epochs per run",
    "max_train_minutes": "Training minutes per run",
    "max_queue": "Trainings active in the server",
    "max_runs_per_owner": "Runs kept per person",
}
MESSAGE = "room_message"
STOP_REASON = "Stopped by the instructor"
LIMIT_NAMES = {
    "max_concurrent_jobs": "Trainings computing at once (the others take turns)",
    "room_images_per_epoch": "Training images per epoch, when shared",
    "room_max_epochs": "Epochs per run, when shared",
    "room_max_train_minutes": "Training minutes per run, when shared",
    "max_queue": "Trainings active in the server",
    "max_runs_per_user": "Runs kept per person",
    "standin_images_per_class": "Offline stand-in: Shapes per class",
    "max_parameters": "Largest design (parameters)",
    "idle_stop_s": "Unwatched training stopped after (s)",
    "tf_threads": "TensorFlow threads per operation",
    "max_upload_megapixels": "Largest uploaded image (megapixels)",
    "custom_data_budget_mb": "Memory for one user's own images (MB)",
    "allow_server_folders": "Import folders on the server",
}


def _check_key() -> None:
    entered = st.session_state.get("room_key", "")
    expected = resources.settings().instructor_key
    if expected and hmac.compare_digest(entered.encode(), expected.encode()):
        st.session_state[UNLOCKED] = True
    else:
        st.session_state[MESSAGE] = "That is not the instructor key."
    st.session_state["room_key"] = ""


def unlocked() -> bool:
    """Whether this session may see the room; otherwise draw the key form."""
    if not resources.settings().instructor_key:
        st.info("The room view is off: the server has no instructor key (DCNN_INSTRUCTOR_KEY).")
        return False
    if st.session_state.get(UNLOCKED):
        return True
    with st.form("room_unlock"):
        st.text_input("Instructor key", type="password", key="room_key")
        st.form_submit_button("Open the room view", on_click=_check_key, icon=":material/key:")
    message = st.session_state.pop(MESSAGE, None)
    if message:
        st.error(message, icon=":material/block:")
    return False


def _who(run: RunInfo, names: dict[str, str]) -> str:
    return names.get(leaderboard.owner_hash(run.owner), leaderboard.anonymous_id(run.owner))


def _progress_text(run: RunInfo) -> str:
    progress = resources.progress(run.run_id)
    if progress is None:
        return "ended"
    if progress.queue_position is not None:
        return f"queued, place {progress.queue_position}"
    return f"{progress.status}, epoch {min(progress.epoch + 1, progress.epochs)}/{progress.epochs}"


def draw_live() -> None:
    """What changes by itself: the server's load and the trainings (drawn in a refreshing fragment)."""
    draw_server()
    draw_trainings()


def draw_trainings() -> None:
    """Every active and queued training, with a Stop button each."""
    active = [run for run in resources.engine().runs() if run.active]
    st.subheader(f"Trainings now: {len(active)}")
    if not active:
        st.caption("Nobody is training right now.")
        return
    names = leaderboard_view.board().display_names()
    for run in active:
        with st.container(border=True, key=f"room_job_{run.run_id}"):
            left, right = st.columns([6, 1], vertical_alignment="center")
            left.markdown(f"**{plain(_who(run, names))}** · {plain(run.dataset_title)} · {plain(run.name)} · {_progress_text(run)}")
            right.button("Stop", key=f"room_stop_{run.run_id}", on_click=resources.stop_run, args=(run.run_id, STOP_REASON),
                         icon=":material/stop_circle:", use_container_width=True)  # fmt: skip


def draw_server() -> None:
    """CPU and memory of the machine, and of this server process."""
    import psutil

    memory = psutil.virtual_memory()
    process = psutil.Process()
    a, b, c = st.columns(3)
    a.metric("CPU (all cores)", f"{psutil.cpu_percent(interval=None):.0f} %", help=f"{psutil.cpu_count()} cores")
    b.metric("Memory used", f"{memory.percent:.0f} %", help=f"{memory.used / 2**30:.1f} of {memory.total / 2**30:.1f} GiB")
    c.metric("This app's memory", f"{process.memory_info().rss / 2**20:,.0f} MiB")


def draw_limits() -> None:
    """The room limits in force (from the server's settings; the instructor key is never shown)."""
    settings = resources.settings()
    shown = [field.name for field in fields(settings) if field.repr]
    st.dataframe(
        {"Limit": [LIMIT_NAMES.get(name, name) for name in shown], "Value": [_shown(getattr(settings, name)) for name in shown]},
        hide_index=True,
    )
    st.caption("The server's maxima: DCNN_* environment variables or Streamlit secrets, set before it starts (see the README).")
    _room_form()


def _shown(value) -> str:
    return "no limit" if value is None else str(value)


def _apply_room() -> None:
    values = {name: _limit(st.session_state[f"room_set_{name}"]) for name in ROOM_FIELDS}
    door = resources.engine()
    try:
        door.set_room(replace(door.rules.limits, **values), int(st.session_state["room_set_slots"]))
    except Refused as error:
        st.session_state[LIMITS_MESSAGE] = ("error", str(error))
        return
    st.session_state[LIMITS_MESSAGE] = ("success", "New limits set for this session: runs started from now on follow them.")


def _room_form() -> None:
    """The instructor tightens (or loosens, up to the server's maxima) the room's limits while the server runs."""
    rules = resources.engine().rules
    current, server = rules.limits, rules.server_limits
    with st.form("room_limits"):
        st.markdown("**Limits for this session**")
        a, b = st.columns(2)
        a.number_input("Trainings computing at once", 1, rules.max_slots, rules.slots, key="room_set_slots")
        for column, name in zip((b, a, b, a, b), ROOM_FIELDS, strict=True):
            column.number_input(ROOM_FIELDS[name], 1, getattr(server, name), getattr(current, name), key=f"room_set_{name}",
                                placeholder="no limit")  # fmt: skip
        st.form_submit_button("Apply to new runs", on_click=_apply_room, icon=":material/tune:")
    message = st.session_state.pop(LIMITS_MESSAGE, None)
    if message:
        (st.error if message[0] == "error" else st.success)(message[1])


def _limit(value) -> int | None:
    return None if value is None else int(value)


def _clear_leaderboard() -> None:
    removed = leaderboard_view.board().clear()
    st.session_state[MESSAGE] = f"Removed {removed} leaderboard entr{'y' if removed == 1 else 'ies'}."
    st.session_state["room_confirm_clear"] = False


def draw_leaderboard_controls() -> None:
    count = len(leaderboard_view.board().entries())
    st.caption(f"{count} published run{'' if count == 1 else 's'} on the leaderboard.")
    confirm = st.checkbox("Yes, remove every entry", key="room_confirm_clear")
    st.button("Clear the leaderboard", key="room_clear", on_click=_clear_leaderboard, disabled=not confirm, icon=":material/delete_sweep:")
    message = st.session_state.pop(MESSAGE, None)
    if message:
        st.success(message, icon=":material/check_circle:")
