"""The frame drawn around every page: current data set, model and training status."""

from __future__ import annotations

import streamlit as st

from ui import resources, sign_in, state
from ui.text import plain

KEY_NOTE = ("This page's address is the key to your runs: anyone with it can see, stop and delete them. "
            "Keep it to yourself; to show one run, use its read-only link (Train page, Your runs).")  # fmt: skip


# On a phone-sized window the sidebar lies over the page: after a navigation it would stay open over the new page
# (and its Start button). This closes it once the new page is drawn; a static script, no user data in it.
CLOSE_SIDEBAR_ON_NARROW = """<script>
(() => {  // page: {page}
  if (window.innerWidth >= 768) return;
  const sidebar = document.querySelector('[data-testid="stSidebar"]');
  if (!sidebar || sidebar.getBoundingClientRect().right <= 1) return;
  document.querySelector('[data-testid="stSidebarCollapseButton"] button')?.click();
})();
</script>"""


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds} s"


def training_line() -> str:
    """One line on the selected training job, e.g. 'running — epoch 3/10'."""
    run = resources.selected_run()
    progress = resources.progress(run.run_id) if run is not None else None
    if progress is None:
        return "not started"
    if progress.status == "running" and progress.budget_s is not None:  # a time budget: its countdown
        return f"running — {format_seconds(progress.budget_left_s)} of {format_seconds(progress.budget_s)} left"
    if progress.status == "running":
        return f"running — epoch {min(progress.epoch + 1, progress.epochs)}/{progress.epochs}"
    if progress.status == "queued":
        return f"queued — place {progress.queue_position or '?'} in line"
    accuracy = [v for v in progress.history.get("val_accuracy", []) if v == v]
    if not accuracy:
        return str(progress.status)
    best = f", best {max(accuracy):.1%}" if max(accuracy) > accuracy[-1] else ""
    return f"{progress.status}, validation accuracy {accuracy[-1]:.1%} at the last epoch{best}"


def _status_lines() -> None:
    spec = state.model_spec_state()
    st.caption(f"**Data:** {plain(resources.dataset_title(state.dataset_choice()))}")
    st.caption(f"**Model:** {plain(spec.name)}")
    st.caption(f"**Training:** {training_line()}")


def draw_frame(slot, page: str = "") -> None:
    """Sidebar summary shown on every page; it refreshes itself while a training runs."""
    with slot:
        st.html(CLOSE_SIDEBAR_ON_NARROW.replace("{page}", page), unsafe_allow_javascript=True)  # a new page: run again
        st.markdown("**Your session**")
        if sign_in.signed_in_owner() is not None:
            sign_in.draw_account()
        else:
            st.caption(KEY_NOTE)
        if any(run.active for run in resources.session_runs()):
            st.fragment(run_every=resources.live_refresh_s())(_status_lines)()  # as often as the live curves: less in a full room
        else:
            _status_lines()
