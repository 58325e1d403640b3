"""The instructor's room view: every training in the server, the server's load, the limits; stop, remove and clear."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import streamlit as st

from dcnn_core.naming import counted
from dcnn_core.room import leaderboard
from dcnn_core.room.leaderboard import Entry, LeaderboardUnavailable
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
LEADERBOARD_MESSAGE = "room_leaderboard_message"  # (kind, text) left by a leaderboard button for the next run
PENDING = "room_pending_removal"  # the Removal waiting for the instructor's "Yes, remove"
STOP_REASON = "Stopped by the instructor"
LIMIT_NAMES = {
    "max_concurrent_jobs": "Trainings computing at once (the others take turns)",
    "room_images_per_epoch": "Training images per epoch, when shared",
    "room_max_epochs": "Epochs per run, when shared",
    "room_max_train_minutes": "Training minutes per run, when shared",
    "max_queue": "Trainings active in the server",
    "max_runs_per_user": "Runs kept per person",
    "max_disk_mb_per_user": "Disk for one person's runs (MB)",
    "max_disk_mb_total": "Disk for everyone's runs (MB)",
    "max_image_sets_per_user": "Own image sets per person",
    "max_own_images_mb_total": "Memory for everyone's own images (MB)",
    "max_imported_models_per_user": "Imported models per person",
    "log_page_times": "Page times in the server log",
    "ray_address": "Ray cluster (empty: trainings run in this process)",
    "standin_images_per_class": "Offline stand-in: Shapes per class",
    "max_parameters": "Largest design (parameters)",
    "max_gmac_per_batch": "Costliest training batch (billion multiply-adds)",
    "max_activation_mb_per_batch": "Activations a training batch keeps (MB)",
    "idle_stop_s": "Unwatched training stopped after (s)",
    "tf_threads": "TensorFlow threads per operation",
    "training_nice": "Training's priority below the web server (nice)",
    "max_upload_megapixels": "Largest uploaded image (megapixels)",
    "custom_data_budget_mb": "Memory for one user's own images (MB)",
    "allow_server_folders": "Import folders on the server",
}


def _check_key() -> None:
    entered = st.session_state.get("room_key", "")
    verdict = resources.key_guard(resources.settings().instructor_key).check(entered)
    if verdict.unlocked:
        st.session_state[UNLOCKED] = True
    else:
        st.session_state[MESSAGE] = verdict.message
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


@st.cache_resource(show_spinner=False)
def attendee_numbers() -> leaderboard.AttendeeNumbers:
    """One numbering for the whole server, so "Attendee 3" stays the same person on every refresh."""
    return leaderboard.AttendeeNumbers()


def _who(run: RunInfo, names: dict[str, str]) -> str:
    """The name this person published under, else "Attendee N" (never their token or a piece of its hash)."""
    return names.get(leaderboard.owner_hash(run.owner)) or attendee_numbers().name(run.owner)


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
    try:
        names = leaderboard_view.board().display_names()
    except LeaderboardUnavailable:  # the leaderboard part says so; the trainings and their Stop buttons do not need it
        names = {}
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
    st.caption(
        "Above: the server's maxima, DCNN_* environment variables or Streamlit secrets set before it starts (see the "
        "README). Below: what is in force now, which you may tighten."
    )
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
    st.session_state[LIMITS_MESSAGE] = ("success", "New limits set for this session: everyone's runs started from now on follow them.")


def _room_form() -> None:
    """The instructor tightens (or loosens, up to the server's maxima) the room's limits while the server runs."""
    rules = resources.engine().rules
    current, server = rules.limits, rules.server_limits
    with st.form("room_limits"):
        st.markdown("**In force now, for everyone on this server** (until it restarts; within the maxima above)")
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


# --- the leaderboard: remove one entry, one person's entries, or all ------------------------------------------


@dataclass(frozen=True)
class Removal:
    """What the instructor asked to remove, held until they confirm it."""

    what: str  # "entry" or "person"
    target: int | str  # the entry's id, or the person's owner hash
    label: str  # how the confirmation names it (user text: shown through plain())


def _entry_label(entry: Entry) -> str:
    return f"{entry.display_name} — {entry.design_name} — {entry.dataset_title} — {entry.test_accuracy:.2%}"


def _people(entries: list[Entry]) -> dict[str, tuple[str, int]]:
    """Owner hash → (the name of their latest entry, how many entries they have)."""
    people: dict[str, tuple[str, int]] = {}
    for entry in sorted(entries, key=lambda entry: entry.created_at):
        people[entry.owner_hash] = (entry.display_name, people.get(entry.owner_hash, ("", 0))[1] + 1)
    return people


def _ask(removal: Removal) -> None:
    st.session_state[PENDING] = removal


def _cancel() -> None:
    st.session_state.pop(PENDING, None)


def _remove_pending() -> None:
    removal = st.session_state.pop(PENDING, None)
    if removal is None:
        return
    board = leaderboard_view.board()
    try:
        removed = int(board.remove(removal.target)) if removal.what == "entry" else board.remove_owner(removal.target)
    except LeaderboardUnavailable as error:
        st.session_state[LEADERBOARD_MESSAGE] = ("error", str(error))
        return
    st.session_state[LEADERBOARD_MESSAGE] = ("success", _removed(removed))


def _entries(count: int) -> str:
    return f"{count} entr{'y' if count == 1 else 'ies'}"


def _removed(count: int) -> str:
    return f"Removed {count} leaderboard entr{'y' if count == 1 else 'ies'}."


def _clear_leaderboard() -> None:
    try:
        removed = leaderboard_view.board().clear()
    except LeaderboardUnavailable as error:
        st.session_state[LEADERBOARD_MESSAGE] = ("error", str(error))
        return
    st.session_state[LEADERBOARD_MESSAGE] = ("success", _removed(removed))
    st.session_state["room_confirm_clear"] = False


def _removal_pickers(entries: list[Entry]) -> None:
    """One entry and its Remove button; one person and theirs. Nothing is removed before the confirmation below.

    Each button sits under its picker: in the room's half-width column, beside it, their labels would be cut.
    """
    by_id = {entry.entry_id: entry for entry in entries}
    picked = st.selectbox("One entry", list(by_id), format_func=lambda i: _entry_label(by_id[i]), key="room_remove_pick")
    entry = Removal("entry", picked, f"the entry {_entry_label(by_id[picked])}")
    st.button("Remove this entry", key="room_remove_entry", on_click=_ask, args=(entry,), icon=":material/delete:")
    people = _people(entries)
    person = st.selectbox("One person", list(people), key="room_remove_person_pick",
                          format_func=lambda owner: f"{people[owner][0]} ({_entries(people[owner][1])})")  # fmt: skip
    name, count = people[person]
    theirs = Removal("person", person, f"all {_entries(count)} of {name}")
    st.button("Remove all of theirs", key="room_remove_person", on_click=_ask, args=(theirs,), icon=":material/person_remove:")


def _confirmation() -> None:
    removal: Removal | None = st.session_state.get(PENDING)
    if removal is None:
        return
    st.warning(f"Remove {plain(removal.label)}? This cannot be undone.", icon=":material/warning:")
    yes, no = st.columns(2)
    yes.button("Yes, remove", key="room_remove_yes", on_click=_remove_pending, type="primary", icon=":material/delete_forever:")
    no.button("Cancel", key="room_remove_cancel", on_click=_cancel)


def draw_leaderboard_controls() -> None:
    """Remove one entry, one person's entries, or all of them; a board that cannot be read says so in one sentence."""
    try:
        entries = leaderboard_view.board().entries()
    except LeaderboardUnavailable as error:
        st.session_state.pop(PENDING, None)
        leaderboard_view.unavailable(error)
        _show_leaderboard_message()
        return
    count = len(entries)
    st.caption(f"{counted(count, 'published run')} on the leaderboard.")
    if entries:
        _removal_pickers(entries)
        _confirmation()
    else:
        st.session_state.pop(PENDING, None)  # nothing left to remove
    confirm = st.checkbox("Yes, remove every entry", key="room_confirm_clear")
    st.button("Clear the leaderboard", key="room_clear", on_click=_clear_leaderboard, disabled=not confirm, icon=":material/delete_sweep:")
    _show_leaderboard_message()


def _show_leaderboard_message() -> None:
    message = st.session_state.pop(LEADERBOARD_MESSAGE, None)
    if message:
        kind, text = message
        if kind == "success":
            st.success(text, icon=":material/check_circle:")
        else:
            st.error(text, icon=":material/block:")
